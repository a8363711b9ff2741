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
``{kind: none}`` (no path: the model of before) or ``{kind: attention, dim: 128, heads: 4, ...}``.
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

__all__ = ["REFERENCE_PATHS", "ReferenceMemory", "ReferencePath", "TimbreAttention", "build_reference_path",
           "register_reference"]


@dataclass
class ReferenceMemory:
    """The encoded reference frames one or more conversions attend over.

    Attributes:
        keys: ``[B, T_ref, dim]`` what each reference frame says (instance-normalised states).
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
    stages: tuple[int, ...]  # 1-based decoder blocks after which the path attends

    def encode(self, refs: torch.Tensor | Sequence[torch.Tensor]) -> ReferenceMemory:
        """``[B, n_mels, T_ref]`` (one reference per item), or a list of ``[n_mels, T_i]`` references of one
        voice (concatenated along time: one memory) -> :class:`ReferenceMemory`."""
        raise NotImplementedError

    def attend(self, stage: int, h: torch.Tensor, memory: ReferenceMemory) -> torch.Tensor:
        """Decoder state ``h [B, C, T]`` after block ``stage`` -> ``[B, C, T]`` with the reference's timbre added."""
        raise NotImplementedError


REFERENCE_PATHS: dict[str, type[ReferencePath]] = {}


def register_reference(cls: type[ReferencePath]) -> type[ReferencePath]:
    """Class decorator: make a :class:`ReferencePath` buildable by its ``kind``."""
    REFERENCE_PATHS[cls.kind] = cls
    return cls


def build_reference_path(section: Mapping[str, Any] | None, *, n_mels: int, channels: int,
                         decoder_blocks: int) -> ReferencePath | None:
    """The path ``model.reference`` names (``None`` for ``{kind: none}``); settings are the part's keyword
    arguments, besides the sizes it takes from the model (``n_mels``, ``channels``, ``decoder_blocks``)."""
    section = section or {"kind": "none"}
    if section.get("kind") == "none":
        if len(section) > 1:
            raise VconvError(f"model.reference: kind none takes no settings, got {', '.join(sorted(set(section) - {'kind'}))}")
        return None
    return build_part("model.reference", REFERENCE_PATHS, section, also=("none",), n_mels=n_mels, channels=channels,
                      decoder_blocks=decoder_blocks)


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
        n_mels, channels, decoder_blocks: the model's sizes (not settings of the part).
    """

    kind = "attention"

    def __init__(self, *, n_mels: int, channels: int, decoder_blocks: int, dim: int = 128, heads: int = 4,
                 layers: int = 2, stages: list[int] | None = None, kernel_size: int = 5, max_frames: int = 2000) -> None:
        super().__init__()
        stages = [decoder_blocks // 2, decoder_blocks] if stages is None else list(stages)
        if not stages or any(not 1 <= s <= decoder_blocks for s in stages) or len(set(stages)) != len(stages):
            raise ValueError(f"stages must be distinct decoder blocks in 1..{decoder_blocks}, got {stages}")
        if dim < 1 or heads < 1 or dim % heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of heads ({heads})")
        if layers < 0 or max_frames < 1:
            raise ValueError(f"layers must be >= 0 and max_frames >= 1, got {layers}, {max_frames}")
        self.n_mels, self.dim, self.heads, self.layers = n_mels, dim, heads, layers
        self.stages, self.kernel_size, self.max_frames = tuple(sorted(stages)), kernel_size, max_frames
        self.encoder = nn.Sequential(
            nn.Conv1d(n_mels, dim, kernel_size, padding=kernel_size // 2),
            *(ConvBlock(dim, dim, kernel_size, residual=True) for _ in range(layers)),
        )
        self.key = nn.ModuleList(nn.Linear(dim, dim) for _ in self.stages)
        self.value = nn.ModuleList(nn.Linear(dim, dim) for _ in self.stages)
        self.query = nn.ModuleList(nn.Linear(channels, dim) for _ in self.stages)
        out = [nn.Linear(dim, channels) for _ in self.stages]
        for layer in out:  # an untrained path adds nothing: the model starts as the AdaIN model
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.out = nn.ModuleList(out)

    def encode(self, refs: torch.Tensor | Sequence[torch.Tensor]) -> ReferenceMemory:
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

    def attend(self, stage: int, h: torch.Tensor, memory: ReferenceMemory) -> torch.Tensor:
        if stage not in self.stages:
            return h
        i = self.stages.index(stage)
        memory = memory.expand(h.shape[0])
        batch, frames = h.shape[0], h.shape[-1]
        q = self.query[i](F.instance_norm(h).transpose(1, 2))  # [B, T, dim]: the content being rendered
        k, v = self.key[i](memory.keys), self.value[i](memory.values)  # [B, T_ref, dim]
        split = lambda x: x.reshape(batch, x.shape[1], self.heads, self.dim // self.heads).transpose(1, 2)  # noqa: E731
        attended = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=memory.mask[:, None, None, :])
        attended = attended.transpose(1, 2).reshape(batch, frames, self.dim)
        return h + self.out[i](attended).transpose(1, 2)


def _concat(memories: list[ReferenceMemory], max_frames: int) -> ReferenceMemory:
    """One voice's references as one memory ``[1, sum T_i, dim]`` (at most ``max_frames`` frames)."""
    return ReferenceMemory(torch.cat([m.keys for m in memories], dim=1)[:, :max_frames],
                           torch.cat([m.values for m in memories], dim=1)[:, :max_frames],
                           torch.cat([m.mask for m in memories], dim=1)[:, :max_frames])
