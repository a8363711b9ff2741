"""Speaker encoder: one or several reference utterances to a fixed-size speaker embedding.

``SpeakerEncoder``: ``x [B, C, T] -> e [B, speaker_dim]`` (``x`` a sequence: the log-mel by default).

The encoder sees the whole reference and summarises it by the per-channel mean and standard deviation
over time (statistics pooling). Those are exactly the statistics the content encoder's instance norms
throw away, which is what makes the two paths complementary (AdaIN-VC).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from vconv.models.layers import ConvBlock, make_activation

__all__ = ["SpeakerEncoder", "frame_mask", "stats_pool"]


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
    """Convolutional speaker encoder with statistics pooling.

    Shapes: ``mel [B, in_channels, T]`` (+ optional ``lengths [B]``) ``-> e [B, speaker_dim]``.

    ``blocks`` pairs of convolutions with ``channels`` channels (residual after the first), mean + std
    pooling over time, then a two-layer MLP to ``speaker_dim``.
    """

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
