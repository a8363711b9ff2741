"""The config sections of the model's five core parts: ``model.<role>: {kind: NAME, **its settings}``.

Each part is built from its own section (:mod:`vconv.models.vc` looks the kind up and passes the section's settings
and the sizes the model shares, ``n_mels``, ``code_dim``, ``speaker_dim``, ``n_speakers``)::

    model:
      code_dim: 64
      content_encoder: {kind: conv, channels: 256, blocks: 4, downsample: [1, 2, 1, 1]}
      quantizer: {kind: vq, codebook_size: 512, groups: 2}      # {kind: none}: no bottleneck (an ablation)
      speaker_encoder: {kind: conv, channels: 256, blocks: 4}
      decoder: {kind: adain, channels: 256, blocks: 4}
      adversary: {kind: classifier, hidden: 256}                 # {kind: none}: no speaker adversary

An ablation is a part swap (``quantizer: {kind: none}``), not a boolean. A section is checked when the model config
is read and kept with its defaults filled in, so a bundle's config says every setting it was built with. Configs
written before the sections (``channels``, ``content_blocks``, ``quantize: false``, ...) are translated by
:mod:`vconv.config.legacy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from vconv.config.base import ConfigSection, from_dict
from vconv.errors import VconvError


@dataclass
class ConvStackSection(ConfigSection):
    """What every convolutional part has: ``blocks`` residual conv blocks ``channels`` wide with ``kernel_size``
    taps, and dropout."""

    LIMITS = {"channels": (1, 4096), "blocks": (1, 64), "kernel_size": (1, 63), "dropout": (0.0, 1.0)}

    channels: int = 256
    blocks: int = 4
    kernel_size: int = 5
    dropout: float = 0.0


@dataclass
class ConvContentSection(ConvStackSection):
    """``content_encoder: {kind: conv}`` (:class:`vconv.models.content.ContentEncoder`): conv blocks, each with an
    instance norm; ``downsample`` gives one temporal stride per block."""

    SECTION = "model.content_encoder"
    LIMITS = {"downsample": (1, 8)}

    downsample: list[int] = field(default_factory=lambda: [1, 2, 1, 1])


@dataclass
class VectorQuantizerSection(ConfigSection):
    """``quantizer: {kind: vq}`` (:class:`vconv.models.quantize.VectorQuantizer`): ``groups`` codes per frame from
    one codebook of ``codebook_size``, EMA updates (``ema``, ``decay``), a code unused for ``dead_after`` steps
    re-initialised, commitment ``beta``."""

    SECTION = "model.quantizer"
    LIMITS = {"codebook_size": (1, 65536), "groups": (1, 4096), "beta": (0.0, 100.0), "decay": (0.0, 1.0),
              "dead_after": (0, 10**9)}

    codebook_size: int = 256
    groups: int = 1
    beta: float = 0.25
    ema: bool = True
    decay: float = 0.99
    dead_after: int = 200


@dataclass
class NoPartSection(ConfigSection):
    """``{kind: none}``: the part left out (no VQ bottleneck: the code passes through; no speaker adversary)."""

    SECTION = "model"


@dataclass
class ConvSpeakerSection(ConvStackSection):
    """``speaker_encoder: {kind: conv}`` (:class:`vconv.models.speaker.SpeakerEncoder`): conv blocks, then mean and
    standard deviation pooling over time."""

    SECTION = "model.speaker_encoder"


@dataclass
class AdaINDecoderSection(ConvStackSection):
    """``decoder: {kind: adain}`` (:class:`vconv.models.decoder.AdaINDecoder`): conv blocks whose norms take scale and
    shift from the speaker embedding."""

    SECTION = "model.decoder"


@dataclass
class ClassifierSection(ConfigSection):
    """``adversary: {kind: classifier}`` (:class:`vconv.models.adversary.SpeakerClassifier`): tells the training
    speakers apart from the content code behind a gradient reversal (built only when there are speakers)."""

    SECTION = "model.adversary"
    LIMITS = {"hidden": (1, 4096), "kernel_size": (1, 63), "dropout": (0.0, 1.0)}

    hidden: int = 256
    kernel_size: int = 5
    dropout: float = 0.0


# role -> kind -> section; vconv.models.vc holds the builder of each (register_model_part adds both)
PART_SECTIONS: dict[str, dict[str, type[ConfigSection]]] = {
    "content_encoder": {"conv": ConvContentSection},
    "quantizer": {"vq": VectorQuantizerSection, "none": NoPartSection},
    "speaker_encoder": {"conv": ConvSpeakerSection},
    "decoder": {"adain": AdaINDecoderSection},
    "adversary": {"classifier": ClassifierSection, "none": NoPartSection},
}
DEFAULT_KINDS = {"content_encoder": "conv", "quantizer": "vq", "speaker_encoder": "conv", "decoder": "adain",
                 "adversary": "classifier"}


def register_part_section(role: str, kind: str, section: type[ConfigSection]) -> None:
    """Make ``model.<role>: {kind: KIND}`` a known section (a part from outside the package)."""
    if role not in PART_SECTIONS:
        raise VconvError(f"model parts: unknown role {role!r}; roles: {', '.join(PART_SECTIONS)}")
    PART_SECTIONS[role][kind] = section


def part_section(role: str, data: Any) -> dict[str, Any]:
    """``model.<role>``'s section checked, as ``{"kind": KIND, **every setting}`` (defaults filled in); an unknown
    kind or key, a wrong type or an out-of-range value is a one-line VconvError."""
    if not isinstance(data, Mapping):
        raise VconvError(f"model.{role}: expected a mapping such as {{kind: {DEFAULT_KINDS[role]}}}, got {data!r}")
    settings = dict(data)
    kind = settings.pop("kind", DEFAULT_KINDS[role])  # `model.decoder.channels=128` alone names no kind
    kinds = PART_SECTIONS[role]
    if not isinstance(kind, str) or kind not in kinds:
        raise VconvError(f"model.{role}.kind must be one of {', '.join(kinds)}, got {kind!r}")
    if kinds[kind] is NoPartSection and settings:
        raise VconvError(f"model.{role}: kind {kind} takes no settings, got {', '.join(map(str, settings))}")
    return {"kind": kind, **from_dict(kinds[kind], settings).to_dict()}
