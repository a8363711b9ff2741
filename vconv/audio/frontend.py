"""The front-end: the one object that turns audio into model input and model output back into a log-mel.

Every stage goes through it - feature extraction (the raw log-mel it stores), both trainers (normalised
batches), conversion and evaluation - so the mel settings and the normalisation statistics can never
drift between training and conversion. A bundle stores both (``feature_config`` and ``feature_stats`` in
its ``config.json``) and :func:`vconv.bundles.load_bundle` rebuilds the front-end from them.

Spaces::

    wav [B, T] --log_mel--> log-mel [B, n_mels, F]  (natural log, what feature files and vocoders hold)
               --normalize--> model space [B, n_mels, F]  (zero mean, unit variance per mel bin)
    model output [B, n_mels, F] --denormalize--> log-mel [B, n_mels, F] --vocoder--> wav

It also holds the model's two front-end parts (:mod:`vconv.frontends`: ``ModelConfig.content_frontend`` /
``speaker_frontend``) and gives the encoders what they read::

    wav [T] --content_input--> [1, C, F]   (the normalised log-mel, or e.g. Whisper encoder states)
    wav [T] --speaker_input--> [1, C, F]   (the normalised log-mel)
    wav [T] --pitch_input--> [1, 3, F]   (log-F0, voiced, periodicity: a model with the pitch path)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

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
    def from_dict(cls, data: dict, n_mels: int | None = None) -> "FeatureStats":
        """Read ``{"mean": [...], "std": [...], "frames": N}``; anything else (``n_mels`` values each, when
        given; finite; std > 0) is a one-line VconvError."""
        if not isinstance(data, dict):
            raise VconvError(f"feature statistics: expected a mapping with mean, std and frames, got {type(data).__name__}")
        columns = []
        for key in ("mean", "std"):
            values = data.get(key)
            if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise VconvError(f"feature statistics: {key} must be a list of numbers")
            if n_mels is not None and len(values) != n_mels:
                raise VconvError(f"feature statistics: {key} has {len(values)} values, the features have {n_mels} mel bins")
            if not all(math.isfinite(v) for v in values) or (key == "std" and min(values, default=1.0) <= 0):
                raise VconvError(f"feature statistics: {key} must hold finite numbers{' above 0' if key == 'std' else ''}")
            columns.append(torch.tensor(values, dtype=torch.float32))
        frames = data.get("frames")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
            raise VconvError(f"feature statistics: frames must be a whole number >= 0, got {frames!r}")
        if columns[0].shape != columns[1].shape:
            raise VconvError("feature statistics: mean and std have different lengths")
        return cls(columns[0], columns[1], frames)


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

    mean: torch.Tensor  # [n_mels] buffers (not in any state_dict)
    std: torch.Tensor

    def __init__(self, cfg: FeatureConfig, stats: FeatureStats | None = None, *, content: Any = None, speaker: Any = None,
                 pitch: Any = None):
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
        # what the two encoders read (vconv.frontends parts); None = the normalised log-mel
        for part in (content, speaker, pitch):
            needed = getattr(part, "sample_rate", None)
            if needed is not None and needed != cfg.sample_rate:
                raise VconvError(f"the {part.kind} front-end needs {needed} Hz audio; features.sample_rate is {cfg.sample_rate}")
        self.content = content.eval().requires_grad_(False) if content is not None else None
        self.speaker = speaker.eval().requires_grad_(False) if speaker is not None else None
        self.pitch = pitch  # the pitch tracker (vconv.frontends.pitch) of a model with the pitch path, else None

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

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[..., n_mels, F]`` -> model space (zero mean, unit variance per bin)."""
        return (log_mel - self.mean[:, None]) / self.std[:, None]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model space ``[..., n_mels, F]`` -> log-mel (what a vocoder takes)."""
        return x * self.std[:, None] + self.mean[:, None]

    def forward(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.normalize(self.log_mel(wav))

    # ------------------------------------------------------------------------------- encoder inputs

    def content_input(self, wav: np.ndarray) -> torch.Tensor:
        """What the content encoder reads for mono ``[T]``: ``[1, C, F]`` (by default the normalised log-mel)."""
        if self.content is None:
            return self(wav[None])
        return self.content.compute(wav, self).float().to(self.mean.device)[None]

    def window_content(self) -> Callable[[np.ndarray, int, int], tuple[torch.Tensor, bool]] | None:
        """For one stream: ``(window [T], window_start, fresh) -> (states [1, C, F], reused)``, :meth:`content_input`
        of each of its consecutive windows with only the last ``fresh`` samples recomputed (0: all of it), where the
        content part can do that over the whole window (Whisper: :mod:`vconv.audio.whisper_stream`; ``reused``: states
        were kept from the window before); None where it cannot."""
        make = getattr(self.content, "window_states", None)
        if make is None:
            return None
        states = make(self)

        def batched(wav: np.ndarray, window_start: int, fresh: int) -> tuple[torch.Tensor, bool]:
            rows, reused = states(wav, window_start, fresh)
            return self._batched(rows), reused
        return batched

    def pitch_input(self, wav: np.ndarray) -> torch.Tensor:
        """The pitch tracker's rows for mono ``[T]``: ``[1, 3, F]`` (log-F0, voiced, periodicity; :mod:`vconv.frontends.pitch`)."""
        return self._batched(self._pitch_part().compute(wav, self))

    def window_pitch(self) -> Callable[[np.ndarray, int], torch.Tensor]:
        """For one stream: ``(window [T], window_start) -> [1, 3, F]``, :meth:`pitch_input` of each of its consecutive
        windows, the tracker reusing what it measured in the previous one where it can (``PitchPart.window_rows``)."""
        rows = self._pitch_part().window_rows(self)
        return lambda wav, window_start: self._batched(rows(wav, window_start))

    def _pitch_part(self) -> Any:
        if self.pitch is None:
            raise VconvError("this model has no pitch path (model.pitch_frontend is none)")
        return self.pitch

    def _batched(self, rows: torch.Tensor) -> torch.Tensor:
        """A part's ``[C, F]`` as the encoders read it: ``[1, C, F]`` float32 on the front-end's device."""
        return rows.float().to(self.mean.device)[None]

    def speaker_input(self, wav: np.ndarray) -> torch.Tensor:
        """What the speaker encoder reads for mono ``[T]``: ``[1, C, F]`` (by default the normalised log-mel) or ``[1, C]``."""
        if self.speaker is None:
            return self(wav[None])
        return self.speaker.compute(wav, self).float().to(self.mean.device)[None]
