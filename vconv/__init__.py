"""vconv: one-shot voice conversion with disentangled auto-encoders.

Public API (imported lazily, so ``import vconv`` and the CLI start fast)::

    vconv.load(name_or_path=None) -> vconv.VoiceConverter
    vconv.VoiceConverter.convert(source, refs, sr=None) / .embed(wavs, sr=None)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from vconv.errors import VconvError  # noqa: E402

__all__ = ["VconvError", "VoiceConverter", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in {"load", "VoiceConverter"}:
        from vconv import api

        return getattr(api, name)
    raise AttributeError(f"module 'vconv' has no attribute {name!r}")
