"""Corpora (vconv.corpus): manifest in, manifest out; a rerun converts only what is missing; a killed worker's items
are redone and nothing is converted twice; voices per speaker and anonymisation; embeddings of a corpus; the Ray
engine (slow)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import invoke, voiced_signal
from vconv.corpus import convert_corpus, embed_corpus
from vconv.corpus.jobs import load_json_lines, record_path
from vconv.fileio import sha256_of
from vconv.inference.settings import ConversionSettings

SR = 16000
SETTINGS = ConversionSettings(vocoder="griffinlim")


@pytest.fixture()
def corpus(tmp_path):
    """Six utterances of three speakers, a manifest of them, and two target voices."""
    lines = []
    for s, f0 in enumerate((110.0, 160.0, 220.0)):
        for u in range(2):
            path = tmp_path / "wav" / f"spk{s}" / f"u{u}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, voiced_signal(0.6 + 0.1 * u, f0=f0, seed=u), SR)
            lines.append({"id": f"spk{s}/u{u}", "path": str(path.relative_to(tmp_path)), "speaker": f"spk{s}", "duration": 0.6})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for v, f0 in enumerate((130.0, 250.0)):
        sf.write(tmp_path / f"voice{v}.wav", voiced_signal(1.0, f0=f0, seed=5), SR)
    (tmp_path / "voices.txt").write_text("voice0.wav\nvoice1.wav\n")
    return tmp_path


def test_a_manifest_converts_to_a_manifest_and_a_rerun_converts_nothing(tiny_bundle, corpus):
    out = corpus / "out"
    report = convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=SETTINGS, target=[str(corpus / "voice0.wav")],
                            progress=False)
    assert report.count("converted") == 6 and report.count("failed") == 0
    rows = load_json_lines(out / "manifest.jsonl")
    assert [r["id"] for r in rows] == [f"spk{s}/u{u}" for s in range(3) for u in range(2)]
    assert all(Path(r["output"]).is_file() and r["status"] == "converted" for r in rows)
    digests = {r["id"]: sha256_of(r["output"]) for r in rows}
    again = convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=SETTINGS, target=[str(corpus / "voice0.wav")],
                           progress=False)
    assert again.count("done") == 6 and again.count("converted") == 0
    assert {r["id"]: sha256_of(r["output"]) for r in load_json_lines(out / "manifest.jsonl")} == digests
    # another target is another key: the outputs of the first run are not replaced without --force
    other = convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=SETTINGS, target=[str(corpus / "voice1.wav")],
                           progress=False)
    assert other.count("failed") == 6 and "pass --force" in other.results[0].error
    forced = convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=SETTINGS, target=[str(corpus / "voice1.wav")],
                            force=True, progress=False)
    assert forced.count("converted") == 6


def test_a_manifest_embeds_to_a_folder_per_utterance_resumably_and_gathered_by_speaker(tiny_bundle, corpus):
    """`vconv embed MANIFEST -o OUT/`: one normalised vector per utterance (the same as `vconv embed FILE`), a bad
    file listed, a rerun embeds only what is missing, OUT/embeddings.npz holds every vector and each speaker's mean."""
    import numpy as np

    from vconv.inference.converter import load

    (corpus / "wav" / "spk1" / "u0.wav").write_bytes(b"not audio")
    out = corpus / "emb"
    result = invoke("embed", str(corpus / "in.jsonl"), "-o", str(out), "--model", str(tiny_bundle), "--no-progress")
    assert result.exit_code == 3 and "5 embedded, 0 already done, 1 failed" in result.output, result.output
    rows = {r["id"]: r for r in load_json_lines(out / "manifest.jsonl")}
    assert rows["spk1/u0"]["status"] == "failed" and rows["spk1/u0"]["error"]
    vector = np.load(out / "spk0" / "u0.npy")
    assert vector.dtype == np.float32 and vector.ndim == 1 and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    direct = load(tiny_bundle).embed([rows["spk0/u0"]["source"]])[0]
    assert np.allclose(vector, direct, atol=1e-5)
    gathered = np.load(out / "embeddings.npz")
    assert list(gathered["utterances"]) == [i for i in rows if i != "spk1/u0"] and list(gathered["speakers"]) == ["spk0", "spk1", "spk2"]
    mean = gathered["utterance_vectors"][:2].mean(axis=0)
    assert np.allclose(gathered["speaker_vectors"][0], mean / np.linalg.norm(mean), atol=1e-6)
    os.remove(out / "spk2" / "u1.npy")  # lost: the rerun embeds it again, and only it
    again = embed_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, progress=False)
    assert (again.count("embedded"), again.count("done"), again.count("failed")) == (1, 4, 1)
    from vconv.evaluation.corpus_pairs import corpus_pairs

    with pytest.raises(Exception, match="embeddings written by `vconv embed`"):
        corpus_pairs(out)
    # the engine options belong to a corpus; the user's own embeddings.npz in a fresh folder is never replaced
    misuse = invoke("embed", str(corpus / "wav" / "spk0"), "-o", str(corpus / "x.npz"), "--workers", "2",
                    "--model", str(tiny_bundle))
    assert misuse.exit_code != 0 and "one manifest (.jsonl) and --out FOLDER" in misuse.output
    typo = invoke("embed", str(corpus / "in.jsonl"), "-o", str(corpus / "out.txt"), "--model", str(tiny_bundle))
    assert typo.exit_code != 0 and "unsupported embeddings output extension '.txt'" in typo.output
    assert not (corpus / "out.txt").exists()  # a file name with a typo is not made into a folder
    (corpus / "mine").mkdir()
    (corpus / "mine" / "embeddings.npz").write_bytes(b"mine")
    with pytest.raises(Exception, match="not written by vconv embed"):
        embed_corpus(corpus / "in.jsonl", corpus / "mine", bundle=tiny_bundle, progress=False)
    assert (corpus / "mine" / "embeddings.npz").read_bytes() == b"mine"
    (corpus / "converted").mkdir()  # a converted corpus's folder (its manifest lists .wav outputs) is not embed's
    (corpus / "converted" / "manifest.jsonl").write_text(json.dumps({"id": "a", "output": "a.wav"}) + "\n")
    with pytest.raises(Exception, match="not written by vconv embed"):
        embed_corpus(corpus / "in.jsonl", corpus / "converted", bundle=tiny_bundle, progress=False)


