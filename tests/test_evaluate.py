"""The evaluation protocol (vconv.evaluation) with stand-in conversions whose right answers are known.

- *oracle*: returns the target speaker's own recording of the source sentence — a perfect conversion;
- *identity*: returns the source unchanged — no conversion at all.

Between them they pin down what every measure must say at both ends. The real conversion function is
wired in by the CLI; here only the protocol is under test.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vconv.data.manifest import scan_speaker_folders
from vconv.errors import VconvError
from vconv.evaluation.aggregate import aggregate, summarize
from vconv.evaluation.judges import Judges, SpeakerJudge
from vconv.evaluation.pairs import EvalPair, make_pairs, read_protocol
from vconv.evaluation.run import run_evaluation
from vconv.evaluation.scoring import SYSTEMS


def oracle(source: str, refs: list[str]) -> tuple[np.ndarray, int]:
    """The target's recording of the source's sentence (fixture layout: <speaker>/<speaker>_<nn>.wav)."""
    ref, nn = Path(refs[0]), Path(source).stem.rsplit("_", 1)[1]
    wav, sr = sf.read(ref.parent / f"{ref.parent.name}_{nn}.wav", dtype="float32")
    return wav, sr


def identity(source: str, refs: list[str]) -> tuple[np.ndarray, int]:
    wav, sr = sf.read(source, dtype="float32")
    return wav, sr


def test_only_the_conversion_is_timed(utterances, tmp_path):
    """convert_seconds is the convert_fn call: a 30 ms conversion reads 30 ms and more, not 0, not the whole run."""
    import time

    def slow_identity(source: str, refs: list[str]) -> tuple[np.ndarray, int]:
        time.sleep(0.03)
        return identity(source, refs)

    pairs = make_pairs(_speakers(utterances, "flite_rms", "flite_slt"), slow_identity, tmp_path, progress=False,
                       max_sources_per_speaker_pair=1)
    assert all(0.03 <= p.convert_seconds < 0.5 for p in pairs), [p.convert_seconds for p in pairs]


def noisy_vocoder(path: str) -> tuple[np.ndarray, int]:
    """Stand-in for copy synthesis: the input plus faint noise (a vocoder is never quite transparent)."""
    wav, sr = sf.read(path, dtype="float32")
    return wav + 0.003 * np.random.default_rng(0).standard_normal(wav.size).astype(np.float32), sr


@pytest.fixture(scope="module")
def utterances(corpus_dir):
    return scan_speaker_folders(corpus_dir).utterances


def _speakers(utts, *names):
    return [u for u in utts if u.speaker in names]


@pytest.fixture(scope="module")
def speaker_only():
    return Judges(speaker=SpeakerJudge())


def test_make_pairs_keeps_references_apart_and_is_seeded(utterances, tmp_path):
    utts = _speakers(utterances, "flite_rms", "flite_slt", "espeak_f3")
    pairs = make_pairs(utts, identity, tmp_path / "a", progress=False)
    assert len(pairs) == 3 * 2 * 4  # every source utterance to each of the two other speakers
    text = {str(u.path): u.text for u in utts}
    spk = {str(u.path): u.speaker for u in utts}
    for p in pairs:
        assert spk[p.source] == p.source_speaker != p.target_speaker
        assert {spk[r] for r in p.target_refs} == {spk[p.target_other]} == {spk[p.target_parallel]} == {p.target_speaker}
        # the converter never sees the judged utterance or the ground truth
        assert p.target_other not in p.target_refs and p.target_parallel not in p.target_refs
        assert p.target_other != p.target_parallel
        assert text[p.target_parallel] == p.text == text[p.source]
        assert spk[p.source_other] == p.source_speaker and p.source_other != p.source
        assert Path(p.converted).is_file()
        assert np.array_equal(sf.read(p.converted)[0], sf.read(p.source)[0])  # identity survived the PCM_16 round trip

    shuffled = list(utts)
    random.Random(1).shuffle(shuffled)
    again = make_pairs(shuffled, identity, tmp_path / "b", max_sources_per_speaker_pair=4, progress=False)
    key = lambda p: (p.id, p.target_refs, p.target_other, p.target_parallel, p.source_other)  # noqa: E731
    assert sorted(map(key, again)) == sorted(map(key, pairs))  # same choices, whatever the input order
    fewer = make_pairs(utts, identity, tmp_path / "c", max_sources_per_speaker_pair=1, progress=False)
    assert len(fewer) == 6 and len({p.source_speaker + p.target_speaker for p in fewer}) == 6

    with pytest.raises(VconvError, match="already exists"):
        make_pairs(utts, identity, tmp_path / "c", max_sources_per_speaker_pair=1, progress=False)
    with pytest.raises(VconvError, match="two held-out speakers"):
        make_pairs(_speakers(utterances, "flite_rms"), identity, tmp_path / "d", progress=False)


def test_several_target_references_never_include_the_judged_one(utterances, tmp_path):
    utts = _speakers(utterances, "flite_rms", "flite_slt")  # 4 utterances each: 3 besides the ground truth
    given = []
    pairs = make_pairs(utts, lambda src, refs: (given.append(refs), identity(src, refs))[1], tmp_path / "a",
                       target_refs=2, progress=False)
    assert given == [p.target_refs for p in pairs]  # the converter got exactly what the pair records
    for p in pairs:
        assert len(set(p.target_refs)) == 2
        assert p.target_other not in p.target_refs and p.target_parallel not in p.target_refs
    capped = make_pairs(utts, identity, tmp_path / "b", target_refs=9, progress=False)
    assert {len(p.target_refs) for p in capped} == {2}  # one of the three is kept back to judge on
    one = make_pairs(utts, identity, tmp_path / "c", progress=False)
    # one reference draws what the one-reference protocol always drew; more references only add to it,
    # so the judged utterance (and the source's other utterance) stay the same for every N
    by_id = {str(u.path): u for u in utts}
    for p1, p2 in zip(one, pairs):
        src = by_id[p1.source]
        others = sorted((u for u in utts if u.speaker == p1.target_speaker and str(u.path) != p1.target_parallel),
                        key=lambda u: u.id)
        ref, judge_on = random.Random(f"0|{src.id}|{p1.target_speaker}").sample(others, 2)
        assert p1.target_refs == [str(ref.path)] and p1.target_other == str(judge_on.path)
        assert p2.target_refs[0] == p1.target_refs[0] and (p2.target_other, p2.source_other) == (p1.target_other, p1.source_other)
    with pytest.raises(VconvError, match="target_refs 0"):
        make_pairs(utts, identity, tmp_path / "d", target_refs=0, progress=False)


def test_the_report_says_how_many_target_references_were_given(utterances, speaker_only, tmp_path):
    utts = _speakers(utterances, "flite_rms", "flite_slt")
    report = run_evaluation(out_dir=tmp_path / "two", convert_fn=identity, utterances=utts, judges=speaker_only,
                            target_refs=3, max_sources_per_speaker_pair=1, progress=False, plots=False)
    assert report.meta["target_refs"] == {"asked": 3, "min": 2, "max": 2}
    assert any("3 asked" in note and "2 to 2" in note for note in report.meta["notes"])
    single = run_evaluation(out_dir=tmp_path / "one", convert_fn=identity, utterances=utts, judges=speaker_only,
                            max_sources_per_speaker_pair=1, progress=False, plots=False)
    assert single.meta["target_refs"]["max"] == 1 and not any("Target references" in n for n in single.meta["notes"])


def test_notes_given_as_a_callable_are_asked_after_the_conversions(utterances, speaker_only, tmp_path):
    converted: list[str] = []

    def counting(src, refs):
        converted.append(str(src))
        return identity(src, refs)

    report = run_evaluation(out_dir=tmp_path / "e", convert_fn=counting, utterances=_speakers(utterances, "flite_rms", "flite_slt"),
                            judges=speaker_only, max_sources_per_speaker_pair=1, progress=False, plots=False,
                            notes=lambda: [f"{len(converted)} conversions seen"])
    assert converted and f"{len(converted)} conversions seen" in report.meta["notes"]


def test_perfect_and_absent_conversions_score_at_the_ends(utterances, speaker_only, tmp_path):
    utts = _speakers(utterances, "flite_rms", "flite_slt", "espeak_f3")
    kw = dict(utterances=utts, judges=speaker_only, max_sources_per_speaker_pair=1, progress=False, plots=False)
    perfect = run_evaluation(out_dir=tmp_path / "oracle", convert_fn=oracle, **kw)
    none = run_evaluation(out_dir=tmp_path / "identity", convert_fn=identity, **kw)
    p, n = perfect.summary, none.summary

    assert p["converted"]["success_rate"] == 1.0 and n["converted"]["success_rate"] == 0.0
    assert p["converted"]["accept_rate"] == 1.0 and n["converted"]["accept_rate"] == 0.0
    assert p["converted"]["mcd"] == pytest.approx(0.0, abs=1e-6)  # the oracle *is* the parallel target
    assert n["converted"]["mcd"] == pytest.approx(n["source"]["mcd"]) and n["source"]["mcd"] > 5
    assert n["converted"]["f0_corr"] == pytest.approx(1.0)  # unchanged audio keeps the source's melody
    assert n["converted"]["register_err_cents"] == pytest.approx(n["source"]["register_err_cents"])
    # reference rows do not depend on the conversion
    for system in ("source", "ground_truth"):
        assert p[system]["sim_target"] == pytest.approx(n[system]["sim_target"])
    assert p["ground_truth"]["success_rate"] == 1.0 and p["source"]["success_rate"] == 0.0
    assert p["converted"]["sim_target"] == pytest.approx(p["ground_truth"]["sim_target"])
    assert perfect.verification.eer == 0.0 and 0.5 < perfect.verification.threshold < 0.8  # measured 0.67
    assert perfect.verification.genuine == 3 * 6 and perfect.verification.impostor == 3 * 16
    # no ASR/quality judge: those measures are absent, not zero
    assert all(r["cer"] is None and r["dnsmos_ovrl"] is None for r in perfect.rows)
    assert "| converted | 6 | 0." in perfect.summary_markdown and "| – |" in perfect.summary_markdown


def test_run_evaluation_with_all_judges_writes_the_three_outputs(utterances, tmp_path):
    utts = _speakers(utterances, "flite_rms", "flite_slt")
    out = tmp_path / "eval"
    report = run_evaluation(
        out_dir=out, utterances=utts, convert_fn=identity, vocode_fn=noisy_vocoder,
        judges=Judges.load(), max_sources_per_speaker_pair=1, progress=False, title="stand-in: identity",
    )
    assert {p.name for p in out.iterdir()} >= {"results.json", "summary.md", "plots", "converted", "copy_synthesis"}
    for name in ("similarity.png", "embeddings.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.md").read_text() == report.summary_markdown
    for system in SYSTEMS:
        if system != "unmatched":
            assert f"| {system} | 2 |" in report.summary_markdown
    assert "| unmatched |" not in report.summary_markdown  # the stand-in gives no unmatched output: no empty row

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"meta", "verification", "summary", "pairs", "rows"}
    assert len(results["pairs"]) == 2 and len(results["rows"]) == 2 * (len(SYSTEMS) - 1)  # no unmatched rows
    assert results["meta"]["judges"]["asr"].startswith("faster-whisper")
    conv = [r for r in results["rows"] if r["system"] == "converted"]
    src = [r for r in results["rows"] if r["system"] == "source"]
    for c, s in zip(conv, src):  # identity conversion: content and quality equal the source's
        assert c["asr_text"] == s["asr_text"] and c["cer"] == s["cer"]
        assert c["dnsmos_ovrl"] == pytest.approx(s["dnsmos_ovrl"], abs=1e-4)
        assert c["rtf"] is not None and c["rtf"] < 1
    assert results["summary"]["source"]["cer"] < 0.3  # measured 0.03 on these two sentences
    copy = [r for r in results["rows"] if r["system"] == "copy_synthesis"]
    assert all(0 < r["mcd"] < 10 and r["f0_corr"] > 0.9 for r in copy)
    assert all(r["accepted"] is not None for r in results["rows"])

    with pytest.raises(VconvError, match="already exists"):
        run_evaluation(out_dir=out, utterances=utts, convert_fn=identity, judges=Judges(), progress=False)


def test_protocol_file_without_unseen_target_or_transcript(corpus_dir, speaker_only, tmp_path):
    # relative paths, a single "target_ref", no target_other and no text: still scored, with the caveats said
    rel = Path("..") / corpus_dir.name
    proto = tmp_path / "p" / "protocol.jsonl"
    proto.parent.mkdir()
    (tmp_path / corpus_dir.name).symlink_to(corpus_dir)
    records = [
        {"source": str(rel / "flite_awb/flite_awb_01.wav"), "target_ref": str(rel / "flite_slt/flite_slt_02.wav"),
         "converted": str(rel / "flite_slt/flite_slt_01.wav"), "source_speaker": "flite_awb", "target_speaker": "flite_slt"},
        {"source": str(rel / "flite_slt/flite_slt_03.wav"), "target_refs": [str(rel / "flite_awb/flite_awb_02.wav")],
         "converted": str(rel / "flite_slt/flite_slt_03.wav")},
    ]
    proto.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    pairs = read_protocol(proto)
    assert pairs[0].target_refs == [str(proto.parent / records[0]["target_ref"])] and pairs[1].id == "flite_slt_03->flite_awb_02"
    report = run_evaluation(pairs, out_dir=tmp_path / "out", judges=speaker_only, progress=False)
    assert all(r["target_judged_on"] == "conversion_reference" for r in report.rows)
    assert "optimistic" in report.summary_markdown
    conv = [r for r in report.rows if r["system"] == "converted"]
    assert conv[0]["success"] is True and conv[1]["success"] is False
    assert {r["system"] for r in report.rows} == {"converted", "source"}  # no ground truth to be had
    assert (report.verification.genuine, report.verification.impostor) == (2, 4)  # speakers from folder names

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"source": "a.wav", "converted": "b.wav"}) + "\n")
    with pytest.raises(VconvError, match="missing target_refs"):
        read_protocol(bad)


def test_summary_rates_and_missing_values():
    rows = [
        {"system": "converted", "sim_target": 0.8, "sim_source": 0.5, "success": True, "accepted": True,
         "char_errors": 1, "chars": 10, "word_errors": 1, "words": 2},
        {"system": "converted", "sim_target": 0.4, "sim_source": 0.6, "success": False, "accepted": False,
         "char_errors": 0, "chars": 30, "word_errors": 0, "words": 6},
        {"system": "source", "sim_target": None, "sim_source": None, "success": None, "accepted": None},
    ]
    s = aggregate(rows)
    assert s["converted"]["success_rate"] == 0.5 and s["converted"]["accept_rate"] == 0.5
    assert s["converted"]["cer"] == pytest.approx(1 / 40)  # corpus level, not the mean of 0.1 and 0
    assert s["converted"]["wer"] == pytest.approx(1 / 8)
    assert s["source"]["sim_target"] is None and s["source"]["cer"] is None
    md = summarize(s)
    assert "| converted | 2 | 0.600 ± 0.392 | 0.550 | 50 % | 50 % | 0.025 | 0.125 |" in md
    assert "| source | 1 | – | – | – | – |" in md


def test_eval_pair_needs_a_reference():
    with pytest.raises(VconvError, match="at least one target reference"):
        EvalPair(source="a.wav", target_refs=[], converted="b.wav")
    assert EvalPair(source="x/a.wav", target_refs="y/r.wav", converted="c.wav").target_refs == ["y/r.wav"]


def test_linkability_is_low_when_a_conversion_keeps_its_source_voice_and_high_when_it_does_not():
    """The source-speaker EER over converted utterances (a stub judge stands in for Resemblyzer: the trials' arithmetic
    is what is tested)."""
    from vconv.evaluation.pairs import EvalPair
    from vconv.evaluation.scoring import linkability

    rng = np.random.default_rng(0)
    voices = {s: rng.standard_normal(16) for s in "abcd"}
    vectors: dict[str, np.ndarray] = {}

    class StubSpeaker:
        def embed(self, path: str) -> np.ndarray:
            v = vectors[str(path)]
            return v / np.linalg.norm(v)

    pool = {}
    for s in "abcd":
        for u in range(3):
            path = f"/real/{s}/{u}.wav"
            vectors[path] = voices[s] + 0.3 * rng.standard_normal(16)
            pool[path] = s
    pairs = []
    for i, (src, tgt) in enumerate([("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")] * 3):
        kept, moved = f"/conv/kept{i}.wav", f"/conv/moved{i}.wav"
        vectors[kept] = voices[src] + 0.3 * rng.standard_normal(16)
        vectors[moved] = rng.standard_normal(16)  # a voice of no one
        pairs.append((EvalPair(f"/real/{src}/0.wav", [f"/real/{tgt}/1.wav"], kept, source_speaker=src, target_speaker=tgt),
                      EvalPair(f"/real/{src}/0.wav", [f"/real/{tgt}/1.wav"], moved, source_speaker=src, target_speaker=tgt)))
    judges = Judges(speaker=StubSpeaker())  # type: ignore[arg-type]
    assert linkability(judges, pool, [k for k, _ in pairs]).eer < 0.1
    moved = linkability(judges, pool, [m for _, m in pairs]).eer
    assert moved > 0.3
    # a voice from outside the source speakers (an anonymisation pool's) is no impostor: it would flatter privacy
    for u in range(3):
        vectors[f"/pool/e/{u}.wav"] = rng.standard_normal(16)
        pool[f"/pool/e/{u}.wav"] = "e"
    assert linkability(judges, pool, [m for _, m in pairs]).eer == moved
