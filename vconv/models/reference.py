"""The reference path: timbre read from the target's own frames, beside the AdaIN embedding.

A decoder that reads one global embedding renders voices near those it was trained on; a voice it
never heard comes out as an average. The reference path lets the decoder look the voice up in the
reference's frames instead (the idea of kNN-VC's frame matching, fine-grained speaker retrieval and
timbre cross-attention, written for this model): at chosen decoder stages, each output frame asks the
reference frames "what does this sound sound like in this voice?".

* **keys** come from the reference encoder's instance-normalised states (what is said, so a query can
  find the frames of the same sound), **values** from its un-normalised states (how it sounds);
* **queries** come from the decoder's instance-normalised hidden state (the content being rendered);
* the attended values are projected back onto the decoder's channels through a layer initialised at
  zero, so an untrained path changes nothing and the model starts as the AdaIN model it extends.

In training the reference is another utterance (or, for a speaker with one, the other half) of the same
speaker, never the reconstructed segment, so the path can carry voice but not words
(:class:`vconv.data.segments.SegmentBatches`). Several references are concatenated along time; padded
frames are masked.

A path is a registered part (:func:`register_reference`), chosen by ``ModelConfig.reference``:
``{kind: none}`` (no path: the model of before), ``{kind: attention, dim: 128, heads: 4, ...}`` (keys learned
from the reference's log-mel), or ``{kind: retrieval, ...}`` (keys are the reference's content codes:
:class:`FrameRetrieval`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vconv.config.parts import build_part
from vconv.errors import VconvError
from vconv.models.layers import ConvBlock

__all__ = ["REFERENCE_PATHS", "FrameRetrieval", "ReferenceMemory", "ReferencePath", "TimbreAttention", "build_reference_path",
           "register_reference"]


@dataclass
class ReferenceMemory:
    """The encoded reference frames one or more conversions attend over.

    Attributes:
        keys: ``[B, T_ref, dim]`` what each reference frame says (instance-normalised states; for
            :class:`FrameRetrieval` its content codes ``[B, T_ref, code_dim]``).
        values: ``[B, T_ref, dim]`` how it sounds.
        mask: ``[B, T_ref]`` True for a real frame, False for padding.
    """

    keys: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor

    @staticmethod
    def stack(memories: Sequence["ReferenceMemory"]) -> "ReferenceMemory":
        """One memory per item (each ``[1, T_i, dim]``) as a batch ``[B, max T_i, dim]``, the padding masked."""
        longest = max(m.keys.shape[1] for m in memories)

        def pad(x: torch.Tensor, value: float | bool) -> torch.Tensor:
            return F.pad(x, (0, 0, 0, longest - x.shape[1]), value=value) if x.dim() == 3 else \
                F.pad(x, (0, longest - x.shape[1]), value=value)

        return ReferenceMemory(torch.cat([pad(m.keys, 0.0) for m in memories]), torch.cat([pad(m.values, 0.0) for m in memories]),
                               torch.cat([pad(m.mask, False) for m in memories]))

    def expand(self, batch: int) -> "ReferenceMemory":
        """The same memory for each of ``batch`` items (one target voice for a whole batch)."""
        if self.keys.shape[0] == batch:
            return self
        if self.keys.shape[0] != 1:
            raise ValueError(f"a reference memory of {self.keys.shape[0]} items for a batch of {batch}")
        return ReferenceMemory(self.keys.expand(batch, -1, -1), self.values.expand(batch, -1, -1),
                               self.mask.expand(batch, -1))


class ReferencePath(nn.Module):
    """Base of the reference paths: encode reference frames once, then attend at some decoder stages."""

    kind: ClassVar[str]
    # whether the path also reads content codes: the reference frames' (``encode(..., codes=)``, computed by the
    # model's content encoder from the references' content features) and the source's (``attend(..., codes=)``)
    reads_codes: ClassVar[bool] = False
    stages: tuple[int, ...]  # 1-based decoder blocks after which the path attends

    def encode(self, refs: torch.Tensor | Sequence[torch.Tensor],
               codes: torch.Tensor | Sequence[torch.Tensor] | None = None) -> ReferenceMemory:
        """``[B, n_mels, T_ref]`` (one reference per item), or a list of ``[n_mels, T_i]`` references of one
        voice (concatenated along time: one memory) -> :class:`ReferenceMemory`. ``codes`` (a path that
        :attr:`reads_codes`): the references' content codes on their frames, ``[B, code_dim, T_ref]`` or a
        list of ``[code_dim, T_i]``."""
        raise NotImplementedError

    def attend(self, stage: int, h: torch.Tensor, memory: ReferenceMemory, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder state ``h [B, C, T]`` after block ``stage`` -> ``[B, C, T]`` with the reference's timbre added.
        ``codes`` (a path that :attr:`reads_codes`): the source's content codes on the same frames, ``[B, code_dim, T]``."""
        raise NotImplementedError


