"""`vconv bundle attach-vocoder` and `vconv bundle package`: a vocoder joins a bundle, a run becomes a shipped fp16 bundle."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import vconv
from tests.conftest import invoke, one_line_error
from vconv.config import FeatureConfig, VocoderConfig, load_run_config, save_yaml
from vconv.errors import VconvError
from vconv.fileio import sha256_of
from vconv.vocoders import VocosVocoder
from vconv.vocoders.vocos import save_vocoder

TINY = VocoderConfig(dim=32, intermediate=64, blocks=2)
RECIPE_CARD = Path(__file__).resolve().parents[1] / "recipes" / "voices" / "conf" / "model_card.md"


def dtypes(path: Path) -> set[str]:
    with safe_open(str(path), "pt") as f:
        return {str(f.get_tensor(k).dtype) for k in f.keys() if f.get_tensor(k).is_floating_point()}


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture
def vocoder_dir(tmp_path):
    torch.manual_seed(0)
    return save_vocoder(tmp_path / "vocoder", VocosVocoder(FeatureConfig(), TINY), extra={"trained_steps": 3})


@pytest.fixture
def run_dir(tiny_bundle, tmp_path):
    """A finished training run as `vconv train` leaves it: model/, config.yaml, log.jsonl."""
    run = tmp_path / "run"
    model_dir = Path(shutil.copytree(tiny_bundle, run / "model"))
    config = json.loads((model_dir / "config.json").read_text())
    config.update(speakers=["spk_a", "spk_b"], trained_steps=100)
    (model_dir / "config.json").write_text(json.dumps(config))
    sections = load_run_config("debug", ["train.train_manifest=m.jsonl", f"train.run_dir={run}"])
    save_yaml(dict(zip(("features", "model", "train"), (c.to_dict() for c in sections))), run / "config.yaml")  # resolved, as trainers write it
    rows = [{"step": s, "split": "train", "recon": 1.0 / s, "vq": 0.01, "perplexity": 20.0, "adv_acc": 0.5, "train_s": 15.0 * s}
            for s in (50, 100)]
    rows.append({"step": 100, "split": "valid", "recon": 0.4321, "perplexity": 18.0, "spk_separation": 0.2})
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_attach_vocoder_records_its_digests_and_convert_then_uses_it(bundle, vocoder_dir):
    assert vconv.load(bundle).vocoder.name == "griffinlim"
    result = invoke("bundle", "attach-vocoder", bundle, vocoder_dir)
    assert result.exit_code == 0, result.output
    config = json.loads((bundle / "config.json").read_text())
    assert config["vocoder"] == "vocos"
    for name in ("vocoder.safetensors", "vocoder.json"):
        assert config["sha256"][name] == sha256_of(bundle / name) == sha256_of(vocoder_dir / name)
    converter = vconv.load(bundle)
    assert converter.vocoder.name == "vocos" and converter.vocoder.config == TINY


def test_attach_vocoder_can_set_the_post_processing_the_bundle_runs(bundle, vocoder_dir, tmp_path):
    result = invoke("bundle", "attach-vocoder", bundle, vocoder_dir, "--consistency-passes", 4, "--envelope-passes", 12,
                    "--envelope-prematch", 2)
    assert result.exit_code == 0, result.output
    config = json.loads((bundle / "config.json").read_text())
    assert config["sha256"]["vocoder.json"] == sha256_of(bundle / "vocoder.json") != sha256_of(vocoder_dir / "vocoder.json")
    assert sha256_of(bundle / "vocoder.safetensors") == sha256_of(vocoder_dir / "vocoder.safetensors")  # weights untouched
    loaded = vconv.load(bundle).vocoder.config
    assert (loaded.consistency_passes, loaded.envelope_passes, loaded.envelope_prematch) == (4, 12, 2)
    assert dataclasses.replace(loaded, consistency_passes=TINY.consistency_passes, envelope_passes=TINY.envelope_passes,
                               envelope_prematch=TINY.envelope_prematch) == TINY
    one_line_error(invoke("bundle", "attach-vocoder", bundle, vocoder_dir, "--envelope-passes", -1), "envelope_passes")
    assert vconv.load(bundle).vocoder.config == loaded  # the refused call changed nothing


def test_fast_conversion_skips_the_vocoder_post_processing(bundle, vocoder_dir, tmp_path):
    wav = sorted((Path(__file__).parent / "data" / "corpus").glob("*/*.wav"))[0]
    assert invoke("bundle", "attach-vocoder", bundle, vocoder_dir).exit_code == 0
    fast = vconv.load(bundle, fast=True)
    assert fast.vocoder.config.consistency_passes == fast.vocoder.config.envelope_passes == fast.vocoder.config.envelope_prematch == 0
    assert vconv.load(bundle).vocoder.config == TINY  # the bundle itself is untouched
    outs = {}
    for name, flags in (("full", []), ("fast", ["--fast"])):
        result = invoke("convert", wav, "--target", wav, "-m", bundle, "-o", tmp_path / f"{name}.wav", *flags)
        assert result.exit_code == 0, result.output
        outs[name] = (tmp_path / f"{name}.wav").read_bytes()
    assert outs["full"] != outs["fast"]
    one_line_error(invoke("convert", wav, "--target", wav, "-m", bundle, "-o", tmp_path / "gl.wav", "--fast",
                          "--vocoder", "griffinlim"), "vocoder griffinlim has none")


def test_attach_vocoder_bad_inputs_are_one_line_errors(bundle, vocoder_dir, tmp_path):
    one_line_error(invoke("bundle", "attach-vocoder", bundle, tmp_path / "nowhere"), "vocoder.json")
    one_line_error(invoke("bundle", "attach-vocoder", tmp_path / "nobundle", vocoder_dir), "not a vconv model bundle")
    other = save_vocoder(tmp_path / "hop128", VocosVocoder(FeatureConfig(hop_length=128), TINY))
    one_line_error(invoke("bundle", "attach-vocoder", bundle, other), "hop_length")
    assert not (bundle / "vocoder.json").exists()


def test_package_writes_an_fp16_bundle_with_vocoder_and_model_card(run_dir, vocoder_dir, tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "summary.md").write_text("| system | success |\n|---|---|\n| converted | 42 % |\n")
    (tmp_path / "notes.md").write_text("## History\n\nrun v9 was the best.\n")
    (tmp_path / "held_out.txt").write_text("# never trained on\nspk_x\nspk_y  # a comment\n")
    out = tmp_path / "pretrained"
    args = ["bundle", "package", run_dir, "--out", out, "--name", "tiny-ship", "--eval", tmp_path / "eval",
            "--vocoder", vocoder_dir, "--notes", tmp_path / "notes.md", "--held-out", tmp_path / "held_out.txt",
            "--consistency-passes", 3]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    dest = out / "tiny-ship"
    assert f"wrote {dest}" in result.output
    config = json.loads((dest / "config.json").read_text())
    assert config["weights_dtype"] == "float16" and config["name"] == "tiny-ship" and config["trained_steps"] == 100
    assert config["vocoder"] == "vocos"
    # what ships is what conversion reads: no adversary weights, no training speaker list (the card names them)
    assert "speakers" not in config and config["model_config"]["adversary"] == {"kind": "none"}
    with safe_open(str(dest / "model.safetensors"), framework="pt") as fh:
        assert fh.keys() and not [k for k in fh.keys() if k.startswith("adversary.")]
    assert dtypes(dest / "model.safetensors") == dtypes(dest / "vocoder.safetensors") == {"torch.float16"}
    assert json.loads((dest / "vocoder.json").read_text())["trained_steps"] == 3
    card = (dest / "MODEL_CARD.md").read_text()
    assert card.startswith("# tiny-ship\n")
    for text in ("100 steps", "25 min wall time", "Vocos-style neural vocoder", "3 phase-consistency passes",
                 "timbre perturbation of the content path = True", "Training speakers (2): spk_a, spk_b", "spk_x, spk_y",
                 "| 100 | 0.010 | 0.0100 | 20 | 0.500 | 0.432 |", "| converted | 42 % |", "run v9 was the best.",
                 "target-spectrum matching, `--target-match meanstd`, the default",
                 "content encoder reads the normalised log-mel; speaker path: vconv's own speaker encoder on the log-mel."):
        assert text in card, text
    converter = vconv.load(dest)
    assert converter.vocoder.name == "vocos" and converter.vocoder.config.consistency_passes == 3
    # bad pass settings, or passes without a vocoder: refused before anything is written
    one_line_error(invoke(*args, "--name", "bad", "--envelope-passes", -1), "envelope_passes")
    one_line_error(invoke("bundle", "package", run_dir, "--out", out, "--name", "novoc", "--consistency-passes", 2), "need --vocoder")
    assert not (out / "bad").exists() and not (out / "novoc").exists()
    # existing output: refused without --force, replaced with it
    one_line_error(invoke(*args), "already exists")
    assert invoke(*args, "--force").exit_code == 0
    # re-shipping with the vocoder taken from the very bundle being replaced (how a new default replaces the old)
    again = [*args[:args.index("--vocoder") + 1], dest, *args[args.index("--vocoder") + 2:], "--force"]
    assert invoke(*again).exit_code == 0
    assert json.loads((dest / "vocoder.json").read_text())["trained_steps"] == 3 and vconv.load(dest).vocoder.name == "vocos"


def test_card_says_what_the_content_path_read_in_training():
    from vconv.config import ModelConfig
    from vconv.training.package import content_perturbation_line

    whisper = ModelConfig(content_frontend={"kind": "whisper"})
    assert content_perturbation_line(ModelConfig(), {"perturb_content": False}) == "timbre perturbation of the content path = False"
    assert content_perturbation_line(whisper, {"perturb_content": True}).startswith("no timbre perturbation")


def test_wall_time_is_exact_only_from_a_log_that_has_it_from_the_start(tmp_path):
    from vconv.training.runs import logged_wall_minutes, read_log

    log = tmp_path / "log.jsonl"
    rows = [{"step": 50, "split": "train", "steps_per_s": 0.5}, {"step": 60, "split": "valid"},
            {"step": 100, "split": "train", "train_s": 120.0}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # begun before train_s existed: 50 steps at 0.5/s estimated (100 s) + the 120 s counted since the resume
    minutes, exact = logged_wall_minutes(read_log(log))
    assert not exact and abs(minutes - 220 / 60) < 1e-9
    rows[0]["train_s"] = 60.0
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert logged_wall_minutes(read_log(log)) == (2.0, True)
    assert logged_wall_minutes([{"step": 1, "split": "valid"}]) == (None, False)
    log.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(VconvError, match=r"log.jsonl:2: not a JSON line"):
        read_log(log)
    log.write_text(json.dumps(rows[0]) + "\n[1, 2]\n")
    with pytest.raises(VconvError, match=r"log.jsonl:2: not a log record"):
        read_log(log)


def test_package_without_vocoder_and_with_the_voices_recipes_card(run_dir, tmp_path):
    result = invoke("bundle", "package", run_dir, "-o", tmp_path, "--name", "gl", "--card", RECIPE_CARD, "--wall-minutes", 7)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "gl" / "vocoder.json").exists()
    card = (tmp_path / "gl" / "MODEL_CARD.md").read_text()
    assert "batch 8 × 64 frames" in card and "bf16 autocast = False" in card and "None" not in card
    assert "Griffin-Lim" in card and "trained on CPU with `recipes/voices`" in card and "7 min wall time" in card
    assert "Not evaluated yet" in card and "{" not in card.replace("{cs,nl}", "")


def test_package_bad_inputs_are_one_line_errors(run_dir, tmp_path):
    out = tmp_path / "out"
    base = ["bundle", "package", run_dir, "-o", out, "--name", "x"]
    one_line_error(invoke("bundle", "package", tmp_path / "norun", "-o", out, "--name", "x"), "not a finished training run")
    one_line_error(invoke(*base, "--eval", tmp_path), "no summary.md")
    one_line_error(invoke(*base, "--vocoder", tmp_path / "novocoder"), "vocoder.json")
    one_line_error(invoke(*base, "--held-out", tmp_path / "nolist.txt"), "speaker list not found")
    (tmp_path / "card.md").write_text("# {name}\n{nonsense}\n")
    one_line_error(invoke(*base, "--card", tmp_path / "card.md"), "unknown field {nonsense}")
    assert not out.exists()  # every check comes before anything is written


def test_card_names_the_pretrained_front_ends_and_their_sizes(tmp_path):
    from vconv.config import ModelConfig
    from vconv.training.package import frontends_line

    (tmp_path / "whisper_encoder.safetensors").write_bytes(b"\0" * 2_500_000)
    whisper = ModelConfig(content_frontend={"kind": "whisper", "layer": 4})
    line = frontends_line(whisper, tmp_path)
    assert "Whisper tiny.en encoder states of block 4" in line and "2.5 MB" in line
    (tmp_path / "whisper_encoder.safetensors").unlink()
    assert "missing" in frontends_line(whisper, tmp_path)  # a file the bundle should hold and does not is said so
