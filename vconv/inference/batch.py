"""File-level conversion and embedding, as `vconv convert` and `vconv embed` use them.

``convert_paths`` converts one file or a whole tree (mirrored under the output folder), loading the
model once, and keeps going past bad files: they are reported at the end with their reason.
``embed_paths`` gives L2-normalised speaker embeddings per utterance and per speaker.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from vconv.inference.converter import VoiceConverter
from vconv.audio.io import AUDIO_EXTENSIONS, resample, save
from vconv.data.manifest import BadFile
from vconv.errors import VconvError
from vconv.fileio import atomic_path


def audio_files(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else every audio file below it (sorted)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        if not files:
            raise VconvError(f"{path}: no audio files (.wav, .flac, .ogg) in this folder")
        return files
    if not path.exists():
        raise VconvError(f"{path}: file not found")
    return [path]


@dataclass
class ConvertReport:
    converted: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[BadFile] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 all converted, 2 some failed (partial), 1 nothing converted."""
        if not self.failed:
            return 0
        return 2 if self.converted else 1

    def summary(self) -> str:
        rtf = self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0
        text = f"converted {len(self.converted)} file(s), {self.audio_seconds:.1f} s of audio, real-time factor {rtf:.3f}"
        if self.failed:
            text += f"; {len(self.failed)} failed:\n" + "\n".join(f"  {b.path}: {b.reason}" for b in self.failed)
        return text


def convert_paths(
    converter: VoiceConverter,
    source: str | Path,
    targets: Sequence[str | Path],
    out: str | Path,
    *,
    force: bool = False,
    sample_rate: int | None = None,
    progress: bool = True,
) -> ConvertReport:
    """Convert ``source`` (file or folder) to the voice of ``targets`` (files and/or folders, averaged).

    A folder source mirrors its tree under ``out`` (``a/b.flac`` → ``OUT/a/b.wav``); a file source is
    written to ``out`` (or into ``out`` when that is an existing folder). Existing outputs are kept
    unless ``force``. Bad target references are an error (nothing to convert to); a bad source file
    in a folder is reported and skipped.
    """
    source, out = Path(source), Path(out)
    refs = [f for t in targets for f in audio_files(Path(t))]
    if not refs:
        raise VconvError("no target reference given; pass --target FILE or --target FOLDER")
    embedding = converter.speaker_embedding(refs)
    if source.is_dir():
        jobs = [(f, out / f.relative_to(source).with_suffix(".wav")) for f in audio_files(source)]
    else:
        audio_files(source)
        dest = out / f"{source.stem}.wav" if out.is_dir() else out
        jobs = [(source, dest)]
    report = ConvertReport()
    start = time.perf_counter()
    rate = sample_rate or converter.sample_rate
    for src, dest in tqdm(jobs, unit="file", desc="convert", disable=not progress or len(jobs) < 2, dynamic_ncols=True):
        try:
            if dest.exists() and not force:
                raise VconvError(f"{dest}: already exists; pass --force to overwrite")
            if dest.resolve() == src.resolve():
                raise VconvError(f"{dest}: output would overwrite the source")
            wav = converter.prepare_audio(src, None, str(src))
            converted = converter.convert_wav(wav, embedding)
            if rate != converter.sample_rate:
                converted = resample(converted, converter.sample_rate, rate)
            save(dest, converted, rate, force=force)
        except VconvError as exc:
            message = str(exc)
            report.failed.append(BadFile(str(src), message.split(": ", 1)[-1] if message.startswith(str(src)) else message))
            continue
        report.converted.append((src, dest))
        report.audio_seconds += wav.size / converter.sample_rate
    report.wall_seconds = time.perf_counter() - start
    if len(jobs) == 1 and report.failed:
        raise VconvError(f"{report.failed[0].path}: {report.failed[0].reason}")
    return report


@dataclass
class Embeddings:
    """Utterance embeddings ``[N, S]`` and per-speaker means ``[K, S]``, all L2-normalised."""

    utterances: list[str]
    utterance_vectors: np.ndarray
    speakers: list[str]
    speaker_vectors: np.ndarray

    def similarity(self) -> tuple[list[str], np.ndarray]:
        """Cosine matrix between speakers (or utterances when each speaker has one)."""
        if len(self.speakers) > 1:
            return self.speakers, self.speaker_vectors @ self.speaker_vectors.T
        return self.utterances, self.utterance_vectors @ self.utterance_vectors.T

    def similarity_table(self) -> str:
        names, matrix = self.similarity()
        short = [n if len(n) <= 18 else "…" + n[-17:] for n in names]
        width = max(8, *(len(n) for n in short))
        lines = [" " * width + " " + " ".join(f"{n:>{width}s}" for n in short)]
        for name, row in zip(short, matrix):
            lines.append(f"{name:>{width}s} " + " ".join(f"{v:>{width}.3f}" for v in row))
        return "\n".join(lines)

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """``.json`` (everything, by name), ``.npy`` (speaker matrix ``[K, S]`` in listed order) or ``.npz`` (all)."""
        path = Path(path)
        if path.exists() and not force:
            raise VconvError(f"{path}: already exists; pass --force to overwrite")
        suffix = path.suffix.lower()
        if suffix not in {".json", ".npy", ".npz"}:
            raise VconvError(f"{path}: unsupported output; use .json, .npy or .npz")
        with atomic_path(path) as tmp:
            if suffix == ".json":
                payload = {
                    "utterances": {n: v.round(6).tolist() for n, v in zip(self.utterances, self.utterance_vectors)},
                    "speakers": {n: v.round(6).tolist() for n, v in zip(self.speakers, self.speaker_vectors)},
                }
                tmp.write_text(json.dumps(payload) + "\n")
            elif suffix == ".npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, self.speaker_vectors.astype(np.float32))
            else:
                with open(tmp, "wb") as fh:
                    np.savez(fh, utterances=np.array(self.utterances), utterance_vectors=self.utterance_vectors,
                             speakers=np.array(self.speakers), speaker_vectors=self.speaker_vectors)
        return path


def embed_paths(converter: VoiceConverter, paths: Sequence[str | Path], progress: bool = True) -> Embeddings:
    """Each folder argument is one speaker (all its audio); each file argument is a speaker of its own."""
    groups: dict[str, list[Path]] = {}
    for arg in map(Path, paths):
        name = arg.name if arg.is_dir() else arg.stem
        while name in groups:
            name += "'"
        groups[name] = audio_files(arg)
    names, vectors, speaker_vectors = [], [], []
    bar = tqdm(total=sum(len(v) for v in groups.values()), unit="file", desc="embed", disable=not progress)
    for files in groups.values():
        rows = []
        for f in files:
            rows.append(converter.embed([f])[0])
            names.append(str(f))
            bar.update(1)
        vectors += rows
        mean = np.mean(rows, axis=0)
        speaker_vectors.append(mean / max(np.linalg.norm(mean), 1e-12))
    bar.close()
    return Embeddings(names, np.stack(vectors), list(groups), np.stack(speaker_vectors))
