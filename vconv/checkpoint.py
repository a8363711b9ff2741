"""Saving and loading: safe, self-describing model bundles and resumable training checkpoints.

A **bundle** is a folder that needs nothing else to be loaded (weights are data, not code)::

    model.safetensors   the VoiceConverter weights (fp32, or fp16/bf16 for shipping)
    config.json         {"format", "format_version", "vconv_version", "kind", "model_config",
                         "feature_config", "feature_stats", "speakers", "sha256": {file: digest}, ...}

Loading checks the format version and the sha256 of every weight file before reading a byte of it,
and builds the model from the stored ``model_config`` with ``strict=True`` (missing or unexpected weights
are an error, never silently ignored).

A **training checkpoint** (``*.pt``) holds everything to resume: model, optimiser, scheduler, step, RNG
states and the resolved configs. It is written with ``torch.save`` to a temporary file and renamed,
and read with ``torch.load(weights_only=True)``, which refuses any pickle that would run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import vconv
from vconv.config import FeatureConfig, ModelConfig
from vconv.errors import VconvError
from vconv.fileio import atomic_path, default_mode
from vconv.features import FeatureStats

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


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(
    out_dir: str | Path,
    model: torch.nn.Module,
    model_config: ModelConfig,
    feature_config: FeatureConfig,
    feature_stats: FeatureStats,
    *,
    speakers: list[str] | None = None,
    dtype: torch.dtype = torch.float32,
    extra: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write a bundle folder atomically (built in a temporary sibling folder, then renamed)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise VconvError(f"{out_dir}: already exists; pass --force to overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        config = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "vconv_version": vconv.__version__,
            "kind": "voice-converter",
            "model_config": model_config.to_dict(),
            "feature_config": feature_config.to_dict(),
            "feature_stats": feature_stats.to_dict(),
            "speakers": list(speakers or []),
            "weights_dtype": str(dtype).replace("torch.", ""),
            "sha256": {WEIGHTS_FILE: sha256_of(tmp / WEIGHTS_FILE)},
            **(extra or {}),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        os.chmod(tmp, default_mode(directory=True))  # mkdtemp makes it private; a bundle is meant to be shared
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def read_bundle_config(bundle: str | Path) -> dict[str, Any]:
    """Parse and check ``config.json`` of a bundle (format and version)."""
    bundle = Path(bundle)
    cfg_path = bundle / CONFIG_FILE
    if not bundle.is_dir() or not cfg_path.is_file():
        raise VconvError(f"{bundle}: not a vconv model bundle (no {CONFIG_FILE})")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise VconvError(f"{cfg_path}: corrupt config ({exc.msg} at line {exc.lineno})") from None
    if config.get("format") != BUNDLE_FORMAT:
        raise VconvError(f"{cfg_path}: not a vconv bundle config")
    if config.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise VconvError(
            f"{bundle}: bundle format version {config.get('format_version')} (vconv {config.get('vconv_version')}), "
            f"this vconv {vconv.__version__} reads version {BUNDLE_FORMAT_VERSION}"
        )
    return config


def load_weights(bundle: str | Path, name: str, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Read a weight file of a bundle after checking its sha256 against ``config['sha256']``."""
    path = Path(bundle) / name
    expected = config.get("sha256", {}).get(name)
    if not path.is_file():
        raise VconvError(f"{path}: weight file missing from the bundle")
    if expected is None:
        raise VconvError(f"{path}: no sha256 recorded for this file in {CONFIG_FILE}; refusing unverified weights")
    actual = sha256_of(path)
    if actual != expected:
        raise VconvError(f"{path}: sha256 mismatch (expected {expected[:12]}..., got {actual[:12]}...); the file is corrupt or was modified")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise VconvError(f"{path}: unreadable weights ({exc})") from None


def load_bundle(bundle: str | Path, device: str | torch.device = "cpu"):
    """Build the VoiceConverter of a bundle: ``(model in eval mode, fp32, on device; BundleInfo)``."""
    from vconv.models import build_model

    bundle = Path(bundle)
    config = read_bundle_config(bundle)
    info = BundleInfo(
        path=bundle,
        model_config=ModelConfig.from_dict(config["model_config"]),
        feature_config=FeatureConfig.from_dict(config["feature_config"]),
        feature_stats=FeatureStats.from_dict(config["feature_stats"]),
        speakers=list(config.get("speakers", [])),
        vconv_version=str(config.get("vconv_version", "")),
        extra={k: v for k, v in config.items() if k not in {"model_config", "feature_config", "feature_stats", "speakers"}},
    )
    model = build_model(info.model_config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_weights(bundle, WEIGHTS_FILE, config).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise VconvError(f"{bundle}: weights do not match the stored model config ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), info


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename (atomic on POSIX)."""
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise VconvError(f"{path}: refused: the checkpoint holds objects that would run code on load ({str(exc).splitlines()[0][:120]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise VconvError(f"{path}: corrupt checkpoint ({str(exc).splitlines()[0][:120]})") from None
