"""The pitch judge: the F0 contour every pitch measure of ``vconv evaluate`` (and the benchmarks) is computed from.

Praat's autocorrelation tracker (``To Pitch (ac)``, its default costs) through parselmouth, weight-free and none of
the trackers a model reads (our YIN, SwiftF0). It replaced WORLD dio + stonemask on 2026-11-28: on the held-out
voices' own recordings Praat, pYIN, harvest and dio agree within 50 cents on most frames of four voices, but on
piper_joe dio and harvest agree with nothing while Praat and pYIN agree with each other (SwiftF0 and our YIN read the
same register), so dio's contour of that voice, and of conversions to it, was noise (``python
benchmarks/bench_pitch.py judges``; ``recipes/voices/MODEL_HISTORY.md``, "The pitch judge").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vconv.errors import VconvError
from vconv.evaluation.judge_common import missing_extra
from vconv.evaluation.metrics import FRAME_PERIOD_MS


def parselmouth_module() -> Any:
    """parselmouth, or a one-line error naming the eval extra (an evaluation checks it before any work)."""
    try:
        import parselmouth
    except ImportError:
        raise missing_extra("praat-parselmouth") from None
    return parselmouth


def f0_contour(
    wav: np.ndarray, sr: int, frame_period: float = FRAME_PERIOD_MS, f0_floor: float = 60.0, f0_ceil: float = 700.0
) -> np.ndarray:
    """F0 in Hz per frame ``[F]`` (0 where unvoiced) of mono ``wav [T]``, by Praat's autocorrelation tracker.

    Frame ``i`` at ``i * frame_period`` ms, as many frames as WORLD's analyses give (``mel_cepstrum``, whose DTW path
    indexes these contours too); Praat's own frames, centred on its window, are taken nearest, so the first and last
    half window (25 ms at a 60 Hz floor) are unvoiced. A signal too short for Praat's window (three periods of
    ``f0_floor``) is all unvoiced.
    """
    pm = parselmouth_module()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    frames = int(1000.0 * len(x) / sr / frame_period) + 1  # WORLD's count, in WORLD's order of operations
    try:
        pitch = pm.Sound(x, sr).to_pitch_ac(time_step=frame_period / 1000.0, pitch_floor=f0_floor, pitch_ceiling=f0_ceil)
    except pm.PraatError:  # shorter than Praat's window
        return np.zeros(frames)
    hz = pitch.selected_array["frequency"]  # [n] Hz, 0 unvoiced, frame j centred at x1 + j * dx
    j = np.rint((np.arange(frames) * frame_period / 1000.0 - pitch.x1) / pitch.dx).astype(int)
    return np.where((j >= 0) & (j < len(hz)), hz[np.clip(j, 0, len(hz) - 1)], 0.0)


def pitch_judge_version() -> str | None:
    """What :func:`f0_contour` runs, for a report's list of judges (``None`` without the eval extra)."""
    try:
        parselmouth = parselmouth_module()
    except VconvError:
        return None
    return (f"praat-parselmouth {parselmouth.VERSION} (Praat {parselmouth.PRAAT_VERSION}), To Pitch (ac), "
            f"{FRAME_PERIOD_MS:g} ms, 60-700 Hz")
