"""Model bundles: safe, self-describing folders that need nothing else to be loaded (weights are data, not code)::

    model.safetensors   the VoiceConversionModel weights (fp32, or fp16/bf16 for shipping)
    config.json         {"format", "format_version", "vconv_version", "kind", "model_config",
                         "feature_config", "feature_stats", "speakers", "sha256": {file: digest}, ...}
    vocoder.safetensors + vocoder.json   optional: a trained neural vocoder (:func:`attach_vocoder`)
    whisper_encoder.safetensors      with ``content_input: whisper``: the frozen Whisper encoder, cut after
                                     the block the model reads (:mod:`vconv.audio.pretrained`)
    dvector.onnx                     with ``speaker_input: dvector``: the frozen d-vector embedder

Loading checks the format version and the sha256 of every weight file before reading a byte of it,
builds the model from the stored ``model_config`` with ``strict=True`` (missing or unexpected weights
are an error, never silently ignored) and the front-end from ``feature_config`` + ``feature_stats``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from vconv._version import __version__
from vconv.audio.frontend import FeatureStats, FrontEnd
from vconv.config import FeatureConfig, ModelConfig, VocoderConfig
from vconv.errors import VconvError
from vconv.fileio import atomic_path, default_mode, load_weights, read_json_object, sha256_of, write_text_atomic

BUNDLE_FORMAT = "vconv-bundle"
BUNDLE_FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class BundleInfo:
    """What ``config.json`` says about a bundle."""

    path: Path
    model_config: ModelConfig
    feature_config: FeatureConfig
    feature_stats: FeatureStats
    speakers: list[str] = field(default_factory=list)
    vconv_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def save_bundle(
    out_dir: str | Path,
    model: torch.nn.Module,
    frontend: FrontEnd,
    *,
    speakers: list[str] | None = None,
    dtype: torch.dtype = torch.float32,
    extra: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write ``model`` (a VoiceConversionModel, whose ``config`` is stored) and its front-end as a bundle folder.

    Atomic: the folder is built as a temporary sibling, then renamed. ``dtype`` is the dtype of the stored
    floating-point weights (loading always gives float32).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise VconvError(f"{out_dir}: already exists; pass --force to overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        frontend_files = save_pretrained_parts(tmp, model.config, frontend, dtype)
        config = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "vconv_version": __version__,
            "kind": "voice-converter",
            "model_config": model.config.to_dict(),
            "feature_config": frontend.cfg.to_dict(),
            "feature_stats": frontend.stats().to_dict(),
            "speakers": list(speakers or []),
            "weights_dtype": str(dtype).replace("torch.", ""),
            "frontends": {"content": model.config.content_input, "speaker": model.config.speaker_input,
                          **({"whisper_layer": model.config.whisper_layer} if model.config.content_input == "whisper" else {})},
            "sha256": {name: sha256_of(tmp / name) for name in (WEIGHTS_FILE, *frontend_files)},
            **(extra or {}),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        os.chmod(tmp, default_mode(directory=True))  # mkdtemp makes it private; a bundle is meant to be shared
        for file in tmp.iterdir():  # safetensors writes through a private temporary file of its own
            os.chmod(file, default_mode())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def read_bundle_config(bundle: str | Path) -> dict[str, Any]:
    """Parse and check ``config.json`` of a bundle: format and version, then its structure and every config in it.

    Each problem is one VconvError line naming the file and the key, so nothing is built from a broken
    or absurd config (``model_config.channels: 65536`` is refused here, not by an 86 GB allocation).
    """
    bundle = Path(bundle)
    cfg_path = bundle / CONFIG_FILE
    if not bundle.is_dir() or not cfg_path.is_file():
        raise VconvError(f"{bundle}: not a vconv model bundle (no {CONFIG_FILE})")
    config = read_json_object(cfg_path, "config")
    if config.get("format") != BUNDLE_FORMAT:
        raise VconvError(f"{cfg_path}: not a vconv bundle config")
    if config.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise VconvError(
            f"{bundle}: bundle format version {config.get('format_version')} (vconv {config.get('vconv_version')}), "
            f"this vconv {__version__} reads version {BUNDLE_FORMAT_VERSION}"
        )
    for key, kind in _REQUIRED_KEYS.items():
        if key not in config:
            raise VconvError(f"{cfg_path}: missing key {key!r}; the bundle is incomplete (re-export or re-download it)")
        if not isinstance(config[key], kind):
            raise VconvError(f"{cfg_path}: {key} must be a JSON {_JSON_NAMES[kind]}, got {type(config[key]).__name__}")
    for key, kind in _OPTIONAL_KEYS.items():
        if key in config and not isinstance(config[key], kind):
            raise VconvError(f"{cfg_path}: {key} must be a JSON {_JSON_NAMES[kind]}, got {type(config[key]).__name__}")
    bad_digest = [k for k, v in config["sha256"].items() if not (isinstance(v, str) and len(v) == 64)]
    if bad_digest or not config["sha256"]:
        raise VconvError(f"{cfg_path}: sha256 must map each weight file to a 64-character digest ({bad_digest[0] if bad_digest else 'empty'})")
    if not all(isinstance(s, str) for s in config.get("speakers", [])):
        raise VconvError(f"{cfg_path}: speakers must be a list of names")
    _parse_configs(config, cfg_path)
    return config


_REQUIRED_KEYS = {"model_config": dict, "feature_config": dict, "feature_stats": dict, "sha256": dict}
_OPTIONAL_KEYS = {"speakers": list, "frontends": dict, "vocoder": str, "vconv_version": str}
_JSON_NAMES = {dict: "object", list: "list", str: "string"}


def _parse_configs(config: dict[str, Any], cfg_path: Path) -> tuple[ModelConfig, FeatureConfig, FeatureStats]:
    """The validated configs of a bundle's ``config.json``; an error names the file and the key."""
    try:
        model_config = ModelConfig.from_dict(config["model_config"])
        feature_config = FeatureConfig.from_dict(config["feature_config"])
        stats = FeatureStats.from_dict(config["feature_stats"], feature_config.n_mels)
    except VconvError as exc:
        raise VconvError(f"{cfg_path}: {exc}") from None
    if model_config.n_mels != feature_config.n_mels:
        raise VconvError(f"{cfg_path}: model n_mels {model_config.n_mels} differs from the features' {feature_config.n_mels}")
    return model_config, feature_config, stats


