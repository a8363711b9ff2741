"""Speaker encoder: one or several reference utterances to a fixed-size speaker embedding.

``SpeakerEncoder``: ``x [B, C, T] -> e [B, speaker_dim]`` (``x`` a sequence: the log-mel by default);
``VectorProjection``: ``v [B, C] -> e [B, speaker_dim]`` (``v`` one vector per utterance, e.g. a d-vector).
Both are :class:`SpeakerEncoderBase`, what :class:`~vconv.models.vc.VoiceConversionModel` takes.

The encoder sees the whole reference and summarises it by the per-channel mean and standard deviation
over time (statistics pooling). Those are exactly the statistics the content encoder's instance norms
throw away, which is what makes the two paths complementary (AdaIN-VC).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import torch
from torch import nn

from vconv.models.layers import ConvBlock, make_activation

__all__ = ["SpeakerEncoder", "SpeakerEncoderBase", "VectorProjection", "frame_mask", "stats_pool"]


class SpeakerEncoderBase(nn.Module, ABC):
    """What the model needs of a speaker encoder: ``forward(batch) -> e [B, speaker_dim]`` and the average
    embedding of several references, ``embed_many(list of items) -> [speaker_dim]``."""

    #: dimensions of one reference item (``[C, T]``: 2; ``[C]``: 1); one more is a batch
    item_dims: ClassVar[int]
    speaker_dim: int

    @abstractmethod
    def embed_many(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        """Average embedding of several references -> ``[speaker_dim]``."""


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


class SpeakerEncoder(SpeakerEncoderBase):
    """Convolutional speaker encoder with statistics pooling.

    Shapes: ``mel [B, in_channels, T]`` (+ optional ``lengths [B]``) ``-> e [B, speaker_dim]``.

    ``blocks`` pairs of convolutions with ``channels`` channels (residual after the first), mean + std
    pooling over time, then a two-layer MLP to ``speaker_dim``.
    """

    item_dims = 2  # one reference is [in_channels, T]

    def __init__(self, *, in_channels: int, channels: int, blocks: int, speaker_dim: int, kernel_size: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"speaker_blocks must be >= 1, got {blocks}")
        self.n_mels = in_channels
        self.speaker_dim = speaker_dim
        layers: list[nn.Module] = []
        width = in_channels
        for _ in range(blocks):
            layers.append(ConvBlock(width, channels, kernel_size, residual=width == channels, dropout=dropout))
            layers.append(ConvBlock(channels, channels, kernel_size, residual=True, dropout=dropout))
            width = channels
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(2 * channels, channels),
            make_activation("lrelu"),
            nn.Linear(channels, speaker_dim),
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

    def embed_many(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        """Average embedding of several references: list of ``[n_mels, T_i]`` -> ``[speaker_dim]``.

        Each reference is embedded on its own (no padding, so lengths may differ freely) and the
        embeddings are averaged: more references give a steadier estimate of the voice.
        """
        if len(items) == 0:
            raise ValueError("embed_many needs at least one reference mel")
        embeddings = []
        for mel in items:
            if mel.dim() != 2:
                raise ValueError(f"expected each reference of shape [{self.n_mels}, T], got {tuple(mel.shape)}")
            embeddings.append(self(mel.unsqueeze(0))[0])
        return torch.stack(embeddings).mean(dim=0)


class VectorProjection(SpeakerEncoderBase):
    """Speaker encoder on a frozen pretrained per-utterance vector: ``v [B, in_dim] -> e [B, speaker_dim]``.

    The pretrained embedder (e.g. the d-vector front-end, :mod:`vconv.frontends.dvector`) already spans
    voices it never heard; this trainable two-layer projection maps its space onto what the decoder's
    AdaIN layers need.
    """

    item_dims = 1  # one reference is [in_dim]

    def __init__(self, *, in_dim: int, channels: int, speaker_dim: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.speaker_dim = speaker_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, channels),
            make_activation("lrelu"),
            nn.Linear(channels, speaker_dim),
        )

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B, speaker_dim]``."""
        if vectors.dim() != 2 or vectors.shape[1] != self.in_dim:
            raise ValueError(f"expected speaker vectors of shape [B, {self.in_dim}], got {tuple(vectors.shape)}")
        return self.net(vectors)

    def embed_many(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        """Average embedding of several references: list of ``[in_dim]`` -> ``[speaker_dim]``."""
        if len(items) == 0:
            raise ValueError("embed_many needs at least one reference vector")
        return self(torch.stack(list(items))).mean(dim=0)
