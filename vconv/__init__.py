"""vconv: one-shot voice conversion with disentangled auto-encoders.

Public API (imported lazily, so ``import vconv`` and the CLI start fast)::

    vconv.load(name_or_path=None) -> vconv.VoiceConverter
    vconv.VoiceConverter.convert(source, refs, sr=None) / .embed(wavs, sr=None)
    vconv.prepare_threads()   # first thing, before torch is imported: idle OpenMP threads sleep, not spin

The package is laid out by the stage of the data flow (docs/ARCHITECTURE.md): ``audio`` (I/O, log-mel,
the front-end), ``data`` (manifests, extraction, batches), ``models``, ``vocoders``, ``training``,
``inference`` (bundles and the converter), ``evaluation``; ``config`` and ``cli`` serve them all.
"""

from __future__ import annotations

from typing import Any

from vconv._version import __version__
from vconv.errors import VconvError

__all__ = ["VconvError", "VoiceConverter", "__version__", "load", "prepare_threads"]


def __getattr__(name: str) -> Any:
    if name == "prepare_threads":  # torch-free: it must run before torch loads
        from vconv.inference.threads import prepare_threads

        return prepare_threads
    if name in {"load", "VoiceConverter"}:
        from vconv.inference import converter

        return getattr(converter, name)
    raise AttributeError(f"module 'vconv' has no attribute {name!r}")
