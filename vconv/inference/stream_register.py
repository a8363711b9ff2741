"""The source's pitch register as a stream learns it: its voiced log-F0 so far, pooled.

A file's melody is whitened on the whole file's register (:mod:`vconv.models.contour`). A stream has heard only the
voiced frames so far, so it pools them as they come; given its speaker's register from other recordings
(``source_voice``), it starts from that, weighing as :data:`vconv.inference.streaming.SOURCE_PRIOR_SECONDS` of voiced
speech. Over an utterance's first second the learned estimate is biased as well as noisy (speech declines in pitch,
and a few syllables' spread is narrow); taking that average bias out raised the streamed F0 correlation with the
source but cost words, and was not kept (docs/STREAMING.md, "The stream's early register").
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vconv.models.contour import DEFAULT_SPREAD, LOG_F0_CENTER, MIN_SPREAD, MIN_VOICED_FRAMES, Register


class RunningRegister:
    """The source's voiced log-F0 heard so far as ``[count, Σ log-F0, Σ log-F0²]``, from a known register if given.

    ``prior``: the speaker's register from other recordings, weighing as at most ``prior_frames`` voiced frames (the
    stream's own then move it); None: learned from the stream alone."""

    def __init__(self, prior: Register | None = None, prior_frames: int = 0) -> None:
        count = 0.0 if prior is None else float(min(prior.frames, prior_frames))
        self.sums = np.zeros(3) if prior is None else np.array(
            [count, count * prior.mean, count * (prior.spread**2 + prior.mean**2)])

    def estimate(self, voiced: torch.Tensor) -> Register:
        """The register of the frames so far pooled with ``voiced [N]`` (log-F0 of the window's voiced frames not yet
        added: the block's and its look-ahead's), which are not kept."""
        return register_of_sums(*(self.sums + _sums(voiced)))

    def add(self, voiced: torch.Tensor) -> None:
        """Keep ``voiced [N]`` (the emitted block's voiced log-F0) in the register."""
        self.sums += _sums(voiced)


def _sums(voiced: torch.Tensor) -> np.ndarray:
    """``voiced [N]`` log-F0 -> ``[N, Σ, Σ²]`` in float64."""
    values = voiced.double()
    return np.array([values.numel(), float(values.sum()), float((values**2).sum())])


def register_of_sums(count: float, total: float, squares: float) -> Register:
    """The :class:`Register` of voiced log-F0 given as a count, a sum and a sum of squares."""
    if count <= 0:
        return Register(LOG_F0_CENTER, DEFAULT_SPREAD, 0)
    mean = total / count
    if count < MIN_VOICED_FRAMES:
        return Register(mean, DEFAULT_SPREAD, int(count))
    spread = math.sqrt(max(squares / count - mean * mean, 0.0))
    return Register(mean, max(spread, MIN_SPREAD), int(count))
