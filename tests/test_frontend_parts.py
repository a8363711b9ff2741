"""Front-end parts (vconv.frontends): a new part is one file; old configs and bundles still read; the shipped
bundle is pinned and holds only what conversion needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open

import vconv
from vconv.config import ModelConfig, load_run_config
from vconv.data.extract import extract_features
from vconv.data.feature_files import load_feature_tensors
from vconv.data.manifest import feature_path, read_manifest
from vconv.errors import VconvError
from vconv.frontends import FrontEndPart, build_frontend_part, frontend_kinds, register_frontend
from vconv.inference.registry import SHIPPED_CONFIG_SHA256, BundleLocation, check_shipped, resolve_bundle
from vconv.training.vc_trainer import ModelTrainer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# ------------------------------------------------------------------------- a toy front-end in one place

@register_frontend
class BandEnergyContent(FrontEndPart):
    """A toy content part: the log-mel pooled into ``bands`` coarse bands, times ``gain``: ``[bands, F]``."""

    role = "content"
    kind = "toy_bands"

    def __init__(self, bands: int = 8, gain: float = 1.0) -> None:
        super().__init__()
        if bands < 1:
            raise ValueError(f"bands must be >= 1, got {bands}")
        self.bands, self.gain = bands, gain

    def channels(self, n_mels: int) -> int:
        return self.bands

    def compute(self, wav: np.ndarray, frontend) -> torch.Tensor:
        mel = frontend(wav[None])[0]  # [n_mels, F]
        return self.gain * torch.stack([chunk.mean(0) for chunk in mel.chunk(self.bands, dim=0)])


def test_a_toy_front_end_extracts_trains_and_converts(manifests, tmp_path):
    assert "toy_bands" in frontend_kinds("content")
    section = ("content", {"kind": "toy_bands", "bands": 4})
    feats = tmp_path / "feats"
    report = extract_features(manifests / "train.jsonl", feats, progress=False, frontends=[section])
    assert report.written > 0 and not report.bad
    utt = read_manifest(manifests / "train.jsonl")[0]
    tensors = load_feature_tensors(feature_path(feats, utt), None, ("mel", "toy_bands"))
    assert tensors["toy_bands"].shape == (4, tensors["mel"].shape[1])

    features, model, train = load_run_config("debug", [
        f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={tmp_path / 'run'}",
        f"train.features_dir={feats}", "train.steps=1", "model.content_frontend={kind: toy_bands, bands: 4}",
    ])
    ModelTrainer(features, model, train, progress=False).fit()
    bundle = tmp_path / "run" / "model"
    config = json.loads((bundle / "config.json").read_text())
    assert config["model_config"]["content_frontend"] == {"kind": "toy_bands", "bands": 4}
    vc = vconv.load(bundle, vocoder="griffinlim")
    assert vc.model.content_encoder.in_channels == 4
    out = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    source, _ = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")
    assert out.shape == source.shape and np.isfinite(out).all()


def test_a_part_section_is_checked_by_the_part():
    assert build_frontend_part("content", {"kind": "whisper", "layer": 2}).section() == {"kind": "whisper", "layer": 2}
    with pytest.raises(VconvError, match="kind must be one of .*mel.*whisper"):
        build_frontend_part("content", {"kind": "hubert"})
    with pytest.raises(VconvError, match="unknown key.*depth"):
        build_frontend_part("content", {"kind": "whisper", "depth": 2})
    with pytest.raises(VconvError, match="model.content_frontend: layer must be a whole number in 1..4"):
        build_frontend_part("content", {"kind": "whisper", "layer": 7})
    with pytest.raises(VconvError, match="whisper"):  # a content part is not a speaker part
        build_frontend_part("speaker", {"kind": "whisper"})


# ------------------------------------------------------------------------------- older configs and bundles

def test_older_model_configs_are_translated_in_one_place():
    old = ModelConfig.from_dict({"content_input": "whisper", "whisper_layer": 2, "speaker_input": "mel"})
    assert old.content_frontend == {"kind": "whisper", "layer": 2} and old.speaker_frontend == {"kind": "mel"}
    with pytest.raises(VconvError, match="kind 'dvector' left vconv"):  # the d-vector speaker input left the package
        ModelConfig.from_dict({"speaker_input": "dvector"})
    assert ModelConfig.from_dict({"content_input": "mel"}).content_frontend == {"kind": "mel"}
    with pytest.raises(VconvError, match="not both"):
        ModelConfig.from_dict({"content_input": "mel", "content_frontend": {"kind": "mel"}})


def test_options_that_left_the_package_read_when_off_and_are_refused_when_on():
    from vconv.config import TrainConfig

    shipped = ModelConfig.from_dict({"reference": {"kind": "none"}, "causal": {}})  # what every shipped bundle says
    assert shipped == ModelConfig()
    with pytest.raises(VconvError, match=r"model.reference: this option left vconv .* commit e8db0bd"):
        ModelConfig.from_dict({"reference": {"kind": "attention", "dim": 16}})
    with pytest.raises(VconvError, match="model.causal"):
        ModelConfig.from_dict({"causal": {"lookahead_frames": 3, "norm_frames": 24}})
    paths = {"train_manifest": "t.jsonl", "run_dir": "r"}
    old = TrainConfig.from_dict({**paths, "speaker_dropout": 0.0, "content_twins": None, "content_twin_probability": 0.5,
                                 "speaker_consistency_weight": 0, "speaker_consistency_items": 8})
    assert old == TrainConfig(**paths)
    with pytest.raises(VconvError, match="train.speaker_consistency_weight"):
        TrainConfig.from_dict({**paths, "speaker_consistency_weight": 0.5})


def test_a_bundle_in_the_older_format_with_an_adversary_still_loads_and_converts(tiny_bundle, tmp_path):
    """Bundles written before the parts: legacy front-end keys, a "frontends" entry, the adversary's weights."""
    from safetensors.torch import load_file, save_file

    from vconv.fileio import sha256_of
    from vconv.models import build_model

    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    config = json.loads((old / "config.json").read_text())
    model_config = {k: v for k, v in config["model_config"].items() if not k.endswith("_frontend")}
    model_config.update(content_input="mel", whisper_layer=4, speaker_input="mel", adversary=True, n_speakers=3)
    state = load_file(str(old / "model.safetensors"))
    adversary = build_model(ModelConfig.from_dict(model_config)).adversary.state_dict()
    state.update({f"adversary.{k}": v.half() for k, v in adversary.items()})
    save_file(state, str(old / "model.safetensors"))
    config.update(model_config=model_config, frontends={"content": "mel", "speaker": "mel"}, speakers=["a", "b", "c"])
    config["sha256"]["model.safetensors"] = sha256_of(old / "model.safetensors")
    (old / "config.json").write_text(json.dumps(config))

    new_vc, old_vc = vconv.load(tiny_bundle, vocoder="griffinlim"), vconv.load(old, vocoder="griffinlim")
    assert old_vc.model.adversary is not None and new_vc.model.adversary is None
    a = new_vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    b = old_vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------ the shipped one

def test_the_shipped_bundle_is_pinned_and_holds_inference_weights_only(tmp_path):
    shipped = resolve_bundle()  # checks the pin
    config = json.loads((shipped / "config.json").read_text())
    assert "speakers" not in config and config["model_config"]["adversary"] is False
    with safe_open(str(shipped / "model.safetensors"), framework="pt") as fh:
        assert not [k for k in fh.keys() if k.startswith("adversary.")]
    assert set(SHIPPED_CONFIG_SHA256) >= {shipped.name}

    forged = tmp_path / shipped.name
    shutil.copytree(shipped, forged)
    config["name"] = "forged"
    (forged / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    with pytest.raises(VconvError, match="not the genuine one"):
        check_shipped(BundleLocation(shipped.name, forged, "shipped"))
