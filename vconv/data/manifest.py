"""Manifests and corpus layouts: which utterances exist, who speaks them, and how they are split.

A manifest is JSON Lines, one utterance per line::

    {"id": "flite_awb/flite_awb_01", "path": "../corpus/flite_awb/flite_awb_01.wav",
     "speaker": "flite_awb", "duration": 2.31, "text": "The birch canoe ..."}

``path`` is stored relative to the manifest's folder when the audio lies below a common root, so a
corpus and its manifests can be moved together. Extra keys (gender, accent, ...) are kept as they are.

The generic layout is ``ROOT/<speaker>/**/*.{wav,flac,ogg}``; a same-stem ``.txt`` next to an audio
file is its transcript. Splits are by speaker (disjoint), seeded and deterministic: the same corpus and
seed always give the same split, whatever order the file system lists files in.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from vconv.audio.io import AUDIO_EXTENSIONS, audio_info
from vconv.errors import VconvError
from vconv.fileio import safe_relative_id, write_text_atomic


@dataclass
class Utterance:
    """One manifest line. ``path`` is absolute once loaded; ``extra`` holds corpus-specific metadata."""

    id: str
    path: str
    speaker: str
    duration: float
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, base: Path | None = None) -> str:
        record = {k: v for k, v in asdict(self).items() if k != "extra"}
        if base is not None:
            record["path"] = os.path.relpath(self.path, base)
        if record["text"] is None:
            del record["text"]
        record.update(self.extra)
        return json.dumps(record, ensure_ascii=False)


@dataclass
class BadFile:
    """A file (or folder) a batch had to skip, and why (one line). ``failure`` False marks one left out as asked
    (shorter than ``--min-seconds``) or a note (a corpus without its speaker list): reported, not a failure."""

    path: str
    reason: str
    failure: bool = True

    @classmethod
    def from_error(cls, path: str | Path, exc: Exception) -> "BadFile":
        """From a VconvError about ``path`` (its message is usually ``PATH: reason``; the path is not repeated)."""
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return cls(str(path), message[len(str(path)) + 2:] if message.startswith(f"{path}: ") else message)


@dataclass
class ScanResult:
    """What ``scan_speaker_folders`` found: the usable utterances and the files it had to skip."""

    utterances: list[Utterance]
    bad: list[BadFile]


_CORE_KEYS = {"id", "path", "speaker", "duration", "text"}


def read_manifest(path: str | Path, *, nonempty: bool = False) -> list[Utterance]:
    """Load a JSONL manifest; relative audio paths are resolved against the manifest's folder.

    ``nonempty`` makes an empty manifest an error (what extraction and training need). Every problem is one
    line naming the file and the line number: text that is not UTF-8, a line that is not a JSON object, a
    missing key or one of the wrong type, an id that is not a safe relative name
    (:func:`vconv.fileio.safe_relative_id`: features are written to ``<dir>/<id>.safetensors``), a
    repeated id (both lines named).
    """
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: manifest not found; create one with `vconv prepare`")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise VconvError(f"{path}: unreadable manifest ({exc.strerror or exc})") from None
    base = path.parent
    out = []
    first_line: dict[str, int] = {}
    for lineno, chunk in enumerate(raw.split(b"\n"), 1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError:
            raise VconvError(f"{path}:{lineno}: not UTF-8 text; a manifest is UTF-8 JSON Lines (write it with `vconv prepare`)") from None
        if not line.strip():
            continue
        utt = _parse_line(line, f"{path}:{lineno}", base)
        if utt.id in first_line:
            raise VconvError(f"{path}:{lineno}: id {utt.id!r} repeats line {first_line[utt.id]}; ids must be unique")
        first_line[utt.id] = lineno
        out.append(utt)
    if nonempty and not out:
        raise VconvError(f"{path}: manifest is empty")
    return out


def _parse_line(line: str, where: str, base: Path) -> Utterance:
    """One manifest line as an :class:`Utterance`; ``where`` (``file:line``) starts every error."""
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit number, nesting thousands deep
        raise VconvError(f"{where}: not a JSON line ({getattr(exc, 'msg', type(exc).__name__)})") from None
    if not isinstance(rec, dict):
        raise VconvError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in ("id", "path", "speaker", "duration") if k not in rec]
    if missing:
        raise VconvError(f"{where}: missing key(s) {', '.join(missing)}")
    utt_id = safe_relative_id(rec["id"], where)
    for key in ("path", "speaker"):
        if not isinstance(rec[key], str) or not rec[key].strip() or "\x00" in rec[key]:
            raise VconvError(f"{where}: {key} must be a non-empty string, got {rec[key]!r}")
    duration = rec["duration"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration < 0:
        raise VconvError(f"{where}: duration must be a number of seconds >= 0, got {duration!r}")
    if rec.get("text") is not None and not isinstance(rec["text"], str):
        raise VconvError(f"{where}: text must be a string, got {type(rec['text']).__name__}")
    audio = Path(rec["path"])
    return Utterance(
        id=utt_id,
        path=str(audio if audio.is_absolute() else (base / audio).resolve()),
        speaker=rec["speaker"],
        duration=float(duration),
        text=rec.get("text"),
        extra={k: v for k, v in rec.items() if k not in _CORE_KEYS},
    )


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> Path:
    """Write JSONL atomically, paths relative to the manifest's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    return write_text_atomic(path, "".join(utt.to_json(base) + "\n" for utt in utterances))