def test_a_bad_file_is_listed_and_the_rest_is_converted(tiny_bundle, corpus):
    (corpus / "wav" / "spk1" / "u0.wav").write_bytes(b"not audio")
    result = invoke("convert", str(corpus / "in.jsonl"), "-o", str(corpus / "out"), "-t", str(corpus / "voice0.wav"),
                    "--model", str(tiny_bundle), "--vocoder", "griffinlim", "--no-progress")
    assert result.exit_code == 3, result.output
    rows = {r["id"]: r for r in load_json_lines(corpus / "out" / "manifest.jsonl")}
    assert rows["spk1/u0"]["status"] == "failed" and rows["spk1/u0"]["error"]
    assert sum(r["status"] == "converted" for r in rows.values()) == 5


def test_voices_per_speaker_and_pseudo_voices_are_the_same_for_a_speaker_and_differ_between_speakers(tiny_bundle, corpus):
    import numpy as np

    for name, options in (("assigned", {}), ("anon", {"anonymise": 7})):
        convert_corpus(corpus / "in.jsonl", corpus / name, bundle=tiny_bundle, settings=SETTINGS,
                       targets_file=corpus / "voices.txt", progress=False, **options)
    anon = {r["id"]: r for r in load_json_lines(corpus / "anon" / "manifest.jsonl")}
    assert all(r["status"] == "converted" for r in anon.values())
    # the output manifest says whose each output is and what voice it was given (what `vconv evaluate --corpus` reads)
    pool = {str(corpus / "voice0.wav"), str(corpus / "voice1.wav")}
    assert all(r["anonymised"] and r["speaker"] == r["id"].split("/")[0] and set(r["voice"]) == pool for r in anon.values())
    assigned_rows = load_json_lines(corpus / "assigned" / "manifest.jsonl")
    assert all(not r["anonymised"] and len(r["voice"]) == 1 and r["voice"][0] in pool for r in assigned_rows)
    assert len({r["voice"][0] for r in assigned_rows if r["speaker"] == "spk0"}) == 1  # one voice per speaker
    assigned = {r["id"]: r["key"] for r in assigned_rows}
    assert len(set(assigned.values())) == 6  # (keys include the source)
    from vconv.corpus.jobs import plan_items
    from vconv.corpus.voices import TargetPolicy, read_voice_list
    from vconv.corpus.work import CorpusWorker, WorkerSpec

    items = {i.id: i for i in plan_items(corpus / "in.jsonl", corpus / "unused")}
    first = {f"spk{s}": items[f"spk{s}/u0"].source for s in range(3)}
    worker = CorpusWorker(WorkerSpec(str(tiny_bundle), SETTINGS, TargetPolicy((), read_voice_list(corpus / "voices.txt"), 7,
                                                                               True, first)))
    voice = {i: worker._target(item, ())[0].embedding for i, item in items.items()}
    assert np.array_equal(voice["spk0/u0"], voice["spk0/u1"])  # one speaker, one pseudo-voice
    assert not np.allclose(voice["spk0/u0"], voice["spk1/u0"]) and not np.allclose(voice["spk1/u0"], voice["spk2/u0"])
    again = convert_corpus(corpus / "in.jsonl", corpus / "anon", bundle=tiny_bundle, settings=SETTINGS,
                           targets_file=corpus / "voices.txt", anonymise=7, progress=False)
    assert again.count("done") == 6  # the same seed: the same voices, nothing to redo
    with pytest.raises(Exception, match="at least 2 voices"):
        (corpus / "one.txt").write_text("voice0.wav\n")
        convert_corpus(corpus / "in.jsonl", corpus / "x", bundle=tiny_bundle, settings=SETTINGS,
                       targets_file=corpus / "one.txt", anonymise=1, progress=False)


