"""The conversion network over a stream's consecutive windows: only each window's last frames recomputed.

A stream converts each 96 ms block with 3 s of past, and the network (content encoder, quantiser, AdaIN decoder) was
the largest share of a block's work: ~28 of ~54 ms on one thread, nearly all of it on frames the window before had
already converted. Its convolutions are local (16 of kernel 5: ±32 frames of reach), but its instance norms are not:
every norm's channel statistics are the whole window's, which is why a window could not simply be cut shorter.

:class:`WindowNetwork` keeps, for every frame of the window, each layer's values as they were last computed, on the
stream's absolute frame grid. A window recomputes its last ``fresh`` frames only: each convolution runs on them (its
left reach read from the kept values before), and each norm takes its statistics over the kept values and the
recomputed ones together, so the norms still see the whole window. A kept value was last computed while its frame was
itself in the recomputed part, with at least ``fresh - block`` frames of right context (1 s by default, past the
network's reach), under the statistics and the content front-end's states of that window: what the recomputed part
reads of it is a few windows stale, as Whisper's kept keys and values are (:mod:`vconv.audio.whisper_stream`).

Frames kept are never ones the window before computed near its edge (within the network's reach of its last real
content frame, or from the held frames past it: ``StreamSettings.edge_hold_frames``): those are recomputed whatever
``fresh`` says. A model of another shape (a strided content encoder, another part's kind) is converted whole every
block, as before. The measured cost and words are in docs/STREAMING.md ("The network over the kept past").

Shapes: ``content [1, C, T]`` (the front-end's states on the window's frames, the held ones included), ``contour [1, 3,
T]`` or None, ``first`` the window's first frame in the stream -> the model-space mel ``[1, n_mels, T]``.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from vconv.models.content import ContentEncoder
from vconv.models.decoder import AdaINDecoder, fit_length
from vconv.models.layers import AdaIN, ConvBlock
from vconv.models.quantize import PassThroughQuantizer, VectorQuantizer


def supports(model: torch.nn.Module) -> bool:
    """Whether ``model``'s parts are the ones :class:`WindowNetwork` can run part by part: a content encoder without
    strides, a frame-wise quantiser and an AdaIN decoder without up-sampling, in evaluation mode (no dropout)."""
    encoder, decoder = getattr(model, "content_encoder", None), getattr(model, "decoder", None)
    return (type(encoder) is ContentEncoder and type(decoder) is AdaINDecoder and encoder.total_stride == 1
            and decoder.stride == 1 and isinstance(model.quantizer, (VectorQuantizer, PassThroughQuantizer))
            and not model.training)


class _Pass:
    """One window's pass: the whole window's values at each site, in the order the network reaches them, from the kept
    ones (the first ``kept`` frames) and the recomputed ones (the rest)."""

    def __init__(self, old: list[torch.Tensor], offset: int, kept: int) -> None:
        self.old, self.offset, self.kept = old, offset, kept
        self.sites: list[torch.Tensor] = []

    def whole(self, recomputed: torch.Tensor) -> torch.Tensor:
        """``recomputed [1, C, R]`` after the kept frames of the same site: ``[1, C, kept + R]``."""
        if self.kept:
            old = self.old[len(self.sites)]
            recomputed = torch.cat([old[..., self.offset : self.offset + self.kept].to(recomputed.dtype), recomputed], -1)
        self.sites.append(recomputed)
        return recomputed

    def conv(self, block: ConvBlock, whole: torch.Tensor) -> torch.Tensor:
        """``block`` (stride 1) on the recomputed frames of ``whole [1, C_in, kept + R]`` -> ``[1, C_out, R]``: its
        left reach read from the kept frames, zero past the window's ends (as the whole pass pads)."""
        left = min(self.kept, block.pad_left)
        inputs = whole[..., self.kept - left :]
        y = block.activation(block.conv(F.pad(inputs, (block.pad_left - left, block.pad_right))))
        if block.residual:
            own = whole[..., self.kept :]
            y = y + (block.skip(own) if block.skip is not None else own)
        return y

    def norm(self, whole: torch.Tensor, eps: float) -> torch.Tensor:
        """The recomputed frames of ``whole [1, C, kept + R]`` normalised on the whole window's channel statistics
        (biased variance, as the instance norms and AdaIN take it) -> ``[1, C, R]``."""
        mean = whole.mean(dim=-1, keepdim=True)
        scale = torch.rsqrt((whole - mean).square().mean(dim=-1, keepdim=True) + eps)
        return (whole[..., self.kept :] - mean) * scale


