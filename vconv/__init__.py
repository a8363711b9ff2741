"""vconv: one-shot voice conversion with disentangled auto-encoders."""

from __future__ import annotations

__version__ = "0.1.0"

from vconv.errors import VconvError  # noqa: E402

__all__ = ["VconvError", "__version__"]
