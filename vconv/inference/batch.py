"""File-level conversion and embedding, as `vconv convert` and `vconv embed` use them.

``convert_paths`` converts one file or a whole tree (mirrored under the output folder) with one loaded
model, and keeps going past bad files: they are reported at the end with their reason. What it reads
and writes is checked first by :mod:`vconv.inference.plan` (the CLI does that before loading the model).
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

from vconv.audio.io import audio_info, resample, save
from vconv.data.manifest import BadFile
from vconv.errors import VconvError, printable
from vconv.fileio import atomic_path
from vconv.inference.converter import TargetVoice, VoiceConverter, limit_peak
from vconv.inference.long_files import convert_long_file
from vconv.inference.plan import ConversionPlan, EmbeddingPlan, plan_conversions, plan_embeddings
from vconv.inference.target_match import noise_floor_note
from vconv.inference.targets import MAX_REFERENCE_SECONDS
from vconv.inference.voice_file import looks_like_voice_file, stale_register_note


@dataclass
class ConvertReport:
    """What a conversion run did: ``converted`` ``(source, output)`` pairs and the ``failed`` files with reasons."""

    converted: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[BadFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know of outputs that were written
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    target_seconds: float = 0.0  # preparing the target (embedding, statistics, a fit), once for every source
    target_origin: str = "computed"  # or "cache", "file" (TargetVoice.origin)

    def summary(self) -> str:
        """One line of counts and speed (the failures themselves are in ``failed``; the CLI lists them on stderr). The
        real-time factor is the conversion's alone; the target's preparation (a voice fit, once per target) is its own
        figure, since it does not grow with the audio."""
        rtf = self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0
        text = f"converted {len(self.converted)} file(s), {self.audio_seconds:.1f} s of audio, real-time factor {rtf:.3f}"
        if self.converted:
            text += f"; target prepared in {self.target_seconds:.2f} s" + ("" if self.target_origin == "computed" else f" ({self.target_origin})")
        return text + (f"; {len(self.failed)} failed" if self.failed else "")


def convert_paths(
    converter: VoiceConverter,
    source: str | Path,
    targets: Sequence[str | Path],
    out: str | Path,
    *,
    force: bool = False,
    sample_rate: int | None = None,
    progress: bool = True,
    plan: ConversionPlan | None = None,
) -> ConvertReport:
    """Convert ``source`` (file or folder) to the voice of ``targets`` (files and/or folders, averaged).

    A folder source mirrors its tree under ``out`` (``a/b.flac`` → ``OUT/a/b.wav``); a file source is
    written to ``out`` (or into ``out`` when that is an existing folder). Everything is checked first by
    :func:`~vconv.inference.plan.plan_conversions` (pass its ``plan`` to skip the second check; the CLI
    makes it before loading the model): no output may be a source or a reference, or be shared by two
    sources. Existing outputs are kept unless ``force``. Bad target references are an error (nothing to
    convert to); a bad source file in a folder is reported and skipped.
    """
    if plan is None:
        plan = plan_conversions(source, targets, out, force=force, sample_rate=sample_rate)
    report = ConvertReport(failed=list(plan.failed))
    if not plan.jobs:
        return report
    started = time.perf_counter()
    target = converter.target_voice(plan.refs)  # embedding and spectrum statistics, once for every source
    report.target_seconds, report.target_origin = time.perf_counter() - started, target.origin
    skipped = converter.matching_skipped(target)
    if skipped:
        report.notes.append(skipped)
    if target.fit_losses:
        report.notes.append(fit_note(target.fit_losses, target.origin))
    noise = noise_floor_note(target.spectrum, converter.frontend.logmel.band_centres)
    report.notes += [noise] if noise and converter.target_match != "off" else []
    report.notes += long_reference_notes([r for r in plan.refs if not looks_like_voice_file(r)])
    stale = stale_register_note(target, plan.refs[0])
    report.notes += [stale] if stale else []
    start = time.perf_counter()
    rate = plan.sample_rate if plan.sample_rate is not None else converter.sample_rate
    jobs = plan.jobs
    for src, dest in tqdm(jobs, unit="file", desc="convert", disable=not progress or len(jobs) < 2, dynamic_ncols=True):
        try:
            if dest.exists() and not force:  # made since the plan was checked
                raise VconvError(f"{dest}: already exists; pass --force to overwrite")
            report.audio_seconds += convert_one(converter, src, target, dest, rate=rate, force=force)
        except VconvError as exc:
            report.failed.append(BadFile.from_error(src, exc))
            continue
        report.converted.append((src, dest))
    report.wall_seconds = time.perf_counter() - start
    if plan.single and report.failed:
        raise VconvError(f"{report.failed[0].path}: {report.failed[0].reason}")
    return report


def convert_one(converter: VoiceConverter, src: Path, target: TargetVoice, dest: Path, *, rate: int, force: bool) -> float:
    """Convert one file; returns its seconds. A source longer than one chunk is converted in bounded memory
    (:mod:`vconv.inference.long_files`); a shorter one, in memory."""
    if is_long(src, converter.sample_rate):
        return convert_long_file(converter, src, target, dest, rate=rate, force=force)
    wav = converter.prepare_audio(src, None, str(src))
    converted = converter.convert_wav(wav, target)
    if rate != converter.sample_rate:  # resampling can overshoot the limited peak: limit again
        converted = limit_peak(resample(converted, converter.sample_rate, rate))
    save(dest, converted, rate, force=force)
    return wav.size / converter.sample_rate


def fit_note(losses: Sequence[float], origin: str = "computed") -> str:
    """One line on a voice fit (:mod:`vconv.inference.voice_fit`): its steps and the references' reconstruction error,
    and where the fitted voice came from when it was not fitted now (the cache, a voice file)."""
    where = {"cache": " (from the cache of prepared voices)", "file": " (from the voice file)"}.get(origin, "")
    return (f"voice fitted to the target references in {len(losses) - 1} steps{where}: their reconstruction L1 "
            f"{losses[0]:.3f} -> {losses[-1]:.3f}")


def long_reference_notes(paths: Sequence[Path]) -> list[str]:
    """A note for each reference longer than :data:`MAX_REFERENCE_SECONDS`: only its beginning is used."""
    notes = []
    for path in paths:
        info = audio_info(path)
        if info.frames / info.samplerate > MAX_REFERENCE_SECONDS:
            notes.append(f"{path}: {info.frames / info.samplerate / 60:.1f} min long; its first "
                         f"{MAX_REFERENCE_SECONDS:.0f} s are used for the voice")
    return notes


def is_long(path: Path, rate: int, chunk_seconds: float = 20.0) -> bool:
    """Whether ``path`` (by its header) is longer than one conversion chunk at the model's ``rate``."""
    info = audio_info(path)
    return info.frames / info.samplerate > chunk_seconds + 1.0 / rate


