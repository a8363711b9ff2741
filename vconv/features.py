"""Log-mel features, their inverse for Griffin-Lim, corpus statistics, and self-describing feature files.

``LogMel`` is ``torch.stft`` (centred, zero padded, periodic Hann) followed by librosa's Slaney mel
filterbank, so it equals ``librosa.feature.melspectrogram(power=1, pad_mode="constant")`` up to float
error, runs batched on any device, and is the *only* place the mel settings are interpreted: training,
conversion and the vocoder all build it from the same :class:`~vconv.config.FeatureConfig`.

Feature files are safetensors (``mel`` as float32 ``[n_mels, T]``) whose metadata holds the format
version and the FeatureConfig that produced them; reading one made with another config is an error that
names each differing value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import librosa
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from vconv.config import FeatureConfig
from vconv.errors import VconvError

FEATURE_FORMAT_VERSION = 1


class LogMel(torch.nn.Module):
    """Waveform ``[B, T]`` (or ``[T]``) at ``cfg.sample_rate`` → natural-log mel ``[B, n_mels, F]`` (or ``[n_mels, F]``).

    ``F = 1 + T // hop_length`` (centred frames). Values are ``log(max(mel_magnitude, log_floor))``.
    """

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        basis = librosa.filters.mel(
            sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
        )
        self.register_buffer("mel_basis", torch.from_numpy(basis).float(), persistent=False)  # [n_mels, n_fft/2+1]
        self.register_buffer("window", torch.hann_window(cfg.win_length, periodic=True), persistent=False)

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[B, n_fft/2+1, F]`` of ``[B, T]``: the one analysis every mel of vconv comes from."""
        return torch.stft(
            wav.float(),
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            win_length=self.cfg.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """Linear-frequency magnitude ``[B, n_fft/2+1, F]`` of ``[B, T]``."""
        return self.stft(wav).abs()

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Mel magnitude (not log) ``[B, n_mels, F]``; what librosa's melspectrogram(power=1) returns."""
        return torch.matmul(self.mel_basis, self.magnitude(wav))

    def log_mel_of(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, n_mels, F]`` of a linear magnitude ``[B, n_fft/2+1, F]`` (what ``forward`` applies)."""
        return torch.log(torch.clamp(torch.matmul(self.mel_basis, magnitude), min=self.cfg.log_floor))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        single = wav.dim() == 1
        if single:
            wav = wav.unsqueeze(0)
        out = self.log_mel_of(self.magnitude(wav))
        return out[0] if single else out

    def to_linear(self, log_mel: torch.Tensor, iterations: int = 40) -> torch.Tensor:
        """Non-negative linear magnitude ``[B, n_fft/2+1, F]`` whose mel projection matches ``[B, n_mels, F]``.

        The filterbank is wide (n_fft/2+1 > n_mels), so the inverse is a non-negative least-squares
        problem. A clamped pseudo-inverse alone leaves large errors in the narrow low-frequency filters;
        a few multiplicative NNLS updates (Lee & Seung) from that start fix them at small cost.
        """
        mel = torch.exp(log_mel.float())
        basis = self.mel_basis
        x = torch.clamp(torch.matmul(torch.linalg.pinv(basis), mel), min=1e-6)
        numerator = torch.matmul(basis.T, mel)
        for _ in range(iterations):
            x = x * numerator / (torch.matmul(basis.T, torch.matmul(basis, x)) + 1e-10)
        return x

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.cfg.hop_length


def wav_to_logmel(wav: np.ndarray, cfg: FeatureConfig, extractor: LogMel | None = None) -> torch.Tensor:
    """Mono ``[T]`` numpy waveform at ``cfg.sample_rate`` → log-mel ``[n_mels, F]`` float32."""
    extractor = extractor or LogMel(cfg)
    with torch.no_grad():
        return extractor(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)))


# --------------------------------------------------------------------------------------- feature files


def save_features(path: str | Path, mel: torch.Tensor, cfg: FeatureConfig, **meta: str) -> None:
    """Write ``mel [n_mels, F]`` with its FeatureConfig and format version (atomic: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    metadata = {
        "format": "vconv-features",
        "format_version": str(FEATURE_FORMAT_VERSION),
        "feature_config": json.dumps(cfg.to_dict(), sort_keys=True),
        **{k: str(v) for k, v in meta.items()},
    }
    save_file({"mel": mel.detach().float().contiguous().cpu()}, str(tmp), metadata=metadata)
    tmp.replace(path)


def read_feature_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: feature file not found; run `vconv extract` first")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise VconvError(f"{path}: not a vconv feature file ({exc}); delete it and rerun `vconv extract`") from None


def load_features(path: str | Path, expected: FeatureConfig | None = None) -> torch.Tensor:
    """Read ``mel [n_mels, F]``; raise if the version or the FeatureConfig differs from ``expected``."""
    path = Path(path)
    meta = read_feature_metadata(path)
    if meta.get("format") != "vconv-features":
        raise VconvError(f"{path}: not a vconv feature file")
    version = meta.get("format_version")
    if version != str(FEATURE_FORMAT_VERSION):
        raise VconvError(
            f"{path}: feature format version {version}, this vconv reads {FEATURE_FORMAT_VERSION}; rerun `vconv extract`"
        )
    if expected is not None:
        stored = FeatureConfig.from_dict(json.loads(meta["feature_config"]))
        diffs = stored.differences(expected)
        if diffs:
            raise VconvError(f"{path}: made with another feature config (file vs expected: {'; '.join(diffs)})")
    return load_file(str(path))["mel"]


# ------------------------------------------------------------------------------------------ statistics


@dataclass
class FeatureStats:
    """Per-mel-bin mean and standard deviation ``[n_mels]`` over a corpus, for input normalisation."""

    mean: torch.Tensor
    std: torch.Tensor
    frames: int

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``[..., n_mels, F]`` → zero-mean unit-variance per bin."""
        return (log_mel - self.mean[:, None]) / self.std[:, None]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std[:, None] + self.mean[:, None]

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


def logmel_from_file(path: str | Path, cfg: FeatureConfig, extractor: LogMel | None = None, **load_kwargs) -> torch.Tensor:
    """Load audio (mono, resampled to ``cfg.sample_rate``) and return its log-mel ``[n_mels, F]``.

    The single path from a file to features, shared by `vconv extract`, training and conversion.
    """
    from vconv.audio import load

    wav, _ = load(path, cfg.sample_rate, **load_kwargs)
    return wav_to_logmel(wav, cfg, extractor)
