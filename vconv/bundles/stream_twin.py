"""A bundle's causal twin: the model :func:`vc.stream <vconv.inference.converter.VoiceConverter.stream>` runs.

``stream_model.safetensors`` sits beside the model's weights; the bundle's ``config.json`` records its sha256
and, under ``"stream_twin"``, its layout (:class:`vconv.models.causal.CausalLayout`) and training steps. A
bundle without one streams with its offline model (whose last frames depend on input not yet arrived:
docs/STREAMING.md). Offline conversion never reads the twin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vconv.bundles.format import CONFIG_FILE, WEIGHTS_FILE, read_bundle_config, read_bundle_info
from vconv.config import ModelConfig
from vconv.config.sections import CAUSAL_KEYS, check_causal_section
from vconv.errors import VconvError
from vconv.fileio import atomic_path, load_weights, sha256_of, write_text_atomic
from vconv.models.causal import CausalLayout
from vconv.models.vc import VoiceConversionModel, load_causal_model

TWIN_WEIGHTS = "stream_model.safetensors"
TWIN_KEY = "stream_twin"


def twin_layout(config: dict[str, Any]) -> CausalLayout | None:
    """The layout ``config.json`` records for the bundle's twin, or None when it has none."""
    section = config.get(TWIN_KEY)
    return None if section is None else _layout(section, f"config.json: {TWIN_KEY}")


def _layout(section: Any, where: str) -> CausalLayout:
    """A :class:`CausalLayout` from a section holding its keys (:data:`CAUSAL_KEYS`; ints or their strings), range-checked."""
    if not isinstance(section, dict):
        raise VconvError(f"{where} needs integer lookahead_frames and norm_frames, got {section!r}")
    # the section (or a weights header) records more than the layout (steps, format): the layout is its own keys
    return CausalLayout(*check_causal_section({k: section[k] for k in CAUSAL_KEYS if k in section}, where))


def attach_stream_twin(bundle_dir: str | Path, weights: str | Path, *, steps: int | None = None) -> Path:
    """Copy a stream network into ``bundle_dir`` as float16 and record it in ``config.json`` (written last).

    ``weights`` is either what :func:`vconv.training.stream_student.distill` wrote (its header holds the layout),
    or the folder of a bundle trained causal from the start (``model.causal`` in its config: its layout; the same
    model settings as ``bundle_dir``'s otherwise; parts used only in training, the adversary, are left out).
    """
    bundle_dir, weights = Path(bundle_dir), Path(weights)
    config = read_bundle_config(bundle_dir)
    model_config = read_bundle_info(bundle_dir).model_config
    if weights.is_dir():
        layout, state, meta = _trained_causal(weights)
        state = {k: v for k, v in state.items() if not k.startswith("adversary.")}
    else:
        with safe_open(str(weights), "pt") as handle:  # the header's layout and the tensors from one opening
            meta = handle.metadata() or {}
            state = {k: handle.get_tensor(k) for k in handle.keys()}
        layout = _layout(meta, f"{weights}: header")
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    load_causal_model(model_config, layout, {k: v.float() for k, v in state.items()}, str(weights))  # it must fit the bundle's model
    with atomic_path(bundle_dir / TWIN_WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "vconv-causal-twin"})
        digest = sha256_of(tmp)
    config.setdefault("sha256", {})[TWIN_WEIGHTS] = digest
    config[TWIN_KEY] = {**layout.to_dict(), "steps": int(steps if steps is not None else meta.get("step", 0))}
    write_text_atomic(bundle_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return bundle_dir


def _trained_causal(folder: Path) -> tuple[CausalLayout, dict[str, torch.Tensor], dict[str, Any]]:
    """``(layout, float32 weights, {"step": ...})`` of the bundle ``folder`` trained causal (``model.causal``)."""
    causal = read_bundle_info(folder).model_config.causal
    if not causal:
        raise VconvError(f"{folder}: not a causal network (its config has no model.causal); train one with model.causal set")
    layout = CausalLayout(*check_causal_section(causal, f"{folder}: model.causal"))
    config = read_bundle_config(folder)
    return layout, load_weights(folder, WEIGHTS_FILE, config, float32=True), {"step": str(config.get("trained_steps", 0))}


def load_stream_twin(bundle_dir: str | Path, model_config: ModelConfig, device: str | torch.device = "cpu") -> VoiceConversionModel | None:
    """The bundle's causal twin (digest-checked, float32, eval mode), or None when the bundle has none."""
    config = read_bundle_config(bundle_dir)
    layout = twin_layout(config)
    if layout is None:
        return None
    state = load_weights(bundle_dir, TWIN_WEIGHTS, config, float32=True)
    twin = load_causal_model(model_config, layout, state, f"{bundle_dir}/{TWIN_WEIGHTS}")
    return twin.to(device).eval()