REFERENCE_PATHS: dict[str, type[ReferencePath]] = {}


def register_reference(cls: type[ReferencePath]) -> type[ReferencePath]:
    """Class decorator: make a :class:`ReferencePath` buildable by its ``kind``."""
    REFERENCE_PATHS[cls.kind] = cls
    return cls


def build_reference_path(section: Mapping[str, Any] | None, *, n_mels: int, channels: int,
                         decoder_blocks: int, code_dim: int) -> ReferencePath | None:
    """The path ``model.reference`` names (``None`` for ``{kind: none}``); settings are the part's keyword
    arguments, besides the sizes it takes from the model (``n_mels``, ``channels``, ``decoder_blocks``, ``code_dim``)."""
    section = section or {"kind": "none"}
    if section.get("kind") == "none":
        if len(section) > 1:
            raise VconvError(f"model.reference: kind none takes no settings, got {', '.join(sorted(set(section) - {'kind'}))}")
        return None
    return build_part("model.reference", REFERENCE_PATHS, section, also=("none",), n_mels=n_mels, channels=channels,
                      decoder_blocks=decoder_blocks, code_dim=code_dim)


@register_reference
class TimbreAttention(ReferencePath):
    """Cross-attention from the decoder's content onto the reference frames (see the module docstring).

    Args:
        dim: width of the reference states and of the attention.
        heads: attention heads (``dim`` must divide by it).
        layers: residual convolution blocks of the reference encoder after its input layer.
        stages: 1-based decoder blocks after which the decoder attends (each stage its own projections).
        kernel_size: of the reference encoder's convolutions.
        max_frames: at most this many reference frames are kept (the first ones), bounding time and memory.
        n_mels, channels, decoder_blocks, code_dim: the model's sizes (not settings of the part; ``code_dim``
            unused here).
    """

    kind = "attention"

    def __init__(self, *, n_mels: int, channels: int, decoder_blocks: int, code_dim: int = 0, dim: int = 128, heads: int = 4,
                 layers: int = 2, stages: list[int] | None = None, kernel_size: int = 5, max_frames: int = 2000) -> None:
        super().__init__()
        self.stages = _checked_stages(stages, decoder_blocks, dim=dim, heads=heads, layers=layers, max_frames=max_frames)
        self.n_mels, self.dim, self.heads, self.layers = n_mels, dim, heads, layers
        self.kernel_size, self.max_frames = kernel_size, max_frames
        self.encoder = _frame_encoder(n_mels, dim, layers, kernel_size)
        self.key = nn.ModuleList(nn.Linear(dim, dim) for _ in self.stages)
        self.value = nn.ModuleList(nn.Linear(dim, dim) for _ in self.stages)
        self.query = nn.ModuleList(nn.Linear(channels, dim) for _ in self.stages)
        self.out = _zero_projections(dim, channels, len(self.stages))

    def encode(self, refs: torch.Tensor | Sequence[torch.Tensor],
               codes: torch.Tensor | Sequence[torch.Tensor] | None = None) -> ReferenceMemory:
        if isinstance(refs, torch.Tensor):
            if refs.dim() == 2:
                refs = refs[None]
            if refs.dim() != 3 or refs.shape[1] != self.n_mels:
                raise ValueError(f"expected reference frames [B, {self.n_mels}, T], got {tuple(refs.shape)}")
            frames = refs[..., : self.max_frames]
        else:
            if len(refs) == 0:
                raise ValueError("the reference path needs at least one reference")
            if any(r.dim() != 2 or r.shape[0] != self.n_mels for r in refs):
                raise ValueError(f"expected each reference of shape [{self.n_mels}, T], got {[tuple(r.shape) for r in refs]}")
            # each reference encoded on its own (no convolution across the seam), then concatenated along time
            return _concat([self.encode(r[None]) for r in refs], self.max_frames)
        states = self.encoder(frames)  # [B, dim, T_ref]
        keys = F.instance_norm(states).transpose(1, 2)  # what is said: per-utterance channel statistics removed
        values = states.transpose(1, 2)  # how it sounds
        mask = torch.ones(keys.shape[:2], dtype=torch.bool, device=keys.device)
        return ReferenceMemory(keys, values, mask)

    def attend(self, stage: int, h: torch.Tensor, memory: ReferenceMemory, codes: torch.Tensor | None = None) -> torch.Tensor:
        if stage not in self.stages:
            return h
        i = self.stages.index(stage)
        memory = memory.expand(h.shape[0])
        q = self.query[i](F.instance_norm(h).transpose(1, 2))  # [B, T, dim]: the content being rendered
        k, v = self.key[i](memory.keys), self.value[i](memory.values)  # [B, T_ref, dim]
        return h + self.out[i](_attend_heads(q, k, v, memory.mask, self.heads)).transpose(1, 2)


