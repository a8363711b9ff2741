"""Front-end parts: what the content encoder and the speaker encoder read, as swappable, registered parts.

A part has a *role* (``"content"``, ``"speaker"`` or ``"pitch"``: :mod:`vconv.frontends.pitch`) and a *kind* (its registered name). It owns:

* its config section, ``{"kind": NAME, **constructor keyword arguments}`` (``ModelConfig.content_frontend`` /
  ``speaker_frontend``): :func:`build_frontend_part` refuses keys its constructor does not take;
* its shape: :meth:`FrontEndPart.channels`, of a sequence at the mel frame rate (``[C, F]``);
* its feature key, under which ``vconv extract`` stores its output (:attr:`FrontEndPart.feature_key`), and the
  version of that output (:attr:`FrontEndPart.output_version`), stored beside it;
* its frozen weight files, loaded digest-checked from a front-end folder or a bundle and written into a
  bundle (:meth:`FrontEndPart.load_weights` / :meth:`FrontEndPart.save_weights`).

Adding a front-end is one file: subclass :class:`FrontEndPart`, give it ``role`` and ``kind``, decorate it
with :func:`register_frontend`, and import the module from ``vconv/frontends/__init__.py`` (or before the
config that names it is read). Nothing else in vconv asks which kind a part is.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import numpy as np
import torch
from torch import nn

from vconv.config.parts import build_part

ROLES = ("content", "speaker", "pitch")
_REGISTRY: dict[str, dict[str, type["FrontEndPart"]]] = {role: {} for role in ROLES}
P = TypeVar("P", bound=type["FrontEndPart"])


class FrontEndPart(nn.Module):
    """Base of every front-end part. Subclasses set the class attributes and implement :meth:`compute`.

    Constructing a part allocates no pretrained weights (the model builder asks for :attr:`channels` on
    the meta device); :meth:`load_weights` brings them when a part has any.
    """

    role: ClassVar[str]
    kind: ClassVar[str]
    is_log_mel: ClassVar[bool] = False  # the normalised log-mel itself (timbre perturbation applies to it)
    weight_files: ClassVar[tuple[str, ...]] = ()
    sample_rate: ClassVar[int | None] = None  # the audio rate the part needs, if it needs one
    pretrained: ClassVar[str | None] = None  # the pretrained model it runs (a judge must not share it)
    storage_dtype: ClassVar[torch.dtype] = torch.float32  # how `vconv extract` stores its output
    # raised whenever the same audio gets another output: `vconv extract` makes a stored older one again, and training
    # refuses it (a model trained on one tracker's contours and run on another's reads contours it never saw)
    output_version: ClassVar[int] = 1

    def channels(self, n_mels: int) -> int:
        """``C`` of the part's output, for features of ``n_mels`` mel bins."""
        raise NotImplementedError

    @property
    def feature_key(self) -> str:
        """The key of its output in a feature file (``"mel"`` for the log-mel parts)."""
        return self.kind

    def section(self) -> dict[str, Any]:
        """The part's config section, ``{"kind": ..., **constructor arguments}`` (defaults filled in)."""
        params = inspect.signature(type(self).__init__).parameters
        return {"kind": self.kind, **{name: getattr(self, name) for name in params if name != "self"}}

    def load_weights(self, folder: str | Path, config: Mapping[str, Any]) -> "FrontEndPart":
        """Load the frozen weights from ``folder`` (each file's sha256 checked against ``config["sha256"]``)."""
        return self

    def save_weights(self, folder: Path, dtype: torch.dtype) -> list[str]:
        """Write the weights a bundle must carry into ``folder``; returns the file names."""
        return []

    def compute(self, wav: np.ndarray, frontend: Any) -> torch.Tensor:
        """Mono audio ``[T]`` at the features' rate -> ``[C, F]`` (``F = 1 + T // hop``) or ``[C]``.

        ``frontend`` is the :class:`vconv.audio.frontend.FrontEnd` that holds the part (mel settings and
        statistics), for parts that read the log-mel.
        """
        raise NotImplementedError

    def describe(self, bundle: Path) -> str:
        """One phrase for a model card: what the path reads."""
        return f"the {self.kind} front-end"


def register_frontend(cls: P) -> P:
    """Class decorator: make a :class:`FrontEndPart` subclass buildable by its ``kind`` for its ``role``."""
    if cls.role not in ROLES:
        raise ValueError(f"{cls.__name__}.role must be one of {ROLES}, got {cls.role!r}")
    _REGISTRY[cls.role][cls.kind] = cls
    return cls


def frontend_kinds(role: str) -> tuple[str, ...]:
    """The registered kinds for ``role``."""
    return tuple(_REGISTRY[role])


def build_frontend_part(role: str, section: Mapping[str, Any] | None) -> FrontEndPart:
    """The part a config section names: ``{"kind": "whisper", "layer": 4}`` -> a Whisper content part.

    The section's other keys are the part's constructor arguments; an unknown kind or key, or a value the
    part refuses, is a one-line VconvError naming ``model.<role>_frontend``.
    """
    return build_part(f"model.{role}_frontend", _REGISTRY[role], section or {"kind": "mel"})


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as a whole number in ``[low, high]``, else ValueError naming ``name`` (for part constructors)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number in {low}..{high}, got {value!r}")
    return value

