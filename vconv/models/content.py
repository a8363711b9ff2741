"""Content encoder: log-mel frames to a speaker-normalised continuous code (before quantisation).

``ContentEncoder``: ``x [B, C_in, T] -> z [B, code_dim, T']`` with ``T' = ceil(T / prod(downsample))``, where
``x`` is the normalised log-mel (``C_in = n_mels``) or frozen Whisper encoder states at the mel frame
rate (``C_in = 384``): whatever the model's content front-end part gives (:mod:`vconv.frontends`).

Following AdaIN-VC, every block ends in an instance norm without affine parameters: per-utterance channel
means and scales - where much of the speaker's timbre lives - are removed at every level, and the
quantiser that follows (VQVC) discards what the normalisation leaves behind.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vconv.errors import VconvError
from vconv.models.layers import ConvBlock

__all__ = ["ContentEncoder"]


class ContentBlock(nn.Module):
    """Two convolutions (the first one strided) and an instance norm without affine parameters.

    Shapes: ``[B, C_in, T] -> [B, C, ceil(T / stride)]``. The norm is a separate attribute (``norm``) so
    tests and analysis can hook its output.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, stride: int, dropout: float) -> None:
        super().__init__()
        # The first block maps n_mels -> channels; a residual over that change of space would only add
        # a projection, so it starts plain.
        self.conv1 = ConvBlock(
            in_channels, channels, kernel_size, stride=stride, residual=in_channels == channels, dropout=dropout
        )
        self.conv2 = ConvBlock(channels, channels, kernel_size, residual=True, dropout=dropout)
        self.norm = nn.InstanceNorm1d(channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, T] -> [B, C, ceil(T / stride)]``, zero mean and unit variance per channel."""
        return self.norm(self.conv2(self.conv1(x)))


class ContentEncoder(nn.Module):
    """Convolutional content encoder with instance normalisation (AdaIN-VC / VQVC lineage).

    Shapes: ``x [B, in_channels, T] -> z [B, code_dim, T']``, ``T' = ceil(T / total_stride)``.

    ``blocks`` blocks of ``channels`` channels and kernel ``kernel_size``; block ``i`` is strided by
    ``downsample[i]``, and a 1x1 projection maps to ``code_dim``. The projection is left unnormalised on
    purpose: the quantiser's codebook follows the encoder's scale.

    Raises:
        VconvError: when ``len(downsample) != blocks`` or a stride is not positive.
    """

    def __init__(self, *, in_channels: int, channels: int, blocks: int, downsample: list[int], code_dim: int,
                 kernel_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        strides = list(downsample)
        if len(strides) != blocks:
            raise VconvError(
                f"model.content_encoder: downsample has {len(strides)} entries {strides} but blocks is "
                f"{blocks}; give one stride per block"
            )
        if any(int(s) != s or s < 1 for s in strides):
            raise VconvError(f"model.content_encoder: downsample strides must be integers >= 1, got {strides}")
        if blocks < 1:
            raise VconvError(f"model.content_encoder: blocks must be >= 1, got {blocks}")
        self.in_channels = in_channels
        self.code_dim = code_dim
        self.strides = [int(s) for s in strides]
        layers = []
        width = in_channels
        for stride in self.strides:
            layers.append(ContentBlock(width, channels, kernel_size, stride, dropout))
            width = channels
        self.blocks = nn.ModuleList(layers)
        self.proj = nn.Conv1d(channels, code_dim, 1)

    @property
    def total_stride(self) -> int:
        """Frames of mel per code frame: the product of the per-block strides."""
        return math.prod(self.strides)

    @property
    def min_frames(self) -> int:
        """Shortest input: instance norm needs at least 2 frames after the last stride."""
        return self.total_stride + 1

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel [B, n_mels, T] -> z [B, code_dim, ceil(T / total_stride)]``.

        Raises:
            VconvError: when ``T < min_frames`` (too short to normalise).
        """
        if mel.dim() != 3 or mel.shape[1] != self.in_channels:
            raise ValueError(f"expected a content input of shape [B, {self.in_channels}, T], got {tuple(mel.shape)}")
        if mel.shape[-1] < self.min_frames:
            raise VconvError(
                f"input of {mel.shape[-1]} mel frames is too short: the content encoder needs at least "
                f"{self.min_frames}; use longer audio"
            )
        x = mel
        for block in self.blocks:
            x = block(x)
        return self.proj(x)
