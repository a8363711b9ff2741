"""Speaker encoder: one or several reference utterances to a fixed-size speaker embedding.

``SpeakerEncoder``: ``mel [B, n_mels, T] -> e [B, speaker_dim]``.

The encoder sees the whole reference and summarises it by the per-channel mean and standard deviation
over time (statistics pooling). Those are exactly the statistics the content encoder's instance norms
throw away, which is what makes the two paths complementary (AdaIN-VC).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from vconv.config import ModelConfig
from vconv.config.sections import DVECTOR_DIM
from vconv.models.layers import ConvBlock, make_activation

__all__ = ["DVectorProjection", "SpeakerEncoder", "build_speaker_encoder", "frame_mask", "stats_pool"]


def frame_mask(lengths: torch.Tensor, frames: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``lengths [B] -> mask [B, 1, frames]``: 1 for the first ``lengths[b]`` frames, 0 after."""
    steps = torch.arange(frames, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).to(dtype)[:, None, :]


def stats_pool(h: torch.Tensor, lengths: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Mean and standard deviation over time: ``h [B, C, T] -> [B, 2C]``.

    With ``lengths [B]`` only the first ``lengths[b]`` frames of item ``b`` count.
    """
    if lengths is None:
        mean = h.mean(dim=-1)
        var = h.var(dim=-1, unbiased=False)
    else:
        frames = h.shape[-1]
        lengths = lengths.to(h.device).clamp(1, frames)
        mask = frame_mask(lengths, frames, h.dtype)
        count = lengths.to(h.dtype)[:, None]
        mean = (h * mask).sum(-1) / count
        var = (((h - mean[..., None]) * mask) ** 2).sum(-1) / count
    return torch.cat([mean, torch.sqrt(var + eps)], dim=-1)


class SpeakerEncoder(nn.Module):
    #: dimensions of one reference (``[n_mels, T]``); one more is a batch
    item_dims = 2

    """Convolutional speaker encoder with statistics pooling.

    Shapes: ``mel [B, n_mels, T]`` (+ optional ``lengths [B]``) ``-> e [B, speaker_dim]``.

    ``cfg.speaker_blocks`` pairs of convolutions with ``cfg.speaker_channels`` channels (residual
    after the first), mean + std pooling over time, then a two-layer MLP to ``cfg.speaker_dim``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.speaker_blocks < 1:
            raise ValueError(f"speaker_blocks must be >= 1, got {cfg.speaker_blocks}")
        self.n_mels = cfg.n_mels
        self.speaker_dim = cfg.speaker_dim
        channels = cfg.speaker_channels
        layers: list[nn.Module] = []
        in_channels = cfg.n_mels
        for _ in range(cfg.speaker_blocks):
            layers.append(
                ConvBlock(in_channels, channels, cfg.kernel_size, residual=in_channels == channels, dropout=cfg.dropout)
            )
            layers.append(ConvBlock(channels, channels, cfg.kernel_size, residual=True, dropout=cfg.dropout))
            in_channels = channels
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(2 * channels, channels),
            make_activation("lrelu"),
            nn.Linear(channels, cfg.speaker_dim),
        )

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``mel [B, n_mels, T]``, ``lengths [B]`` (valid frames, optional) ``-> e [B, speaker_dim]``.

        With ``lengths``, frames past ``lengths[b]`` are padding and do not influence item ``b`` at all.
        """
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"expected mel of shape [B, {self.n_mels}, T], got {tuple(mel.shape)}")
        if lengths is None:
            return self.head(stats_pool(self.convs(mel)))
        lengths = lengths.to(mel.device).clamp(1, mel.shape[-1])
        mask = frame_mask(lengths, mel.shape[-1], mel.dtype)
        # Zeroing the padding after every layer makes it look exactly like the convolutions' own zero
        # padding: each item's embedding is then the same as if it had been embedded alone.
        h = mel * mask
        for layer in self.convs:
            h = layer(h) * mask
        return self.head(stats_pool(h, lengths))

    def embed_many(self, mels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Average embedding of several references: list of ``[n_mels, T_i]`` -> ``[speaker_dim]``.

        Each reference is embedded on its own (no padding, so lengths may differ freely) and the
        embeddings are averaged: more references give a steadier estimate of the voice.
        """
        if len(mels) == 0:
            raise ValueError("embed_many needs at least one reference mel")
        embeddings = []
        for mel in mels:
            if mel.dim() != 2:
                raise ValueError(f"expected each reference of shape [{self.n_mels}, T], got {tuple(mel.shape)}")
            embeddings.append(self(mel.unsqueeze(0))[0])
        return torch.stack(embeddings).mean(dim=0)


class DVectorProjection(nn.Module):
    """Speaker encoder on a frozen pretrained d-vector: ``d [B, 256] -> e [B, speaker_dim]``.

    The pretrained embedder (:mod:`vconv.audio.dvector`) already spans voices it never heard; this
    trainable two-layer projection maps its space onto what the decoder's AdaIN layers need.
    """

    #: dimensions of one reference (``[256]``); one more is a batch
    item_dims = 1

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.speaker_dim = cfg.speaker_dim
        self.net = nn.Sequential(
            nn.Linear(DVECTOR_DIM, cfg.speaker_channels),
            make_activation("lrelu"),
            nn.Linear(cfg.speaker_channels, cfg.speaker_dim),
        )

    def forward(self, dvector: torch.Tensor) -> torch.Tensor:
        """``[B, 256] -> [B, speaker_dim]``."""
        if dvector.dim() != 2 or dvector.shape[1] != DVECTOR_DIM:
            raise ValueError(f"expected d-vectors of shape [B, {DVECTOR_DIM}], got {tuple(dvector.shape)}")
        return self.net(dvector)

    def embed_many(self, dvectors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Average embedding of several references: list of ``[256]`` -> ``[speaker_dim]``."""
        if len(dvectors) == 0:
            raise ValueError("embed_many needs at least one reference d-vector")
        return self(torch.stack(list(dvectors))).mean(dim=0)


def build_speaker_encoder(cfg: ModelConfig) -> nn.Module:
    """The speaker encoder ``cfg.speaker_input`` asks for."""
    return DVectorProjection(cfg) if cfg.speaker_input == "dvector" else SpeakerEncoder(cfg)