def check_audio_file(path: Path, min_seconds: float) -> float | BadFile:
    """The duration in seconds of one corpus file, or the :class:`BadFile` saying why it is unusable
    (unreadable, empty, shorter than ``min_seconds``, a name that is not UTF-8); the one check behind every corpus
    layout's scan."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode's stand-ins for bytes that are not UTF-8
        # the path and the id made from it go into UTF-8 manifests and feature files' metadata, which cannot hold it
        return BadFile(str(path), "name is not UTF-8, which a manifest must be; rename the file (or its folder)")
    try:
        info = audio_info(path)
    except VconvError as exc:  # its message is "PATH: reason"; BadFile keeps the two apart
        return BadFile.from_error(path, exc)
    if info.frames == 0:
        return BadFile(str(path), "empty audio (0 samples)")
    duration = info.frames / info.samplerate
    if duration < min_seconds:  # the user's own filter: reported, not a failure
        return BadFile(str(path), f"too short ({duration:.2f} s < {min_seconds:.2f} s)", failure=False)
    return duration


def unreadable_folder(error: OSError, folder: str | Path) -> BadFile:
    """The failure of a folder that could not be listed (``error`` from ``os.scandir`` / ``os.walk``)."""
    return BadFile(str(error.filename or folder), f"unreadable folder ({error.strerror or error})")


def list_folder(folder: Path, bad: list[BadFile]) -> list[Path]:
    """The entries of ``folder``, sorted; one that cannot be read is added to ``bad`` and gives none. (pathlib's
    glob and rglob return nothing for it, silently: a speaker's whole folder would vanish from a corpus unsaid.)"""
    try:
        with os.scandir(folder) as entries:
            return sorted(folder / entry.name for entry in entries)
    except OSError as exc:
        bad.append(unreadable_folder(exc, folder))
        return []


def walk_audio_files(folder: Path, bad: list[BadFile]) -> list[Path]:
    """Every entry with an audio extension below ``folder``, sorted; each subfolder that cannot be read is added
    to ``bad``. Entries that are not regular files (a FIFO named ``x.wav``) are kept, so the header check refuses
    them with their reason rather than leaving them out unsaid; links to folders are not followed (no cycle)."""
    def refuse(exc: OSError) -> None:
        bad.append(unreadable_folder(exc, folder))

    return sorted(Path(root) / name for root, _, names in os.walk(folder, onerror=refuse)
                  for name in names if Path(name).suffix.lower() in AUDIO_EXTENSIONS)


def scan_speaker_folders(root: str | Path, min_seconds: float = 0.0) -> ScanResult:
    """Find ``ROOT/<speaker>/**/*.{wav,flac,ogg}``; unreadable or too-short files, and folders that cannot be
    read, are reported, not fatal.

    Ids are ``<speaker>/<path below the speaker folder without extension>``, unique by construction.
    """
    root = Path(root)
    if not root.is_dir():
        raise VconvError(f"{root}: corpus folder not found")
    utterances: list[Utterance] = []
    bad: list[BadFile] = []
    try:
        listed = sorted(root.iterdir())
    except OSError as exc:  # nothing of the corpus can be found: an error, not a report
        raise VconvError(f"{root}: corpus folder cannot be read ({exc.strerror or exc})") from None
    for spk_dir in (p for p in listed if p.is_dir() and not p.name.startswith(".")):
        for audio in walk_audio_files(spk_dir, bad):
            duration = check_audio_file(audio, min_seconds)
            if isinstance(duration, BadFile):
                bad.append(duration)
                continue
            rel = audio.relative_to(spk_dir).with_suffix("")
            text = _transcript(audio.with_suffix(".txt"))
            if isinstance(text, BadFile):  # left out rather than kept without its words unsaid
                bad.append(text)
                continue
            utterances.append(
                Utterance(
                    id=f"{spk_dir.name}/{rel.as_posix()}",
                    path=str(audio.resolve()),
                    speaker=spk_dir.name,
                    duration=round(duration, 4),
                    text=text,
                )
            )
    if not utterances and not bad:
        raise VconvError(f"{root}: no audio found; expected ROOT/<speaker>/*.wav|flac|ogg")
    return ScanResult(utterances, bad)


def _transcript(path: Path) -> str | None | BadFile:
    """The text of an utterance's same-stem ``.txt``: None without one, a :class:`BadFile` when it cannot be read."""
    if not path.is_file():
        return None
    try:
        # a transcript in another encoding keeps its words (as VCTK's reader does) rather than ending the scan
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        return BadFile(str(path), f"unreadable transcript ({exc.strerror or exc})")


@dataclass
class Split:
    train: list[Utterance]
    valid: list[Utterance]
    test: list[Utterance]

    def speakers(self, name: str) -> list[str]:
        return sorted({u.speaker for u in getattr(self, name)})


def split_by_speaker(
    utterances: Sequence[Utterance],
    *,
    test_speakers: Sequence[str] | None = None,
    num_test_speakers: int = 0,
    valid_speakers: Sequence[str] | None = None,
    num_valid_speakers: int = 0,
    seed: int = 0,
) -> Split:
    """Speaker-disjoint train/valid/test split.

    Explicit speaker lists win; otherwise ``num_*_speakers`` are drawn with ``random.Random(seed)`` from
    the sorted speaker list, so the split depends only on the set of speakers and the seed.
    """
    speakers = sorted({u.speaker for u in utterances})
    known = set(speakers)
    for name, chosen in (("test", test_speakers), ("valid", valid_speakers)):
        missing = sorted(set(chosen or []) - known)
        if missing:
            raise VconvError(f"{name} speaker(s) not in the corpus: {', '.join(missing)}")
    rng = random.Random(seed)
    pool = [s for s in speakers if s not in set(test_speakers or []) | set(valid_speakers or [])]
    rng.shuffle(pool)
    test = list(test_speakers) if test_speakers else [pool.pop() for _ in range(min(num_test_speakers, len(pool)))]
    valid = list(valid_speakers) if valid_speakers else [pool.pop() for _ in range(min(num_valid_speakers, len(pool)))]
    if set(test) & set(valid):
        raise VconvError(f"speaker(s) in both test and valid: {', '.join(sorted(set(test) & set(valid)))}")
    if not pool and len(speakers) > 0:
        raise VconvError("no speakers left for training; hold out fewer speakers")
    test_set, valid_set = set(test), set(valid)
    return Split(
        train=[u for u in utterances if u.speaker not in test_set | valid_set],
        valid=[u for u in utterances if u.speaker in valid_set],
        test=[u for u in utterances if u.speaker in test_set],
    )


def feature_path(features_dir: str | Path, utt: Utterance) -> Path:
    """Where `vconv extract` stores the features of ``utt``: ``<dir>/<id>.safetensors`` (an id that could
    leave ``<dir>`` is refused, whoever built the utterance)."""
    return Path(features_dir) / f"{safe_relative_id(utt.id, f'utterance {utt.id!r}')}.safetensors"


def speakers_of(utterances: Iterable[Utterance]) -> list[str]:
    return sorted({u.speaker for u in utterances})
