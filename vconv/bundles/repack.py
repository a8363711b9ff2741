"""Rewrite an older bundle in today's format, with only what conversion reads (``vconv bundle repack``)."""

from __future__ import annotations

from pathlib import Path

import torch

from vconv.bundles.format import load_bundle, save_bundle
from vconv.bundles.vocoder import attach_vocoder
from vconv.errors import VconvError
from vconv.fileio import write_text_atomic


def repack_bundle(bundle: str | Path, out_dir: str | Path, *, force: bool = False) -> Path:
    """Rewrite ``bundle`` as ``out_dir`` in today's format with its inference weights only.

    The model config is written with today's keys (:mod:`vconv.config.legacy`), the adversary's weights and
    the speaker list are left out; the weights keep their stored dtype, the front-end weights, the vocoder
    (with its post-processing settings) and ``MODEL_CARD.md`` are carried over. Conversion is unchanged.
    """
    bundle, out_dir = Path(bundle), Path(out_dir)
    if out_dir.resolve() == bundle.resolve():
        raise VconvError(f"{out_dir}: repack writes a new folder; give another --out than the bundle itself")
    model, frontend, info = load_bundle(bundle)
    dtype = getattr(torch, str(info.extra.get("weights_dtype", "float32")), torch.float32)
    kept = {k: v for k, v in info.extra.items() if k in ("trained_steps", "name", "from_checkpoint")}
    dest = save_bundle(out_dir, model, frontend, dtype=dtype, extra=kept, force=force)
    if info.extra.get("vocoder"):
        attach_vocoder(dest, bundle)  # digest-checked copy of vocoder.json + vocoder.safetensors
    card = bundle / "MODEL_CARD.md"
    if card.is_file():
        write_text_atomic(dest / card.name, card.read_text(encoding="utf-8"))
    return dest
