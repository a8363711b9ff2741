"""The front-end: the one object that turns audio into model input and model output back into a log-mel.

Every stage goes through it - feature extraction (the raw log-mel it stores), both trainers (normalised
batches), conversion and evaluation - so the mel settings and the normalisation statistics can never
drift between training and conversion. A bundle stores both (``feature_config`` and ``feature_stats`` in
its ``config.json``) and :func:`vconv.inference.bundle.load_bundle` rebuilds the front-end from them.

Spaces::

    wav [B, T] --log_mel--> log-mel [B, n_mels, F]  (natural log, what feature files and vocoders hold)
               --normalize--> model space [B, n_mels, F]  (zero mean, unit variance per mel bin)
    model output [B, n_mels, F] --denormalize--> log-mel [B, n_mels, F] --vocoder--> wav
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from vconv.audio.logmel import LogMel
from vconv.config import FeatureConfig
from vconv.errors import VconvError


@dataclass
class FeatureStats:
    """Per-mel-bin mean and standard deviation ``[n_mels]`` over a corpus, for input normalisation."""

    mean: torch.Tensor
    std: torch.Tensor
    frames: int

    def to_dict(self) -> dict[str, object]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "frames": self.frames}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureStats":
        return cls(torch.tensor(data["mean"]), torch.tensor(data["std"]), int(data["frames"]))


def compute_stats(mels: Iterable[torch.Tensor], min_std: float = 1e-3) -> FeatureStats:
    """Mean/std per bin over many ``[n_mels, F]`` (streamed in float64: no corpus held in memory)."""
    total = None
    total_sq = None
    count = 0
    for mel in mels:
        m = mel.double()
        s, sq = m.sum(dim=1), (m * m).sum(dim=1)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += m.shape[1]
    if not count or total is None or total_sq is None:
        raise VconvError("cannot compute feature statistics: no frames")
    mean = total / count
    var = torch.clamp(total_sq / count - mean * mean, min=0.0)
    std = torch.clamp(var.sqrt(), min=min_std)
    return FeatureStats(mean.float(), std.float(), count)


class FrontEnd(nn.Module):
    """Mel settings + normalisation statistics as one module (statistics as buffers ``[n_mels]``).

    ``forward(wav [B, T] or [T])`` is the model input: the normalised log-mel ``[B, n_mels, F]`` (or
    ``[n_mels, F]``). Without ``stats`` (what the vocoder trainer needs: log-mels only) normalisation is
    the identity. The buffers are not part of any ``state_dict``: they are saved in the bundle's
    ``config.json`` (:meth:`stats`), so a model's weights file holds only the model.
    """

    def __init__(self, cfg: FeatureConfig, stats: FeatureStats | None = None):
        super().__init__()
        if stats is None:  # log-mel only (a vocoder's input): normalisation is the identity
            stats = FeatureStats(torch.zeros(cfg.n_mels), torch.ones(cfg.n_mels), 0)
        if stats.mean.numel() != cfg.n_mels or stats.std.numel() != cfg.n_mels:
            raise VconvError(f"feature statistics have {stats.mean.numel()} bins, the feature config {cfg.n_mels} mels")
        self.cfg = cfg
        self.frames = stats.frames
        self.logmel = LogMel(cfg)
        self.register_buffer("mean", stats.mean.float().clone(), persistent=False)
        self.register_buffer("std", stats.std.float().clone(), persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    def stats(self) -> FeatureStats:
        """The statistics as a plain record (what a bundle or a checkpoint stores)."""
        return FeatureStats(self.mean.detach().cpu().clone(), self.std.detach().cpu().clone(), self.frames)

    @torch.no_grad()
    def log_mel(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Waveform ``[B, T]`` / ``[T]`` (tensor or numpy, at ``sample_rate``) -> log-mel ``[B, n_mels, F]`` / ``[n_mels, F]``."""
        if isinstance(wav, np.ndarray):
            wav = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        return self.logmel(wav.to(self.mean.device))

    def load_log_mel(self, path: str | Path, **load_kwargs: Any) -> torch.Tensor:
        """An audio file (any rate or channel count: downmixed, resampled) -> log-mel ``[n_mels, F]``.

        ``load_kwargs`` go to :func:`vconv.audio.io.load` (e.g. ``allow_silent``); a bad file raises its
        one-line :class:`~vconv.errors.VconvError`.
        """
        from vconv.audio.io import load

        wav, _ = load(path, self.sample_rate, **load_kwargs)
        return self.log_mel(wav)

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[..., n_mels, F]`` -> model space (zero mean, unit variance per bin)."""
        return (log_mel - self.mean[:, None]) / self.std[:, None]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model space ``[..., n_mels, F]`` -> log-mel (what a vocoder takes)."""
        return x * self.std[:, None] + self.mean[:, None]

    def forward(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.normalize(self.log_mel(wav))
