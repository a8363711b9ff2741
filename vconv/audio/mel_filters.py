"""Mel filterbanks in numpy: what the log-mel and Whisper front-ends need.

The conversion path must not import librosa or scipy (together more than 2 s of start-up here, mostly
``scipy.signal`` and numba, for a few hundred numbers). The filterbank is Slaney's, as in the Auditory
Toolbox and librosa's default (``htk=False``, ``norm="slaney"``): linear below 1 kHz, logarithmic above,
each triangle scaled to unit area. ``tests/test_mel_filters.py`` checks every function against librosa,
which the training and evaluation extras still use.
"""

from __future__ import annotations

import numpy as np

_LINEAR_HZ_PER_MEL = 200.0 / 3  # Slaney: 66.7 Hz per mel below the break
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL  # 15 mels
_LOG_STEP = np.log(6.4) / 27.0  # mels per log-Hz above the break: 27 mels span 1 kHz .. 6.4 kHz


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel of ``hz`` (any shape)."""
    hz = np.asanyarray(hz, dtype=np.float64)
    linear = hz / _LINEAR_HZ_PER_MEL
    logarithmic = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
    return np.where(hz >= _BREAK_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asanyarray(mel, dtype=np.float64)
    linear = mel * _LINEAR_HZ_PER_MEL
    logarithmic = _BREAK_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _BREAK_MEL) - _BREAK_MEL))
    return np.where(mel >= _BREAK_MEL, logarithmic, linear)


def mel_frequencies(n: int, fmin: float = 0.0, fmax: float = 11025.0) -> np.ndarray:
    """``[n]`` frequencies in Hz, evenly spaced on the Slaney mel scale from ``fmin`` to ``fmax`` inclusive."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n))


def slaney_mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Filterbank ``[n_mels, n_fft // 2 + 1]`` (float32): ``basis @ |STFT|`` gives the mel spectrum.

    Filter ``i`` is a triangle over the FFT bins from edge ``i`` to edge ``i + 2`` of ``n_mels + 2`` edges
    evenly spaced in mel between ``fmin`` and ``fmax`` (default Nyquist), peaking at edge ``i + 1``, and
    scaled by ``2 / (width in Hz)`` so every filter has the same area.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    bins_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_frequencies(n_mels + 2, fmin, fmax)
    widths = np.diff(edges)  # [n_mels + 1]
    distance = edges[:, None] - bins_hz[None, :]  # [n_mels + 2, bins]: edge minus bin, in Hz
    rising = -distance[:-2] / widths[:-1, None]  # 0 at the lower edge, 1 at the centre
    falling = distance[2:] / widths[1:, None]  # 1 at the centre, 0 at the upper edge
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)
