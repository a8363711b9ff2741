"""Bad inputs and misuses, as a new user would try them, across every command and the Python API.

Each row of :data:`CLI_CASES` runs one command in-process and asserts: its exit code (1 an error the user
can act on, 2 a usage error, 3 some files of a batch failed); exactly one non-empty stderr line, starting
with ``error:``, naming the offending file or option and the reason; no traceback anywhere; every file
that existed before the call byte-identical after it (the whole work folder is hashed), and nothing new
written when the call failed outright. Rows marked ``before_load`` must fail before a model is loaded.
:data:`API_CASES` do the same for ``vconv.load`` and ``VoiceConverter`` (a ``VconvError`` with the reason).

The test file imports only the public surface (the CLI app, ``vconv``, ``VconvError``), so it runs
against older code too, to see which rows used to fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import vconv
from tests.conftest import voiced_signal
from vconv.cli import app
from vconv.errors import VconvError

SR = 16000


# ----------------------------------------------------------------------------------------- the world


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _manifest_line(utt_id, path: str, **extra) -> str:
    return json.dumps({"id": utt_id, "path": path, "speaker": "spk", "duration": 1.0, **extra}) + "\n"


def _bundle_variant(tiny: Path, dest: Path, change: Callable[[dict], None]) -> None:
    shutil.copytree(tiny, dest)
    config = json.loads((dest / "config.json").read_text())
    change(config)
    (dest / "config.json").write_text(json.dumps(config))


def build_world(root: Path, tiny: Path) -> None:
    """Every file the cases read: good and broken audio, manifests, configs, bundles."""
    sf.write(root / "src.wav", voiced_signal(1.0, seed=0), SR, subtype="PCM_16")
    sf.write(root / "tgt.wav", voiced_signal(1.0, f0=220.0, seed=1), SR, subtype="PCM_16")
    (root / "same_stem").mkdir()
    sf.write(root / "same_stem" / "g.wav", voiced_signal(1.0, seed=2), SR)
    sf.write(root / "same_stem" / "g.flac", voiced_signal(1.0, seed=3), SR)
    (root / "mixed").mkdir()
    sf.write(root / "mixed" / "a.wav", voiced_signal(1.0, seed=4), SR)
    (root / "mixed" / "broken.wav").write_bytes(b"RIFF but not really audio")
    full = (root / "src.wav").read_bytes()
    (root / "trunc.wav").write_bytes(full[: len(full) // 2])
    sf.write(root / "whole.flac", voiced_signal(1.0, seed=5), SR)
    flac = (root / "whole.flac").read_bytes()
    (root / "trunc.flac").write_bytes(flac[: len(flac) // 2])
    (root / "whole.flac").unlink()
    wav = voiced_signal(1.0, seed=6)
    sf.write(root / "cancel.wav", np.stack([wav, -wav], axis=1), SR, subtype="FLOAT")
    sf.write(root / "silent.wav", np.zeros(SR, np.float32), SR)
    (root / "notes.wav").write_text("hello, not audio")
    (root / "a_file").write_text("a file, not a folder")
    (root / "emb_input.npy").write_bytes(b"\x93NUMPY not audio")
    os.symlink(root / "src.wav", root / "link.wav")
    # manifests
    good = _manifest_line("spk/a", str(root / "src.wav")) + _manifest_line("spk/b", str(root / "tgt.wav"))
    _write_text(root / "m" / "good.jsonl", good)
    _write_text(root / "m" / "escape.jsonl", _manifest_line("../../escaped", str(root / "src.wav")))
    _write_text(root / "m" / "absolute.jsonl", _manifest_line(str(root / "bundle" / "model"), str(root / "src.wav")))
    _write_text(root / "m" / "backslash.jsonl", _manifest_line("spk\\..\\..\\x", str(root / "src.wav")))
    _write_text(root / "m" / "duplicate.jsonl", _manifest_line("spk/a", str(root / "src.wav")) * 2)
    _write_text(root / "m" / "int_id.jsonl", _manifest_line(7, str(root / "src.wav")))
    _write_text(root / "m" / "bad_duration.jsonl", _manifest_line("spk/a", str(root / "src.wav"), duration="long"))
    _write_text(root / "m" / "not_json.jsonl", good + "{this is not json\n")
    _write_text(root / "m" / "skips.jsonl", good + _manifest_line("spk/quiet", str(root / "silent.wav")))
    latin1 = '{"id": "spk/café", "path": "x.wav", "speaker": "spk", "duration": 1.0}\n'.encode("latin-1")
    (root / "m" / "latin1.jsonl").write_bytes(good.encode() + latin1)
    # training configs
    _write_text(root / "conf" / "list.yaml", "- 1\n- 2\n")
    _write_text(root / "conf" / "model_list.yaml", "base: debug\nmodel: [1, 2]\n")
    # bundles: one good, three broken in their own ways
    shutil.copytree(tiny, root / "bundle")
    _bundle_variant(tiny, root / "bad_bundles" / "missing_key", lambda c: c.pop("model_config"))
    _bundle_variant(tiny, root / "bad_bundles" / "huge", lambda c: c["model_config"].update(channels=65536))
    _bundle_variant(tiny, root / "bad_bundles" / "bad_stats", lambda c: c["feature_stats"].update(mean=[0.0] * 3))
    (root / "bad_bundles" / "garbage").mkdir()
    (root / "bad_bundles" / "garbage" / "config.json").write_bytes(b"\xff\xfe{not json")


@pytest.fixture(scope="session")
def world_template(tmp_path_factory, tiny_bundle) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs_template") / "w"
    root.mkdir()
    build_world(root, tiny_bundle)
    return root


@pytest.fixture
def world(world_template, tmp_path) -> Path:
    root = tmp_path / "w"
    shutil.copytree(world_template, root, symlinks=True)
    os.unlink(root / "link.wav")  # re-point the symlink at this copy's source
    os.symlink(root / "src.wav", root / "link.wav")
    add_odd_names(root)
    return root


def add_odd_names(root: Path) -> None:
    """Special files and names that are not plain text (made per test: copying a FIFO would block)."""
    os.mkfifo(root / "fifo.wav")
    (root / "bad\nname.wav").write_text("a newline in the name, and not audio")
    (root / os.fsdecode(b"bad\xffname.wav")).write_text("a byte that is not UTF-8 in the name, and not audio")
    odd = root / "odd"
    odd.mkdir()
    for name in ("a.wav", "new\nline.wav", os.fsdecode(b"latin\xe9.wav")):
        shutil.copy(root / "src.wav", odd / name)
    os.mkfifo(odd / "pipe.wav")


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` (symlinks by their target path), by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------------------------------ CLI cases


@dataclass
class Case:
    id: str
    args: Callable[[Path], list]  # the command line, given the world folder
    code: int  # expected exit code
    expect: tuple[str, ...]  # each must be in the one stderr line (the file or option, and the reason)
    before_load: bool = True  # must fail before a model is loaded


T = "--target"


def _train(*overrides: str) -> Callable[[Path], list]:
    return lambda w: ["train", "-c", "debug", f"train.train_manifest={w / 'm' / 'good.jsonl'}", f"train.run_dir={w / 'run'}",
                      "--no-progress", *overrides]


def _vtrain(*overrides: str) -> Callable[[Path], list]:
    return lambda w: ["train-vocoder", "-c", "vocoder_debug", f"train.train_manifest={w / 'm' / 'good.jsonl'}",
                      f"train.run_dir={w / 'vrun'}", "--no-progress", *overrides]


def _convert(src: str, out: str, *extra: str) -> Callable[[Path], list]:
    return lambda w: ["convert", w / src, T, w / "tgt.wav", "-o", w / out if not out.startswith("/") else out,
                      "-m", w / "bundle", "--no-progress", *extra]


def _extract(manifest: str, *extra: str) -> Callable[[Path], list]:
    return lambda w: ["extract", w / "m" / manifest, "-o", w / "feats", "--no-progress", *extra]


CLI_CASES = [
    # 1. data loss and writes outside where the user pointed
    Case("convert-folder-onto-itself", lambda w: ["convert", w / "mixed", T, w / "tgt.wav", "-o", w / "mixed", "-m", w / "bundle"],
         1, ("mixed", "output folder is the source folder")),
    Case("convert-folder-into-itself", lambda w: ["convert", w / "mixed", T, w / "tgt.wav", "-o", w / "mixed" / "out", "-m", w / "bundle"],
         1, ("mixed/out", "inside the source folder")),
    Case("convert-same-stem-collide", lambda w: ["convert", w / "same_stem", T, w / "tgt.wav", "-o", w / "out", "-m", w / "bundle"],
         1, ("g.flac", "g.wav", "would both be written to")),
    Case("convert-over-target-reference", _convert("src.wav", "tgt.wav", "--force"), 1, ("tgt.wav", "would overwrite the target reference")),
    Case("convert-over-source", _convert("src.wav", "src.wav", "--force"), 1, ("src.wav", "would overwrite the source")),
    Case("convert-over-source-via-symlink", _convert("src.wav", "link.wav", "--force"), 1, ("link.wav", "would overwrite the source")),
    Case("convert-existing-output-without-force", _convert("src.wav", "tgt.wav"), 1, ("tgt.wav",)),
    Case("extract-id-with-dotdot", _extract("escape.jsonl"), 1, ("escape.jsonl:1", "../../escaped", "'..'")),
    Case("extract-absolute-id", _extract("absolute.jsonl"), 1, ("absolute.jsonl:1", "absolute path")),
    Case("extract-backslash-id", _extract("backslash.jsonl"), 1, ("backslash.jsonl:1", "backslash")),
    Case("extract-duplicate-ids", _extract("duplicate.jsonl"), 1, ("duplicate.jsonl:2", "'spk/a' repeats line 1")),
    Case("embed-output-over-an-input", lambda w: ["embed", w / "src.wav", w / "emb_input.npy", "-o", w / "emb_input.npy", "--force",
                                                   "-m", w / "bundle"], 1, ("emb_input.npy", "would overwrite the input")),
    Case("package-name-escapes", lambda w: ["bundle", "package", w / "bundle", "-o", w / "ship", "--name", "../../escaped"],
         1, ("--name", "one folder name")),
    # 2. silently wrong results
    Case("info-truncated-wav", lambda w: ["info", w / "trunc.wav"], 1, ("trunc.wav", "truncated (header says 1.00 s, file holds 0.50 s)")),
    Case("convert-truncated-wav", _convert("trunc.wav", "out.wav"), 1, ("trunc.wav", "truncated")),
    Case("info-truncated-flac", lambda w: ["info", w / "trunc.flac"], 1, ("trunc.flac", "truncated or corrupt")),
    Case("info-channels-cancel", lambda w: ["info", w / "cancel.wav"], 1, ("cancel.wav", "channels cancel when mixed to mono")),
    Case("convert-channels-cancel", _convert("cancel.wav", "out.wav"), 1, ("cancel.wav", "channels cancel"), before_load=False),
    Case("convert-sample-rate-zero", _convert("src.wav", "out.wav", "--sample-rate", "0"), 1, ("--sample-rate", "0 Hz")),
    # 3. tracebacks where a one-line error belongs
    Case("convert-output-under-proc", _convert("src.wav", "/proc/vconv-out.wav"), 1, ("/proc/vconv-out.wav", "system folder")),
    Case("convert-output-below-a-file", _convert("src.wav", "a_file/out.wav"), 1, ("a_file", "is a file")),
    Case("convert-folder-to-wav-file", lambda w: ["convert", w / "mixed", T, w / "tgt.wav", "-o", w / "out.wav", "-m", w / "bundle"],
         1, ("out.wav", "output folder")),
    Case("convert-into-its-own-folder", _convert("same_stem/g.wav", "mixed/../same_stem/", "--force"), 1, ("g.wav", "would overwrite the source")),
    Case("convert-unsupported-extension", _convert("src.wav", "out.mp3"), 1, ("out.mp3", "unsupported output extension")),
    Case("convert-negative-sample-rate", _convert("src.wav", "out.wav", "--sample-rate", "-16000"), 1, ("--sample-rate", "outside")),
    Case("convert-sample-rate-too-high", _convert("src.wav", "out.wav", "--sample-rate", "10000000"), 1, ("--sample-rate", "outside")),
    Case("convert-missing-source", _convert("nope.wav", "out.wav"), 1, ("nope.wav", "file not found")),
    Case("convert-not-audio-source", _convert("notes.wav", "out.wav"), 1, ("notes.wav", "not a readable audio file")),
    Case("convert-unknown-vocoder", _convert("src.wav", "out.wav", "--vocoder", "hifigan"), 1, ("--vocoder", "unknown")),
    Case("convert-unknown-model", lambda w: ["convert", w / "src.wav", T, w / "tgt.wav", "-o", w / "o.wav", "-m", "no-such-model"],
         1, ("no-such-model", "not found")),
    Case("bundle-config-missing-key", lambda w: ["convert", w / "src.wav", T, w / "tgt.wav", "-o", w / "o.wav",
                                                  "-m", w / "bad_bundles" / "missing_key"], 1, ("config.json", "missing key 'model_config'")),
    Case("bundle-config-absurd-size", lambda w: ["convert", w / "src.wav", T, w / "tgt.wav", "-o", w / "o.wav",
                                                  "-m", w / "bad_bundles" / "huge"], 1, ("config.json", "model.channels: expected 1..4096, got 65536")),
    Case("bundle-config-bad-stats", lambda w: ["embed", w / "src.wav", "--similarity", "-m", w / "bad_bundles" / "bad_stats"],
         1, ("config.json", "mean has 3 values")),
    Case("bundle-config-not-json", lambda w: ["bundle", "attach-vocoder", w / "bad_bundles" / "garbage", w / "bundle"],
         1, ("config.json", "config")),
    Case("train-steps-fraction", _train("train.steps=1.5"), 1, ("train.steps", "expected a whole number, got 1.5")),
    Case("train-steps-list", _train("train.steps=[1, 2]"), 1, ("train.steps", "expected a whole number")),
    Case("train-steps-negative", _train("train.steps=-5"), 1, ("train.steps", "expected 1..")),
    Case("train-batch-size-zero", _train("train.batch_size=0"), 1, ("train.batch_size", "expected 1..4096, got 0")),
    Case("train-channels-zero", _train("model.channels=0"), 1, ("model.channels", "expected 1..4096, got 0")),
    Case("train-bf16-maybe", _train("train.bf16=maybe"), 1, ("train.bf16", "expected true or false, got 'maybe'")),
    Case("train-lr-nan", _train("train.lr=.nan"), 1, ("train.lr", "expected a number")),
    Case("train-sample-rate-zero", _train("features.sample_rate=0"), 1, ("features.sample_rate", "expected 1000..768000")),
    Case("train-downsample-bool", _train("model.downsample=[1, true, 1]"), 1, ("model.downsample", "whole number")),
    Case("train-config-is-a-list", lambda w: ["train", "-c", w / "conf" / "list.yaml"], 1, ("list.yaml", "mapping")),
    Case("train-section-is-a-list", lambda w: ["train", "-c", w / "conf" / "model_list.yaml"], 1, ("model", "expected a mapping")),
    Case("train-model-too-big", _train("model.channels=4096", "model.decoder_blocks=64", "model.content_blocks=64",
                                       f"model.downsample=[{', '.join(['1'] * 64)}]"), 1, ("model config", "M parameters is above")),
    Case("train-run-dir-is-a-file", lambda w: ["train", "-c", "debug", f"train.train_manifest={w / 'm' / 'good.jsonl'}",
                                               f"train.run_dir={w / 'a_file'}"], 1, ("a_file", "existing file, expected a folder")),
    Case("train-vocoder-dim-zero", _vtrain("vocoder.dim=0"), 1, ("vocoder.dim", "expected 1..4096")),
    Case("train-vocoder-huge-discriminator", _vtrain("train.mpd_channels=100000"), 1, ("train.mpd_channels", "expected 1..256")),
    Case("extract-not-utf8-manifest", _extract("latin1.jsonl"), 1, ("latin1.jsonl:3", "not UTF-8")),
    Case("extract-not-json-line", _extract("not_json.jsonl"), 1, ("not_json.jsonl:3", "not a JSON line")),
    Case("extract-duration-not-a-number", _extract("bad_duration.jsonl"), 1, ("bad_duration.jsonl:1", "duration")),
    Case("extract-id-not-a-string", _extract("int_id.jsonl"), 1, ("int_id.jsonl:1", "id must be a string")),
    Case("extract-output-is-a-file", lambda w: ["extract", w / "m" / "good.jsonl", "-o", w / "a_file"], 1, ("a_file", "expected a folder")),
    Case("prepare-output-is-a-file", lambda w: ["prepare", w / "same_stem", "-o", w / "a_file"], 1, ("a_file", "expected a folder")),
    Case("frontend-prepare-under-sys", lambda w: ["frontend", "prepare", "-o", "/sys/vconv-frontends"], 1, ("/sys", "system folder")),
    Case("evaluate-not-utf8-manifest", lambda w: ["evaluate", "--manifest", w / "m" / "latin1.jsonl", "-o", w / "eval", "-m", w / "bundle"],
         1, ("latin1.jsonl:3", "not UTF-8")),
    Case("evaluate-protocol-not-utf8", lambda w: ["evaluate", "--protocol", w / "m" / "latin1.jsonl", "-o", w / "eval"],
         1, ("latin1.jsonl", "not UTF-8")),
    Case("package-held-out-not-utf8", lambda w: ["bundle", "package", w / "bundle", "-o", w / "ship", "--name", "x",
                                                 "--held-out", w / "m" / "latin1.jsonl"], 1, ("latin1.jsonl", "not UTF-8")),
    Case("extract-whisper-layer-out-of-range", _extract("good.jsonl", "--whisper-layers", "2,9"), 1, ("--whisper-layers", "1..4")),
    Case("evaluate-output-is-a-file", lambda w: ["evaluate", "--manifest", w / "m" / "good.jsonl", "-o", w / "a_file", "-m", w / "bundle"],
         1, ("a_file", "expected a folder")),
    Case("evaluate-zero-sources-per-pair", lambda w: ["evaluate", "--manifest", w / "m" / "good.jsonl", "-o", w / "eval",
                                                      "--sources-per-pair", "0"], 1, ("--sources-per-pair", "1 or more")),
    Case("evaluate-zero-target-refs", lambda w: ["evaluate", "--manifest", w / "m" / "good.jsonl", "-o", w / "eval",
                                                 "--target-refs", "0"], 1, ("--target-refs", "1 or more")),
    Case("embed-unsupported-output", lambda w: ["embed", w / "src.wav", "-o", w / "emb.txt", "-m", w / "bundle"],
         1, ("emb.txt", "unsupported embeddings output extension")),
    Case("embed-only-a-bad-file", lambda w: ["embed", w / "notes.wav", "--similarity", "-m", w / "bundle"], 1, ("notes.wav", "not a readable")),
    Case("info-missing-file", lambda w: ["info", w / "nope.flac"], 1, ("nope.flac", "file not found")),
    Case("info-a-folder", lambda w: ["info", w / "mixed"], 1, ("mixed", "is a directory")),
    Case("info-silent", lambda w: ["info", w / "silent.wav"], 1, ("silent.wav", "silent")),
    # 4. exit codes, streams: usage errors are 2, partial batches 3 (the bad file on stderr, the rest done)
    Case("usage-unknown-option", lambda w: ["convert", w / "src.wav", T, w / "tgt.wav", "-o", w / "o.wav", "--colour"], 2, ("--colour",)),
    Case("usage-missing-target", lambda w: ["convert", w / "src.wav", "-o", w / "o.wav"], 2, ("Missing option", "--target")),
    Case("usage-rate-not-a-number", _convert("src.wav", "out.wav", "--sample-rate", "fast"), 2, ("--sample-rate",)),
    Case("usage-unknown-command", lambda w: ["convertt", w / "src.wav"], 2, ("convertt",)),
    Case("partial-info", lambda w: ["info", w / "src.wav", w / "notes.wav"], 3, ("notes.wav", "not a readable audio file")),
    # 5. file-system oddities: special files refused before opening, names printed escaped on one line
    Case("convert-fifo-source", _convert("fifo.wav", "out.wav"), 1, ("fifo.wav", "is a FIFO, not a regular file")),
    Case("convert-fifo-target", lambda w: ["convert", w / "src.wav", T, w / "fifo.wav", "-o", w / "out.wav"], 1,
         ("fifo.wav", "is a FIFO")),
    Case("info-fifo", lambda w: ["info", w / "fifo.wav"], 1, ("fifo.wav", "is a FIFO")),
    Case("convert-newline-in-name", _convert("bad\nname.wav", "out.wav"), 1, ("bad\\nname.wav", "not a readable audio file")),
    Case("info-not-utf8-name", lambda w: ["info", w / os.fsdecode(b"bad\xffname.wav")], 1, ("bad\\xffname.wav", "not a readable")),
    Case("convert-name-too-long", _convert("src.wav", "n" * 250 + ".wav"), 1, ("output file name too long", "temporary name")),
    Case("partial-convert-odd-folder", lambda w: ["convert", w / "odd", T, w / "tgt.wav", "-o", w / "out", "-m", w / "bundle",
                                                  "--no-progress"], 3, ("pipe.wav", "is a FIFO"), before_load=False),
    Case("partial-extract", _extract("skips.jsonl"), 3, ("silent.wav", "silent")),
    Case("partial-convert-folder", lambda w: ["convert", w / "mixed", T, w / "tgt.wav", "-o", w / "out", "-m", w / "bundle", "--no-progress"],
         3, ("broken.wav", "not a readable audio file"), before_load=False),
    Case("partial-embed", lambda w: ["embed", w / "src.wav", w / "silent.wav", "--similarity", "-m", w / "bundle", "--no-progress"],
         3, ("silent.wav", "silent"), before_load=False),
]


@pytest.fixture
def no_model_load(monkeypatch):
    """Make loading a model fail the test: the cases marked ``before_load`` must be refused first."""
    import vconv.inference.converter as converter

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(converter, "load", refuse)


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_bad_input(case: Case, world: Path, request):
    if case.before_load:
        request.getfixturevalue("no_model_load")
    before = snapshot(world)
    result = CliRunner().invoke(app, [str(a) for a in case.args(world)])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in case.expect:
        assert text in lines[0], (text, lines[0])
    assert result.exit_code == case.code, result.output
    after = snapshot(world)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing that existed was changed
    if case.code in (1, 2):
        assert sorted(after) == sorted(before), sorted(set(after) - set(before))  # a refusal writes nothing


def test_the_table_is_large_and_covers_every_command():
    commands = {str(c.args(Path("/w"))[0]) for c in CLI_CASES}
    assert len(CLI_CASES) + len(API_CASES) >= 40
    assert {"convert", "embed", "info", "extract", "prepare", "train", "train-vocoder", "evaluate", "bundle", "frontend"} <= commands


# ------------------------------------------------------------------------------------------ API cases


@pytest.fixture(scope="module")
def converter(tiny_bundle):
    return vconv.load(tiny_bundle)


WAV = voiced_signal(1.0, seed=7)

API_CASES = [
    ("array-sr-zero", lambda vc, w: vc.convert(WAV, w / "tgt.wav", sr=0), ("sr", "0 Hz")),
    ("array-sr-one", lambda vc, w: vc.convert(WAV, w / "tgt.wav", sr=1), ("sr", "1 Hz")),
    ("array-sr-fraction", lambda vc, w: vc.convert(WAV, w / "tgt.wav", sr=16000.5), ("sr", "whole number")),
    ("array-sr-missing", lambda vc, w: vc.convert(WAV, w / "tgt.wav"), ("sample rate",)),
    ("array-bool", lambda vc, w: vc.convert(WAV > 0, w / "tgt.wav", sr=SR), ("bool samples are not audio",)),
    ("array-complex", lambda vc, w: vc.convert(WAV.astype(np.complex64), w / "tgt.wav", sr=SR), ("complex64",)),
    ("array-int64", lambda vc, w: vc.embed((WAV * 32767).astype(np.int64), sr=SR), ("int64",)),
    ("array-object", lambda vc, w: vc.convert(np.array([WAV, WAV[:5]], dtype=object), w / "tgt.wav", sr=SR), ("object",)),
    ("array-unscaled-float", lambda vc, w: vc.convert(WAV * 32767, w / "tgt.wav", sr=SR), ("far outside -1..1",)),
    ("array-channels-cancel", lambda vc, w: vc.convert(np.stack([WAV, -WAV], axis=1), w / "tgt.wav", sr=SR), ("channels cancel",)),
    ("array-nan", lambda vc, w: vc.convert(np.full(SR, np.nan, np.float32), w / "tgt.wav", sr=SR), ("NaN",)),
    ("ref-truncated", lambda vc, w: vc.convert(w / "src.wav", w / "trunc.wav"), ("trunc.wav", "truncated")),
    ("device-cuda-absent", lambda vc, w: vconv.load(w / "bundle", device="cuda:7"), ("cuda:7", "not available; available: cpu")),
    ("device-nonsense", lambda vc, w: vconv.load(w / "bundle", device="banana"), ("banana", "available: cpu")),
    ("load-config-missing-key", lambda vc, w: vconv.load(w / "bad_bundles" / "missing_key"), ("missing key 'model_config'",)),
    ("load-config-absurd", lambda vc, w: vconv.load(w / "bad_bundles" / "huge"), ("model.channels: expected 1..4096",)),
]


@pytest.mark.parametrize("call, expect", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input(call, expect, converter, world: Path):
    before = snapshot(world)
    with pytest.raises(VconvError) as info:
        call(converter, world)
    message = str(info.value)
    assert "\n" not in message
    for text in expect:
        assert text in message, (text, message)
    assert snapshot(world) == before


# ------------------------------------------------------------------------------ behaviour, not errors


def test_integer_pcm_arrays_are_scaled_like_the_float_array(converter, world):
    """int16 / int32 / uint8 PCM give the model the same input, and the same voice, as the float array they
    encode (they used to reach it unscaled: 32768 times too loud)."""
    ref = world / "tgt.wav"
    wanted = converter.prepare_audio(WAV, SR)
    pcm16 = (WAV * 32768).round().clip(-32768, 32767).astype(np.int16)
    pcm32 = (WAV.astype(np.float64) * 2**31).round().clip(-2**31, 2**31 - 1).astype(np.int32)
    pcm8 = (WAV * 128 + 128).round().clip(0, 255).astype(np.uint8)
    for pcm, step in ((pcm16, 2**-15), (pcm32, 2**-31), (pcm8, 2**-7)):
        np.testing.assert_allclose(converter.prepare_audio(pcm, SR), wanted, atol=step)
    np.testing.assert_allclose(converter.convert(pcm16, ref, sr=SR), converter.convert(WAV, ref, sr=SR), atol=1e-3)


def test_models_lists_every_bundle_and_marks_the_broken_ones(world, monkeypatch):
    monkeypatch.setenv("VCONV_MODELS", os.pathsep.join([str(world / "bad_bundles"), str(world)]))
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    for name, reason in (("missing_key", "missing key 'model_config'"), ("huge", "model.channels: expected 1..4096"),
                         ("bad_stats", "mean has 3 values"), ("garbage", "config")):
        assert "unusable: " in rows[name] and reason in rows[name], rows[name]
    assert "unusable" not in rows["bundle"] and "16000 Hz" in rows["bundle"]


def test_unwritable_output_folder_is_one_line(world, monkeypatch, no_model_load):
    """As root, os.access grants everything; the check is exercised by denying write access to one folder."""
    import vconv.paths

    locked = world / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(vconv.paths.os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    result = CliRunner().invoke(app, ["convert", str(world / "src.wav"), "-t", str(world / "tgt.wav"), "-o", str(locked / "sub" / "o.wav"),
                                      "-m", str(world / "bundle")])
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {locked / 'sub' / 'o.wav'}: cannot write in {locked} (permission denied)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_really_refused(world, no_model_load):
    locked = world / "ro"
    locked.mkdir(mode=0o555)
    result = CliRunner().invoke(app, ["convert", str(world / "src.wav"), "-t", str(world / "tgt.wav"), "-o", str(locked / "o.wav")])
    assert result.exit_code == 1 and "permission denied" in result.stderr


def test_long_files_are_inspected_in_blocks_and_never_sent_to_a_missing_command(tmp_path):
    """`vconv info` takes a 31-minute file; a whole-file load past its limit names only commands that exist."""
    from vconv.audio.io import load

    rate = 1000  # 31 minutes at 1 kHz: 3.7 MB
    long = tmp_path / "long.wav"
    t = np.arange(31 * 60 * rate) / rate
    sf.write(long, (0.3 * np.sin(2 * np.pi * 50 * t)).astype(np.float32), rate, subtype="PCM_16")
    result = CliRunner().invoke(app, ["info", str(long)])
    assert result.exit_code == 0 and "1860.00 s" in result.stdout, result.output
    with pytest.raises(VconvError) as info:
        load(long)
    assert "streaming" not in str(info.value) and "vconv convert" in str(info.value)


def test_help_texts_keep_their_brackets_and_list_the_exit_codes():
    runner = CliRunner()
    assert "pip install 'vconv[eval]'" in runner.invoke(app, ["evaluate", "--help"]).stdout
    assert "pip install 'vconv[frontends]'" in runner.invoke(app, ["frontend", "prepare", "--help"]).stdout
    top = " ".join(runner.invoke(app, ["--help"]).stdout.split())
    for code in ("0 success", "1 error you can act on", "2 usage error", "3 some files of a batch failed"):
        assert code in top


def test_convert_sample_rate_is_used_not_ignored(world):
    out = world / "o.wav"
    result = CliRunner().invoke(app, ["convert", str(world / "src.wav"), "-t", str(world / "tgt.wav"), "-o", str(out),
                                      "-m", str(world / "bundle"), "--sample-rate", "8000"])
    assert result.exit_code == 0, result.output
    assert sf.info(str(out)).samplerate == 8000


def test_odd_names_convert_and_special_files_are_counted(world):
    """A folder batch goes on past a FIFO (reported, exit 3) and converts files whose names hold a newline or
    a byte that is not UTF-8, under the same names."""
    result = CliRunner().invoke(app, ["convert", str(world / "odd"), "-t", str(world / "tgt.wav"), "-o", str(world / "out"),
                                      "-m", str(world / "bundle"), "--no-progress"])
    assert result.exit_code == 3, result.output
    assert "converted 3 file(s)" in result.stdout and "1 failed" in result.stdout
    made = sorted(p.name for p in (world / "out").iterdir())
    assert made == sorted(["a.wav", "new\nline.wav", os.fsdecode(b"latin\xe9.wav")])


def test_a_folder_in_the_way_of_one_output_fails_that_file_only(world):
    (world / "way2" / "a.wav").mkdir(parents=True)
    result = CliRunner().invoke(app, ["convert", str(world / "odd"), "-t", str(world / "tgt.wav"), "-o", str(world / "way2"),
                                      "-m", str(world / "bundle"), "--no-progress", "--force"])
    assert result.exit_code == 3 and "converted 2 file(s)" in result.stdout
    assert "way2/a.wav: output is an existing folder, expected a file name" in result.stderr
    assert (world / "way2" / "a.wav").is_dir() and (world / "way2" / "new\nline.wav").is_file()


def test_an_output_that_appears_meanwhile_is_not_replaced_without_force(tmp_path):
    from vconv.fileio import atomic_path

    dest = tmp_path / "out.wav"
    with pytest.raises(VconvError, match="created by something else while this ran; pass --force"):
        with atomic_path(dest, overwrite=False) as tmp:
            tmp.write_bytes(b"ours")
            dest.write_bytes(b"another process's")  # the other writer finished first
    assert dest.read_bytes() == b"another process's" and sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]
    with atomic_path(dest) as tmp:  # --force: replaced
        tmp.write_bytes(b"ours")
    assert dest.read_bytes() == b"ours"


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/proc/mounts").exists(), reason="mounting a tiny tmpfs needs root (CI runs as root)")
def test_a_full_disk_is_one_line_and_leaves_nothing(world, tmp_path):
    import subprocess

    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("this machine does not let us mount a tmpfs")
    try:
        result = CliRunner().invoke(app, ["convert", str(world / "src.wav"), "-t", str(world / "tgt.wav"),
                                          "-o", str(full / "out.wav"), "-m", str(world / "bundle")])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "out.wav: no space left on the device" in result.stderr and result.stderr.strip().count("\n") == 0
        assert list(full.iterdir()) == []  # no half-written output, no temporary file
    finally:
        subprocess.run(["umount", str(full)], check=False)


@pytest.mark.slow
def test_sigterm_removes_the_temporary_output(tmp_path):
    """SIGTERM during a long conversion ends it like Ctrl-C: exit 143, no output and no temporary file left."""
    import signal
    import subprocess
    import sys
    import time

    speech, rate = sf.read(Path(__file__).resolve().parents[1] / "examples" / "source.wav", dtype="float32")
    src = tmp_path / "long.wav"
    sf.write(src, np.tile(speech, 150), rate)  # ~9 minutes: several seconds of work
    out = tmp_path / "out" / "converted.wav"
    target = Path(__file__).resolve().parents[1] / "examples" / "target.wav"
    proc = subprocess.Popen([sys.executable, "-m", "vconv", "convert", str(src), "-t", str(target), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out.parent.exists() and list(out.parent.iterdir())) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)  # the temporary output exists once the last write has begun
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, proc.stderr.read().decode()[-500:]
    assert not out.exists() and (not out.parent.exists() or list(out.parent.iterdir()) == [])


def test_an_unreadable_subfolder_is_reported_not_skipped(world, monkeypatch):
    """A subfolder the user cannot read is a listed failure (exit 3), the rest converts. (As root every folder
    is readable, so the walk is told that one is not, as the kernel tells a normal user.)"""
    import vconv.inference.plan as plan

    (world / "odd" / "locked").mkdir()
    real_walk = os.walk

    def walk(top, onerror=None, **kwargs):
        for root, dirs, files in real_walk(top, onerror=onerror, **kwargs):
            if "locked" in dirs:
                dirs.remove("locked")
                onerror(PermissionError(13, "Permission denied", str(Path(root) / "locked")))
            yield root, dirs, files

    monkeypatch.setattr(plan.os, "walk", walk)
    result = CliRunner().invoke(app, ["convert", str(world / "odd"), "-t", str(world / "tgt.wav"), "-o", str(world / "out"),
                                      "-m", str(world / "bundle"), "--no-progress"])
    assert result.exit_code == 3 and "converted 3 file(s)" in result.stdout
    assert "odd/locked: unreadable folder (Permission denied)" in result.stderr
