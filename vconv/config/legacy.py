"""The one translation of older configs: what bundles, checkpoints and YAML files written before the
front-end parts (:mod:`vconv.frontends`) said, in today's keys. Everything else reads only today's keys.

Before: ``content_input: mel | whisper`` with ``whisper_layer: N`` and ``speaker_input: mel | dvector``.
Now: ``content_frontend: {kind: mel}`` / ``{kind: whisper, layer: N}`` and ``speaker_frontend: {kind: ...}``.
"""

from __future__ import annotations

from typing import Any, Mapping

from vconv.errors import VconvError

LEGACY_KEYS = ("content_input", "whisper_layer", "speaker_input")


def upgrade_model_config(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` (a ``model`` section) with the legacy front-end keys replaced by part sections; else unchanged."""
    if not isinstance(data, Mapping) or not any(key in data for key in LEGACY_KEYS):
        return data
    clash = [key for key in ("content_frontend", "speaker_frontend") if key in data]
    if clash:
        raise VconvError(f"model: give either {', '.join(LEGACY_KEYS)} (older configs) or {', '.join(clash)}, not both")
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    content = data.get("content_input", "mel")
    out["content_frontend"] = {"kind": content}
    if content == "whisper":
        out["content_frontend"]["layer"] = data.get("whisper_layer", 4)
    out["speaker_frontend"] = {"kind": data.get("speaker_input", "mel")}
    return out
