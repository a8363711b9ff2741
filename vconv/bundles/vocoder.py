"""A bundle's neural vocoder: attach one to a bundle, load the one a bundle carries (digest-checked).

``vocoder.safetensors`` + ``vocoder.json`` sit beside the model's files; the bundle's ``config.json``
records both files' sha256 and ``"vocoder": "vocos"``. The inference-time post-processing passes are the
only vocoder settings a bundle may change after training (:func:`with_vocoder_passes`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch

from vconv.bundles.format import CONFIG_FILE, read_bundle_config
from vconv.config import FeatureConfig, VocoderConfig
from vconv.errors import VconvError
from vconv.fileio import atomic_path, sha256_of, verified_path, write_text_atomic
from vconv.vocoders.base import Vocoder, check_compatible
from vconv.vocoders.vocos import VOCODER_CONFIG, VOCODER_WEIGHTS, VocosVocoder, load_vocoder, read_vocoder_meta

VOCODER_PASSES = ("consistency_passes", "envelope_passes", "envelope_prematch")


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


def load_bundle_vocoder(bundle_dir: str | Path, feature_config: FeatureConfig, device: str | torch.device = "cpu") -> Vocoder | None:
    """The neural vocoder shipped in a VC bundle, or ``None`` when the bundle has none.

    ``vocoder.json`` and ``vocoder.safetensors`` are both checked against the sha256 that the bundle's
    config.json records, and the vocoder's FeatureConfig must equal the model's (``feature_config``).
    """
    config = read_bundle_config(bundle_dir)
    kind = config.get("vocoder")
    if not kind:
        return None
    if kind != VocosVocoder.name:
        raise VconvError(f"{bundle_dir}: unknown vocoder kind {kind!r} in config.json")
    verified_path(bundle_dir, VOCODER_CONFIG, config)
    vocoder = load_vocoder(bundle_dir, sha256=config["sha256"], device=device)
    check_compatible(feature_config, vocoder)
    return vocoder


DEFAULT_VOCODER = "griffinlim"  # what a bundle without a trained vocoder converts with


def choose_vocoder(bundle_dir: str | Path, feature_config: FeatureConfig, name: str | None = None, *,
                   fast: bool = False) -> Vocoder:
    """The vocoder a conversion with ``bundle_dir`` runs: the one place a vocoder is chosen by name.

    ``name`` None: the bundle's own trained vocoder, else :data:`DEFAULT_VOCODER`; the bundle's vocoder kind (e.g.
    ``vocos``): its trained one (an error when it has none); any other registered name: that vocoder, built for
    ``feature_config`` (a vocoder that needs trained weights must come from a bundle). ``fast``: without its
    post-processing passes (an error for a vocoder that has none).
    """
    from vconv.vocoders import check_vocoder_name, get_vocoder
    from vconv.vocoders.base import TRAINED_VOCODERS

    own = load_bundle_vocoder(bundle_dir, feature_config) if name is None or name == read_bundle_config(bundle_dir).get("vocoder") \
        else None
    if own is None and name is not None and check_vocoder_name(name) in TRAINED_VOCODERS:
        raise VconvError(f"{bundle_dir}: this bundle has no trained {name} vocoder (attach one with `vconv train-vocoder --attach`)")
    vocoder = own if own is not None else get_vocoder(name or DEFAULT_VOCODER, feature_config)
    return vocoder.without_post_processing() if fast else vocoder
