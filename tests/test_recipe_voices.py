"""The voices recipe's corpus builder (recipes/voices/local): Fish Fillets transcripts, per-language sentence
lists, synthetic voices, pseudo-speaker augmentation and the install check, on fake inputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import voiced_signal

LOCAL = Path(__file__).resolve().parents[1] / "recipes" / "voices" / "local"


def load_script(name: str) -> ModuleType:
    """Import the recipe script ``local/<name>.py`` from its file, without touching ``sys.path``.

    The scripts import one another by bare name (``import corpus_common``), which works when one of them
    runs as a script (its folder is then ``sys.path[0]``); here each is registered in ``sys.modules``
    under that name, loaded after the ones it imports, so those imports find it.
    """
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, LOCAL / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


# dependency order: a script's sibling imports are loaded before it
for _name in ("corpus_common", "corpus_fillets", "corpus_fotaq", "corpus_fotaq_minor", "corpus_bass", "neural_tts", "corpus_install", "corpus_tts", "corpus_augment"):
    load_script(_name)
build_corpus = load_script("build_corpus")
corpus_augment = sys.modules["corpus_augment"]
corpus_fillets = sys.modules["corpus_fillets"]
corpus_install = sys.modules["corpus_install"]
corpus_tts = sys.modules["corpus_tts"]

DIALOGS_CS = r'''
dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")
dialogStr("Co je to za divnou loď?")

dialogId("v-restartovat", "font_big", "The small fish gets lost.")
dialogStr(
"Ta malá rybka se v širém moři ztratí. Řekni \"ahoj\" v C:\\WINDOWS.")

dialogId("let-x-papousek", "font_parrot", "Polly wants a cracker.")
dialogStr("Papoušek chce sušenku, ale dostane jen vodu.")

dialogId("let-m-hm", "font_small", "Hm.")
dialogStr("Hm.")
'''


def make_game(root: Path) -> Path:
    """A fake Fish Fillets tree: Czech script + clips (two heroes, a parrot, a too-short grunt)."""
    (root / "script" / "airplane").mkdir(parents=True)
    (root / "script" / "airplane" / "dialogs_cs.lua").write_text(DIALOGS_CS, encoding="utf-8")
    (root / "script" / "airplane" / "dialogs_nl.lua").write_text(
        'dialogId("let-m-divna", "font_small", "What?")\ndialogStr("Wat is dit voor raar schip?")\n', encoding="utf-8")
    for lang, ids in {"cs": ["let-m-divna", "v-restartovat", "let-x-papousek", "let-m-hm", "no-text"],
                      "nl": ["let-m-divna"]}.items():
        folder = root / "sound" / "airplane" / lang
        folder.mkdir(parents=True)
        for i, clip in enumerate(ids):
            seconds = 0.3 if clip == "let-m-hm" else 1.5
            sf.write(folder / f"{clip}.ogg", voiced_signal(seconds, sr=22050, seed=i), 22050)
    return root


def test_parse_dialogs_reads_font_and_localised_line_with_escapes():
    lines = corpus_fillets.parse_dialogs(DIALOGS_CS)
    assert lines["let-m-divna"] == ("font_small", "Co je to za divnou loď?")
    assert lines["v-restartovat"] == ("font_big", 'Ta malá rybka se v širém moři ztratí. Řekni "ahoj" v C:\\WINDOWS.')
    assert lines["let-x-papousek"][0] == "font_parrot"
    assert len(lines) == 4


def test_build_fillets_keeps_heroes_with_transcripts_and_reruns(tmp_path):
    game = make_game(tmp_path / "game")
    root = tmp_path / "corpus"
    counts = corpus_fillets.build_fillets(root, None, game=game)
    assert dict(counts) == {"fillets_cs_small": 1, "fillets_cs_big": 1, "fillets_nl_small": 1}
    wav, sr = sf.read(root / "fillets_cs_big" / "v-restartovat.wav")
    assert sr == 16000 and 1.0 < wav.size / sr < 1.6 and np.abs(wav).max() == pytest.approx(0.9, abs=1e-3)
    assert (root / "fillets_cs_small" / "let-m-divna.txt").read_text(encoding="utf-8") == "Co je to za divnou loď?\n"
    assert not (root / "fillets_cs_small" / "let-m-hm.wav").exists()  # 0.3 s grunt dropped
    before = (root / "fillets_cs_big" / "v-restartovat.wav").stat().st_mtime_ns
    assert corpus_fillets.build_fillets(root, None, game=game) == counts
    assert (root / "fillets_cs_big" / "v-restartovat.wav").stat().st_mtime_ns == before  # not rewritten


def test_build_fillets_without_the_game_names_the_packages(tmp_path):
    with pytest.raises(SystemExit, match="apt-get install fillets-ng-data"):
        corpus_fillets.build_fillets(tmp_path / "c", None, game=tmp_path / "nowhere")


def test_other_languages_read_the_game_script_and_fall_back_to_english(tmp_path):
    game = make_game(tmp_path / "game")
    czech = corpus_tts.sentences_for("cs", 10, game=game)
    # hero lines within the length window only: not the parrot, not "Hm."
    assert czech == ["Co je to za divnou loď?", 'Ta malá rybka se v širém moři ztratí. Řekni "ahoj" v C:\\WINDOWS.']
    english = corpus_tts.english_sentences()
    assert corpus_tts.sentences_for("fi", 3, game=game) == english[:3]
    assert corpus_tts.sentences_for("cs", 3, game=tmp_path / "none") == english[:3]


def test_no_voice_is_the_same_person_twice():
    ids = {v.voice_id for voices in corpus_tts.VOICES.values() for v in voices}
    assert "kal_diphone" not in ids and "cmu_us_slt_arctic_hts" not in ids  # = flite kal16 / slt
    folders = [v.folder for voices in corpus_tts.VOICES.values() for v in voices]
    assert len(folders) == len(set(folders))


def test_build_synthetic_writes_parallel_sentences_and_missing_transcripts(tmp_path, monkeypatch):
    calls = []

    def fake_synth(voice, text, out):
        calls.append((voice.voice_id, text))
        sf.write(out, voiced_signal(1.2, sr=22050), 22050)

    monkeypatch.setitem(corpus_tts.SYNTHESISERS, "flite", fake_synth)
    counts = corpus_tts.build_synthetic("flite", tmp_path, max_per=2)
    assert set(counts.values()) == {2} and len(counts) == 4
    texts = {f.parent.name: f.read_text(encoding="utf-8") for f in tmp_path.glob("*/s002.txt")}
    assert len(set(texts.values())) == 1  # every voice says the same second sentence
    (tmp_path / "flite_awb" / "s001.txt").unlink()
    calls.clear()
    corpus_tts.build_synthetic("flite", tmp_path, max_per=2)
    assert calls == [] and (tmp_path / "flite_awb" / "s001.txt").exists()


def test_warp_envelope_moves_a_formant_peak():
    bins = np.arange(513)
    envelope = np.exp(-((bins - 100) / 5.0) ** 2)[None, :].repeat(3, axis=0)
    assert np.allclose(corpus_augment.warp_envelope(envelope, 1.0), envelope)
    assert int(np.argmax(corpus_augment.warp_envelope(envelope, 1.2)[0])) == 120
    assert int(np.argmax(corpus_augment.warp_envelope(envelope, 0.9)[0])) == 90


def test_shift_voice_scales_f0():
    pyworld = pytest.importorskip("pyworld")
    wav = voiced_signal(1.5, f0=140.0)
    shifted = corpus_augment.shift_voice(wav, 16000, corpus_augment.Shift(pitch=1.4, formant=1.1))
    assert abs(shifted.size - wav.size) < 200

    def median_f0(x):
        f0, _ = pyworld.dio(x.astype(np.float64), 16000)
        return float(np.median(f0[f0 > 0]))

    assert median_f0(shifted) / median_f0(wav) == pytest.approx(1.4, rel=0.05)


def test_build_augmented_skips_excluded_voices_and_copies_transcripts(tmp_path):
    pytest.importorskip("pyworld")
    for speaker in ("train_a", "held_b"):
        (tmp_path / speaker).mkdir()
        sf.write(tmp_path / speaker / "u1.wav", voiced_signal(1.0), 16000)
        (tmp_path / speaker / "u1.txt").write_text("hello there\n", encoding="utf-8")
    counts = corpus_augment.build_augmented(tmp_path, per_voice=2, exclude={"held_b"})
    assert sorted(counts) == ["aug_train_a_p078_f090", "aug_train_a_p140_f112"]
    assert (tmp_path / "aug_train_a_p140_f112" / "u1.txt").read_text(encoding="utf-8") == "hello there\n"
    # augmented folders are never augmented again
    assert sorted(corpus_augment.build_augmented(tmp_path, per_voice=2, exclude={"held_b"})) == sorted(counts)


def test_install_check_reports_what_is_missing(monkeypatch):
    monkeypatch.setitem(corpus_install.REQUIREMENTS, "fake", corpus_install.Needs(pip=["surely-not-installed-pkg==1.0", "numpy"]))
    assert corpus_install.pip_missing(["surely-not-installed-pkg==1.0", "numpy"]) == ["surely-not-installed-pkg==1.0"]
    with pytest.raises(SystemExit, match=r"pip install -q surely-not-installed-pkg==1.0"):
        corpus_install.ensure(["fake"], install=False)
    assert corpus_install.install_commands(corpus_install.Needs()) == []


def test_every_source_has_requirements_and_the_cli_rejects_unknown_ones(capsys):
    assert set(build_corpus.DEFAULT_SOURCES.split(",")) <= set(corpus_install.REQUIREMENTS)
    with pytest.raises(SystemExit):
        build_corpus.main(["--root", "/tmp/unused", "--sources", "fotaq,nonsense", "--no-install"])
    assert "unknown sources: ['nonsense']" in capsys.readouterr().err


def test_build_augmented_in_two_workers_writes_what_one_does_and_caps_utterances(tmp_path, monkeypatch):
    pytest.importorskip("pyworld")
    monkeypatch.syspath_prepend(str(LOCAL))  # the workers import corpus_augment as run.sh's python does: from local/
    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        (root / "voice").mkdir(parents=True)
        for i in range(3):
            sf.write(root / "voice" / f"u{i}.wav", voiced_signal(0.6, f0=120.0 + 20 * i), 16000)
    corpus_augment.build_augmented(one, per_voice=2, exclude=set(), max_per=2, jobs=1)
    counts = corpus_augment.build_augmented(two, per_voice=2, exclude=set(), max_per=2, jobs=2)
    assert dict(counts) == {"aug_voice_p140_f112": 2, "aug_voice_p078_f090": 2}
    for folder in counts:
        names = sorted(p.name for p in (two / folder).iterdir())
        assert names == ["u0.wav", "u1.wav"]  # the cap keeps the first two utterances
        assert all((one / folder / n).read_bytes() == (two / folder / n).read_bytes() for n in names)


def test_ablation_table_reads_the_report_and_the_last_validation(tmp_path):
    table = load_script("ablation_table")
    run, report = tmp_path / "run", tmp_path / "eval"
    run.mkdir()
    report.mkdir()
    log = [{"step": 100, "split": "train", "steps_per_s": 2.0}, {"step": 200, "split": "train", "steps_per_s": 1.0},
           {"step": 200, "split": "valid", "recon": 0.35, "adv_bal_acc": 0.03, "adv_chance": 0.025, "perplexity": 170.2}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    summary = {"converted": {"success_rate": 0.57, "sim_target": 0.553, "sim_source": 0.528, "cer": 0.543,
                             "dnsmos_ovrl": 1.52, "rtf": 0.079}, "source": {"cer": 0.099}}
    (report / "results.json").write_text(json.dumps({"summary": summary}))
    cells = table.row("w/d", run, report)
    # no train_s in this (older) log: 100 steps at 2/s + 100 at 1/s = 150 s ≈ 2.5 min; no bench: evaluate's RTF
    assert cells == ["w/d", "200", "≈2", "57%", "0.553", "0.528", "0.543 (0.099)", "1.52", "≈0.079", "0.350",
                     "0.030 (0.025)", "170"]
    assert table.row("missing", tmp_path / "none", tmp_path / "none")[1:4] == ["–", "–", "–"]

    # resumed under the newer code: train_s counts from the resume, added to the estimate before it (≈)
    log[1]["train_s"] = 1260.0
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    assert table.row("w/d", run, report)[2] == "≈22"  # 100 s estimated + 1260 s logged
    # a log with train_s from the start gives the exact minutes; bench_convert.json the idle RTF of the default vocoder
    log[0]["train_s"] = 50.0
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (report / "bench_convert.json").write_text(json.dumps({"default_vocoder": "vocos",
                                                           "rtf": {"griffinlim": 0.0424, "vocos": 0.04641}}))
    cells = table.row("w/d", run, report)
    assert (cells[2], cells[8]) == ("21", "0.0464")


STUB_VCONV = '''
import json, sys
from pathlib import Path
args = sys.argv[1:]
with open(sys.argv[0] + ".calls", "a") as calls:
    calls.write(" ".join(args) + "\\n")
if args[0] == "train":
    run = Path(next(a.split("=", 1)[1] for a in args if a.startswith("train.run_dir=")))
    steps = int(next(a.split("=", 1)[1] for a in args if a.startswith("train.steps=")))
    until = int(args[args.index("--until") + 1]) if "--until" in args else steps
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    for name in (f"step_{until:08d}.pt", "latest.pt"):
        (run / "checkpoints" / name).write_text(str(until))
    if until == steps:
        (run / "model").mkdir(exist_ok=True)
        (run / "model" / "config.json").write_text("{}")
    with open(run / "log.jsonl", "a") as log:
        log.write(json.dumps({"step": until, "split": "train", "train_s": 120.0}) + "\\n")
elif args[:2] == ["bundle", "from-checkpoint"]:
    out = Path(args[args.index("-o") + 1])
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"from": Path(args[2]).read_text()}))
elif args[:2] == ["bundle", "attach-vocoder"]:
    (Path(args[2]) / "vocoder.json").write_text("{}")
elif args[0] == "evaluate":
    out = Path(args[args.index("-o") + 1])
    out.mkdir(parents=True)
    summary = {"converted": {"success_rate": 0.5, "sim_target": 0.6, "sim_source": 0.5, "cer": 0.4}, "source": {"cer": 0.1}}
    (out / "results.json").write_text(json.dumps({"summary": summary}))
'''


def test_ablation_script_trains_evaluates_and_tables_each_row_once(tmp_path):
    import subprocess

    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    (exp / "features").mkdir()
    (exp / "data" / "train.jsonl").write_text("")
    stub = tmp_path / "vconv_stub.py"
    stub.write_text(STUB_VCONV)
    env = {"PATH": "/usr/bin:/bin", "EXP": str(exp), "STEPS": "30", "PYTHON": sys.executable, "VCONV": f"{sys.executable} {stub}",
           "ROWS": "mel_mel:small whisper_mel_lr:whisper_mel:train.lr=0.001,train.steps=5"}
    script = LOCAL.parent / "ablation.sh"
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    calls = Path(f"{stub}.calls").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["train", "bundle", "evaluate"] * 2
    assert "train.steps=30" in calls[0] and "train.bf16=false" in calls[0] and "conf/small.yaml" in calls[0]
    assert calls[2].endswith("--target-match meanstd")  # one evaluation gives the own-output and the matched rows
    assert "train.lr=0.001 train.steps=5" in calls[3]
    assert "| whisper_mel_lr | 30 | 2 | 50% | 0.600 | 0.500 | 0.400 (0.100) |" in first.stdout
    assert first.stdout.endswith((exp / "ablation" / "table.md").read_text())  # after the progress lines
    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and len(Path(f"{stub}.calls").read_text().splitlines()) == 6  # all rows were done
    missing = subprocess.run(["bash", str(script)], env={**env, "EXP": str(tmp_path / "none")}, capture_output=True, text=True)
    assert missing.returncode == 1 and "run run.sh --stop-stage 2 first" in missing.stderr


def test_long_run_forks_a_row_trains_in_slices_and_judges_each(tmp_path):
    import subprocess

    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    row = exp / "ablation" / "whisper_mel" / "train"
    (row / "checkpoints").mkdir(parents=True)
    (row / "config.yaml").write_text("train: {}\n")
    (row / "log.jsonl").write_text(json.dumps({"step": 30, "split": "train"}) + "\n")
    (row / "checkpoints" / "step_00000030.pt").write_text("30")
    stub = tmp_path / "vconv_stub.py"
    stub.write_text(STUB_VCONV)
    env = {"PATH": "/usr/bin:/bin", "EXP": str(exp), "PYTHON": sys.executable, "VCONV": f"{sys.executable} {stub}",
           "FORK_STEP": "30", "LONG_STEPS": "90", "JUDGE_AT": "60 90"}
    script = LOCAL.parent / "long_run.sh"
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    calls = Path(f"{stub}.calls").read_text().splitlines()
    assert [" ".join(c.split()[:2]) for c in calls] == [
        "train -c", "bundle from-checkpoint", "bundle attach-vocoder", "evaluate --model",
        "train -c", "bundle attach-vocoder", "evaluate --model"]
    assert "train.steps=90" in calls[0] and "--resume --until 60" in calls[0] and "--until 90" in calls[4]
    long = exp / "long" / "whisper_mel"
    assert (long / "train" / "log.jsonl").read_text().startswith('{"step": 30')  # the row's log travels with the fork
    assert json.loads((long / "model_60" / "config.json").read_text()) == {"from": "60"}  # step 60's own checkpoint
    assert (long / "eval_60" / "results.json").is_file() and (long / "eval_90" / "results.json").is_file()
    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and len(Path(f"{stub}.calls").read_text().splitlines()) == 7  # nothing left to do
    for bad_env, reason in (({"JUDGE_AT": "20"}, "above FORK_STEP"), ({"EXP": str(tmp_path / "none")}, "train the row first")):
        bad = subprocess.run(["bash", str(script)], env={**env, **bad_env}, capture_output=True, text=True)
        assert bad.returncode == 1 and reason in bad.stderr, bad.stderr
    # a variant (e.g. with a loss added) forks another row's checkpoint under its own name
    variant = {**env, "ROW": "whisper_mel_gan:whisper_mel:train.mel_gan_weight=0.1", "FORK_FROM": "whisper_mel", "JUDGE_AT": "90"}
    forked = subprocess.run(["bash", str(script)], env=variant, capture_output=True, text=True)
    assert forked.returncode == 0, forked.stderr
    assert (exp / "long" / "whisper_mel_gan" / "train" / "log.jsonl").read_text().startswith('{"step": 30')
    assert "train.mel_gan_weight=0.1" in Path(f"{stub}.calls").read_text().splitlines()[7]


def test_ablation_table_gives_own_output_and_matched_rows(tmp_path):
    """A report with the unmatched row gives two table rows per run (own output, matched); an older one, one."""
    table = load_script("ablation_table")
    summary = {"converted": {"success_rate": 0.9, "sim_target": 0.70, "sim_source": 0.5, "cer": 0.2, "rtf": 0.02},
               "unmatched": {"success_rate": 0.6, "sim_target": 0.55, "sim_source": 0.52, "cer": 0.19},
               "source": {"cer": 0.1}}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(json.dumps({"summary": summary}))
    own, matched = table.rows("ref", tmp_path / "run", tmp_path / "eval")
    assert own[0] == "ref, own output" and own[3:6] == ["60%", "0.550", "0.520"] and own[6] == "0.190 (0.100)"
    assert matched[0] == "ref, matched" and matched[3:5] == ["90%", "0.700"]
    assert own[8] == matched[8] == "≈0.020"  # one conversion, timed once
    del summary["unmatched"]
    (tmp_path / "eval" / "results.json").write_text(json.dumps({"summary": summary}))
    assert [r[0] for r in table.rows("old", tmp_path / "run", tmp_path / "eval")] == ["old"]


def test_bass_index_offsets_and_packed_speech(monkeypatch):
    """sky.dnr entries: a 24-bit offset with bit 23 set is shifted left by 4; only RNC-packed speech decodes."""
    corpus_bass = sys.modules["corpus_bass"]
    import struct

    def entry(number: int, offset: int, flags: int) -> bytes:
        return struct.pack("<H", number) + offset.to_bytes(3, "little") + flags.to_bytes(3, "little")

    dnr = struct.pack("<I", 3) + entry(50001, 0x000100, 0x000040) + entry(50002, 0x800010, 0x000020) + entry(7, 5, 0x800010)
    assert corpus_bass.read_index(dnr) == [(50001, 0x100, 0x40), (50002, 0x100, 0x20), (7, 5, 0x800010)]
    with pytest.raises(ValueError, match="3 entries announced"):
        corpus_bass.read_index(dnr[:-4])
    header = struct.pack("<11H", 0x81, *range(10))
    fake = type("propack", (), {"unpack": staticmethod(lambda data: bytes([128, 255, 0]))})
    monkeypatch.setitem(sys.modules, "propack", fake)
    wav = corpus_bass.decode_speech(header + b"RNC\x01...", flags=0x40)
    np.testing.assert_allclose(wav, [0.0, 127 / 128, -1.0])
    assert corpus_bass.decode_speech(header + b"RNC\x01...", flags=0x800040) is None  # entry says: not packed
    assert corpus_bass.decode_speech(struct.pack("<11H", 0x01, *range(10)) + b"RNC\x01", flags=0x40) is None


def test_bass_clusters_split_voices_and_report_similarity():
    corpus_bass = sys.modules["corpus_bass"]
    rng = np.random.default_rng(0)
    voices = rng.standard_normal((3, 32))
    embeddings = np.concatenate([v + 0.15 * rng.standard_normal((20, 32)) for v in voices])
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = corpus_bass.cluster(embeddings)
    assert len(set(labels)) == 3 and all(len(set(labels[20 * k : 20 * (k + 1)])) == 1 for k in range(3))
    report = corpus_bass.similarity_report(list(labels), embeddings)
    assert all(within > 0.9 and nearest < 0.5 for within, nearest in report.values())


def test_fotaq_minor_actors_merge_same_voices_and_never_take_a_judged_voice():
    minor = sys.modules["corpus_fotaq_minor"]

    def unit(v):
        return v / np.linalg.norm(v)

    rng = np.random.default_rng(1)
    base = {name: rng.standard_normal(64) for name in ("judged", "trained", "new", "other")}
    near = {name: unit(base[name] + 0.05 * rng.standard_normal(64)) for name in base}  # the same actor, another character
    voices = {"61": unit(base["judged"]), "06": unit(base["trained"]), "62": near["judged"], "07": near["trained"],
              "20": unit(base["new"]), "21": near["new"], "58": unit(base["other"])}
    groups = ["20", "21", "58", "62", "07"]
    labels = minor.actors_of(np.stack([voices[g] for g in groups]))
    assert labels[0] == labels[1] and len(set(labels)) == 4  # 20 and 21 are one actor; the rest apart
    assert "judged fotaq_61" in minor.why_dropped(["62"], voices, ["61"], ["06"], 300.0)
    assert "training speaker fotaq_06" in minor.why_dropped(["07"], voices, ["61"], ["06"], 300.0)
    assert "30 s" in minor.why_dropped(["58"], voices, ["61"], ["06"], 30.0)
    assert minor.why_dropped(["20", "21"], voices, ["61"], ["06"], 300.0) is None


def test_the_bass_labellers_d_vector_features_match_librosa():
    import librosa

    dvector = load_script("dvector")
    wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    power = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40,
                                           window="hamming", center=False, power=2.0)
    ours = dvector.dvector_log_mel(wav)
    assert ours.shape == (1 + (16000 - 512) // 160, 40)
    np.testing.assert_allclose(ours, np.log10(power + 1e-10).T, atol=1e-4)
    assert dvector.dvector_log_mel(wav[:300]).shape == (0, 40)  # shorter than one FFT frame: no frames


def test_the_recipe_that_makes_the_shipped_model_names_its_config():
    """finetune.sh's pitch row (conf/whisper_mel_pitch.yaml with its fixed overrides) is the shipped bundle's model and
    features: the recipe says what ships, and a change to either config shows here."""
    from vconv.bundles import read_bundle_info
    from vconv.config import load_run_config

    shipped = read_bundle_info(LOCAL.parents[2] / "pretrained" / "vconv-voices-small")
    features, model, _ = load_run_config(str(LOCAL.parent / "conf" / "whisper_mel_pitch.yaml"), [
        "train.train_manifest=t.jsonl", "train.run_dir=r", "model.adversary.kind=none", "model.n_speakers=41"])
    assert model == shipped.model_config and features == shipped.feature_config
    assert "whisper_mel_pitch" in (LOCAL.parent / "finetune.sh").read_text()


@pytest.mark.slow
def test_whisper_rooms_distils_resumes_and_writes_a_loadable_bundle(tmp_path, monkeypatch):
    """recipes/voices/local/whisper_rooms.py: the room versions are the clean audio in a room, training moves the
    student's room distance below the frozen encoder's on the same utterance, a rerun resumes from the checkpoint, and
    the bundle it writes carries the student's weights, loads and converts."""
    import torch

    import vconv

    whisper_rooms = load_script("whisper_rooms")
    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    lines = []
    for i in range(4):
        sf.write(exp / "data" / f"u{i}.wav", voiced_signal(2.5, f0=110.0 + 20 * i, seed=i), 16000)
        lines.append(json.dumps({"id": f"spk/u{i}", "path": f"u{i}.wav", "speaker": "spk", "duration": 2.5}))
    (exp / "data" / "train.jsonl").write_text("\n".join(lines) + "\n")
    work = exp / "whisper_rooms"
    whisper_rooms.room_versions(exp, work / "audio", count=4, seed=1)
    pairs = whisper_rooms.read_pairs(sorted((work / "audio").glob("*.npz")))
    assert len(pairs) == 4 and all(c.shape == r.shape and not np.allclose(c, r, atol=1e-3) for c, r in pairs)
    d = whisper_rooms.Distillation("vconv-voices-small")
    before = whisper_rooms.validate(d, pairs[:1])
    assert before["room"] == pytest.approx(before["room_before"]) and before["clean"] == 0.0
    monkeypatch.setattr(whisper_rooms, "VALID_FILES", 1)
    monkeypatch.setattr(whisper_rooms, "WARMUP_STEPS", 1)
    whisper_rooms.train(d, work, steps=2, lr=1e-4)
    whisper_rooms.train(d, work, steps=3, lr=1e-4)  # resumes after step 2
    log = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [2, 3]
    assert log[-1]["valid"]["room"] < log[-1]["valid"]["room_before"]
    assert torch.load(work / "student.pt", weights_only=True)["step"] == 3
    whisper_rooms.write_bundle(Path(d.converter.info.path), d.student, tmp_path / "bundle")
    taught = vconv.load(str(tmp_path / "bundle"))
    weight = taught.frontend.content.encoder.blocks[0].qkv.weight
    assert torch.equal(weight, d.student.blocks[0].qkv.weight.detach().half().float())
    assert not torch.equal(weight, d.teacher.blocks[0].qkv.weight)
    out = taught.convert(voiced_signal(1.0), sr=16000, refs=[voiced_signal(1.5, f0=200.0)])
    assert out.size > 0 and np.isfinite(out).all()


def test_trim_silence_keeps_the_speech_and_a_margin():
    from tests.conftest import voiced_signal

    wav = voiced_signal(1.0) * 0.1
    padded = np.concatenate([np.zeros(8000, np.float32), wav, np.zeros(8000, np.float32)])
    trimmed = sys.modules["corpus_common"].trim_silence(padded, 16000)
    assert wav.size <= trimmed.size < wav.size + 0.2 * 16000