def test_a_converted_corpus_becomes_evaluation_pairs_from_its_output_manifest_alone(tiny_bundle, corpus):
    """`vconv evaluate --corpus`'s pairs: each output against its source, another utterance of the source speaker
    (never the converted one) and the voice it was given; failures are counted, not judged; a moved folder still
    works; a manifest of an older vconv is refused with what to do."""
    from vconv.errors import VconvError
    from vconv.evaluation.corpus_pairs import corpus_pairs

    (corpus / "wav" / "spk2" / "u1.wav").write_bytes(b"not audio")
    convert_corpus(corpus / "in.jsonl", corpus / "anon", bundle=tiny_bundle, settings=SETTINGS,
                   targets_file=corpus / "voices.txt", anonymise=7, progress=False)
    (corpus / "anon").rename(corpus / "moved")
    pairs, notes = corpus_pairs(corpus / "moved", seed=0)
    assert [p.id for p in pairs] == [f"spk{s}/u{u}" for s in range(3) for u in range(2)][:5]
    assert "1 failed conversion(s) not judged" in notes[0] and "Pseudo-voices" in notes[1]
    for pair in pairs:
        assert Path(pair.converted) == corpus / "moved" / f"{pair.id}.wav" and Path(pair.converted).is_file()
        assert pair.source_other and Path(pair.source_other).parent == Path(pair.source).parent != pair.source_other
        assert pair.source_speaker == pair.id.split("/")[0] and pair.target_speaker == corpus.name
        assert len(pair.target_refs) == 1 and pair.target_refs[0] in {str(corpus / "voice0.wav"), str(corpus / "voice1.wav")}
    lines = load_json_lines(corpus / "moved" / "manifest.jsonl")
    (corpus / "old.jsonl").write_text("".join(json.dumps({k: v for k, v in line.items() if k != "voice"}) + "\n" for line in lines))
    with pytest.raises(VconvError, match="lacks voice.*run the same convert command again"):
        corpus_pairs(corpus / "old.jsonl")


@pytest.mark.slow
def test_evaluate_scores_an_anonymised_corpus_with_its_source_speaker_linkability(tiny_bundle, corpus, tmp_path):
    """`vconv evaluate --corpus OUT` with the real judges: every output scored, the linkability EER in the report."""
    convert_corpus(corpus / "in.jsonl", corpus / "anon", bundle=tiny_bundle, settings=SETTINGS,
                   targets_file=corpus / "voices.txt", anonymise=7, progress=False)
    result = invoke("evaluate", "--corpus", str(corpus / "anon"), "-o", str(tmp_path / "report"), "--no-plots", "--no-progress")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    assert len([r for r in report["rows"] if r["system"] == "converted"]) == 6
    assert 0.0 <= report["meta"]["source_linkability_eer"] <= 1.0 and "linkability" in result.output