class WindowNetwork:
    """``decode(content, contour, first, fresh) -> mel [1, n_mels, T]``: the model's conversion to ``embedding [1, S]``
    over a stream's window with only its last ``fresh`` frames recomputed (module docstring)."""

    def __init__(self, model: torch.nn.Module, embedding: torch.Tensor, reach_guard: int | None = None) -> None:
        self.encoder: ContentEncoder = model.content_encoder
        self.quantizer = model.quantizer
        self.decoder: AdaINDecoder = model.decoder
        self.embedding = embedding
        self.content_in_float32 = bool(getattr(model, "content_in_float32", False))
        convs = 2 * (len(self.encoder.blocks) + len(self.decoder.blocks))
        # frames before the last window's real edge whose kept values its edge reached: each convolution reaches 2
        self.guard = convs * 2 if reach_guard is None else reach_guard
        self._sites: list[torch.Tensor] = []  # per site [1, C, n], the last window's, from frame `_first`
        self._first = 0
        self._real_end = 0  # the frame after the last window's last real (not held) content frame
        self.kept = 0  # frames the last window kept (0: it was converted whole)

    @torch.no_grad()
    def decode(self, content: torch.Tensor, contour: torch.Tensor | None, first: int, fresh: int,
               real_frames: int | None = None) -> torch.Tensor:
        """The model-space mel ``[1, n_mels, T]`` of ``content [1, C, T]`` (``contour [1, 3, T]`` for a model with the
        pitch path), the window's frame 0 being the stream's frame ``first``, with at least its last ``fresh`` frames
        recomputed (0: all); ``real_frames``: how many of its ``T`` are real content, not held (default all)."""
        total = content.shape[-1]
        real = total if real_frames is None else real_frames
        kept = self._keepable(first, total, fresh)
        run = _Pass(self._sites, first - self._first, kept)
        mel = self._forward(run, content, contour)
        self._sites, self._first, self._real_end, self.kept = run.sites, first, first + real, kept
        return mel

    def _keepable(self, first: int, total: int, fresh: int) -> int:
        """How many of the window's first frames can be read from the kept values: none without a window before, or
        when this one starts before it; never the frames the last window's edge reached."""
        if not self._sites or first < self._first or fresh <= 0:
            return 0
        return max(0, min(total - fresh, self._real_end - self.guard - first))

    def _forward(self, run: _Pass, content: torch.Tensor, contour: torch.Tensor | None) -> torch.Tensor:
        """The model's ``convert`` on ``run``'s recomputed frames, its norms over the whole window -> ``[1, n_mels, T]``."""
        # the content encoder in float32 where the model runs it so (VoiceConversionModel.content_in_float32)
        with torch.autocast(content.device.type, enabled=False) if self.content_in_float32 else contextlib.nullcontext():
            x = content.float() if self.content_in_float32 else content
            for number, block in enumerate(self.encoder.blocks):  # the front-end's states are all there: no site
                hidden = run.conv(block.conv1, x if number == 0 else run.whole(x))
                hidden = run.conv(block.conv2, run.whole(hidden))
                x = run.norm(run.whole(hidden).float(), block.norm.eps)
            states = self.encoder.proj(x)
        x = self.decoder.inp(self.quantizer(states).quantized)
        pitch = None
        if contour is not None:
            pitch = fit_length(contour.to(x.dtype), content.shape[-1])[..., run.kept :]
        for number, block in enumerate(self.decoder.blocks):
            if pitch is not None and self.decoder.pitch_in is not None:
                x = x + self.decoder.pitch_in[number](pitch)
            h = self._adain(run, block.norm1, run.conv(block.conv1, run.whole(x)))
            h = self._adain(run, block.norm2, run.conv(block.conv2, run.whole(h)))
            x = x + h
        return run.whole(self.decoder.out(x))

    def _adain(self, run: _Pass, norm: AdaIN, recomputed: torch.Tensor) -> torch.Tensor:
        """AdaIN of the recomputed frames on the whole window's statistics, in the target's style."""
        gamma, beta = norm.style(self.embedding)
        return run.norm(run.whole(recomputed), norm.eps) * gamma + beta
