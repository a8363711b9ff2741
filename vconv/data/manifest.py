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
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from vconv.audio.io import AUDIO_EXTENSIONS, audio_info
from vconv.errors import VconvError
from vconv.fileio import write_text_atomic


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
    path: str
    reason: str


@dataclass
class ScanResult:
    """What ``scan_speaker_folders`` found: the usable utterances and the files it had to skip."""

    utterances: list[Utterance]
    bad: list[BadFile]


_CORE_KEYS = {"id", "path", "speaker", "duration", "text"}


def read_manifest(path: str | Path, *, nonempty: bool = False) -> list[Utterance]:
    """Load a JSONL manifest; relative audio paths are resolved against the manifest's folder.

    ``nonempty`` makes an empty manifest an error (what extraction and training need).
    """
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: manifest not found; create one with `vconv prepare`")
    base = path.parent
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            audio = Path(rec["path"])
            out.append(
                Utterance(
                    id=str(rec["id"]),
                    path=str(audio if audio.is_absolute() else (base / audio).resolve()),
                    speaker=str(rec["speaker"]),
                    duration=float(rec["duration"]),
                    text=rec.get("text"),
                    extra={k: v for k, v in rec.items() if k not in _CORE_KEYS},
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise VconvError(f"{path}:{lineno}: bad manifest line ({type(exc).__name__}: {exc})") from None
    if nonempty and not out:
        raise VconvError(f"{path}: manifest is empty")
    return out


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> Path:
    """Write JSONL atomically, paths relative to the manifest's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    return write_text_atomic(path, "".join(utt.to_json(base) + "\n" for utt in utterances))


def check_audio_file(path: Path, min_seconds: float) -> float | BadFile:
    """The duration in seconds of one corpus file, or the :class:`BadFile` saying why it is unusable
    (unreadable, empty, shorter than ``min_seconds``); the one check behind every corpus layout's scan."""
    try:
        info = audio_info(path)
    except VconvError as exc:  # its message is "PATH: reason"; BadFile keeps the two apart
        return BadFile(str(path), str(exc).split(": ", 1)[-1])
    if info.frames == 0:
        return BadFile(str(path), "empty audio (0 samples)")
    duration = info.frames / info.samplerate
    if duration < min_seconds:
        return BadFile(str(path), f"too short ({duration:.2f} s < {min_seconds:.2f} s)")
    return duration


def scan_speaker_folders(root: str | Path, min_seconds: float = 0.0) -> ScanResult:
    """Find ``ROOT/<speaker>/**/*.{wav,flac,ogg}``; unreadable or too-short files are reported, not fatal.

    Ids are ``<speaker>/<path below the speaker folder without extension>``, unique by construction.
    """
    root = Path(root)
    if not root.is_dir():
        raise VconvError(f"{root}: corpus folder not found")
    utterances: list[Utterance] = []
    bad: list[BadFile] = []
    for spk_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for audio in sorted(p for p in spk_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
            duration = check_audio_file(audio, min_seconds)
            if isinstance(duration, BadFile):
                bad.append(duration)
                continue
            rel = audio.relative_to(spk_dir).with_suffix("")
            transcript = audio.with_suffix(".txt")
            text = transcript.read_text(encoding="utf-8").strip() if transcript.is_file() else None
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
    """Where `vconv extract` stores the features of ``utt``: ``<dir>/<id>.safetensors``."""
    return Path(features_dir) / f"{utt.id}.safetensors"


def speakers_of(utterances: Iterable[Utterance]) -> list[str]:
    return sorted({u.speaker for u in utterances})