def test_a_worker_killed_midway_leaves_every_output_complete_and_none_converted_twice(tiny_bundle, corpus):
    """Two local workers; one is SIGKILLed after the first outputs appear: the run completes, each output's record
    matches its digest, and each item was written once (a record is written once per conversion it completes)."""
    out = corpus / "out"
    killed: list[int] = []
    thread = threading.Thread(target=_kill_one, args=(out, lambda: _spawned_workers(os.getpid()), killed))
    thread.start()
    report = convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=SETTINGS, target=[str(corpus / "voice0.wav")],
                            workers=2, progress=False)
    thread.join()
    assert killed, "no worker was killed"
    assert report.count("failed") == 0 and report.count("converted") + report.count("done") == 6
    for row in load_json_lines(out / "manifest.jsonl"):
        record = json.loads(record_path_of(row).read_text())
        assert record["sha256"] == sha256_of(row["output"])  # complete, and the file its record says


def record_path_of(row: dict) -> Path:
    from vconv.corpus.jobs import CorpusItem

    return record_path(CorpusItem(row["id"], row["source"], "", (), row["output"]))


def _spawned_workers(parent: int) -> list[int]:
    """The pids of ``parent``'s multiprocessing workers (spawned: their command line runs ``spawn_main``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_a_ray_cluster_on_loopback_converts_a_manifest_with_a_worker_killed_midway(tiny_bundle, corpus):
    """A local Ray cluster of 2 CPUs, two actors; one actor process is SIGKILLed after the first outputs appear: Ray
    restarts it and retries its task, the run completes, every output matches its record."""
    ray = pytest.importorskip("ray")
    out = corpus / "out"
    killed: list[int] = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        actors = lambda: [pid for pid, cmd in _processes() if b"ray::_RayWorker" in cmd]  # noqa: E731
        thread = threading.Thread(target=_kill_one, args=(out, actors, killed))
        thread.start()
        report = convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=SETTINGS,
                                target=[str(corpus / "voice0.wav")], engine="ray", workers=2, progress=False)
        thread.join()
        # embeddings are the same engine with another worker: two actors embed the corpus
        embedded = embed_corpus(corpus / "in.jsonl", corpus / "emb", bundle=tiny_bundle, engine="ray", workers=2,
                                progress=False)
    finally:
        ray.shutdown()
    assert embedded.count("embedded") == 6 and (corpus / "emb" / "embeddings.npz").is_file()
    assert killed, "no actor was killed"
    assert report.count("failed") == 0 and report.count("converted") + report.count("done") == 6
    for row in load_json_lines(out / "manifest.jsonl"):
        assert json.loads(record_path_of(row).read_text())["sha256"] == sha256_of(row["output"])


def _processes() -> list[tuple[int, bytes]]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append((int(cmdline.parent.name), cmdline.read_bytes()))
        except OSError:
            continue
    return found


def _kill_one(out: Path, candidates, killed: list[int], seconds: float = 300.0) -> None:
    """SIGKILL the first of ``candidates()`` once the first output appears under ``out`` (its pid into ``killed``)."""
    deadline = time.time() + seconds
    while time.time() < deadline and not killed:
        pids = candidates() if any(out.rglob("*.wav")) else []
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        time.sleep(0.05)


def test_the_local_engine_feeds_short_items_in_runs_that_still_keep_every_worker_busy():
    from vconv.corpus.engines import CHUNK, chunks
    from vconv.corpus.jobs import CorpusItem

    items = [CorpusItem(f"u{i}", "", "s", (), "") for i in range(1000)]
    runs = chunks(items, 2)
    assert [i for run in runs for i in run] == items and max(map(len, runs)) == CHUNK
    assert [len(run) for run in chunks(items[:6], 2)] == [1] * 6  # a small corpus: one item per task, as before
    assert len(chunks(items[:40], 2)) >= 8  # enough tasks that no worker waits for the other's last run


def test_the_settings_key_names_only_what_differs_from_the_defaults():
    """A corpus converted before a setting existed stays done after it arrives at a default that changes nothing."""
    from vconv.inference.settings import ConversionSettings

    assert ConversionSettings(enhance="off").key() == ConversionSettings(enhance="off", pitch_shift=0, names={"fit_steps": "--fit"}).key() == ""
    assert ConversionSettings(fit_steps=30, enhance="auto").key() == "fit_steps=30;enhance='auto'"
    # enhance's default became auto: outputs made under the old default (off) stay keyed as they were, so a rerun
    # with the new default converts them again rather than taking them for its own
    assert ConversionSettings().key() == "enhance='auto'"
    assert ConversionSettings(pitch_shift=2).key() != ConversionSettings(pitch_shift=-2).key()


@pytest.mark.parametrize("match, done", [("mean", True), ("meanstd", False)])
def test_outputs_keyed_by_an_older_vconv_count_as_done_and_their_records_are_updated(tiny_bundle, corpus, monkeypatch,
                                                                                      match, done):
    """The releases before ConversionSettings.key() keyed an output by the settings' repr: a rerun finds them done,
    unless a rule their outputs depend on has changed since (the meanstd matching's spread, 2026-11-28: made again)."""
    out = corpus / "out"
    settings = dataclasses.replace(SETTINGS, target_match=match)
    with monkeypatch.context() as older:
        older.setattr(ConversionSettings, "key", ConversionSettings.__repr__)
        older.setattr("vconv.inference.target_match.SPREAD_FROM_HZ", 0.0)  # as those releases matched every band
        older.setattr("vconv.corpus.work.CorpusWorker.rules", lambda self: "")  # ... and keyed no rule
        first = convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=settings,
                               target=[str(corpus / "voice0.wav")], progress=False)
    assert first.count("converted") == 6
    records = [path for path in out.rglob("*.json") if path.parent.name == ".records"]
    keys = {path: json.loads(path.read_text())["key"] for path in records}
    assert len(keys) == 6
    again = convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=settings,
                           target=[str(corpus / "voice0.wav")], progress=False)
    if not done:  # stale: kept as they are and said so, made again only when asked
        assert again.count("failed") == 6 and "vconv upgrade" in again.results[0].error
        again = convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=settings,
                               target=[str(corpus / "voice0.wav")], progress=False, force=True)
    assert again.count("done" if done else "converted") == 6
    updated = {path: json.loads(path.read_text())["key"] for path in records}
    assert all(updated[path] != keys[path] for path in records)
    assert convert_corpus(corpus / "in.jsonl", out, bundle=tiny_bundle, settings=settings,
                          target=[str(corpus / "voice0.wav")], progress=False).count("done") == 6


