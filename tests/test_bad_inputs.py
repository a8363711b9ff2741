"""Bad inputs and misuses, as a new user would try them, across every command and the Python API.

Each row of :data:`CLI_CASES` runs one command in-process and asserts: its exit code (1 an error the user
can act on, 2 a usage error, 3 some files of a batch failed); exactly one non-empty stderr line, starting
with ``error:``, naming the offending file or option and the reason; no traceback anywhere; every file
that existed before the call byte-identical after it (the whole work folder is hashed), and nothing new
written when the call failed outright. Rows marked ``before_load`` must fail before a model is loaded; rows with
``unreadable`` run with those files or folders unreadable, as for a normal user (the tests run as root).
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
from tests.conftest import deny_reading, voiced_signal
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
    _bundle_variant(tiny, root / "bad_bundles" / "huge", lambda c: c["model_config"]["decoder"].update(channels=65536))
    _bundle_variant(tiny, root / "bad_bundles" / "bad_stats", lambda c: c["feature_stats"].update(mean=[0.0] * 3))
    (root / "bad_bundles" / "garbage").mkdir()
    (root / "bad_bundles" / "garbage" / "config.json").write_bytes(b"\xff\xfe{not json")
    # a corpus of three speaker folders (prepare), each also a speaker to embed or a folder to convert
    for number in (1, 2, 3):
        (root / "corpus" / f"spk{number}").mkdir(parents=True)
        sf.write(root / "corpus" / f"spk{number}" / "u.wav", voiced_signal(1.0, seed=10 + number), SR)


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
    odd_corpus = root / "odd_corpus" / "spk"  # a corpus whose files have the same odd names
    odd_corpus.mkdir(parents=True)
    for name in ("a.wav", "new\nline.wav", os.fsdecode(b"latin\xe9.wav")):
        shutil.copy(root / "src.wav", odd_corpus / name)


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
    unreadable: tuple[str, ...] = ()  # world paths made unreadable for the call (tests run as root: see deny_reading)


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


def _stream(*extra: str) -> Callable[[Path], list]:
    """`vconv stream` to the world's target; a name ending in .wav is a file of the world."""
    return lambda w: ["stream", T, w / "tgt.wav", "-m", w / "bundle", *(w / a if a.endswith(".wav") else a for a in extra)]


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
                                                  "-m", w / "bad_bundles" / "huge"], 1, ("config.json", "model.decoder.channels: expected 1..4096, got 65536")),
    Case("bundle-config-bad-stats", lambda w: ["embed", w / "src.wav", "--similarity", "-m", w / "bad_bundles" / "bad_stats"],
         1, ("config.json", "mean has 3 values")),
    Case("bundle-config-not-json", lambda w: ["bundle", "attach-vocoder", w / "bad_bundles" / "garbage", w / "bundle"],
         1, ("config.json", "config")),
    Case("train-steps-fraction", _train("train.steps=1.5"), 1, ("train.steps", "expected a whole number, got 1.5")),
    Case("train-steps-list", _train("train.steps=[1, 2]"), 1, ("train.steps", "expected a whole number")),
    Case("train-steps-negative", _train("train.steps=-5"), 1, ("train.steps", "expected 1..")),
    Case("train-batch-size-zero", _train("train.batch_size=0"), 1, ("train.batch_size", "expected 1..4096, got 0")),
    Case("train-channels-zero", _train("model.decoder.channels=0"), 1, ("model.decoder.channels", "expected 1..4096, got 0")),
    Case("train-bf16-maybe", _train("train.bf16=maybe"), 1, ("train.bf16", "expected true or false, got 'maybe'")),
    Case("train-lr-nan", _train("train.lr=.nan"), 1, ("train.lr", "expected a number")),
    Case("train-sample-rate-zero", _train("features.sample_rate=0"), 1, ("features.sample_rate", "expected 1000..768000")),
    Case("train-downsample-bool", _train("model.content_encoder.downsample=[1, true, 1]"), 1, ("model.content_encoder.downsample", "whole number")),
    Case("train-config-is-a-list", lambda w: ["train", "-c", w / "conf" / "list.yaml"], 1, ("list.yaml", "mapping")),
    Case("train-section-is-a-list", lambda w: ["train", "-c", w / "conf" / "model_list.yaml"], 1, ("model", "expected a mapping")),
    Case("train-model-too-big", _train("model.content_encoder.channels=4096", "model.decoder.channels=4096",
                                       "model.decoder.blocks=64", "model.content_encoder.blocks=64",
                                       f"model.content_encoder.downsample=[{', '.join(['1'] * 64)}]"), 1, ("model config", "M parameters is above")),
    Case("train-run-dir-is-a-file", lambda w: ["train", "-c", "debug", f"train.train_manifest={w / 'm' / 'good.jsonl'}",
                                               f"train.run_dir={w / 'a_file'}"], 1, ("a_file", "existing file, expected a folder")),
    Case("train-vocoder-dim-zero", _vtrain("vocoder.dim=0"), 1, ("vocoder.dim", "expected 1..4096")),
    Case("train-vocoder-removed-gan", _vtrain("train.adversarial=true"), 1, ("train.adversarial", "left vconv")),
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
    # 6. unreadable inputs: vconv's own one line, exit 1 (in a batch, a listed failure, exit 3), never Click's usage
    # error (exit 2); the tests run as root, so `unreadable` denies reading them (tests/conftest.py: deny_reading)
    Case("convert-unreadable-target", _convert("src.wav", "out.wav"), 1, ("tgt.wav", "permission denied"), unreadable=("tgt.wav",)),
    Case("convert-unreadable-source", _convert("src.wav", "out.wav"), 1, ("src.wav", "permission denied"), unreadable=("src.wav",)),
    Case("info-unreadable", lambda w: ["info", w / "src.wav"], 1, ("src.wav", "permission denied"), unreadable=("src.wav",)),
    Case("stream-unreadable-input", _stream("-i", "src.wav", "-o", "out.wav"), 1, ("src.wav", "permission denied"), unreadable=("src.wav",)),
    Case("stream-unreadable-target", _stream("-i", "src.wav", "-o", "out.wav"), 1, ("tgt.wav", "permission denied"), unreadable=("tgt.wav",)),
    Case("prepare-unreadable-corpus", lambda w: ["prepare", w / "corpus", "-o", w / "manifests"], 1,
         ("corpus", "cannot be read (Permission denied)"), unreadable=("corpus",)),
    Case("partial-embed-unreadable-file", lambda w: ["embed", w / "src.wav", w / "tgt.wav", "--similarity", "-m", w / "bundle", "--no-progress"],
         3, ("tgt.wav", "permission denied"), before_load=False, unreadable=("tgt.wav",)),
    # 7. an unreadable folder is one listed failure of the batch, the rest done (exit 3): convert, embed, prepare alike
    Case("partial-convert-unreadable-folder", lambda w: ["convert", w / "corpus", T, w / "tgt.wav", "-o", w / "out", "-m", w / "bundle",
                                                         "--no-progress"], 3, ("corpus/spk3", "unreadable folder (Permission denied)"),
         before_load=False, unreadable=("corpus/spk3",)),
    Case("partial-embed-unreadable-folder", lambda w: ["embed", w / "corpus" / "spk1", w / "corpus" / "spk3", "--similarity", "-m", w / "bundle",
                                                       "--no-progress"], 3, ("corpus/spk3", "unreadable folder (Permission denied)"),
         before_load=False, unreadable=("corpus/spk3",)),
    Case("partial-prepare-unreadable-folder", lambda w: ["prepare", w / "corpus", "-o", w / "manifests"], 3,
         ("corpus/spk3", "unreadable folder (Permission denied)"), unreadable=("corpus/spk3",)),
    # 8. a file name that is not UTF-8 cannot go into a UTF-8 manifest: one escaped line, never a UnicodeEncodeError
    Case("partial-prepare-not-utf8-name", lambda w: ["prepare", w / "odd_corpus", "-o", w / "manifests"], 3,
         ("odd_corpus/spk/latin\\xe9.wav", "name is not UTF-8")),
    # 9. stream never writes over what it reads, as convert does not
    Case("stream-over-its-input", _stream("-i", "src.wav", "-o", "src.wav", "--force"), 1, ("src.wav", "would overwrite the source")),
    Case("stream-over-target-reference", _stream("-i", "src.wav", "-o", "tgt.wav", "--force"), 1,
         ("tgt.wav", "would overwrite the target reference")),
    Case("stream-over-its-input-via-symlink", _stream("-i", "src.wav", "-o", "link.wav", "--force"), 1, ("link.wav", "would overwrite the source", "/src.wav")),
    Case("stream-stdin-over-target-reference", _stream("-o", "tgt.wav", "--force"), 1, ("tgt.wav", "would overwrite the target reference")),
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
    with pytest.MonkeyPatch.context() as patch:  # undone before the world is hashed again
        deny_reading(patch, *(world / name for name in case.unreadable))
        result = CliRunner().invoke(app, [str(a) for a in case.args(world)])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    # `vconv info`'s estimate reads the world's synthetic tone (steady harmonics that WPE predicts) as reverberant, and
    # the target matching finds the bands between and above its harmonics hold only its faint noise: notes about a
    # good file, not about the bad one under test
    about_the_tone = ("src.wav: reverberant", "hold only their room's noise")
    lines = [line for line in result.stderr.splitlines() if line.strip() and not any(t in line for t in about_the_tone)]
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
    ("load-config-absurd", lambda vc, w: vconv.load(w / "bad_bundles" / "huge"), ("model.decoder.channels: expected 1..4096",)),
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
    for name, reason in (("missing_key", "missing key 'model_config'"), ("huge", "model.decoder.channels: expected 1..4096"),
                         ("bad_stats", "mean has 3 values"), ("garbage", "config")):
        assert "unusable: " in rows[name] and reason in rows[name], rows[name]
    assert "unusable" not in rows["bundle"] and "16000 Hz" in rows["bundle"]


