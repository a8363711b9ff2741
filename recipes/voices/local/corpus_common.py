"""What every corpus source of ``build_corpus.py`` shares: the output format and the writing of one utterance.

Every utterance becomes ``ROOT/<speaker>/<stem>.wav`` (16 kHz mono PCM_16, silence trimmed, peak 0.9)
with an optional same-stem ``.txt`` transcript. Writes are atomic (temp file + rename) and an existing
file is never rewritten, so a killed build simply continues on the next run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from vconv.audio.io import resample, save

SR = 16000
PEAK = 0.9
TRIM_DB = 40.0
TRIM_MARGIN = 0.1
MIN_SECONDS = 0.8  # shorter clips (grunts, "Hm.") teach the model little and upset the judges


def log(msg: str) -> None:
    print(msg, flush=True)


def trim_silence(wav: np.ndarray, sr: int, top_db: float = 40.0, margin_seconds: float = 0.05) -> np.ndarray:
    """Cut leading/trailing audio quieter than ``top_db`` below the loudest 25 ms frame, keeping a margin."""
    frame = max(1, int(0.025 * sr))
    hop = max(1, frame // 2)
    if wav.size <= frame:
        return wav
    n = 1 + (wav.size - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    energy_db = 10 * np.log10(np.mean(wav[idx].astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy_db > energy_db.max() - top_db)
    if loud.size == 0:
        return wav
    margin = int(margin_seconds * sr)
    start = max(0, loud[0] * hop - margin)
    end = min(wav.size, loud[-1] * hop + frame + margin)
    return wav[start:end]


def clean(wav: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at 16 kHz, trimmed and peak-normalised (silent input is returned as is)."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    wav = resample(wav, sr, SR)
    wav = trim_silence(wav, SR, top_db=TRIM_DB, margin_seconds=TRIM_MARGIN)
    top = float(np.max(np.abs(wav))) if wav.size else 0.0
    if top > 1e-4:
        wav = wav * (PEAK / top)
    return wav.astype(np.float32)


def trimmed_seconds(wav: np.ndarray, sr: int) -> float:
    """Duration of ``wav`` after the same silence trimming as :func:`clean` (cheap: no resampling)."""
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    return trim_silence(wav, sr, top_db=TRIM_DB, margin_seconds=TRIM_MARGIN).size / sr


def write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text.strip() + "\n")
    os.replace(tmp, path)


def write_utterance(folder: Path, stem: str, wav: np.ndarray, sr: int, text: str | None = None) -> Path:
    """Clean and write ``folder/stem.wav`` (+ ``stem.txt`` when ``text``); existing files are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    wav_path = folder / f"{stem}.wav"
    if not wav_path.exists():
        save(wav_path, clean(wav, sr), SR)
    if text and not (folder / f"{stem}.txt").exists():
        write_text(folder / f"{stem}.txt", text)
    return wav_path
