"""The causal variant of the voice converter, for live conversion with a bounded look-ahead.

The offline model is free to look both ways: each of its 16 convolutions (kernel 5) reaches 2 frames into the
future, so a frame's output depends on 32 frames (0.5 s) to its right, and every instance norm (content
encoder) and AdaIN (decoder) subtracts statistics taken over the whole input. Streamed in 80 ms blocks with
64 ms of look-ahead, its last frames see zero padding where the future should be, and its statistics come
from a window rather than the utterance: on the held-out voices this cost +0.18 CER even with the
front-end's states of the whole file (docs/STREAMING.md).

:func:`make_causal` turns a model into its causal twin, in place, without new parameters:

* the convolutions' padding moves to the left, except for ``lookahead_frames`` frames of right padding
  given to the first convolutions of the content encoder (2 frames each, as the offline kernel is centred),
  so the whole network reads at most ``lookahead_frames`` frames past the one it outputs;
* every instance norm and AdaIN takes its statistics over the last ``norm_frames`` frames up to the
  current one (:func:`causal_stats`) instead of over the whole input (``norm="window"``), or over each
  frame's own channels (``norm="frame"``, a layer norm per frame: no statistics that need the past or the
  future at all; AdaIN's speaker scale and bias then act on that), or they stay as offline, over the whole
  input (``norm="utterance"``: only the convolutions are made causal, and a stream takes the statistics over its
  window, past context and look-ahead; for v5 on windows the whole file's statistics kept no more words than the
  window's, but a network trained this way keeps fewer words than with frame norms, docs/STREAMING.md).

``lookahead_first`` says whose convolutions receive the look-ahead budget first: the content encoder's (the
first layout) or the decoder's (which keeps more words at the same budget, docs/STREAMING.md).

Its weights are then trained (distilled) to reproduce the offline model's whole-utterance output
(:mod:`vconv.training.stream_student`). The twin is what ``vc.stream`` runs when a bundle ships one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from vconv.models.layers import AdaIN, ConvBlock, causal_stats, frame_norm

if TYPE_CHECKING:  # vc builds a causal network from its config (model.causal) with make_causal: a type here, not an import
    from vconv.models.vc import VoiceConversionModel

__all__ = ["CausalLayout", "CausalInstanceNorm", "FrameNorm", "causal_stats", "lookahead_of", "make_causal"]


@dataclass(frozen=True)
class CausalLayout:
    """How far the causal twin may look ahead and over how many frames its norms take statistics."""

    lookahead_frames: int = 4
    norm_frames: int = 96
    norm: str = "window"  # "window": over the last norm_frames frames; "frame": over each frame's channels; "utterance": as offline
    lookahead_first: str = "content"  # "content" or "decoder": whose convolutions get the look-ahead budget first

    def to_dict(self) -> dict[str, int | str]:
        return {"lookahead_frames": self.lookahead_frames, "norm_frames": self.norm_frames, "norm": self.norm,
                "lookahead_first": self.lookahead_first}


class CausalInstanceNorm(nn.Module):
    """Instance norm without affine parameters whose statistics at frame ``t`` cover the last ``frames``
    frames up to ``t`` (:func:`causal_stats`). ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, frames: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.frames, self.eps = int(frames), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = causal_stats(x, self.frames)
        return (x - mean) * torch.rsqrt(var + self.eps)

    def extra_repr(self) -> str:
        return f"frames={self.frames}"


class FrameNorm(nn.Module):
    """Normalisation of each frame over its channels, without affine parameters (a layer norm per frame):
    causal and stream-exact, as it reads no other frame. ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return frame_norm(x, self.eps)


def _content_convs(model: VoiceConversionModel) -> list[ConvBlock]:
    return [m for m in model.content_encoder.modules() if isinstance(m, ConvBlock)]


def _decoder_convs(model: VoiceConversionModel) -> list[ConvBlock]:
    return [m for m in model.decoder.modules() if isinstance(m, ConvBlock)]


def make_causal(model: VoiceConversionModel, layout: CausalLayout) -> VoiceConversionModel:
    """Make ``model`` (a :class:`~vconv.models.vc.VoiceConversionModel` without down-sampling) its causal
    twin in place and return it; the parameters are untouched, so the offline weights are the starting point.

    Raises:
        ValueError: for a model that down-samples (a strided convolution's look-ahead is not frame-exact)
            or has a reference path (its attention reads the whole target, which is fine, but it has not
            been tried).
    """
    content, decoder = _content_convs(model), _decoder_convs(model)
    convs = decoder + content if layout.lookahead_first == "decoder" else content + decoder
    if any(conv.stride != 1 for conv in convs):
        raise ValueError("the causal twin needs a model without down-sampling (model.downsample all 1)")
    if getattr(model, "reference", None) is not None:
        raise ValueError("the causal twin of a model with a reference path has not been made yet")
    budget = layout.lookahead_frames
    for conv in convs:
        width = conv.pad_left + conv.pad_right  # kernel_size - 1
        right = min(budget, width // 2)
        conv.pad_left, conv.pad_right = width - right, right
        budget -= right
    model.causal_layout = layout  # type: ignore[assignment]  # read back by the stream (its look-ahead check)
    if layout.norm == "utterance":  # the offline norms kept: statistics over the whole input
        return model
    per_frame = layout.norm == "frame"
    for block in model.content_encoder.blocks:
        block.norm = FrameNorm() if per_frame else CausalInstanceNorm(layout.norm_frames)
    for norm in model.decoder.modules():
        if isinstance(norm, AdaIN):
            norm.causal_frames = 0 if per_frame else layout.norm_frames
    return model


def lookahead_of(model: VoiceConversionModel) -> int:
    """Frames past the output frame that the content encoder and decoder read (0 for a fully causal model)."""
    return sum(conv.pad_right for conv in _content_convs(model) + _decoder_convs(model))