@dataclass
class Embeddings:
    """Utterance embeddings ``[N, S]`` and per-speaker means ``[K, S]``, all L2-normalised."""

    utterances: list[str]
    utterance_vectors: np.ndarray
    speakers: list[str]
    speaker_vectors: np.ndarray
    failed: list[BadFile] = field(default_factory=list)  # files skipped, with the reason

    def similarity(self) -> tuple[list[str], np.ndarray]:
        """Cosine matrix between speakers (or utterances when each speaker has one)."""
        if len(self.speakers) > 1:
            return self.speakers, self.speaker_vectors @ self.speaker_vectors.T
        return self.utterances, self.utterance_vectors @ self.utterance_vectors.T

    def similarity_table(self) -> str:
        names, matrix = self.similarity()
        names = [printable(n) for n in names]  # file and folder names: escaped before they are put into rows
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


def embed_paths(converter: VoiceConverter, paths: Sequence[str | Path], progress: bool = True,
                plan: EmbeddingPlan | None = None, *, allow_empty: bool = False) -> Embeddings:
    """Each folder argument is one speaker (all its audio); each file argument is a speaker of its own.

    A file that cannot be embedded is listed in ``failed`` and skipped (its speaker keeps the others);
    when none can, the first failure is raised (with ``allow_empty``, an empty result is returned instead).
    """
    plan = plan or plan_embeddings(paths)
    failed = list(plan.failed)
    names, vectors, speakers, speaker_vectors = [], [], [], []
    bar = tqdm(total=sum(len(v) for v in plan.groups.values()), unit="file", desc="embed", disable=not progress)
    for speaker, files in plan.groups.items():
        rows = []
        for f in files:
            try:
                rows.append(converter.embed([f])[0])
                names.append(str(f))
            except VconvError as exc:
                failed.append(BadFile.from_error(f, exc))
            bar.update(1)
        if rows:
            vectors += rows
            mean = np.mean(rows, axis=0)
            speakers.append(speaker)
            speaker_vectors.append(mean / max(np.linalg.norm(mean), 1e-12))
    bar.close()
    if not vectors and allow_empty:
        return Embeddings([], np.zeros((0, 0), np.float32), [], np.zeros((0, 0), np.float32), failed)
    if not vectors:
        first = failed[0] if failed else BadFile(", ".join(map(str, paths)), "no audio to embed")
        raise VconvError(f"{first.path}: {first.reason}")
    return Embeddings(names, np.stack(vectors), speakers, np.stack(speaker_vectors), failed)
