"""Audio in and out: load anything libsndfile reads as mono float32 at a chosen rate, and save atomically.

Every way a file can be unusable ends in a :class:`~vconv.errors.VconvError` with one line naming the
file and the reason (the clear-errors contract of docs/ARCHITECTURE.md), so the CLI never shows a traceback. Two things are converted rather than
refused: the channel count (downmixed to mono by averaging) and the sample rate (resampled with soxr).

Source audio is only ever read: ``save`` refuses to overwrite unless asked and writes through a
temporary file that is renamed into place, so an interrupted write never leaves half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from vconv.errors import VconvError
from vconv.fileio import atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
SILENCE_PEAK = 1e-4  # below this peak (-80 dBFS) a file counts as silent
DEFAULT_MAX_SECONDS = 30 * 60.0  # a whole-file load above this is refused: stream it in blocks instead


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Header of an audio file (frames, rate, channels) without reading samples."""
    path = Path(path)
    _check_exists(path)
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise VconvError(f"{path}: not a readable audio file ({_reason(exc)})") from None


def load(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    min_seconds: float = 0.0,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_silent: bool = False,
) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 ``[T]`` in [-1, 1] and resample to ``sample_rate`` (if given).

    Returns ``(wav, sr)``. Raises :class:`VconvError` for a missing, unreadable, non-audio, empty,
    all-silent (unless ``allow_silent``), NaN/Inf-containing, too short (< ``min_seconds``) or too long
    (> ``max_seconds``) file.
    """
    path = Path(path)
    info = audio_info(path)
    if info.frames == 0:
        raise VconvError(f"{path}: empty audio (0 samples)")
    seconds = info.frames / info.samplerate
    if max_seconds is not None and seconds > max_seconds:
        raise VconvError(
            f"{path}: {seconds / 60:.1f} min is longer than the {max_seconds / 60:.0f} min limit for one load; "
            "split it or use the streaming converter"
        )
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise VconvError(f"{path}: could not decode audio ({_reason(exc)})") from None
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    validate(wav, sr, path, min_seconds=min_seconds, allow_silent=allow_silent)
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


def validate(
    wav: np.ndarray, sr: int, name: str | Path = "<array>", *, min_seconds: float = 0.0, allow_silent: bool = False
) -> None:
    """Check a mono waveform ``[T]`` for the bad-input cases; raise a one-line :class:`VconvError`."""
    if wav.ndim != 1:
        raise VconvError(f"{name}: expected mono audio [T], got shape {tuple(wav.shape)}")
    if wav.size == 0:
        raise VconvError(f"{name}: empty audio (0 samples)")
    if not np.all(np.isfinite(wav)):
        bad = int(np.count_nonzero(~np.isfinite(wav)))
        raise VconvError(f"{name}: contains {bad} NaN/Inf samples; the file is corrupt")
    if wav.size / sr < min_seconds:
        raise VconvError(f"{name}: too short ({wav.size / sr:.2f} s < {min_seconds:.2f} s minimum)")
    if not allow_silent and float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise VconvError(f"{name}: audio is silent (peak below -80 dBFS)")


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``[T]`` float32 with soxr (high quality, deterministic)."""
    if orig_sr == target_sr:
        return wav
    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def peak_normalize(wav: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale ``[T]`` so that its largest absolute sample equals ``peak`` (silence is returned unchanged)."""
    top = float(np.max(np.abs(wav))) if wav.size else 0.0
    return wav if top < SILENCE_PEAK else (wav * (peak / top)).astype(np.float32)


def loudness_normalize(wav: np.ndarray, target_dbfs: float = -23.0, peak_limit: float = 0.99) -> np.ndarray:
    """Scale ``[T]`` to an RMS level of ``target_dbfs`` (computed over non-silent frames), limited to ``peak_limit``."""
    frame = 400
    n = max(1, wav.size // frame)
    frames = wav[: n * frame].reshape(n, -1) if wav.size >= frame else wav.reshape(1, -1)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    active = rms[rms > np.max(rms) * 0.05] if np.max(rms) > 0 else rms
    level = float(np.sqrt(np.mean(active**2))) if active.size else 0.0
    if level <= 0:
        return wav
    gain = 10 ** (target_dbfs / 20) / level
    top = float(np.max(np.abs(wav))) * gain
    if top > peak_limit:
        gain *= peak_limit / top
    return (wav * gain).astype(np.float32)


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


def save(path: str | Path, wav: np.ndarray, sr: int, *, force: bool = False, subtype: str = "PCM_16") -> Path:
    """Write ``[T]`` float audio atomically (temp file in the same folder, then rename).

    An existing file is kept unless ``force``: nothing the user owns is overwritten by accident.
    The format follows the extension (wav, flac, ogg); samples are clipped to [-1, 1].
    """
    path = Path(path)
    if path.exists() and not force:
        raise VconvError(f"{path}: already exists; pass --force to overwrite")
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise VconvError(f"{path}: unsupported output extension; use .wav, .flac or .ogg")
    if fmt == "OGG":
        subtype = "VORBIS"
    data = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sr, format=fmt, subtype=subtype)
    return path


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise VconvError(f"{path}: file not found")
    if path.is_dir():
        raise VconvError(f"{path}: is a directory, expected an audio file")
    if not os.access(path, os.R_OK):
        raise VconvError(f"{path}: permission denied")


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