@register_reference
class FrameRetrieval(ReferencePath):
    """Frames of the target looked up by what they say: kNN-VC's matching, soft and learned, for this model.

    :class:`TimbreAttention` must learn from a few dozen training voices both what to match (keys from the
    reference's log-mel) and what to take; here the matching is given a speaker-free space from the start:

    * **keys** are the reference frames' content codes (the model's own content encoder and quantiser on the
      reference's content features, :meth:`vconv.models.vc.VoiceConversionModel.encode_reference`), **queries**
      the source's codes on the decoder's frames; one projection per stage serves both, so equal codes score
      high before any training (``q.k = |W c|^2``) and training learns which code dimensions to match on;
    * **values** are a small encoder's states of the reference's log-mel (how that sound sounds in this voice);
    * the attended values are projected onto the decoder's channels through a layer initialised at zero.

    The codes reach the path detached: matching is trained, the content encoder is not trained through it
    (its codes must stay free of voice). Settings as :class:`TimbreAttention`.
    """

    kind = "retrieval"
    reads_codes = True

    def __init__(self, *, n_mels: int, channels: int, decoder_blocks: int, code_dim: int, dim: int = 128, heads: int = 4,
                 layers: int = 2, stages: list[int] | None = None, kernel_size: int = 5, max_frames: int = 2000) -> None:
        super().__init__()
        if code_dim < 1:
            raise ValueError(f"code_dim must be >= 1, got {code_dim}")
        self.stages = _checked_stages(stages, decoder_blocks, dim=dim, heads=heads, layers=layers, max_frames=max_frames)
        self.n_mels, self.code_dim, self.dim, self.heads, self.max_frames = n_mels, code_dim, dim, heads, max_frames
        self.encoder = _frame_encoder(n_mels, dim, layers, kernel_size)
        self.match = nn.ModuleList(nn.Linear(code_dim, dim) for _ in self.stages)  # codes -> queries and keys
        self.value = nn.ModuleList(nn.Linear(dim, dim) for _ in self.stages)
        self.out = _zero_projections(dim, channels, len(self.stages))

    def encode(self, refs: torch.Tensor | Sequence[torch.Tensor],
               codes: torch.Tensor | Sequence[torch.Tensor] | None = None) -> ReferenceMemory:
        if codes is None:
            raise ValueError("the retrieval path needs the references' content codes")
        if not isinstance(refs, torch.Tensor):
            if len(refs) == 0 or len(refs) != len(codes):
                raise ValueError(f"expected as many code sequences as references (at least one), got {len(codes)} for {len(refs)}")
            return _concat([self.encode(r[None], c[None]) for r, c in zip(refs, codes)], self.max_frames)
        if refs.dim() != 3 or refs.shape[1] != self.n_mels:
            raise ValueError(f"expected reference frames [B, {self.n_mels}, T], got {tuple(refs.shape)}")
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.shape[1] != self.code_dim \
                or codes.shape[0] != refs.shape[0] or codes.shape[2] != refs.shape[2]:
            raise ValueError(f"expected reference codes [{refs.shape[0]}, {self.code_dim}, {refs.shape[2]}], "
                             f"got {tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__}")
        frames = refs[..., : self.max_frames]
        values = self.encoder(frames).transpose(1, 2)  # [B, T_ref, dim]: how each frame sounds
        keys = codes[..., : self.max_frames].detach().transpose(1, 2)  # [B, T_ref, code_dim]: what it says
        mask = torch.ones(keys.shape[:2], dtype=torch.bool, device=keys.device)
        return ReferenceMemory(keys, values, mask)

    def attend(self, stage: int, h: torch.Tensor, memory: ReferenceMemory, codes: torch.Tensor | None = None) -> torch.Tensor:
        if stage not in self.stages:
            return h
        if codes is None or codes.shape[0] != h.shape[0] or codes.shape[-1] != h.shape[-1]:
            raise ValueError(f"the retrieval path needs the source's codes on the decoder's {h.shape[-1]} frames")
        i = self.stages.index(stage)
        memory = memory.expand(h.shape[0])
        match = self.match[i]
        q = match(codes.detach().transpose(1, 2).to(memory.keys.dtype))  # [B, T, dim]
        k, v = match(memory.keys), self.value[i](memory.values)  # [B, T_ref, dim]
        return h + self.out[i](_attend_heads(q, k, v, memory.mask, self.heads)).transpose(1, 2)


