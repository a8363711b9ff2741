"""Timbre perturbation of the content path, in the log-mel domain (NANSY / Seed-VC idea).

During training the content encoder sees a perturbed copy of the segment while the decoder must rebuild
the clean one, so the encoder learns to ignore what the perturbation changes (formant/pitch scale and
spectral tilt: timbre) and keep what it does not (the phonetic sequence). With few training speakers
this is worth more than any bottleneck tuning.

Two cheap, differentiable-free operations on a log-mel ``[n_mels, T]``:

* **frequency warp**: every mel band takes the value found at ``f / alpha`` on the Hz axis, which
  scales formants and harmonics together, like a vocal-tract-length (and pitch) change;
* **random EQ**: a smooth curve (a few low-order cosines over the bands) added in the log domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vconv.audio.mel_filters import mel_frequencies
from vconv.config import FeatureConfig


@dataclass(frozen=True)
class PerturbConfig:
    """Ranges of the perturbation; ``probability`` is per item."""

    probability: float = 0.9
    warp_min: float = 0.85
    warp_max: float = 1.18
    eq_db: float = 6.0
    eq_terms: int = 4


class MelPerturber:
    """Applies a random warp + EQ to ``[n_mels, T]`` log-mels with a caller-supplied generator."""

    def __init__(self, features: FeatureConfig, cfg: PerturbConfig = PerturbConfig()):
        self.cfg = cfg
        fmax = features.fmax or features.sample_rate / 2
        self.centres = mel_frequencies(features.n_mels + 2, fmin=features.fmin, fmax=fmax)[1:-1]
        self.n_mels = features.n_mels

    def warp(self, mel: torch.Tensor, alpha: float) -> torch.Tensor:
        """Band ``k`` takes the (interpolated) value at frequency ``centre_k / alpha``; ``[n_mels, T]``."""
        source = np.clip(self.centres / alpha, self.centres[0], self.centres[-1])
        position = np.interp(source, self.centres, np.arange(self.n_mels))
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, self.n_mels - 1)
        frac = torch.from_numpy((position - low).astype(np.float32))[:, None]
        return mel[low] * (1 - frac) + mel[high] * frac

    def __call__(self, mel: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        u = torch.rand(3 + self.cfg.eq_terms, generator=gen)
        if float(u[0]) >= self.cfg.probability:
            return mel
        log_lo, log_hi = np.log(self.cfg.warp_min), np.log(self.cfg.warp_max)
        alpha = float(np.exp(log_lo + float(u[1]) * (log_hi - log_lo)))
        out = self.warp(mel, alpha)
        # smooth EQ: sum of cosines with random signed amplitudes, at most eq_db in total (dB → natural log)
        k = torch.arange(self.n_mels, dtype=torch.float32) / max(1, self.n_mels - 1)
        weights = (u[3:] * 2 - 1) / self.cfg.eq_terms
        curve = sum(w * torch.cos(np.pi * (i + 1) * k) for i, w in enumerate(weights))
        gain = self.cfg.eq_db / 20 * np.log(10) * float(u[2])
        return out + gain * curve[:, None]
