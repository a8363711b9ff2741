"""The pitch judge: the F0 contour every pitch measure of ``vconv evaluate`` (and the benchmarks) is computed from.

Praat's autocorrelation tracker (``To Pitch (ac)``, its default costs) through parselmouth, weight-free and none of
the trackers a model reads (our YIN, SwiftF0). It replaced WORLD dio + stonemask on 2026-11-28: on the held-out
voices' own recordings Praat, pYIN, harvest and dio agree within 50 cents on 80-98 % of the frames of four voices, but
on piper_joe dio (median 169 Hz) and harvest (119 Hz) agree with nothing while Praat and pYIN agree with each other
(89 and 87 Hz, 84 % of frames; SwiftF0 and our YIN say 90), so dio's contour of that voice, and of conversions to it,
was noise (``python benchmarks/bench_pitch.py judges``; ``recipes/voices/MODEL_HISTORY.md``, "The pitch judge").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vconv.evaluation.metrics import FRAME_PERIOD_MS, eval_module


def parselmouth_module() -> Any:
    """parselmouth, or a one-line error naming the eval extra (an evaluation checks it before any work)."""
    return eval_module("parselmouth", "praat-parselmouth", "pitch measures")


def f0_contour(
    wav: np.ndarray, sr: int, frame_period: float = FRAME_PERIOD_MS, f0_floor: float = 60.0, f0_ceil: float = 700.0
) -> np.ndarray:
    """F0 in Hz per frame ``[F]`` (0 where unvoiced) of ``wav [T]``, by Praat's autocorrelation tracker; frame ``i``
    at ``i * frame_period`` ms, the grid of WORLD's analyses (MCD), Praat's own frames (centred on its window) taken
    nearest. Too short for Praat's window (three periods of ``f0_floor``): all unvoiced."""
    pm = parselmouth_module()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    frames = int(len(x) / sr * 1000.0 / frame_period) + 1
    if len(x) < 3 * sr / f0_floor:  # Praat needs three periods of the lowest F0 in its window
        return np.zeros(frames)
    pitch = pm.Sound(x, sr).to_pitch_ac(time_step=frame_period / 1000.0, pitch_floor=f0_floor, pitch_ceiling=f0_ceil)
    hz = pitch.selected_array["frequency"]  # [n] Hz, 0 unvoiced, frame j at x1 + j * dx
    j = np.rint((np.arange(frames) * frame_period / 1000.0 - pitch.x1) / pitch.dx).astype(int)
    inside = (j >= 0) & (j < len(hz))
    return np.where(inside, hz[np.clip(j, 0, max(len(hz) - 1, 0))], 0.0) if len(hz) else np.zeros(frames)


def pitch_judge_version() -> str | None:
    """What :func:`f0_contour` runs, for a report's list of judges (``None`` without the eval extra)."""
    try:
        import parselmouth
    except ImportError:
        return None
    return f"praat-parselmouth {parselmouth.VERSION} (Praat {parselmouth.PRAAT_VERSION}), To Pitch (ac)"
