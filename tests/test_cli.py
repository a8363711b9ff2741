"""The CLI end to end: prepare → extract on the fixture corpus, resume, bad files, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import invoke, voiced_signal
from vconv.config import FeatureConfig
from vconv.data.feature_files import load_features
from vconv.data.manifest import feature_path, read_manifest

runner = CliRunner()


@pytest.fixture
def prepared(tmp_path, corpus_dir):
    result = invoke("prepare", corpus_dir, "-o", tmp_path / "m", "--num-test-speakers", 2)
    assert result.exit_code == 0, result.output
    return tmp_path / "m"


def test_help_describes_every_option():
    for cmd in ([], ["prepare"], ["extract"]):
        result = invoke(*cmd, "--help")
        assert result.exit_code == 0
    out = invoke("extract", "--help").output
    for option in ("--out", "--config", "--workers", "--progress"):
        assert option in out



def test_help_renders_brackets_and_no_type_beside_flags():
    """The help is plain text: "vconv[live]" keeps its brackets and a flag shows no "<bool>" type."""
    stream = subprocess.run([sys.executable, "-m", "vconv", "stream", "--help"], capture_output=True, text=True,
                            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert stream.returncode == 0 and "needs vconv[live]" in stream.stdout
    for command in (["stream"], ["convert"], ["evaluate"], ["bundle", "package"]):
        assert "<bool>" not in invoke(*command, "--help").output, command
    assert "pip install 'vconv[eval]'" in invoke("evaluate", "--help").output


def test_extract_then_rerun_skips_finished_and_resumes(prepared, tmp_path):
    feats = tmp_path / "feats"
    first = invoke("extract", prepared / "all.jsonl", "-o", feats, "--no-progress")
    assert first.exit_code == 0, first.output
    utts = read_manifest(prepared / "all.jsonl")
    assert f"{len(utts)} written, 0 already done, 0 skipped" in first.output
    mel = load_features(feature_path(feats, utts[0]), FeatureConfig())
    assert mel.shape[0] == 80 and mel.shape[1] > 50
    stats = json.loads((feats / "stats.json").read_text())
    assert len(stats["mean"]) == 80 and stats["frames"] > 0

    # simulate a kill: one output missing, one truncated, a stale temp file lying around
    feature_path(feats, utts[0]).unlink()
    truncated = feature_path(feats, utts[1])
    truncated.write_bytes(truncated.read_bytes()[:100])
    (truncated.parent / ".leftover.safetensors.tmp").write_bytes(b"partial")
    second = invoke("extract", prepared / "all.jsonl", "-o", feats, "--no-progress")
    assert second.exit_code == 0, second.output
    assert f"2 written, {len(utts) - 2} already done, 0 skipped" in second.output
    torch_mel = load_features(feature_path(feats, utts[0]), FeatureConfig())
    np.testing.assert_array_equal(torch_mel.numpy(), mel.numpy())


def test_extract_stats_from_the_training_split_only(prepared, tmp_path):
    feats = tmp_path / "feats"
    # the training split's features are not there yet: a one-line error, no traceback
    early = invoke("extract", prepared / "test.jsonl", "-o", feats, "--no-progress", "--stats-from", prepared / "train.jsonl")
    assert early.exit_code == 1 and "extract that manifest first" in early.output and "Traceback" not in early.output
    result = invoke("extract", prepared / "all.jsonl", "-o", feats, "--no-progress", "--stats-from", prepared / "train.jsonl")
    assert result.exit_code == 0, result.output
    from_train = json.loads((feats / "stats.json").read_text())
    train_frames = sum(load_features(feature_path(feats, u), FeatureConfig()).shape[1] for u in read_manifest(prepared / "train.jsonl"))
    assert from_train["frames"] == train_frames
    invoke("extract", prepared / "all.jsonl", "-o", feats, "--no-progress")
    assert json.loads((feats / "stats.json").read_text())["frames"] > train_frames  # default: MANIFEST's own utterances


def test_extract_with_two_workers_skips_bad_files(tmp_path, corpus_dir):
    root = tmp_path / "corpus"
    shutil.copytree(corpus_dir, root)
    spk = sorted(p for p in root.iterdir() if p.is_dir())[0]
    # a file that is valid at scan time but silent: it becomes a bad file at extraction
    sf.write(spk / "zz_silent.wav", np.zeros(16000, np.float32), 16000)
    assert invoke("prepare", root, "-o", tmp_path / "m").exit_code == 0
    result = invoke("extract", tmp_path / "m" / "all.jsonl", "-o", tmp_path / "f", "-j", 2, "--no-progress")
    assert result.exit_code == 3, result.output  # some files skipped: partial
    assert "1 skipped" in result.stdout
    assert result.stderr.strip() == f"error: {(root / spk.name / 'zz_silent.wav').resolve()}: audio is silent (peak below -80 dBFS)"
    allowed = invoke("extract", tmp_path / "m" / "all.jsonl", "-o", tmp_path / "f", "--no-progress", "--allow-skips")
    assert allowed.exit_code == 0 and "zz_silent.wav: audio is silent" in allowed.stderr


def test_info_bad_inputs_are_one_line_errors(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, voiced_signal(0.5, sr=22050), 22050)
    ok = invoke("info", good)
    assert ok.exit_code == 0 and "22050 Hz" in ok.output
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("hello")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    for path, reason in ((tmp_path / "missing.wav", "file not found"), (not_audio, "not a readable audio file"), (silent, "silent")):
        result = invoke("info", path)
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0]
        assert "Traceback" not in result.output


def test_console_entry_point_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vconv", "extract", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "f")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: manifest not found; create one with `vconv prepare`"


def test_extract_config_takes_a_feature_config_or_a_run_configs_features_section(prepared, tmp_path):
    from vconv.config import load_run_config, load_yaml
    from vconv.data.manifest import read_manifest, write_manifest

    write_manifest(tmp_path / "two.jsonl", read_manifest(prepared / "all.jsonl")[:2])  # audio paths re-based
    run_config = tmp_path / "run.yaml"  # a run config of `vconv train`, inheriting from a packaged preset
    run_config.write_text("base: debug\nfeatures: {fmax: 7000.0}\nmodel: {decoder: {channels: 32}}\ntrain: {steps: 3}\n")
    plain = tmp_path / "features.yaml"
    plain.write_text("fmax: 6000.0\nn_mels: 64\n")
    debug_features = load_run_config("debug", ["train.train_manifest=x", "train.run_dir=y"])[0]
    for config, expected in (("debug", debug_features.to_dict()), (run_config, {**debug_features.to_dict(), "fmax": 7000.0}),
                             (plain, {**FeatureConfig().to_dict(), "fmax": 6000.0, "n_mels": 64})):
        out = tmp_path / f"feats_{getattr(config, 'stem', config)}"
        result = invoke("extract", tmp_path / "two.jsonl", "-o", out, "--config", config, "--no-progress")
        assert result.exit_code == 0, result.output
        assert load_yaml(out / "features.yaml") == expected
    for config, reason in ((tmp_path / "nope.yaml", "config not found"), (plain.with_name("bad.yaml"), "unknown key")):
        if config.name == "bad.yaml":
            config.write_text("features: {n_mel: 64}\n")
        result = invoke("extract", tmp_path / "two.jsonl", "-o", tmp_path / "x", "--config", config)
        assert result.exit_code == 1 and result.output.startswith("error: ") and reason in result.output


def test_extract_into_a_folder_of_other_settings_is_refused_without_force(prepared, tmp_path):
    from vconv.data.manifest import write_manifest

    write_manifest(tmp_path / "two.jsonl", read_manifest(prepared / "all.jsonl")[:2])
    first = invoke("extract", tmp_path / "two.jsonl", "-o", tmp_path / "f", "--no-progress")
    assert first.exit_code == 0, first.output
    before = {p: p.read_bytes() for p in (tmp_path / "f").rglob("*.safetensors")}
    other = tmp_path / "other.yaml"
    other.write_text("n_mels: 64\nfmax: 7000.0\n")
    refused = invoke("extract", tmp_path / "two.jsonl", "-o", tmp_path / "f", "--config", other, "--no-progress")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.stderr.strip().count("\n") == 0
    assert "holds features made with other settings (n_mels 80 there, 64 now; fmax 8000.0 there, 7000.0 now)" in refused.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "f").rglob("*.safetensors")} == before  # nothing replaced
    again = invoke("extract", tmp_path / "two.jsonl", "-o", tmp_path / "f", "--no-progress")  # same settings: a rerun
    assert again.exit_code == 0 and "0 written, 2 already done" in again.output
    forced = invoke("extract", tmp_path / "two.jsonl", "-o", tmp_path / "f", "--config", other, "--no-progress", "--force")
    assert forced.exit_code == 0 and "2 written" in forced.output
    assert load_features(next(iter(before)), FeatureConfig(n_mels=64, fmax=7000.0)).shape[0] == 64


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers follow their parent through Linux's prctl")
def test_extract_workers_end_when_their_parent_is_killed(prepared, tmp_path):
    """`vconv extract -j 2` killed with SIGKILL (no chance to stop its pool) leaves no worker running."""
    import dataclasses
    import os
    import signal
    import time

    from vconv.data.manifest import write_manifest

    utts = read_manifest(prepared / "all.jsonl")
    many = [dataclasses.replace(u, id=f"{u.id}_{i}") for i in range(40) for u in utts]  # minutes of work
    write_manifest(tmp_path / "many.jsonl", many)
    proc = subprocess.Popen([sys.executable, "-m", "vconv", "extract", str(tmp_path / "many.jsonl"), "-o",
                             str(tmp_path / "f"), "-j", "2", "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def workers() -> list[int]:
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as fh:
                return [int(p) for p in fh.read().split()]
        except OSError:
            return []

    deadline = time.time() + 60
    while len(workers()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    pids = workers()
    assert len(pids) >= 2, "the workers never started"
    while not any((tmp_path / "f").rglob("*.safetensors")) and time.time() < deadline:
        time.sleep(0.2)  # past start-up: they are extracting
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.time() + 15
    alive = pids
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in pids if _running(p)]
    assert not alive, f"workers {alive} outlived their parent"


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux's /proc)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "zombie" not in fh.read()
    except OSError:
        return False
