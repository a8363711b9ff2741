"""Pretrained front-ends: the Whisper port against CTranslate2, frame alignment, extraction, and every content
front-end trained, exported and converted on CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import vconv
from vconv.audio.pretrained import WHISPER_FILE, load_whisper_encoder, prepare_frontends, read_frontends_index
from vconv.audio.whisper import WhisperLogMel, read_ctranslate2_variables
from vconv.config import ModelConfig, load_run_config
from vconv.data.extract import extract_features
from vconv.data.feature_files import load_feature_tensors
from vconv.data.manifest import feature_path, read_manifest
from vconv.errors import VconvError
from vconv.frontends.whisper import align_to_mel_frames
from vconv.training.vc_trainer import ModelTrainer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WHISPER_2 = ("content", {"kind": "whisper", "layer": 2})


@pytest.fixture(scope="module")
def spk(corpus_dir):
    return {d.name: sorted(d.glob("*.wav")) for d in sorted(corpus_dir.iterdir()) if d.is_dir()}


@pytest.fixture(scope="module")
def frontends(tmp_path_factory):
    return prepare_frontends(tmp_path_factory.mktemp("frontends"))


def test_whisper_port_matches_ctranslate2(frontends):
    """Our torch encoder against CTranslate2's own, on the same 3.5 s of speech: max |diff| < 1e-3 (measured
    6e-5) on states whose magnitude reaches ~10."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from vconv.audio.pretrained import packaged_whisper_dir

    wav, _ = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")
    log_mel = WhisperLogMel()(torch.from_numpy(wav)[None])
    reference = ctranslate2.models.Whisper(str(packaged_whisper_dir()), device="cpu", compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(log_mel.numpy())), to_cpu=True))
    encoder = load_whisper_encoder(frontends, read_frontends_index(frontends))
    with torch.no_grad():
        ours = encoder(log_mel).numpy()
    assert ours.shape == expected.shape == (1, (log_mel.shape[-1] + 1) // 2, 384)
    assert np.abs(ours - expected).max() < 1e-3
    assert np.abs(expected).max() > 1.0  # the comparison is not between two near-zero tensors


def test_truncated_encoder_gives_the_middle_layer(frontends):
    encoder = load_whisper_encoder(frontends, read_frontends_index(frontends))
    log_mel = torch.randn(1, 80, 200)
    with torch.no_grad():
        full = encoder(log_mel, layer=2)
        cut = encoder.truncated(2)(log_mel)
    torch.testing.assert_close(cut, full)
    assert sum(p.numel() for p in encoder.truncated(2).parameters()) < 0.6 * sum(p.numel() for p in encoder.parameters())


def test_ctranslate2_reader_refuses_a_truncated_file(tmp_path):
    from vconv.audio.pretrained import packaged_whisper_dir

    cut = tmp_path / "model.bin"
    cut.write_bytes((packaged_whisper_dir() / "model.bin").read_bytes()[:5000])
    with pytest.raises(VconvError, match="truncated"):
        read_ctranslate2_variables(cut, "encoder/")


def test_whisper_states_meet_the_mel_frames_at_the_same_instant():
    ramp = torch.arange(10.0).view(1, 1, 10)  # state j at j / 50 s
    aligned = align_to_mel_frames(ramp, 13, 62.5)  # frame k at k / 62.5 s reads position 0.8 k
    torch.testing.assert_close(aligned[0, 0, :12], 0.8 * torch.arange(12.0))
    assert aligned[0, 0, 12] == 9.0  # past the last state: the last state


def test_extract_stores_the_front_end_outputs_and_reruns_only_what_is_missing(frontends, manifests, tmp_path):
    out = tmp_path / "feats"
    first = extract_features(manifests / "all.jsonl", out, progress=False)
    assert first.written == 24
    second = extract_features(manifests / "all.jsonl", out, progress=False, frontends_dir=frontends,
                              frontends=[WHISPER_2, ("content", {"kind": "whisper", "layer": 4})])
    assert second.written == 24  # the mel-only files lacked the new tensors
    utt = read_manifest(manifests / "all.jsonl")[0]
    tensors = load_feature_tensors(feature_path(out, utt), None, ("mel", "whisper2", "whisper4"))
    assert tensors["whisper2"].shape == (384, tensors["mel"].shape[1])
    assert not torch.equal(tensors["whisper2"], tensors["whisper4"])
    third = extract_features(manifests / "all.jsonl", out, progress=False, frontends_dir=frontends, frontends=[WHISPER_2])
    assert third.written == 0 and third.already_done == 24
    with pytest.raises(VconvError, match="front-end folder"):
        extract_features(manifests / "all.jsonl", out, progress=False, frontends=[WHISPER_2])


@pytest.mark.parametrize(("content", "speaker"), [("mel", "mel"), ("whisper", "mel")])
def test_each_front_end_combination_trains_exports_and_converts(content, speaker, frontends, manifests, tmp_path):
    features, model, train = load_run_config("debug", [
        f"train.train_manifest={manifests / 'train.jsonl'}", f"train.valid_manifest={manifests / 'valid.jsonl'}",
        f"train.run_dir={tmp_path / 'run'}", f"train.frontends_dir={frontends}", "train.steps=4", "train.valid_every=4",
        f"model.content_frontend={{kind: {content}}}", f"model.speaker_frontend={{kind: {speaker}}}",
        *(["model.content_frontend.layer=2"] if content == "whisper" else []),
    ])
    history = ModelTrainer(features, model, train, progress=False).fit()
    assert [r for r in history if r["split"] == "valid"]
    bundle = tmp_path / "run" / "model"
    config = json.loads((bundle / "config.json").read_text())
    assert config["model_config"]["content_frontend"]["kind"] == content
    assert config["model_config"]["speaker_frontend"] == {"kind": speaker}
    assert (WHISPER_FILE in config["sha256"]) == (content == "whisper")
    vc = vconv.load(bundle, vocoder="griffinlim")
    out = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav", EXAMPLES / "source.wav"])
    source, _ = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")
    assert out.shape == source.shape and np.isfinite(out).all()
    assert vc.embed([EXAMPLES / "target.wav"]).shape == (1, model.speaker_dim)


def test_a_bundle_whose_front_end_weights_are_missing_or_altered_is_refused( frontends, manifests, tmp_path):
    features, model, train = load_run_config("debug", [
        f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={tmp_path / 'run'}",
        f"train.frontends_dir={frontends}", "train.steps=1", "model.content_frontend.kind=whisper",
    ])
    ModelTrainer(features, model, train, progress=False).fit()
    name = WHISPER_FILE
    bundle = tmp_path / "run" / "model"
    altered = tmp_path / "altered"
    shutil.copytree(bundle, altered)
    with open(altered / name, "r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(VconvError, match="sha256 mismatch"):
        vconv.load(altered)
    (bundle / name).unlink()
    with pytest.raises(VconvError, match="missing"):
        vconv.load(bundle)


def test_evaluate_refuses_a_judge_that_shares_weights_with_the_model(frontends, manifests, tmp_path):
    """Whisper tiny.en may not judge a model whose content front-end is Whisper tiny.en; base may."""
    from typer.testing import CliRunner

    from vconv.cli import app
    from vconv.evaluation.asr_judge import AsrJudge
    from vconv.evaluation.judges import Judges, check_independence

    with pytest.raises(VconvError, match="shares its weights"):
        check_independence(Judges(asr=AsrJudge(model="tiny.en")), ModelConfig(content_frontend={"kind": "whisper"}))
    check_independence(Judges(asr=AsrJudge(model="base")), ModelConfig(content_frontend={"kind": "whisper"}))
    check_independence(Judges(asr=AsrJudge(model="tiny.en")), ModelConfig())
    features, model, train = load_run_config("debug", [
        f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={tmp_path / 'run'}",
        f"train.frontends_dir={frontends}", "train.steps=1", "model.content_frontend.kind=whisper",
    ])
    ModelTrainer(features, model, train, progress=False).fit()
    result = CliRunner().invoke(app, ["evaluate", "-m", str(tmp_path / "run" / "model"), "--manifest",
                                      str(manifests / "valid.jsonl"), "-o", str(tmp_path / "eval"), "--asr-model", "tiny.en"])
    assert result.exit_code == 1 and "shares its weights" in result.output
    assert not (tmp_path / "eval" / "results.json").exists()