def read_bundle_info(bundle: str | Path) -> BundleInfo:
    """What a bundle's ``config.json`` says (validated by :func:`read_bundle_config`), without loading weights."""
    bundle = Path(bundle)
    config = read_bundle_config(bundle)
    model_config, feature_config, stats = _parse_configs(config, bundle / CONFIG_FILE)
    return BundleInfo(
        path=bundle,
        model_config=model_config,
        feature_config=feature_config,
        feature_stats=stats,
        speakers=list(config.get("speakers", [])),
        vconv_version=str(config.get("vconv_version", "")),
        extra={k: v for k, v in config.items() if k not in {"model_config", "feature_config", "feature_stats", "speakers"}},
    )


def load_bundle(bundle: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, FrontEnd, BundleInfo]:
    """``(model, front-end, info)`` of a bundle: the VoiceConversionModel in eval mode, fp32, on ``device``."""
    from vconv.models import build_model
    from vconv.models.budget import check_state_matches

    bundle = Path(bundle)
    info = read_bundle_info(bundle)
    config = info.extra
    state = load_weights(bundle, WEIGHTS_FILE, config)  # digest-checked: its size is the file's
    try:
        with torch.device("meta"):  # no storage: a config that disagrees with the weights costs nothing
            skeleton = build_model(info.model_config)
    except VconvError as exc:
        raise VconvError(f"{bundle / CONFIG_FILE}: {exc}") from None
    check_state_matches(skeleton, state, str(bundle))
    model = build_model(info.model_config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise VconvError(f"{bundle}: weights do not match the stored model config ({str(exc).splitlines()[0]})") from None
    frontend = FrontEnd(info.feature_config, info.feature_stats, **load_pretrained_parts(bundle, info.model_config, config))
    return model.to(device).eval(), frontend.to(device), info


def save_pretrained_parts(folder: Path, model_config: ModelConfig, frontend: FrontEnd, dtype: torch.dtype) -> list[str]:
    """Write the frozen front-end weights ``model_config`` uses into ``folder``; returns their file names."""
    from vconv.audio.pretrained import DVECTOR_FILE, WHISPER_FILE, save_whisper_encoder

    names = []
    if model_config.content_input == "whisper":
        if frontend.whisper is None:
            raise VconvError("the model reads Whisper states but its front-end has no Whisper encoder to ship")
        # the converted weights are float16 to begin with (CTranslate2's model.bin): storing them wider
        # only doubles the bundle, so float16 unless an even narrower dtype is asked for
        whisper_dtype = dtype if dtype in (torch.float16, torch.bfloat16) else torch.float16
        save_whisper_encoder(frontend.whisper.truncated(model_config.whisper_layer), folder / WHISPER_FILE, whisper_dtype)
        names.append(WHISPER_FILE)
    if model_config.speaker_input == "dvector":
        if frontend.dvector is None:
            raise VconvError("the model reads d-vectors but its front-end has no d-vector embedder to ship")
        shutil.copyfile(frontend.dvector.path, folder / DVECTOR_FILE)
        names.append(DVECTOR_FILE)
    return names


def load_pretrained_parts(folder: Path, model_config: ModelConfig, config: dict[str, Any]) -> dict[str, Any]:
    """The frozen front-end parts a bundle's model reads (sha256-checked): keyword arguments of FrontEnd."""
    from vconv.audio.pretrained import load_dvector_embedder, load_whisper_encoder

    parts: dict[str, Any] = {}
    if model_config.content_input == "whisper":
        parts["whisper"] = load_whisper_encoder(folder, config)
        parts["whisper_layer"] = model_config.whisper_layer
    if model_config.speaker_input == "dvector":
        parts["dvector"] = load_dvector_embedder(folder, config)
    return parts


VOCODER_PASSES = ("consistency_passes", "envelope_passes")


def with_vocoder_passes(config: VocoderConfig, passes: dict[str, int] | None) -> VocoderConfig:
    """``config`` with the inference-time post-processing of ``passes`` (keys: :data:`VOCODER_PASSES`).

    Only these may change once a vocoder is trained; values are range-checked by VocoderConfig.
    """
    unknown = sorted(set(passes or {}) - set(VOCODER_PASSES))
    if unknown:
        raise VconvError(f"vocoder passes: unknown setting(s) {', '.join(unknown)} ({', '.join(VOCODER_PASSES)})")
    return dataclasses.replace(config, **(passes or {}))


def attach_vocoder(bundle_dir: str | Path, vocoder_dir: str | Path, *, passes: dict[str, int] | None = None) -> Path:
    """Copy ``vocoder.safetensors`` + ``vocoder.json`` from ``vocoder_dir`` into the VC bundle ``bundle_dir``.

    The vocoder is loaded first (its own sha256 checked) and must match the bundle's FeatureConfig. The
    bundle's ``config.json`` then records both files' sha256 under ``"sha256"`` and ``"vocoder": "vocos"``;
    every file is written to a temporary name and renamed, config.json last. ``passes`` (e.g.
    ``{"consistency_passes": 4}``) sets the inference-time post-processing the bundle's copy runs by
    default; the weights (and their sha256 in ``vocoder.json``) are untouched.
    """
    from vconv.vocoders.base import check_compatible
    from vconv.vocoders.vocos import VOCODER_CONFIG, VOCODER_WEIGHTS, load_vocoder, read_vocoder_meta

    bundle_dir, vocoder_dir = Path(bundle_dir), Path(vocoder_dir)
    config = read_bundle_config(bundle_dir)
    meta = read_vocoder_meta(vocoder_dir)
    vocoder = load_vocoder(vocoder_dir)  # verifies the weights against vocoder.json
    check_compatible(FeatureConfig.from_dict(config["feature_config"]), vocoder)
    if passes:
        meta["vocoder_config"] = with_vocoder_passes(vocoder.config, passes).to_dict()
    digests = {}
    for name in (VOCODER_WEIGHTS, VOCODER_CONFIG):
        with atomic_path(bundle_dir / name) as tmp:
            if name == VOCODER_CONFIG and passes:
                Path(tmp).write_text(json.dumps(meta, indent=2) + "\n")
            else:
                shutil.copyfile(vocoder_dir / name, tmp)
            digests[name] = sha256_of(tmp)
    config.setdefault("sha256", {}).update(digests)
    config["vocoder"] = meta["vocoder"]
    write_text_atomic(bundle_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return bundle_dir
