"""A pretrained network's own spectrogram, computed differentiably from vconv's log-mel (for training critics).

The frozen judges a trainer asks about a converted segment (Whisper's encoder for the
words) read their own log10 power mel: another FFT size, frame rate and band layout than vconv's. A critic only has
the model's output mel, and its gradient must reach the model, so :class:`Reanalysis` rebuilds it from the mel: the
linear magnitude by a few non-negative least-squares steps (:meth:`~vconv.audio.logmel.LogMel.to_linear`), squared,
onto the judge's bands (its bins read from ours by linear interpolation in frequency), in log10, resampled in time to
the judge's frame centres. The level offset between the two analyses (window shapes and lengths differ) is measured
once on white noise against the judge's own analysis, so a real mel lands where that analysis of the same audio would.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from vconv.audio.logmel import LogMel
from vconv.audio.mel_filters import slaney_mel_basis
from vconv.config import FeatureConfig
from vconv.errors import VconvError


class Reanalysis(torch.nn.Module):
    """vconv's natural-log mel ``[B, n_mels, F]`` -> a judge's log10 power mel ``[B, bands, F']``.

    Args:
        cfg: vconv's features (the judge's ``sample_rate`` must be theirs too).
        sample_rate, n_fft, hop, bands: the judge's analysis (Slaney mel bands from 0 Hz to half the rate).
        first_centre: the sample the judge's first frame is centred on (0 for centred frames, ``n_fft // 2`` for frames
            that start at sample 0); frame ``j`` is centred on ``first_centre + hop * j``.
        own_analysis: the judge's analysis of audio ``[T] -> [F', bands]`` (log10 power), for the level offset.
        floor: the least log10 power a band is given (a judge's own analysis of real audio never reads below its
            window's leakage, where ours, rebuilt from a floored mel, falls lower), or None.
        nnls_iterations: the multiplicative updates of the magnitude's rebuild.
    """

    def __init__(self, cfg: FeatureConfig, *, sample_rate: int, n_fft: int, hop: int, bands: int, first_centre: int,
                 own_analysis: Callable[[np.ndarray], np.ndarray], floor: float | None = None, nnls_iterations: int = 8):
        super().__init__()
        self.onto: torch.Tensor  # [bands, K], a buffer (declared for the type checker)
        if cfg.sample_rate != sample_rate:
            raise VconvError(f"this critic needs {sample_rate} Hz features, not {cfg.sample_rate} Hz")
        self.cfg, self.iterations, self.hop, self.first_centre, self.floor = cfg, nnls_iterations, hop, first_centre, floor
        self.logmel = LogMel(cfg)
        ours = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
        theirs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
        interp = np.stack([np.interp(ours, theirs, np.eye(len(theirs))[j]) for j in range(len(theirs))])  # [their K, K]
        onto = slaney_mel_basis(sample_rate, n_fft, bands) @ (interp / interp.sum(1, keepdims=True).clip(1e-9))
        self.register_buffer("onto", torch.from_numpy(onto).float(), persistent=False)  # [bands, K]
        self.offset = 0.0
        self.offset = self._level_offset(own_analysis)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        magnitude = self.logmel.to_linear(log_mel, self.iterations)  # [B, K, F], differentiable
        bands = torch.log10(self.onto @ magnitude.square() + 1e-10) + self.offset  # [B, bands, F]
        if self.floor is not None:
            bands = bands.clamp(min=self.floor)
        return self._resample(bands)

    def _resample(self, bands: torch.Tensor) -> torch.Tensor:
        """``[B, bands, F]`` at vconv's frames -> ``[B, bands, F']`` at the judge's, by linear interpolation."""
        frames = bands.shape[-1]
        last = (frames - 1) * self.cfg.hop_length  # the last sample a vconv frame is centred on
        count = max(0, (last - self.first_centre) // self.hop + 1)
        where = (self.first_centre + self.hop * torch.arange(count, device=bands.device, dtype=torch.float32)) / self.cfg.hop_length
        left = where.floor().long().clamp(max=max(0, frames - 2))
        frac = where - left
        right = (left + 1).clamp(max=frames - 1)
        return bands[..., left] * (1 - frac) + bands[..., right] * frac

    def _level_offset(self, own_analysis: Callable[[np.ndarray], np.ndarray]) -> float:
        noise = torch.from_numpy(np.random.default_rng(0).standard_normal(2 * self.cfg.sample_rate).astype(np.float32)) * 0.1
        theirs = torch.from_numpy(np.asarray(own_analysis(noise.numpy()), dtype=np.float32))  # [F', bands]
        with torch.no_grad():
            ours = Reanalysis.forward(self, self.logmel(noise[None]))[0].T  # [F'', bands] (a subclass may lay it out otherwise)
        n = min(len(theirs), len(ours))
        return float((theirs[4:n - 4] - ours[4:n - 4]).mean())
