"""The config sections of the training critics: ``train.critics: {NAME: {weight: ..., ...}}``.

A critic is a training-only judge of the model's output that adds its weighted term to the loss
(:mod:`vconv.training.critics` runs them); none is part of a bundle. Each has its own section here, checked when the
train config is read, so a typo in a critic's key fails before any data loads::

    train:
      critics:
        mel_gan: {weight: 0.1, fm_weight: 0.2}          # vconv.training.mel_gan
        content_consistency: {weight: 0.1, items: 8}    # vconv.training.content_consistency

A critic not named, named as ``null`` or ``false``, or with its weights at 0 is off. Configs written before the critics had sections (``train.mel_gan_weight`` and the like) are
translated by :mod:`vconv.config.legacy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from vconv.config.base import ConfigSection, from_dict
from vconv.errors import VconvError


@dataclass
class MelGanSection(ConfigSection):
    """The output mel's adversary (:mod:`vconv.training.mel_gan`): a discriminator on real and reconstructed log-mel
    segments from ``start_step`` on, its LSGAN term (``weight``) and feature matching on its activations
    (``fm_weight``); its own AdamW at ``lr`` and ``channels`` wide."""

    SECTION = "train.critics.mel_gan"
    SWITCHES = ("weight", "fm_weight")  # all 0: the critic is off
    LIMITS = {"weight": (0.0, 1e6), "fm_weight": (0.0, 1e6), "start_step": (0, 10**9), "lr": (0.0, 10.0),
              "channels": (1, 1024)}

    weight: float = 0.1
    fm_weight: float = 0.0
    start_step: int = 0
    lr: float = 2e-4
    channels: int = 16


@dataclass
class ContentConsistencySection(ConfigSection):
    """Content consistency (:mod:`vconv.training.content_consistency`): the first ``items`` items of each batch are
    also decoded in the next item's voice, and the L1 between the frozen Whisper encoder's states of that conversion
    and of the real segment joins the loss at ``weight`` (needs ``train.frontends_dir``)."""

    SECTION = "train.critics.content_consistency"
    LIMITS = {"weight": (0.0, 1e6), "items": (1, 4096)}

    weight: float = 0.1
    items: int = 8


CRITIC_SECTIONS: dict[str, type[ConfigSection]] = {"mel_gan": MelGanSection,
                                                   "content_consistency": ContentConsistencySection}


def register_critic_section(name: str, section: type[ConfigSection]) -> None:
    """Make ``train.critics.NAME`` a known section (a critic from outside the package; :func:`vconv.training.critics.register_critic`)."""
    CRITIC_SECTIONS[name] = section


def critic_sections(data: Mapping[str, Any]) -> dict[str, ConfigSection]:
    """``train.critics`` -> each named critic's checked section; an unknown name or key is a one-line error."""
    if not isinstance(data, Mapping):
        raise VconvError(f"train.critics: expected a mapping of critic: {{key: value}}, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(CRITIC_SECTIONS))
    if unknown:
        raise VconvError(f"train.critics: unknown critic(s) {', '.join(unknown)}; known: {', '.join(sorted(CRITIC_SECTIONS))}")
    sections = {}
    for name, section in data.items():
        if section is None or section is False:  # `train.critics.mel_gan=null`: off (a base config's critic too)
            continue
        if not isinstance(section, Mapping):
            raise VconvError(f"train.critics.{name}: expected a mapping of key: value, or null/false for off; got {section!r}")
        checked = from_dict(CRITIC_SECTIONS[name], section)
        if any(getattr(checked, key) for key in getattr(checked, "SWITCHES", ("weight",))):
            sections[name] = checked  # all its weights 0: off, as the flat "weight: 0" was
    return sections