def test_unwritable_output_folder_is_one_line(world, monkeypatch, no_model_load):
    """As root, os.access grants everything; the check is exercised by denying write access to one folder."""
    import vconv.fileio

    locked = world / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(vconv.fileio.os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
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


def _write_to(world: Path, command: str, out: Path):
    """``convert`` or ``stream`` the world's source to ``out`` (in-process)."""
    if command == "convert":
        args = ["convert", world / "src.wav", "-t", world / "tgt.wav", "-o", out, "-m", world / "bundle"]
    else:
        args = ["stream", "-t", world / "tgt.wav", "-i", world / "src.wav", "-o", out, "-m", world / "bundle"]
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/proc/mounts").exists(), reason="mounting a tiny tmpfs needs root (CI runs as root)")
@pytest.mark.parametrize("command, ext", [("convert", ".wav"), ("convert", ".flac"), ("convert", ".ogg"), ("stream", ".ogg")])
def test_a_full_disk_is_one_line_and_leaves_nothing(world, tmp_path, command, ext):
    """The write fails for want of space: one line, exit 1, nothing under the output's name. The disk is made just
    too small for the whole file (its size learnt by writing it elsewhere first), the hard case: libsndfile's Vorbis
    writer drops what it cannot write and reports nothing, and its FLAC writer too when the space runs out as the
    file is closed (both outputs used to be cut short with exit 0); only reading the file back before the rename
    (vconv.audio.io.check_written) finds them."""
    import subprocess

    whole = tmp_path / f"whole{ext}"
    assert _write_to(world, command, whole).exit_code == 0
    size = (whole.stat().st_size - 1) // 4096 * 4096  # whole pages of tmpfs, at least one byte too few
    assert size >= 4096, whole.stat().st_size
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("this machine does not let us mount a tmpfs")
    try:
        result = _write_to(world, command, full / f"out{ext}")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"out{ext}: no space left on the device" in errors[0], result.stderr
        if command == "convert":
            assert result.stderr.strip().count("\n") == 0  # `stream` prints its latency first
        assert list(full.iterdir()) == []  # no half-written output, no temporary file
    finally:
        subprocess.run(["umount", str(full)], check=False)


@pytest.mark.parametrize("ext", [".ogg", ".flac", ".wav"])
@pytest.mark.parametrize("writer", ["save", "stream", "long-file"])
def test_a_short_write_the_audio_library_hides_is_caught_before_the_rename(tmp_path, monkeypatch, writer, ext):
    """Each of the three writers of audio (a short file's ``save``, the stream's ``FileWriter``, a long file's
    chunk-by-chunk writer) reads its output back before the rename. Simulated here, for every format, by a
    SoundFile.write that silently writes only half of what it is given, as libsndfile's Vorbis writer does on a
    full disk: one line naming the shortfall ("disk full?"), and nothing under the output's name, no temporary file."""
    from types import SimpleNamespace

    from vconv.audio.io import save
    from vconv.audio.pcm_stream import FileWriter
    from vconv.inference.long_files import convert_long_file

    wav = voiced_signal(1.0)
    sf.write(tmp_path / "src.wav", wav, SR)
    real_write = sf.SoundFile.write
    monkeypatch.setattr(sf.SoundFile, "write", lambda self, data: real_write(self, data[: len(data) // 2]))
    out = tmp_path / "out" / f"converted{ext}"
    out.parent.mkdir()
    with pytest.raises(VconvError) as info:
        if writer == "save":
            save(out, wav, SR)
        elif writer == "stream":
            stream = FileWriter(out, SR)
            for start in range(0, wav.size, 4000):
                stream.write(wav[start:start + 4000])
            stream.close()
        else:  # a stand-in converter: the long-file path's reading, scratch file and writing, without a model
            converter = SimpleNamespace(sample_rate=SR, convert_spans=lambda length, read, target, emit: [
                emit(read(a, min(a + 5000, length))) for a in range(0, length, 5000)])
            convert_long_file(converter, tmp_path / "src.wav", None, out, rate=SR)
    assert str(info.value).startswith(f"{out}: ") and f"of the {wav.size} samples written; disk full?" in str(info.value)
    assert list(out.parent.iterdir()) == []


def test_check_written_finds_a_file_cut_short(tmp_path):
    """The check itself: an Ogg Vorbis (or WAV) file that lost its end, by one byte, by half or all but its first
    bytes, is refused; the whole one passes. (A FLAC file cut short after it was closed keeps the length its header
    states; what the check finds there is a header never completed, as on the full disk above.)"""
    from vconv.audio.io import check_written

    wav = voiced_signal(2.0)
    for ext, fmt, subtype in ((".ogg", "OGG", "VORBIS"), (".wav", "WAV", "PCM_16")):
        whole = tmp_path / f"whole{ext}"
        sf.write(whole, wav, SR, format=fmt, subtype=subtype)
        check_written(whole, wav.size, whole)
        data = whole.read_bytes()
        for cut in (len(data) - 1, len(data) // 2, 20):
            (tmp_path / f"cut{ext}").write_bytes(data[:cut])
            with pytest.raises(VconvError, match=f"out{ext}: .*disk full\\?"):
                check_written(tmp_path / f"cut{ext}", wav.size, tmp_path / f"out{ext}")


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
    is readable, so listing it is refused as the kernel refuses a normal user: tests/conftest.py, deny_reading.)"""
    (world / "odd" / "locked").mkdir()
    deny_reading(monkeypatch, world / "odd" / "locked")
    result = CliRunner().invoke(app, ["convert", str(world / "odd"), "-t", str(world / "tgt.wav"), "-o", str(world / "out"),
                                      "-m", str(world / "bundle"), "--no-progress"])
    assert result.exit_code == 3 and "converted 3 file(s)" in result.stdout
    assert "odd/locked: unreadable folder (Permission denied)" in result.stderr


def test_no_path_parameter_leaves_an_unreadable_path_to_click():
    """Typer's path parameters have Click refuse an unreadable path as a usage error (exit 2, Click's words) unless
    they say readable=False; every command's do, so vconv's own checks say it (exit 1, or a failure of a batch)."""
    import inspect

    import typer.models

    def commands(typer_app, prefix):
        for info in typer_app.registered_commands:
            yield f"{prefix} {info.name or info.callback.__name__}", info.callback
        for group in typer_app.registered_groups:
            yield from commands(group.typer_instance, f"{prefix} {group.name}")

    found = {f"{name} {param.name}": param.default.readable for name, callback in commands(app, "vconv")
             for param in inspect.signature(callback).parameters.values()  # through friendly_errors' __wrapped__
             if isinstance(param.default, typer.models.ParameterInfo) and "Path" in str(param.annotation)}
    assert {"vconv convert target", "vconv stream input_path", "vconv prepare root", "vconv bundle package notes"} <= set(found)
    assert [name for name, readable in found.items() if readable] == []


def test_prepare_exits_3_for_what_it_could_not_read_not_for_what_it_was_asked_to_leave_out(world):
    """Files left out by --min-seconds are the user's own filter (listed, exit 0); a file or folder that could not
    be read is a failure (listed on stderr, exit 3, or 0 with --allow-skips), as in extract."""
    sf.write(world / "corpus" / "spk1" / "short.wav", voiced_signal(0.3, seed=20), SR)
    asked = CliRunner().invoke(app, ["prepare", str(world / "corpus"), "-o", str(world / "m1"), "--min-seconds", "0.5"])
    assert asked.exit_code == 0 and asked.stderr == "", asked.output
    assert "short.wav: too short (0.30 s < 0.50 s)" in asked.stdout and "3 utterances" in asked.stdout
    (world / "corpus" / "spk2" / "broken.wav").write_bytes(b"RIFF but not really audio")
    failed = CliRunner().invoke(app, ["prepare", str(world / "corpus"), "-o", str(world / "m2"), "--min-seconds", "0.5"])
    assert failed.exit_code == 3, failed.output
    assert failed.stderr.strip().splitlines() == [f"error: {world / 'corpus' / 'spk2' / 'broken.wav'}: not a readable audio file (Format not recognised.)"]
    assert len(json.loads((world / "m2" / "split.json").read_text())["bad_files"]) == 2  # both, as before
    allowed = CliRunner().invoke(app, ["prepare", str(world / "corpus"), "-o", str(world / "m3"), "--allow-skips"])
    assert allowed.exit_code == 0 and "broken.wav: not a readable audio file" in allowed.stderr


def test_every_listing_prints_odd_names_on_one_line_each(world):
    """A name with a newline or a byte that is not UTF-8 prints escaped on its one line in every list of files:
    info's lines, embed's similarity table, prepare's summary and failures (the manifests hold the newline name;
    the other cannot go into UTF-8 and is a listed failure). CliRunner's output is strict UTF-8, as a UTF-8
    terminal is: a raw name would end the command in a UnicodeEncodeError."""
    odd = [world / "odd" / "new\nline.wav", world / "odd" / os.fsdecode(b"latin\xe9.wav")]
    info = CliRunner().invoke(app, ["info", *map(str, odd)])
    assert info.exit_code == 0, info.output
    lines = info.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{world}/odd/new\\nline.wav: 1.00 s") and "latin\\xe9.wav: 1.00 s" in lines[1]
    embed = CliRunner().invoke(app, ["embed", *map(str, odd), "--similarity", "-m", str(world / "bundle"), "--no-progress"])
    assert embed.exit_code == 0, embed.output
    rows = embed.stdout.splitlines()
    assert len(rows) == 3 and rows[1].startswith("new\\nline ") and rows[2].startswith("latin\\xe9 ")  # speakers: the stems
    prepared = CliRunner().invoke(app, ["prepare", str(world / "odd_corpus"), "-o", str(world / "m")])
    assert prepared.exit_code == 3 and isinstance(prepared.exception, SystemExit), prepared.output
    assert prepared.stderr.count("\n") == 1 and "odd_corpus/spk/latin\\xe9.wav: name is not UTF-8" in prepared.stderr
    listed = f"  {world}/odd_corpus/spk/latin\\xe9.wav: name is not UTF-8"
    assert [line for line in prepared.stdout.splitlines() if line.startswith(listed)], prepared.stdout
    assert sorted(json.loads(line)["id"] for line in (world / "m" / "all.jsonl").read_text(encoding="utf-8").splitlines()) == [
        "spk/a", "spk/new\nline"]


class LazyPipe:
    """A pipe's worth of bytes made only as they are read: ``head``, ``filler`` zero bytes, then ``tail``. Counts
    the bytes handed out and the largest read asked for."""

    def __init__(self, head: bytes, filler: int, tail: bytes = b"") -> None:
        self.parts, self.given, self.largest = [head, filler, tail], 0, 0

    def read(self, n: int = -1) -> bytes:
        self.largest = max(self.largest, n)
        head, filler, tail = self.parts
        if head:
            out, self.parts[0] = head[:n], head[n:]
        elif filler:
            out = bytes(min(n, filler))
            self.parts[1] -= len(out)
        else:
            out, self.parts[2] = tail[:n], tail[n:]
        self.given += len(out)
        return out


def _chunk(name: bytes, size: int) -> bytes:
    import struct

    return name + struct.pack("<I", size)


def test_a_4_gb_header_chunk_on_a_pipe_is_refused_without_reading_it():
    """`(printf 'RIFF....WAVEJUNK\\xf0\\xff\\xff\\xff'; head -c 1500000000 /dev/zero) | vconv stream ...` read the chunk
    whole (1.7 GB at its peak) before refusing it; now its declared size alone refuses it, one line."""
    from vconv.audio.pcm_stream import WavPipeReader

    pipe = LazyPipe(b"RIFF\xff\xff\xff\xffWAVE" + _chunk(b"JUNK", 0xFFFFFFF0), 1_500_000_000)
    with pytest.raises(VconvError, match=r"^stdin: WAV stream whose chunks before the audio take 4096 MB, over the 64 MB a header may"):
        WavPipeReader(pipe)
    assert pipe.given == 20  # the chunk's header, not a byte of its body


def test_header_chunks_below_the_cap_are_read_past_in_small_blocks():
    """A 60 MB chunk before the format (under the 64 MB cap) is read past 64 KiB at a time, never held; the stream
    then reads as any other."""
    import struct

    from vconv.audio.pcm_stream import WavPipeReader

    samples = (np.arange(1600) % 200 * 100).astype("<i2").tobytes()
    fmt = _chunk(b"fmt ", 16) + struct.pack("<HHIIHH", 1, 1, SR, 2 * SR, 2, 16)
    pipe = LazyPipe(b"RIFF\xff\xff\xff\xffWAVE" + _chunk(b"JUNK", 60 << 20), 60 << 20, fmt + _chunk(b"data", 0xFFFFFFFF) + samples)
    reader = WavPipeReader(pipe)
    assert reader.sample_rate == SR and pipe.largest <= 1 << 16 and pipe.given > 60 << 20
    np.testing.assert_array_equal(reader.read(1600), np.frombuffer(samples, "<i2") / np.float32(32768))


def test_stream_refuses_header_chunks_that_add_up_past_the_cap(world, monkeypatch, no_model_load):
    """On standard input, through the command: chunks of 512 KB each under a cap lowered to 1 MB add up past it,
    and the stream is refused in one line before the model loads."""
    import vconv.audio.pcm_stream as pcm_stream

    monkeypatch.setattr(pcm_stream, "MAX_HEADER_BYTES", 1 << 20)
    junk = b"".join(_chunk(b"JUNK", 512 << 10) + bytes(512 << 10) for _ in range(3))
    result = CliRunner().invoke(app, ["stream", "-t", str(world / "tgt.wav"), "-o", str(world / "out.wav"), "-m", str(world / "bundle")],
                                input=b"RIFF\xff\xff\xff\xffWAVE" + junk)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == ("error: stdin: WAV stream whose chunks before the audio take 1 MB, over the 1 MB a header may; "
                                     "stream a plain WAV (or headerless PCM with --raw)")
    assert not (world / "out.wav").exists()


def _vconv_process(*args, close: int | None = None, stdout=None, stdin=None):
    """``python -m vconv ARGS`` in a real process (standard streams are what this is about), with file descriptor
    ``close`` closed as by the shell's ``>&-`` / ``<&-``."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "vconv", *map(str, args)], stdout=stdout if stdout is not None else subprocess.PIPE,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300,
                          preexec_fn=None if close is None else lambda: os.close(close))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_closed_or_full_standard_output_is_one_line(world):
    """`vconv stream -o -` with standard output closed (`>&-`) or on /dev/full ended in a traceback (AttributeError,
    OSError ENOSPC); so did `info`, every other report and `--help` on /dev/full. Now one line each, exit 1, and the
    stream's before the model loads."""
    stream = ["stream", "-t", world / "tgt.wav", "-i", world / "src.wav", "-o", "-", "-m", world / "bundle"]
    closed = _vconv_process(*stream, close=1)
    assert (closed.returncode, closed.stderr.decode()) == (1, "error: standard output is closed; give --output FILE, or open it (a pipe or a redirection)\n")
    with open("/dev/full", "wb") as full:
        for args in (stream, ["info", world / "src.wav"], ["models"], ["convert", "--help"]):  # help: printed by Click itself
            result = _vconv_process(*args, stdout=full)
            assert (result.returncode, result.stderr.decode()) == (1, "error: standard output: no space left on the device\n"), args
    no_input = _vconv_process("stream", "-t", world / "tgt.wav", "-o", world / "out.wav", "-m", world / "bundle", close=0)
    assert (no_input.returncode, no_input.stderr.decode()) == (1, "error: standard input is closed; give --input FILE, or open it (a pipe or a redirection)\n")
    assert not (world / "out.wav").exists()


def test_standard_output_that_fills_mid_stream_is_one_line_and_a_gone_reader_stays_quiet():
    """The stream's pipe writers: a write that fails for want of space (after the header went through) is a
    VconvError naming standard output; a reader that has gone (`| head`) stays a BrokenPipeError, which `main`
    ends quietly (exit 1), as other tools do."""
    import errno

    from vconv.audio.pcm_stream import RawWriter, WavPipeWriter

    class Filling:
        def __init__(self, room: int, error: OSError) -> None:
            self.room, self.error = room, error

        def write(self, data: bytes) -> int:
            if len(data) > self.room:
                raise self.error
            self.room -= len(data)
            return len(data)

        def flush(self) -> None:
            pass

    writer = WavPipeWriter(Filling(100, OSError(errno.ENOSPC, "No space left on device")), SR)
    with pytest.raises(VconvError, match="^standard output: no space left on the device$"):
        writer.write(np.zeros(SR, np.float32))
    writer.abort()  # after a failed write, nothing is retried
    with pytest.raises(BrokenPipeError):
        RawWriter(Filling(0, BrokenPipeError(errno.EPIPE, "Broken pipe"))).write(np.ones(10, np.float32))


def test_a_folder_no_check_reaches_is_still_one_line(world, monkeypatch):
    """An unreadable folder that no check of vconv's own reaches (here the folder `vconv models` searches) is one
    line naming it, exit 1, not a PermissionError's traceback."""
    monkeypatch.setenv("VCONV_MODELS", str(world / "bad_bundles"))
    deny_reading(monkeypatch, world / "bad_bundles")
    result = CliRunner().invoke(app, ["models"])
    assert (result.exit_code, result.stderr) == (1, f"error: {world / 'bad_bundles'}: permission denied; check its permissions (and its folder's)\n")
