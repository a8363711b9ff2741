"""VCTK preparation on fake trees of both layouts, the seen/unseen split, config inheritance, and the
whole recipes/vctk/run.sh end to end on CPU."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import deny_reading, voiced_signal
from vconv.cli import app
from vconv.config import load_run_config
from vconv.data.corpora.vctk import (
    UNSEEN_FEMALE,
    UNSEEN_MALE,
    UNSEEN_SPEAKERS,
    detect_layout,
    prepare_vctk,
    read_speaker_info,
    read_speaker_list,
    scan_vctk,
    split_seen_unseen,
)
from vconv.data.manifest import Utterance, read_manifest
from vconv.errors import VconvError

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "vctk"
SR = 16000  # the real corpus is 48 kHz; 16 kHz keeps the fake one fast (no resampling)
FAKE_UNSEEN = ["p227", "p228"]


def _audio(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, voiced_signal(1.5, SR, f0=110 + 15 * (seed % 7), seed=seed), SR, subtype="PCM_16")


def _text(root: Path, spk: str, n: int) -> None:
    path = root / "txt" / spk / f"{spk}_{n:03d}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"Sentence {n} read by {spk}.\n")


def make_vctk_092(root: Path) -> Path:
    """p225-p228 with 4 utterances in both mics; p280 mic1 only. p225_004_mic2 is corrupt, p226_003 has
    no transcript, p225_009 is a transcript without audio."""
    (root / "speaker-info.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION COMMENTS \n"
        "p225  23  F    English    Southern  England\n"
        "p226  22  M    English    Surrey\n"
        "p227  38  M    English    Cumbria\n"
        "p228  22  F    English    Southern  England\n"
        "p280  25  F    Unknown    France (mic2 files unavailable)\n"
    )
    seed = 0
    for spk, mics in (("p225", (1, 2)), ("p226", (1, 2)), ("p227", (1, 2)), ("p228", (1, 2)), ("p280", (1,))):
        for n in range(1, 5 if spk != "p280" else 3):
            for mic in mics:
                _audio(root / "wav48_silence_trimmed" / spk / f"{spk}_{n:03d}_mic{mic}.flac", seed)
            seed += 1
            if (spk, n) != ("p226", 3):
                _text(root, spk, n)
    (root / "wav48_silence_trimmed" / "p225" / "p225_004_mic2.flac").write_bytes(b"fLaC but not really" * 10)
    _text(root, "p225", 9)
    return root


def make_vctk_080(root: Path) -> Path:
    """p225-p228 with 4 .wav each, p229 (2 utterances) missing from speaker-info; p226_002 corrupt,
    p227_004 has no transcript."""
    (root / "wav48").mkdir(parents=True)
    (root / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION\n"
        "225  23  F    English    Southern  England\n"
        "226  22  M    English    Surrey\n"
        "227  38  M    English    Cumbria\n"
        "228  22  F    English    Southern  England\n"
    )
    seed = 100
    for spk, count in (("p225", 4), ("p226", 4), ("p227", 4), ("p228", 4), ("p229", 2)):
        for n in range(1, count + 1):
            _audio(root / "wav48" / spk / f"{spk}_{n:03d}.wav", seed)
            seed += 1
            if (spk, n) != ("p227", 4):
                _text(root, spk, n)
    (root / "wav48" / "p226" / "p226_002.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return root


@pytest.fixture(scope="module")
def vctk092(tmp_path_factory) -> Path:
    return make_vctk_092(tmp_path_factory.mktemp("vctk092") / "VCTK-Corpus-0.92")


@pytest.fixture(scope="module")
def vctk080(tmp_path_factory) -> Path:
    return make_vctk_080(tmp_path_factory.mktemp("vctk080") / "VCTK-Corpus")


# ------------------------------------------------------------------------------------------ scanning


def test_detects_layouts(vctk092, vctk080, tmp_path):
    assert detect_layout(vctk092) == "0.92"
    assert detect_layout(vctk080) == "0.80"
    with pytest.raises(VconvError, match="wav48_silence_trimmed"):
        detect_layout(tmp_path)


def test_speaker_info_both_versions(vctk092, vctk080):
    new = read_speaker_info(vctk092 / "speaker-info.txt")
    old = read_speaker_info(vctk080 / "speaker-info.txt")
    assert new["p225"] == {"age": 23, "gender": "F", "accent": "English", "region": "Southern England"}
    assert new["p280"]["comment"] == "mic2 files unavailable" and new["p280"]["region"] == "France"
    assert old["p226"] == {"age": 22, "gender": "M", "accent": "English", "region": "Surrey"}  # 226 -> p226


def test_scan_092_mic2_counts_metadata_and_report(vctk092):
    scan = scan_vctk(vctk092)  # default mic2
    assert scan.layout == "0.92" and scan.mic == "mic2"
    assert len(scan.utterances) == 3 + 4 + 4 + 4  # p225_004_mic2 is corrupt, p280 has no mic2
    assert [Path(b.path).name for b in scan.bad] == ["p225_004_mic2.flac"]
    assert "not a readable audio file" in scan.bad[0].reason
    assert scan.audio_only == 1  # p226_003
    assert scan.text_only == 1  # p225_009.txt
    assert scan.missing_mic == {"p280": 2}
    by_id = {u.id: u for u in scan.utterances}
    utt = by_id["p227/p227_002_mic2"]
    assert utt.speaker == "p227" and utt.text == "Sentence 2 read by p227."
    assert utt.extra == {"age": 38, "gender": "M", "accent": "English", "region": "Cumbria", "mic": "mic2"}
    assert utt.duration == pytest.approx(1.5)
    assert by_id["p226/p226_003_mic2"].text is None
    assert all(u.path.endswith("_mic2.flac") for u in scan.utterances)


def test_scan_092_mic1_selects_the_other_microphone(vctk092):
    scan = scan_vctk(vctk092, mic="mic1")
    assert len(scan.utterances) == 4 * 4 + 2 and not scan.bad and not scan.missing_mic
    assert all(u.path.endswith("_mic1.flac") and u.extra["mic"] == "mic1" for u in scan.utterances)
    assert {u.speaker for u in scan.utterances} >= {"p280"}
    with pytest.raises(VconvError, match="mic3"):
        scan_vctk(vctk092, mic="mic3")


def test_scan_080(vctk080):
    scan = scan_vctk(vctk080, mic="mic1")  # mic is meaningless for 0.80 and ignored
    assert scan.layout == "0.80" and scan.mic is None
    assert len(scan.utterances) == 4 + 3 + 4 + 4 + 2
    assert [Path(b.path).name for b in scan.bad] == ["p226_002.wav"]
    assert scan.audio_only == 1 and scan.no_metadata == ["p229"]
    by_id = {u.id: u for u in scan.utterances}
    assert by_id["p225/p225_001"].extra == {"age": 23, "gender": "F", "accent": "English", "region": "Southern England"}
    assert by_id["p229/p229_001"].extra == {}
    assert by_id["p227/p227_004"].text is None


# ------------------------------------------------------------------------------------------- splits


def _utts(n_speakers=10, per=100):
    return [Utterance(f"s{s}/u{i}", f"/x/s{s}/u{i}.wav", f"s{s}", 1.0) for s in range(n_speakers) for i in range(per)]


def test_split_disjoint_deterministic_order_independent():
    utts = _utts()
    split = split_seen_unseen(utts, ["s0", "s1"], valid_fraction=0.1, seed=3)
    shuffled = utts[:]
    random.Random(0).shuffle(shuffled)
    again = split_seen_unseen(shuffled, ["s1", "s0"], valid_fraction=0.1, seed=3)
    assert [u.id for u in split.valid] == [u.id for u in again.valid]
    assert [u.id for u in split.train] == [u.id for u in again.train]
    assert split.speakers("test") == ["s0", "s1"] and len(split.test) == 200
    ids = [set(u.id for u in getattr(split, n)) for n in ("train", "valid", "test")]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == len(utts)
    assert set(split.speakers("valid")) <= set(split.speakers("train"))  # valid = seen speakers
    assert len(split.valid) == 80  # exactly 10 % of every seen speaker
    other = split_seen_unseen(utts, ["s0", "s1"], valid_fraction=0.1, seed=4)
    assert [u.id for u in other.valid] != [u.id for u in split.valid]
    with pytest.raises(VconvError, match="s99"):
        split_seen_unseen(utts, ["s99"])


def test_unseen_list_is_balanced_and_matches_recipe_file():
    assert len(UNSEEN_FEMALE) == len(UNSEEN_MALE) == 10 and not set(UNSEEN_FEMALE) & set(UNSEEN_MALE)
    assert len(set(UNSEEN_SPEAKERS)) == 20
    assert read_speaker_list(RECIPE / "conf" / "unseen_speakers.txt") == list(UNSEEN_SPEAKERS)
    assert not {"p280", "p315", "s5"} & set(UNSEEN_SPEAKERS)  # speakers with known gaps stay out


def test_prepare_vctk_writes_manifests_with_metadata(vctk092, tmp_path):
    report = prepare_vctk(vctk092, tmp_path / "m", unseen=FAKE_UNSEEN, valid_fraction=0.3, seed=0)
    assert report.utterances == 15 and report.speakers == 4
    assert report.split.speakers("test") == FAKE_UNSEEN
    assert report.split.speakers("train") == ["p225", "p226"]
    assert len(report.split.test) == 8 and len(report.split.train) == 5 and len(report.split.valid) == 2
    few = split_seen_unseen(report.split.train + report.split.valid, [], valid_fraction=0.9)
    assert few.speakers("train") == ["p225", "p226"]  # never a whole speaker in valid
    summary = report.summary()
    assert "VCTK 0.92, mic2" in summary and "audio-only utterances (no transcript): 1" in summary
    assert "p280 (2)" in summary and "p225_004_mic2.flac" in summary and "F 1, M 1" in summary
    test = read_manifest(tmp_path / "m" / "test.jsonl")
    assert {u.extra["gender"] for u in test} == {"F", "M"} and Path(test[0].path).is_file()
    details = json.loads((tmp_path / "m" / "vctk.json").read_text())
    assert details["audio_only"] == 1 and details["missing_mic"] == {"p280": 2}
    split_info = json.loads((tmp_path / "m" / "split.json").read_text())
    assert [Path(b["path"]).name for b in split_info["bad_files"]] == ["p225_004_mic2.flac"]
    with pytest.raises(VconvError, match="--force"):
        prepare_vctk(vctk092, tmp_path / "m", unseen=FAKE_UNSEEN)


def test_unreadable_speaker_folders_are_listed_failures(vctk092, tmp_path, monkeypatch):
    """A speaker's audio (or transcript) folder that cannot be read was left out unsaid (pathlib's glob gives nothing
    for it); now it is a failure of the scan, listed, and `vconv prepare` exits 3. A missing speaker-info.txt stays
    a note. (The tests run as root: deny_reading refuses the folders as the kernel refuses a normal user.)"""
    deny_reading(monkeypatch, vctk092 / "wav48_silence_trimmed" / "p227", vctk092 / "txt" / "p228")
    scan = scan_vctk(vctk092)
    failures = [(Path(b.path).relative_to(vctk092).as_posix(), b.reason) for b in scan.bad if b.failure]
    assert failures == [("wav48_silence_trimmed/p225/p225_004_mic2.flac", failures[0][1]),
                        ("wav48_silence_trimmed/p227", "unreadable folder (Permission denied)"),
                        ("txt/p228", "unreadable folder (Permission denied)")], failures
    assert {u.speaker for u in scan.utterances} == {"p225", "p226", "p228"}
    result = CliRunner().invoke(app, ["prepare", str(vctk092), "-o", str(tmp_path / "m"), "--layout", "vctk", "--test-speakers", "p228"])
    assert result.exit_code == 3 and f"error: {vctk092 / 'wav48_silence_trimmed' / 'p227'}: unreadable folder" in result.stderr
    info = tmp_path / "no_info"
    info.mkdir()
    (info / "wav48").symlink_to(vctk092 / "wav48_silence_trimmed")
    assert [b.failure for b in scan_vctk(info).bad if b.path.endswith("speaker-info.txt")] == [False]


def test_cli_prepare_vctk_layout(vctk080, tmp_path):
    runner = CliRunner()
    out = tmp_path / "m"
    result = runner.invoke(app, ["prepare", str(vctk080), "-o", str(out), "--layout", "vctk", "--test-speakers", "p227,p228"])
    assert result.exit_code == 3, result.output  # the corrupt p226_002 is a failure of the batch, listed on stderr
    assert "VCTK 0.80" in result.stdout and "p226_002.wav" in result.stdout
    assert result.stderr.startswith(f"error: {vctk080 / 'wav48' / 'p226' / 'p226_002.wav'}: ") and result.stderr.count("\n") == 1
    assert len(read_manifest(out / "all.jsonl")) == 17
    allowed = runner.invoke(app, ["prepare", str(vctk080), "-o", str(out), "--layout", "vctk", "--test-speakers", "p227,p228",
                                  "--force", "--allow-skips"])
    assert allowed.exit_code == 0 and "p226_002.wav" in allowed.stderr
    bad = runner.invoke(app, ["prepare", str(vctk080), "-o", str(tmp_path / "g"), "--mic", "mic1"])
    assert bad.exit_code == 1 and "--layout vctk only" in bad.output
    bad = runner.invoke(app, ["prepare", str(vctk080), "-o", str(tmp_path / "g"), "--layout", "timit"])
    assert bad.exit_code == 1 and "generic or vctk" in bad.output


# ------------------------------------------------------------------------------------ configs


REQUIRED = ["train.train_manifest=m.jsonl", "train.run_dir=runs/x"]


def test_config_base_inheritance(tmp_path):
    (tmp_path / "conf" / "abl").mkdir(parents=True)
    (tmp_path / "conf" / "base.yaml").write_text(
        "base: debug\nmodel: {content_encoder: {channels: 96, downsample: [1, 1, 1]}}\ntrain: {steps: 7}\n")
    (tmp_path / "conf" / "abl" / "x.yaml").write_text("base: ../base.yaml\nmodel: {adversary: {kind: none}}\ntrain:\n")
    features, model, train = load_run_config(tmp_path / "conf" / "abl" / "x.yaml", REQUIRED)
    assert model.adversary == {"kind": "none"} and not model.has_adversary  # a part swap: none of the classifier's keys
    assert model.content_encoder["channels"] == 96 and model.content_encoder["downsample"] == [1, 1, 1]
    assert model.content_encoder["blocks"] == 3 and model.decoder["channels"] == 64  # the rest of debug's sections
    assert model.code_dim == 16  # from the packaged debug config, two levels up
    assert train.steps == 7 and train.batch_size == 8
    (tmp_path / "conf" / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(VconvError, match="itself"):
        load_run_config(tmp_path / "conf" / "loop.yaml", REQUIRED)
    (tmp_path / "conf" / "nobase.yaml").write_text("base: nosuchconfig\n")
    with pytest.raises(VconvError, match="not a packaged config"):
        load_run_config(tmp_path / "conf" / "nobase.yaml", REQUIRED)


@pytest.mark.parametrize("name", ["base", "debug", "ablations/no_adversary", "ablations/codebook_64", "ablations/no_vq"])
def test_recipe_configs_load(name):
    path = RECIPE / "conf" / f"{name}.yaml"
    _, model, train = load_run_config(path, REQUIRED)
    assert (model.quantizer["kind"] == "vq") is (name != "ablations/no_vq")
    if name == "debug":
        assert train.steps == 4 and model.decoder["channels"] == 64
    else:
        assert train.steps == 100_000 and train.batch_size == 32 and model.decoder["channels"] == 512
    assert model.has_adversary is (name != "ablations/no_adversary")
    if name != "ablations/no_vq":  # the ablation swaps the quantizer: a pass-through has no codebook
        assert model.quantizer["codebook_size"] == {"ablations/codebook_64": 64, "debug": 32}.get(name, 512)
    # the shipped model's design, at every scale: Whisper content states and the pitch path
    assert model.content_frontend == {"kind": "whisper", "layer": 4} and model.pitch_frontend == {"kind": "yin"}


# ------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_run_sh_end_to_end_on_cpu(vctk092, tmp_path):
    (tmp_path / "unseen.txt").write_text("# fake tree\np227\np228\n")
    env = dict(
        os.environ,
        VCTK_ROOT=str(vctk092),
        EXP=str(tmp_path / "exp"),
        CONF="conf/debug.yaml",
        UNSEEN=str(tmp_path / "unseen.txt"),
        VALID_FRACTION="0.3",
        NJ="1",
        EVAL_SOURCES="1",
        PYTHON=sys.executable,
    )
    cmd = ["bash", str(RECIPE / "run.sh"), "--stage", "1", "--stop-stage", "5"]
    first = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    exp = tmp_path / "exp"
    assert (exp / "train" / "model").is_dir()
    assert (exp / "features" / "stats.json").is_file() and (exp / "data" / "vctk.json").is_file()
    # stages 4 and 5 train the vocoder and evaluate: both commands exist, so both must have run
    assert "stage 4: skipped" not in first.stdout and "stage 5: skipped" not in first.stdout, first.stdout
    assert (exp / "vocoder" / "vocoder").is_dir() and (exp / "eval" / "results.json").is_file()
    # resumable: a rerun finds every output and skips the stages
    second = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    for stage in (1, 2, 3):
        assert f"stage {stage}: " in second.stdout and "skipping" in second.stdout
    assert "stage 3: train" not in second.stdout
