"""Reconstruction losses for training a vocoder (used by :mod:`vconv.training.vocoder_trainer`).

* :class:`MultiResolutionSTFTLoss` - spectral convergence + log-magnitude L1 at several STFT sizes
  (Yamamoto et al., Parallel WaveGAN 2020): several resolutions so that neither time nor frequency
  detail is favoured, and the phase must be coherent across overlapping frames of each size.
* :class:`MelL1Loss` - L1 between log-mels of prediction and target, made by the same
  :class:`~vconv.audio.logmel.LogMel` as the features (HiFi-GAN's / Vocos's main reconstruction term).
* :class:`PhaseLoss` - anti-wrapping losses on the predicted STFT phase against the real one
  (instantaneous phase, group delay, instantaneous frequency; Ai & Ling, APNet 2023): direct phase
  supervision, which teaches coherent phase in far fewer steps than an adversary does.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vconv.audio.logmel import LogMel
from vconv.config import FeatureConfig

__all__ = ["MultiResolutionSTFTLoss", "MelL1Loss", "PhaseLoss"]

DEFAULT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((256, 64, 256), (512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))


class MultiResolutionSTFTLoss(nn.Module):
    """``(pred [B, T], target [B, T]) -> scalar``: mean over resolutions of SC + log-magnitude L1.

    ``resolutions`` are ``(n_fft, hop, win)`` triples; the defaults suit 16 kHz and segments of >= 8192
    samples.
    """

    def __init__(self, resolutions: Sequence[tuple[int, int, int]] = DEFAULT_RESOLUTIONS, eps: float = 1e-5):
        super().__init__()
        self.resolutions = [tuple(r) for r in resolutions]
        self.eps = eps
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def _mag(self, wav: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop, win = self.resolutions[i]
        spec = torch.stft(wav.float(), n_fft, hop, win, window=getattr(self, f"window{i}"), center=True,
                          pad_mode="constant", return_complex=True)
        return spec.abs().clamp_min(self.eps)  # [B, n_fft/2+1, frames]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros((), dtype=torch.float32)
        for i in range(len(self.resolutions)):
            p, t = self._mag(pred, i), self._mag(target, i)
            sc = torch.linalg.vector_norm(t - p, dim=(1, 2)) / torch.linalg.vector_norm(t, dim=(1, 2)).clamp_min(self.eps)
            total = total + sc.mean() + F.l1_loss(p.log(), t.log())
        return total / len(self.resolutions)


class MelL1Loss(nn.Module):
    """``(pred [B, T], target_log_mel [B, n_mels, F]) -> scalar``: L1 of LogMel(pred) against the target log-mel."""

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.logmel = LogMel(cfg)

    def forward(self, pred: torch.Tensor, target_log_mel: torch.Tensor) -> torch.Tensor:
        mel = self.logmel(pred.float())
        frames = min(mel.shape[-1], target_log_mel.shape[-1])
        return F.l1_loss(mel[..., :frames], target_log_mel[..., :frames].float())


def anti_wrap(angle: torch.Tensor) -> torch.Tensor:
    """``|angle|`` measured on the circle: the distance to the nearest multiple of 2π, in ``[0, π]``."""
    return torch.abs(angle - 2 * torch.pi * torch.round(angle / (2 * torch.pi)))


class PhaseLoss(nn.Module):
    """``(pred_phase, true_phase)``, both ``[B, n_freq, F]`` radians -> scalar.

    Sum of three anti-wrapped mean errors: the phase itself (IP), its difference along frequency (group
    delay, GD) and along time (instantaneous angular frequency, IAF). Raw phase errors are meaningless
    across a 2π wrap; the differences carry the structure that makes a phase sound natural (GD: where
    in the frame the energy sits; IAF: the exact frequency of each harmonic).
    """

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        ip = anti_wrap(pred - true).mean()
        gd = anti_wrap(torch.diff(pred, dim=1) - torch.diff(true, dim=1)).mean()
        iaf = anti_wrap(torch.diff(pred, dim=2) - torch.diff(true, dim=2)).mean()
        return ip + gd + iaf
