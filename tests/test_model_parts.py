"""Each core part of the model from its own ``model.<role>: {kind, ...}`` section, and older flat configs read alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_model_config
from vconv.config import ConfigSection, ModelConfig, apply_overrides
from vconv.config.model_parts import PART_SECTIONS
from vconv.errors import VconvError
from vconv.models import build_model
from vconv.models.decoder import AdaINDecoder
from vconv.models.quantize import PassThroughQuantizer
from vconv.models.vc import MODEL_PARTS, register_model_part

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "vconv-voices-small" / "config.json"


def test_sections_are_kept_with_every_default_filled_in():
    cfg = ModelConfig(quantizer={"kind": "vq", "groups": 2})
    assert cfg.quantizer == {"kind": "vq", "codebook_size": 256, "groups": 2, "beta": 0.25, "ema": True, "decay": 0.99,
                             "dead_after": 200}
    assert cfg.content_encoder["downsample"] == [1, 2, 1, 1] and "pitch_harmonics" not in cfg.decoder
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg  # the round trip a bundle makes


def test_the_shipped_flat_config_reads_as_sections():
    """The shipped bundle's config.json was written with the flat keys: they land in the parts' sections."""
    flat = json.loads(SHIPPED.read_text())["model_config"]
    cfg = ModelConfig.from_dict(flat)
    assert cfg.content_encoder == {"kind": "conv", "channels": 256, "blocks": 4, "downsample": [1, 1, 1, 1],
                                   "kernel_size": 5, "dropout": 0.0}
    assert cfg.quantizer["codebook_size"] == 512 and cfg.quantizer["groups"] == 2
    assert cfg.decoder["channels"] == 256 and cfg.decoder["blocks"] == 4 and cfg.speaker_encoder["channels"] == 256
    assert cfg.adversary == {"kind": "none"} and cfg.n_speakers == 41  # `adversary: false`, now a part swap


def test_flat_switches_become_part_swaps_and_flat_keys_win_over_a_section():
    assert ModelConfig.from_dict({"quantize": False}).quantizer == {"kind": "none"}
    assert ModelConfig.from_dict({"quantize": True, "quantizer": {"kind": "vq", "groups": 4}}).quantizer["groups"] == 4
    assert ModelConfig.from_dict({"adversary": True, "adversary_hidden": 8}).adversary["hidden"] == 8
    # an override in the old spelling on a newer config: it wins, and the shared kernel size reaches every conv part
    cfg = ModelConfig.from_dict({"decoder": {"kind": "adain", "channels": 32}, "channels": 64, "kernel_size": 3})
    assert cfg.decoder["channels"] == 64 and cfg.content_encoder["channels"] == 64
    assert {cfg.content_encoder["kernel_size"], cfg.speaker_encoder["kernel_size"], cfg.adversary["kernel_size"]} == {3}
    with pytest.raises(VconvError, match=r"model.quantize: expected true or false, got 'maybe'"):
        ModelConfig.from_dict({"quantize": "maybe"})


@pytest.mark.parametrize("section, message", [
    ({"decoder": {"kind": "transformer"}}, "model.decoder.kind must be one of adain, got 'transformer'"),
    ({"decoder": {"kind": "adain", "chanels": 3}}, "model.decoder: unknown key(s) chanels"),
    ({"quantizer": {"kind": "none", "groups": 2}}, "model.quantizer: kind none takes no settings, got groups"),
    ({"content_encoder": {"kind": "conv", "channels": 0}}, "model.content_encoder.channels: expected 1..4096, got 0"),
    ({"adversary": "none"}, "model.adversary: expected a mapping"),
])
def test_a_bad_section_is_a_one_line_error(section, message):
    with pytest.raises(VconvError) as caught:
        ModelConfig(**section)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_override_of_the_kind_swaps_the_part():
    data = apply_overrides({"model": {"quantizer": {"kind": "vq", "codebook_size": 64}}}, ["model.quantizer.kind=none"])
    assert data["model"]["quantizer"] == {"kind": "none"}
    data = apply_overrides(data, ["model.quantizer.kind=none"])  # the same kind again keeps the section
    assert isinstance(build_model(tiny_model_config(quantizer=data["model"]["quantizer"])).quantizer, PassThroughQuantizer)


def test_every_section_has_a_builder_and_back():
    assert {role: set(kinds) for role, kinds in PART_SECTIONS.items()} == {role: set(kinds) for role, kinds in MODEL_PARTS.items()}


def test_a_registered_part_is_built_from_its_section():
    """A decoder kind from outside the package: its section checks the settings, its builder gets the model's sizes."""

    @dataclass
    class WideSection(ConfigSection):
        SECTION = "model.decoder"
        LIMITS = {"factor": (1, 4)}
        factor: int = 2

    def wide_decoder(code_dim, speaker_dim, n_mels, stride, pitch_channels, factor):
        return AdaINDecoder(code_dim=code_dim, channels=16 * factor, blocks=1, speaker_dim=speaker_dim, n_mels=n_mels,
                            kernel_size=3, stride=stride, pitch_channels=pitch_channels)

    register_model_part("decoder", "wide", wide_decoder, WideSection)
    try:
        with pytest.raises(VconvError, match="model.decoder.factor: expected 1..4, got 9"):
            tiny_model_config(decoder={"kind": "wide", "factor": 9})
        model = build_model(tiny_model_config(decoder={"kind": "wide", "factor": 3}))
        assert model.decoder.inp.out_channels == 48
        mel = torch.randn(1, 16, 24)
        assert model.convert(mel, mel).shape == mel.shape
    finally:
        del PART_SECTIONS["decoder"]["wide"], MODEL_PARTS["decoder"]["wide"]


