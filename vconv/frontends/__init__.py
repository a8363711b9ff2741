"""Front-end parts: what the content and speaker encoders read (see :mod:`vconv.frontends.base`).

Registered here: ``mel`` (content and speaker), ``whisper`` (content), ``yin`` and ``swift`` (pitch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from vconv.config.parts import build_part
from vconv.errors import VconvError
from vconv.frontends import mel, pitch, whisper  # noqa: F401  (registers the parts)
from vconv.frontends.base import _REGISTRY, ROLES, FrontEndPart, build_frontend_part, frontend_kinds, register_frontend

__all__ = ["ROLES", "FrontEndPart", "build_frontend_part", "frontend_kinds", "load_model_parts", "load_parts", "model_parts",
           "pitch_part", "register_frontend"]


def model_parts(model_config: Any) -> tuple[FrontEndPart, FrontEndPart]:
    """``(content part, speaker part)`` a :class:`~vconv.config.ModelConfig` names (no weights loaded)."""
    return (build_frontend_part("content", model_config.content_frontend),
            build_frontend_part("speaker", model_config.speaker_frontend))


def pitch_part(model_config: Any) -> FrontEndPart | None:
    """The pitch tracker a :class:`~vconv.config.ModelConfig` names (``model.pitch_frontend``), or None for a model
    without the pitch path (``{kind: none}``, every model before it)."""
    section = getattr(model_config, "pitch_frontend", None) or {"kind": "none"}
    if section.get("kind") == "none" and len(section) == 1:
        return None
    return build_part("model.pitch_frontend", _REGISTRY["pitch"], section, also=("none",))


def load_parts(parts: tuple[FrontEndPart, ...], folder: str | Path | None, config: Mapping[str, Any],
               what: str = "the pretrained front-ends") -> tuple[FrontEndPart, ...]:
    """Load each part's frozen weights from ``folder`` (digests from ``config``); parts without weights pass."""
    needing = [p for p in parts if p.weight_files]
    if needing and folder is None:
        names = ", ".join(f"{p.kind} ({p.role})" for p in needing)
        raise VconvError(f"{names} need {what}: give a front-end folder (--frontends DIR or train.frontends_dir, "
                         "made by `vconv frontend prepare`)")
    for part in needing:
        assert folder is not None  # refused above
        part.load_weights(folder, config)
    return parts


def load_model_parts(model_config: Any, folder: str | Path | None, config: Mapping[str, Any],
                     what: str = "the pretrained front-ends") -> tuple[FrontEndPart, FrontEndPart, FrontEndPart | None]:
    """``(content, speaker, pitch tracker or None)`` a model config names, each with its frozen weights loaded from
    ``folder`` (:func:`load_parts`)."""
    tracker = pitch_part(model_config)
    content, speaker, *loaded = load_parts((*model_parts(model_config), *([tracker] if tracker else [])), folder, config, what)
    return content, speaker, (loaded[0] if loaded else None)
