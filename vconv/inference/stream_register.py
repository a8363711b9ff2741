"""The source's pitch register as a stream learns it: its voiced log-F0 so far, pooled, with the early bias taken out.

A file's melody is whitened on the whole file's register (:mod:`vconv.models.contour`). A stream has heard only the
voiced frames so far, and over an utterance's first second that estimate is not only noisy but *biased*: speech
declines in pitch, so the first syllables stand above the utterance's mean, and a spread measured over a few
syllables is smaller than the whole utterance's. Each window's melody is then placed on a level that falls and
whitened by a spread that widens as the stream goes on, which the listener hears as a drifting melody (and the F0 correlation with
the source counts as lost). On the voices recipe's training utterances, after ``n`` voiced frames the running mean
stands :data:`LEVEL_BIAS` nats above the whole utterance's and the running spread is :data:`SPREAD_RATIO` of it
(``recipes/voices/local/stream_register_bias.py`` measures both); a stream without its speaker's known register takes
both out of its estimate. A stream given its speaker's register (``source_voice``) starts from it, weighing as
:data:`vconv.inference.streaming.SOURCE_PRIOR_SECONDS` of voiced speech, and is not corrected (the known register is
the whole of other recordings, not a few syllables of this one).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vconv.models.contour import DEFAULT_SPREAD, LOG_F0_CENTER, MIN_SPREAD, MIN_VOICED_FRAMES, Register

# (voiced frames, nats the running mean stands above the whole utterance's), measured from 8 to 192 frames on 1,188
# training utterances of the voices recipe (docs/STREAMING.md, "The stream's early register"); the ends are assumed:
# nothing to correct at one frame, and nothing from 384 (~6 s of voicing), where the measured bias is about gone
LEVEL_BIAS = ((1, 0.0), (8, 0.052), (16, 0.083), (24, 0.080), (32, 0.074), (48, 0.056), (64, 0.039), (96, 0.025),
              (128, 0.017), (192, 0.014), (384, 0.0))
# (voiced frames, the running spread over the whole utterance's), the same utterances; from MIN_VOICED_FRAMES on,
# since fewer frames take DEFAULT_SPREAD; 1.0 from 384 frames assumed, as above
SPREAD_RATIO = ((16, 0.668), (24, 0.740), (32, 0.768), (48, 0.802), (64, 0.831), (96, 0.858), (128, 0.916),
                (192, 0.928), (384, 1.0))


def early_bias(frames: float) -> tuple[float, float]:
    """``(level bias in nats, spread ratio)`` of a register learned from ``frames`` voiced frames of an utterance,
    interpolated in log frames between the measured points (:data:`LEVEL_BIAS`, :data:`SPREAD_RATIO`); ``(0, 1)``
    where nothing is corrected (no spread is measured below :data:`MIN_VOICED_FRAMES`)."""
    at = math.log(max(frames, 1.0))
    level = np.interp(at, [math.log(n) for n, _ in LEVEL_BIAS], [b for _, b in LEVEL_BIAS], left=0.0, right=0.0)
    ratio = np.interp(at, [math.log(n) for n, _ in SPREAD_RATIO], [r for _, r in SPREAD_RATIO], left=1.0, right=1.0)
    return float(level), float(ratio)


class RunningRegister:
    """The source's voiced log-F0 heard so far as ``[count, Σ log-F0, Σ log-F0²]``, from a known register if given.

    ``prior``: the speaker's register from other recordings, weighing as at most ``prior_frames`` voiced frames (the
    stream's own then move it); None: learned from the stream alone, its early bias corrected (module docstring)."""

    def __init__(self, prior: Register | None = None, prior_frames: int = 0) -> None:
        self.corrected = prior is None or not prior.frames  # a prior of no frames leaves the stream to learn alone
        count = 0.0 if prior is None else float(min(prior.frames, prior_frames))
        self.sums = np.zeros(3) if prior is None else np.array(
            [count, count * prior.mean, count * (prior.spread**2 + prior.mean**2)])

    def estimate(self, voiced: torch.Tensor) -> Register:
        """The register of the frames so far pooled with ``voiced [N]`` (log-F0 of the window's voiced frames not yet
        added: the block's and its look-ahead's), which are not kept."""
        count, total, squares = self.sums + _sums(voiced)
        register = register_of_sums(count, total, squares)
        if not self.corrected or not register.frames:
            return register
        level, ratio = early_bias(count)
        spread = register.spread / ratio if register.trusted else register.spread  # ratio <= 1: never under MIN_SPREAD
        return Register(register.mean - level, spread, register.frames)

    def add(self, voiced: torch.Tensor) -> None:
        """Keep ``voiced [N]`` (the emitted block's voiced log-F0) in the register."""
        self.sums += _sums(voiced)


def _sums(voiced: torch.Tensor) -> np.ndarray:
    """``voiced [N]`` log-F0 -> ``[N, Σ, Σ²]`` in float64."""
    values = voiced.double()
    return np.array([values.numel(), float(values.sum()), float((values**2).sum())])


def register_of_sums(count: float, total: float, squares: float) -> Register:
    """The :class:`Register` of voiced log-F0 given as a count, a sum and a sum of squares (uncorrected)."""
    if count <= 0:
        return Register(LOG_F0_CENTER, DEFAULT_SPREAD, 0)
    mean = total / count
    if count < MIN_VOICED_FRAMES:
        return Register(mean, DEFAULT_SPREAD, int(count))
    spread = math.sqrt(max(squares / count - mean * mean, 0.0))
    return Register(mean, max(spread, MIN_SPREAD), int(count))
