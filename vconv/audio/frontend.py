"""The front-end: the one object that turns audio into model input and model output back into a log-mel.

Every stage goes through it - feature extraction (the raw log-mel it stores), both trainers (normalised
batches), conversion and evaluation - so the mel settings and the normalisation statistics can never
drift between training and conversion. A bundle stores both (``feature_config`` and ``feature_stats`` in
its ``config.json``) and :func:`vconv.inference.bundle.load_bundle` rebuilds the front-end from them.

Spaces::

    wav [B, T] --log_mel--> log-mel [B, n_mels, F]  (natural log, what feature files and vocoders hold)
               --normalize--> model space [B, n_mels, F]  (zero mean, unit variance per mel bin)
    model output [B, n_mels, F] --denormalize--> log-mel [B, n_mels, F] --vocoder--> wav

With pretrained parts (``ModelConfig.content_input = "whisper"`` / ``speaker_input = "dvector"``) the
front-end also gives the encoders what they read instead of the mel::

    wav [T] --whisper_features--> Whisper encoder states [384, F]  (block ``whisper_layer``, at the mel frame rate)
    wav [T] --dvector_of--> d-vector [256]

Whisper's 50 frames/s meet the mel's ``sample_rate / hop_length`` frames/s (62.5 at hop 256) in one
place, :func:`align_to_mel_frames`: mel frame ``k`` (centred at ``k * hop`` samples) reads the Whisper
state at the same instant, linearly interpolated between its two neighbours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from vconv.audio.logmel import LogMel
from vconv.audio.whisper import FRAME_RATE as WHISPER_FRAME_RATE
from vconv.audio.whisper import SAMPLE_RATE as WHISPER_SAMPLE_RATE
from vconv.audio.whisper import WhisperEncoder, WhisperLogMel
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


def align_to_mel_frames(states: torch.Tensor, frames: int, mel_frame_rate: float) -> torch.Tensor:
    """Whisper states ``[B, C, N]`` at 50 frames/s -> ``[B, C, frames]`` at ``mel_frame_rate`` frames/s.

    Mel frame ``k`` is centred at ``k / mel_frame_rate`` s and Whisper state ``j`` at ``j / 50`` s (its
    mel frames are centred STFT frames, the stride-2 conv keeps every other one), so frame ``k`` reads
    position ``k * 50 / mel_frame_rate``, linearly interpolated; past the last state it repeats it.
    """
    position = torch.arange(frames, dtype=torch.float32, device=states.device) * (WHISPER_FRAME_RATE / mel_frame_rate)
    position = position.clamp(max=states.shape[-1] - 1)
    left = position.floor().long()
    right = (left + 1).clamp(max=states.shape[-1] - 1)
    weight = (position - left).to(states.dtype)
    return states[..., left] * (1 - weight) + states[..., right] * weight


class FrontEnd(nn.Module):
    """Mel settings + normalisation statistics as one module (statistics as buffers ``[n_mels]``).

    ``forward(wav [B, T] or [T])`` is the model input: the normalised log-mel ``[B, n_mels, F]`` (or
    ``[n_mels, F]``). Without ``stats`` (what the vocoder trainer needs: log-mels only) normalisation is
    the identity. The buffers are not part of any ``state_dict``: they are saved in the bundle's
    ``config.json`` (:meth:`stats`), so a model's weights file holds only the model.
    """

    def __init__(self, cfg: FeatureConfig, stats: FeatureStats | None = None, *, whisper: WhisperEncoder | None = None,
                 whisper_layer: int | None = None, dvector: Any = None):
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
        if (whisper is not None or dvector is not None) and cfg.sample_rate != WHISPER_SAMPLE_RATE:
            raise VconvError(f"the pretrained front-ends need 16 kHz audio; features.sample_rate is {cfg.sample_rate}")
        # pretrained parts (frozen): the content path reads Whisper when there is one, the speaker path
        # the d-vector (a DVectorEmbedder, run by onnxruntime) when there is one
        self.whisper = whisper.eval().requires_grad_(False) if whisper is not None else None
        self.whisper_layer = whisper_layer or (whisper.config.layers if whisper is not None else None)
        self.whisper_log_mel = WhisperLogMel() if whisper is not None else None
        self.dvector = dvector

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

    # ---------------------------------------------------------------------------- pretrained parts

    @torch.no_grad()
    def whisper_features(self, wav: np.ndarray) -> torch.Tensor:
        """Mono ``[T]`` at 16 kHz -> Whisper encoder states ``[384, F]`` at the mel frame rate (``F = 1 + T // hop``)."""
        if self.whisper is None:
            raise VconvError("this front-end has no Whisper encoder (model.content_input is mel)")
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).to(self.mean.device)
        states = self.whisper(self.whisper_log_mel(x[None]), self.whisper_layer).transpose(1, 2)  # [1, C, N/2]
        frames = 1 + wav.shape[-1] // self.cfg.hop_length
        return align_to_mel_frames(states, frames, self.sample_rate / self.cfg.hop_length)[0]

    def dvector_of(self, wav: np.ndarray) -> torch.Tensor:
        """Mono ``[T]`` at 16 kHz -> the pretrained d-vector ``[256]`` (unit norm)."""
        if self.dvector is None:
            raise VconvError("this front-end has no d-vector embedder (model.speaker_input is mel)")
        return torch.from_numpy(self.dvector(wav)).to(self.mean.device)

    def content_input(self, wav: np.ndarray) -> torch.Tensor:
        """What the content encoder reads for ``[T]``: ``[1, C, F]`` (normalised log-mel or Whisper states)."""
        if self.whisper is not None:
            return self.whisper_features(wav)[None]
        return self(wav[None])

    def speaker_input(self, wav: np.ndarray) -> torch.Tensor:
        """What the speaker encoder reads for ``[T]``: the normalised log-mel ``[1, n_mels, F]`` or a d-vector ``[1, 256]``."""
        if self.dvector is not None:
            return self.dvector_of(wav)[None]
        return self(wav[None])