REQUIRED = ["train.train_manifest=m.jsonl", "train.run_dir=r"]


def test_an_override_of_one_setting_needs_no_kind_and_a_boolean_keeps_its_meaning():
    from vconv.config import load_run_config

    _, model, _ = load_run_config("base", [*REQUIRED, "model.decoder.channels=128", "model.quantizer.groups=2"])
    assert model.decoder["channels"] == 128 and model.quantizer["groups"] == 2 and model.quantizer["kind"] == "vq"
    _, model, _ = load_run_config("debug", [*REQUIRED, "model.adversary=true"])
    assert model.adversary["hidden"] == 64  # the older spelling keeps debug's classifier, as it did
    _, model, _ = load_run_config("debug", [*REQUIRED, "model.adversary=false"])
    assert model.adversary == {"kind": "none"}
    with pytest.raises(VconvError, match=r"^model.decoder: expected a mapping"):
        load_run_config("debug", [*REQUIRED, "model.decoder=5", "model.channels=3"])


@pytest.mark.parametrize("order", [0, 1])
def test_a_kind_override_never_drops_settings_given_beside_it(order):
    from vconv.config import load_run_config

    vctk = Path(__file__).resolve().parents[1] / "recipes" / "vctk" / "conf" / "ablations" / "no_vq.yaml"
    given = ["model.quantizer.codebook_size=64", "model.quantizer.kind=vq"]
    _, model, _ = load_run_config(vctk, [*REQUIRED, *(given if order else given[::-1])])
    assert model.quantizer["kind"] == "vq" and model.quantizer["codebook_size"] == 64


def test_a_newer_file_wins_over_an_older_flat_base(tmp_path):
    from vconv.config import load_run_config

    (tmp_path / "old.yaml").write_text("model: {channels: 512, codebook_size: 512, adversary: false}\n")
    (tmp_path / "new.yaml").write_text("base: old.yaml\nmodel: {decoder: {channels: 128}, quantizer: {codebook_size: 64}}\n")
    _, model, _ = load_run_config(tmp_path / "new.yaml", REQUIRED)
    assert model.decoder["channels"] == 128 and model.content_encoder["channels"] == 512
    assert model.quantizer["codebook_size"] == 64 and model.adversary == {"kind": "none"}



def test_a_boolean_is_a_part_switch_only_where_it_once_was():
    from vconv.config import load_run_config

    with pytest.raises(VconvError, match=r"^model.content_frontend: expected a mapping"):
        load_run_config("debug", [*REQUIRED, "model.content_frontend=true"])
    with pytest.raises(VconvError, match=r"^model.decoder: expected a mapping"):
        load_run_config("debug", [*REQUIRED, "model.decoder=false"])