def test_a_changed_conversion_rule_makes_finished_outputs_stale(tiny_bundle, corpus, monkeypatch):
    """The outputs depend on the matching's spread rule: with another rule a rerun counts nothing as done and
    replaces nothing without --force (the same key logic carries a pitch model's PITCH_RULES)."""
    out = corpus / "out"
    settings = dataclasses.replace(SETTINGS, target_match="meanstd")
    args = dict(bundle=tiny_bundle, settings=settings, target=[str(corpus / "voice0.wav")], progress=False)
    assert convert_corpus(corpus / "in.jsonl", out, **args).count("converted") == 6
    assert convert_corpus(corpus / "in.jsonl", out, **args).count("done") == 6
    monkeypatch.setattr("vconv.inference.target_match.SPREAD_FROM_HZ", 300.0)
    stale = convert_corpus(corpus / "in.jsonl", out, **args)
    assert stale.count("failed") == 6 and "conversion rules" in stale.results[0].error
    from vconv.inference.target_match import spread_rules

    # a cleaned source's spread narrowed only (2026-11-28) is a rule of every conversion that may clean its source
    assert spread_rules("off") != spread_rules("auto") == spread_rules("on")


def test_a_pitch_model_s_outputs_are_keyed_on_the_comb_depth_when_the_harmonics_are_on(monkeypatch):
    """The harmonic excitation's depth shapes every output with the harmonics on: another depth is another rule (so
    a corpus converted before a change of the default counts as stale), and without the harmonics it is no rule."""
    from types import SimpleNamespace

    from vconv.corpus.work import CorpusWorker

    def rules(harmonics: bool) -> str:
        converter = SimpleNamespace(model=SimpleNamespace(reads_pitch=True), harmonics=harmonics, target_match="off")
        return CorpusWorker.rules(SimpleNamespace(converter=converter))

    from vconv.vocoders.harmonics import COMB_DEPTH

    shipped = rules(True)
    assert f"|comb depth {COMB_DEPTH:g}" in shipped and "comb depth" not in rules(False)
    monkeypatch.setattr("vconv.vocoders.harmonics.COMB_DEPTH", COMB_DEPTH + 1)
    assert rules(True) != shipped and f"|comb depth {COMB_DEPTH + 1:g}" in rules(True)
