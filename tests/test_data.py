from __future__ import annotations

import json
import random

import pytest

from vconv.data.manifest import Utterance, read_manifest, scan_speaker_folders, split_by_speaker, write_manifest
from vconv.data.prepare import prepare_corpus
from vconv.errors import VconvError


def _utts(n_speakers=10, per=3):
    return [
        Utterance(id=f"s{s}/u{i}", path=f"/x/s{s}/u{i}.wav", speaker=f"s{s}", duration=1.0 + i)
        for s in range(n_speakers)
        for i in range(per)
    ]


def test_scan_fixture_corpus_reads_transcripts(corpus_dir):
    scan = scan_speaker_folders(corpus_dir)
    assert not scan.bad
    speakers = {u.speaker for u in scan.utterances}
    assert len(speakers) >= 6
    assert all(u.text for u in scan.utterances)
    assert all(0.5 < u.duration < 10 for u in scan.utterances)
    assert len({u.id for u in scan.utterances}) == len(scan.utterances)


def test_manifest_round_trip_with_relative_paths_and_extra_keys(tmp_path, corpus_dir):
    utts = scan_speaker_folders(corpus_dir).utterances[:3]
    utts[0].extra = {"gender": "F"}
    path = write_manifest(tmp_path / "m" / "all.jsonl", utts)
    first = json.loads(path.read_text().splitlines()[0])
    assert not first["path"].startswith("/")  # stored relative to the manifest folder
    back = read_manifest(path)
    assert [u.path for u in back] == [u.path for u in utts]
    assert back[0].extra == {"gender": "F"} and back[0].text == utts[0].text


def test_bad_manifest_line_names_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "path": "a.wav", "speaker": "s", "duration": 1}\n{"id": "b"}\n')
    with pytest.raises(VconvError, match=r"m.jsonl:2: missing key\(s\) path, speaker, duration"):
        read_manifest(path)


def test_split_is_speaker_disjoint_deterministic_and_order_free():
    utts = _utts()
    a = split_by_speaker(utts, num_test_speakers=2, num_valid_speakers=2, seed=7)
    shuffled = list(utts)
    random.Random(1).shuffle(shuffled)
    b = split_by_speaker(shuffled, num_test_speakers=2, num_valid_speakers=2, seed=7)
    for name in ("train", "valid", "test"):
        assert a.speakers(name) == b.speakers(name)
    assert len(a.speakers("test")) == 2 and len(a.speakers("valid")) == 2 and len(a.speakers("train")) == 6
    assert not set(a.speakers("train")) & set(a.speakers("test"))
    assert not set(a.speakers("valid")) & set(a.speakers("test"))
    assert not set(a.speakers("train")) & set(a.speakers("valid"))
    c = split_by_speaker(utts, num_test_speakers=2, num_valid_speakers=2, seed=8)
    assert (c.speakers("test"), c.speakers("valid")) != (a.speakers("test"), a.speakers("valid"))


def test_explicit_held_out_list_and_unknown_speaker():
    split = split_by_speaker(_utts(), test_speakers=["s3", "s5"])
    assert split.speakers("test") == ["s3", "s5"]
    with pytest.raises(VconvError, match="not in the corpus: nobody"):
        split_by_speaker(_utts(), test_speakers=["nobody"])
    with pytest.raises(VconvError, match="no speakers left"):
        split_by_speaker(_utts(2), num_test_speakers=1, num_valid_speakers=1)


def test_prepare_writes_manifests_and_reports_bad_files(tmp_path, corpus_dir):
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(corpus_dir, root)
    spk = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (spk / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    report = prepare_corpus(root, tmp_path / "manifests", num_test_speakers=2, num_valid_speakers=1, seed=0)
    assert [b.path for b in report.bad] == [str(spk / "broken.wav")]
    assert len(report.split.speakers("test")) == 2
    counts = {n: len(read_manifest(tmp_path / "manifests" / f"{n}.jsonl")) for n in ("all", "train", "valid", "test")}
    assert counts["all"] == counts["train"] + counts["valid"] + counts["test"] == report.utterances
    with pytest.raises(VconvError, match="already exists"):
        prepare_corpus(root, tmp_path / "manifests")
