"""Discriminators for vocoder training: multi-period (HiFi-GAN) and multi-resolution STFT (UnivNet/Vocos).

Both take waveforms ``[B, T]`` and return, per sub-discriminator, a score map and the list of
intermediate activations (for feature matching), as a :class:`DiscriminatorOutput`.

* :class:`MultiPeriodDiscriminator`: the signal is folded into ``[B, 1, T/p, p]`` for each period
  ``p`` (2, 3, 5, 7, 11 - coprime, so together they see every periodicity of voiced speech) and judged
  by 2-D convs with kernels ``(k, 1)``: each column is one phase of the period.
* :class:`MultiResolutionDiscriminator`: 2-D convs over the log-magnitude STFT at several sizes; it
  judges the spectral texture (harmonics, noise floor) that the period discriminator sees poorly.

Widths are kept small (``channels``) because this trains on CPUs; they only exist at training time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["DiscriminatorOutput", "MultiPeriodDiscriminator", "MultiResolutionDiscriminator", "CombinedDiscriminator"]


@dataclass
class DiscriminatorOutput:
    """``scores``: one score map per sub-discriminator; ``features``: per sub-discriminator, its activations."""

    scores: list[torch.Tensor]
    features: list[list[torch.Tensor]]

    def split(self, n: int) -> tuple["DiscriminatorOutput", "DiscriminatorOutput"]:
        """Split a batch ``[real; fake]`` (first ``n`` items real) into two outputs."""
        a = DiscriminatorOutput([s[:n] for s in self.scores], [[f[:n] for f in fs] for fs in self.features])
        b = DiscriminatorOutput([s[n:] for s in self.scores], [[f[n:] for f in fs] for fs in self.features])
        return a, b


def run_stack(convs: nn.ModuleList, out: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Conv layers with leaky ReLU, then the output conv; returns ``(score, every layer's activation)``
    (the activations feed the feature-matching loss)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = out(x)
    feats.append(x)
    return x, feats


class PeriodDiscriminator(nn.Module):
    """``[B, T] -> (score [B, 1, T', p], activations)`` on the period-``p`` folding of the signal."""

    def __init__(self, period: int, channels: int = 32, kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        chans = [1, channels, channels * 4, channels * 8, channels * 16]
        pad = (kernel_size // 2, 0)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (kernel_size, 1), (stride, 1), padding=pad)) for i in range(4)
        )
        self.convs.append(weight_norm(nn.Conv2d(chans[-1], chans[-1], (kernel_size, 1), 1, padding=pad)))
        self.out = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, t = wav.shape
        if t % self.period:
            wav = F.pad(wav, (0, self.period - t % self.period), mode="reflect")
        x = wav.view(b, 1, -1, self.period)
        return run_stack(self.convs, self.out, x)


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        out = [d(wav) for d in self.discriminators]
        return DiscriminatorOutput([s for s, _ in out], [f for _, f in out])


class ResolutionDiscriminator(nn.Module):
    """``[B, T] -> (score [B, 1, frames', bins'], activations)`` on the log-magnitude STFT of one size."""

    window: torch.Tensor  # a buffer

    def __init__(self, n_fft: int, hop: int, win: int, channels: int = 32):
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop, win
        self.register_buffer("window", torch.hann_window(win), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (7, 5), (2, 2), padding=(3, 2))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 2), padding=(2, 1))),
            weight_norm(nn.Conv2d(channels, channels, 3, (2, 1), padding=1)),
            weight_norm(nn.Conv2d(channels, channels, 3, (2, 2), padding=1)),
        ])
        self.out = weight_norm(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav.float(), self.n_fft, self.hop, self.win, window=self.window, center=True, return_complex=True)
        x = torch.log(spec.abs().clamp_min(1e-5)).unsqueeze(1)  # [B, 1, freq, frames]
        return run_stack(self.convs, self.out, x)


class MultiResolutionDiscriminator(nn.Module):
    def __init__(self, resolutions: Sequence[tuple[int, int, int]] = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256)), channels: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(*r, channels=channels) for r in resolutions)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        out = [d(wav) for d in self.discriminators]
        return DiscriminatorOutput([s for s, _ in out], [f for _, f in out])


class CombinedDiscriminator(nn.Module):
    """MPD + MRD as one module (one forward per step, which is what DDP wants): ``[B, T] -> DiscriminatorOutput``."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), mpd_channels: int = 16, mrd_channels: int = 32):
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(periods, mpd_channels)
        self.mrd = MultiResolutionDiscriminator(channels=mrd_channels)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        a, b = self.mpd(wav), self.mrd(wav)
        return DiscriminatorOutput(a.scores + b.scores, a.features + b.features)
