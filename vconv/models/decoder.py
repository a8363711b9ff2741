"""AdaIN decoder: content codes + speaker embedding back to a log-mel spectrogram.

``AdaINDecoder``: ``q [B, code_dim, T'], e [B, speaker_dim]`` (+ a pitch contour ``[B, 3, T]``) ``-> mel [B, n_mels, T]``.

The speaker enters only through the AdaIN layers (AdaIN-VC): after every convolution the channel
statistics are reset to a γ/β predicted from the embedding, so the same codes rendered with another
embedding come out in another voice. With a pitch path (``pitch_channels`` > 0) the contour of
:mod:`vconv.models.contour` is added, through its own 1x1 projection, to the input of every block: the codes say what
is said, the contour at which pitch, the embedding in whose voice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vconv.models.layers import AdaIN, ConvBlock

__all__ = ["AdaINDecoder", "DecoderBlock"]


class DecoderBlock(nn.Module):
    """Two convolutions, each followed by AdaIN, with a residual connection around the pair.

    Shapes: ``x [B, C, T], e [B, S] -> [B, C, T]``.
    """

    def __init__(self, channels: int, speaker_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = ConvBlock(channels, channels, kernel_size, dropout=dropout)
        self.norm1 = AdaIN(channels, speaker_dim)
        self.conv2 = ConvBlock(channels, channels, kernel_size, dropout=dropout)
        self.norm2 = AdaIN(channels, speaker_dim)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``x [B, C, T], e [B, S] -> [B, C, T]``."""
        h = self.norm1(self.conv1(x), e)
        h = self.norm2(self.conv2(h), e)
        return x + h


class AdaINDecoder(nn.Module):
    """Convolutional decoder whose every block is conditioned on the speaker by AdaIN.

    Shapes: ``q [B, code_dim, T'], e [B, speaker_dim]`` (+ ``length``) ``-> mel [B, n_mels, length]``
    (``T' * stride`` frames when ``length`` is None).

    Args:
        code_dim, speaker_dim, n_mels: the sizes the model shares (``ModelConfig``'s); channels, blocks, kernel_size,
            dropout: the settings of its section (``model.decoder: {kind: adain, ...}``).
        stride: temporal up-sampling factor. Pass the content encoder's ``total_stride``: deriving it
            from the encoder (rather than a second constant) means the two can never disagree.

    The codes are first projected to ``channels`` and repeated ``stride`` times per frame (nearest
    neighbour - no checkerboard artefacts, unlike a transposed convolution); the convolutions after it
    smooth the steps.
    """

    def __init__(self, *, code_dim: int, channels: int, blocks: int, speaker_dim: int, n_mels: int, kernel_size: int,
                 stride: int, dropout: float = 0.0, pitch_channels: int = 0) -> None:
        super().__init__()
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if blocks < 1:
            raise ValueError(f"decoder_blocks must be >= 1, got {blocks}")
        self.stride = int(stride)
        self.code_dim = code_dim
        self.speaker_dim = speaker_dim
        self.inp = nn.Conv1d(code_dim, channels, 1)
        self.blocks = nn.ModuleList(
            DecoderBlock(channels, speaker_dim, kernel_size, dropout) for _ in range(blocks)
        )
        self.out = nn.Conv1d(channels, n_mels, 1)
        self.pitch_channels = pitch_channels
        # one projection of the contour per block input (1x1: frame-local)
        self.pitch_in = nn.ModuleList(nn.Conv1d(pitch_channels, channels, 1) for _ in range(blocks)) if pitch_channels else None

    def forward(self, q: torch.Tensor, e: torch.Tensor, length: int | None = None,
                pitch: torch.Tensor | None = None) -> torch.Tensor:
        """``q [B, code_dim, T'], e [B, speaker_dim] -> mel [B, n_mels, length]``.

        ``length`` is the number of mel frames wanted (the content input's ``T``); the up-sampled output
        (``T' * stride`` frames) is cropped to it, or padded by repeating the last frame if longer.
        ``pitch [B, pitch_channels, T]``: the contour on the
        mel frames (:func:`vconv.models.contour.decoder_contour`), required exactly when the decoder has a pitch path.
        """
        if q.dim() != 3 or q.shape[1] != self.code_dim:
            raise ValueError(f"expected q of shape [B, {self.code_dim}, T'], got {tuple(q.shape)}")
        if e.dim() != 2 or e.shape[1] != self.speaker_dim:
            raise ValueError(f"expected e of shape [B, {self.speaker_dim}], got {tuple(e.shape)}")
        if e.shape[0] != q.shape[0]:
            if e.shape[0] != 1:
                raise ValueError(f"batch sizes differ: q has {q.shape[0]}, e has {e.shape[0]}")
            e = e.expand(q.shape[0], -1)  # one voice for every item
        if (pitch is None) != (self.pitch_in is None):
            raise ValueError("this decoder reads a pitch contour: give pitch [B, 3, T]" if pitch is None
                             else "this decoder has no pitch path: pitch must be None")
        x = self.inp(q)
        if self.stride > 1:
            x = torch.repeat_interleave(x, self.stride, dim=-1)
        if pitch is not None:
            if pitch.dim() != 3 or pitch.shape[1] != self.pitch_channels or pitch.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"expected pitch of shape [B, {self.pitch_channels}, T], got {tuple(pitch.shape)}")
            pitch = fit_length(pitch.to(x.dtype), x.shape[-1])
        for number, block in enumerate(self.blocks):
            if pitch is not None and self.pitch_in is not None:
                x = x + self.pitch_in[number](pitch)
            x = block(x, e)
        mel = self.out(x)
        if length is not None:
            mel = fit_length(mel, length)
        return mel


def fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or pad (repeating the last frame) ``x [B, C, T]`` to ``[B, C, length]``."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    frames = x.shape[-1]
    if frames >= length:
        return x[..., :length]
    return F.pad(x, (0, length - frames), mode="replicate")
