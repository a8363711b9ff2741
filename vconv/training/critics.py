"""Training critics: training-only judges of the model's output, each adding its weighted term to the loss.

The model trainer knows no critic by name: it builds those its config names (``train.critics``, each from its own
section, :mod:`vconv.config.critics`), asks each for its term after the reconstruction, and saves and restores their
state with its checkpoints. Two ship: ``mel_gan`` (a discriminator on the output mel, :mod:`vconv.training.mel_gan`)
and ``content_consistency`` (the frozen Whisper encoder on conversions, :mod:`vconv.training.content_consistency`).
A critic from outside the package subclasses :class:`Critic` and calls :func:`register_critic`.

The adversarial speaker classifier is not a critic: it reads the content code inside the model's forward, behind a
gradient reversal, and the run's own bundle keeps its weights (``model.adversary``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch

from vconv.config.base import ConfigSection
from vconv.config.critics import register_critic_section
from vconv.errors import VconvError

if TYPE_CHECKING:  # the trainer hands itself to its critics: a type here, not an import
    from vconv.data.segments import Batch
    from vconv.models import ReconstructionOutput
    from vconv.training.vc_trainer import ModelTrainer


class Critic:
    """One term of the loss beside the reconstruction. ``section``: its checked config section; ``trainer``: the
    :class:`~vconv.training.vc_trainer.ModelTrainer` (device, autocast, distributed wrapping, optimiser updates, the
    model and its front-end)."""

    name: ClassVar[str]
    section_class: ClassVar[type[ConfigSection]]

    def __init__(self, section: Any, trainer: "ModelTrainer") -> None:
        self.section, self.trainer = section, trainer

    def term(self, batch: "Batch", out: "ReconstructionOutput", metrics: dict[str, float]) -> torch.Tensor | None:
        """The weighted term ``[]`` this step adds to the loss (None: none this step); diagnostics go into ``metrics``."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of it (its own networks and optimisers), under keys unique to it."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore from a checkpoint's whole state (a checkpoint made without this critic holds none of its keys)."""

    def holds(self, state: Mapping[str, Any], key: str, what: str) -> bool:
        """Whether a checkpoint's ``state`` holds this critic's ``key``; if not (a run forked from one trained without
        ``what``), says that it starts now."""
        if key in state:
            return True
        if self.trainer.dist.is_main:
            print(f"note: {self.trainer.run.latest} has no {what}; it starts now, at step {state['step']}", file=sys.stderr)
        return False


CRITICS: dict[str, type[Critic]] = {}


def register_critic(cls: type[Critic]) -> type[Critic]:
    """Class decorator: make ``train.critics.<cls.name>`` build ``cls`` (its section becomes a known config section)."""
    CRITICS[cls.name] = cls
    register_critic_section(cls.name, cls.section_class)
    return cls


def build_critics(sections: Mapping[str, Any], trainer: "ModelTrainer") -> list[Critic]:
    """The critics named in ``sections`` (name -> checked section, :meth:`TrainConfig.critic_sections <vconv.config.TrainConfig.critic_sections>`)."""
    missing = sorted(set(sections) - set(CRITICS))
    if missing:
        raise VconvError(f"train.critics: no critic registered as {', '.join(missing)}")
    return [CRITICS[name](section, trainer) for name, section in sections.items()]

