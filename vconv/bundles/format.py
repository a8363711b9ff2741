"""Model bundles: safe, self-describing folders that need nothing else to be loaded (weights are data, not code)::

    model.safetensors   the VoiceConversionModel weights (fp32, or fp16/bf16 for shipping)
    config.json         {"format", "format_version", "vconv_version", "kind", "model_config",
                         "feature_config", "feature_stats", "speakers", "sha256": {file: digest}, ...}
    vocoder.safetensors + vocoder.json   optional: a trained neural vocoder (:func:`attach_vocoder`)
    (front-end weights)              the frozen weights of the model's front-end parts, each part's
                                     ``weight_files`` (:mod:`vconv.frontends`): e.g. ``whisper_encoder.safetensors``
                                     (the Whisper encoder cut after the block the model reads)

Loading checks the format version and the sha256 of every weight file before reading a byte of it,
builds the model from the stored ``model_config`` with ``strict=True`` (missing or unexpected weights
are an error, never silently ignored) and the front-end from ``feature_config`` + ``feature_stats``.

A bundle holds what conversion needs and nothing more: :func:`save_bundle` drops the training-only parts
(the adversary's weights, the training speaker list) unless asked to keep them (``training_parts=True``,
what a run's own ``RUN_DIR/model`` keeps); older bundles that carry them still load. Older bundles' model
configs are read through the one translation in :mod:`vconv.config.legacy`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from vconv._version import __version__
from vconv.audio.frontend import FeatureStats, FrontEnd
from vconv.config import FeatureConfig, ModelConfig
from vconv.errors import VconvError
from vconv.fileio import default_mode, load_weights, read_json_object, sha256_of, write_text_atomic
from vconv.frontends import load_model_parts, model_parts

if TYPE_CHECKING:
    from vconv.models import VoiceConversionModel

BUNDLE_FORMAT = "vconv-bundle"
BUNDLE_FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINING_ONLY_PREFIXES = ("adversary.",)  # weights that only training reads


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

    @property
    def digest(self) -> str:
        """The bundle's identity: a sha256 over its weight files' recorded digests (what a voice file is tied to)."""
        return hashlib.sha256(json.dumps(self.extra.get("sha256", {}), sort_keys=True).encode()).hexdigest()


def save_bundle(
    out_dir: str | Path,
    model: VoiceConversionModel,
    frontend: FrontEnd,
    *,
    speakers: list[str] | None = None,
    dtype: torch.dtype = torch.float32,
    extra: dict[str, Any] | None = None,
    training_parts: bool = False,
    force: bool = False,
) -> Path:
    """Write ``model`` (a VoiceConversionModel, whose ``config`` is stored) and its front-end as a bundle folder.

    Atomic: the folder is built as a temporary sibling, then renamed. ``dtype`` is the dtype of the stored
    floating-point weights (loading always gives float32). Without ``training_parts`` the adversary's
    weights and the speaker list stay out (the stored config then says ``adversary: {kind: none}``).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise VconvError(f"{out_dir}: already exists; pass --force to overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        state = model.state_dict()
        model_config = model.config
        if not training_parts:
            state = {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}
            model_config = dataclasses.replace(model_config, adversary={"kind": "none"})
        state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu() for k, v in state.items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        frontend_files = [name for part in frontend_parts(frontend) for name in part.save_weights(tmp, dtype)]
        config = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "vconv_version": __version__,
            "kind": "voice-converter",
            "model_config": model_config.to_dict(),
            "feature_config": frontend.cfg.to_dict(),
            "feature_stats": frontend.stats().to_dict(),
            **({"speakers": list(speakers or [])} if training_parts else {}),
            "weights_dtype": str(dtype).replace("torch.", ""),
            "sha256": {name: sha256_of(tmp / name) for name in (WEIGHTS_FILE, *frontend_files)},
            **(extra or {}),
        }
        write_text_atomic(tmp / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
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
    or absurd config (``model_config.decoder.channels: 65536`` is refused here, not by an 86 GB allocation).
    """
    bundle = Path(bundle)
    cfg_path = bundle / CONFIG_FILE
    try:
        is_bundle = bundle.is_dir() and cfg_path.is_file()
    except OSError as exc:  # a folder that cannot be looked into: say so, not "no config.json"
        raise VconvError(f"{bundle}: unreadable bundle folder ({exc.strerror or exc})") from None
    if not is_bundle:
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


_REQUIRED_KEYS: dict[str, type] = {"model_config": dict, "feature_config": dict, "feature_stats": dict, "sha256": dict}
_OPTIONAL_KEYS: dict[str, type] = {"speakers": list, "frontends": dict, "vocoder": str, "vconv_version": str}
_JSON_NAMES: dict[type, str] = {dict: "object", list: "list", str: "string"}


def _parse_configs(config: dict[str, Any], cfg_path: Path) -> tuple[ModelConfig, FeatureConfig, FeatureStats]:
    """The validated configs of a bundle's ``config.json``; an error names the file and the key."""
    try:
        model_config = ModelConfig.from_dict(config["model_config"])
        model_parts(model_config)  # an unknown front-end kind or setting is named here, before any weights
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


def load_bundle(bundle: str | Path, device: str | torch.device = "cpu") -> tuple[VoiceConversionModel, FrontEnd, BundleInfo]:
    """``(model, front-end, info)`` of a bundle: the VoiceConversionModel in eval mode, fp32, on ``device``."""
    from vconv.models.vc import load_model

    bundle = Path(bundle)
    info = read_bundle_info(bundle)
    config = info.extra
    state = load_weights(bundle, WEIGHTS_FILE, config, float32=True)  # digest-checked: its size is the file's
    try:
        model = load_model(info.model_config, state, str(bundle))
    except VconvError as exc:
        message = str(exc)
        raise VconvError(message if message.startswith(str(bundle)) else f"{bundle / CONFIG_FILE}: {message}") from None
    content, speaker, pitch = load_model_parts(info.model_config, bundle, config, what="their weights in the bundle")
    frontend = FrontEnd(info.feature_config, info.feature_stats, content=content, speaker=speaker, pitch=pitch)
    return model.to(device).eval(), frontend.to(device), info


def frontend_parts(frontend: FrontEnd) -> list[Any]:
    """The front-end parts ``frontend`` holds (what a bundle must carry the weights of)."""
    return [part for part in (frontend.content, frontend.speaker, frontend.pitch) if part is not None]
