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


# The speaker's own ceiling, from a first pass over the whole recording (De Looze & Hirst 2008: 1.9 x the 65th
# percentile of its voiced F0): a creaky phrase end that a 60-700 Hz search reads two or three octaves up (piper_joe, a
# ~90 Hz voice whose creak has harmonics ~70 Hz apart, read at 500-620 Hz) falls above it and is left unvoiced, as is
# anything else over ~0.9 octave above the 65th percentile. Their floor (0.72 x the 35th) is not taken: Praat's window
# is three periods of the floor, and a shorter one changed the voicing of 5-18 % of the frames of the other held-out
# voices.
RANGE_CEILING = (65.0, 1.9)  # (percentile of the first pass's voiced F0, factor)
# fewer voiced frames than this (0.1 s at the judge's 5 ms) say nothing about a range: the first pass stands
RANGE_MIN_FRAMES = 20


def f0_contour(
    wav: np.ndarray, sr: int, frame_period: float = FRAME_PERIOD_MS, f0_floor: float = 60.0, f0_ceil: float = 700.0,
    adaptive: bool = True,
) -> np.ndarray:
    """F0 in Hz per frame ``[F]`` (0 where unvoiced) of mono ``wav [T]``, by Praat's autocorrelation tracker.

    Frame ``i`` at ``i * frame_period`` ms, as many frames as WORLD's analyses give (``mel_cepstrum``, whose DTW path
    indexes these contours too); Praat's own frames, centred on its window, are taken nearest, so the first and last
    half window (25 ms at a 60 Hz floor) are unvoiced. A signal too short for Praat's window (three periods of
    ``f0_floor``) is all unvoiced. ``adaptive``: track twice, the second time under the recording's own ceiling
    (:func:`speaker_ceiling`); a frame the first pass read over that ceiling is unvoiced.
    """
    x = np.ascontiguousarray(wav, dtype=np.float64)
    frames = int(1000.0 * len(x) / sr / frame_period) + 1  # WORLD's count, in WORLD's order of operations
    f0 = _praat_f0(x, sr, frames, frame_period, f0_floor, f0_ceil)
    if adaptive:
        ceil = speaker_ceiling(f0, f0_floor, f0_ceil)
        if ceil != f0_ceil:
            # a frame the first pass read over the ceiling is unvoiced, not taken at the second pass's reading: under
            # the ceiling Praat reads a truly high stretch at a half or a third of its pitch, voiced
            f0 = np.where(f0 > ceil, 0.0, _praat_f0(x, sr, frames, frame_period, f0_floor, ceil))
    return f0


def speaker_ceiling(f0: np.ndarray, f0_floor: float, f0_ceil: float) -> float:
    """The recording's own ceiling in Hz from a first pass's contour ``f0 [F]`` searched over ``f0_floor``-``f0_ceil``:
    at least an octave over the floor, never over ``f0_ceil`` (``f0_ceil`` itself with too little voice to tell)."""
    voiced = f0[f0 > 0]
    if voiced.size < RANGE_MIN_FRAMES:
        return f0_ceil
    own = RANGE_CEILING[1] * float(np.percentile(voiced, RANGE_CEILING[0]))
    return min(f0_ceil, max(own, 2 * f0_floor))


def _praat_f0(x: np.ndarray, sr: int, frames: int, frame_period: float, floor: float, ceil: float) -> np.ndarray:
    """Praat's contour of ``x [T]`` (float64) between ``floor`` and ``ceil`` Hz on the ``frames`` judge frames."""
    pm = parselmouth_module()
    try:
        pitch = pm.Sound(x, sr).to_pitch_ac(time_step=frame_period / 1000.0, pitch_floor=floor, pitch_ceiling=ceil)
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
            f"{FRAME_PERIOD_MS:g} ms, 60-700 Hz, then under the recording's own ceiling "
            f"({RANGE_CEILING[1]:g} x q{RANGE_CEILING[0]:g}), frames read over it unvoiced")