def _checked_stages(stages: list[int] | None, decoder_blocks: int, *, dim: int, heads: int, layers: int,
                    max_frames: int) -> tuple[int, ...]:
    """A path's settings checked; its stages (default: the middle and the last decoder block), sorted."""
    stages = [decoder_blocks // 2, decoder_blocks] if stages is None else list(stages)
    if not stages or any(not 1 <= s <= decoder_blocks for s in stages) or len(set(stages)) != len(stages):
        raise ValueError(f"stages must be distinct decoder blocks in 1..{decoder_blocks}, got {stages}")
    if dim < 1 or heads < 1 or dim % heads:
        raise ValueError(f"dim ({dim}) must be a positive multiple of heads ({heads})")
    if layers < 0 or max_frames < 1:
        raise ValueError(f"layers must be >= 0 and max_frames >= 1, got {layers}, {max_frames}")
    return tuple(sorted(stages))


def _frame_encoder(n_mels: int, dim: int, layers: int, kernel_size: int) -> nn.Module:
    """The reference encoder: log-mel ``[B, n_mels, T] -> [B, dim, T]`` states."""
    return nn.Sequential(nn.Conv1d(n_mels, dim, kernel_size, padding=kernel_size // 2),
                         *(ConvBlock(dim, dim, kernel_size, residual=True) for _ in range(layers)))


def _zero_projections(dim: int, channels: int, count: int) -> nn.ModuleList:
    """``count`` projections ``dim -> channels`` at zero: an untrained path adds nothing (the AdaIN model)."""
    out = [nn.Linear(dim, channels) for _ in range(count)]
    for layer in out:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return nn.ModuleList(out)


def _attend_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention of ``q [B, T, dim]`` over ``k, v [B, T_ref, dim]`` (``mask [B, T_ref]``, True for
    a real frame) -> ``[B, T, dim]``."""
    batch, frames, dim = q.shape
    split = lambda x: x.reshape(batch, x.shape[1], heads, dim // heads).transpose(1, 2)  # noqa: E731
    attended = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask[:, None, None, :])
    return attended.transpose(1, 2).reshape(batch, frames, dim)


def _concat(memories: list[ReferenceMemory], max_frames: int) -> ReferenceMemory:
    """One voice's references as one memory ``[1, sum T_i, dim]`` (at most ``max_frames`` frames)."""
    return ReferenceMemory(torch.cat([m.keys for m in memories], dim=1)[:, :max_frames],
                           torch.cat([m.values for m in memories], dim=1)[:, :max_frames],
                           torch.cat([m.mask for m in memories], dim=1)[:, :max_frames])
