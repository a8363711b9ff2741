"""Self-describing feature files: what `vconv extract` writes and training reads.

A feature file is safetensors whose metadata holds the format version and the FeatureConfig that
produced it; reading one made with another config is an error that names each differing value. It also holds the
output version of each front-end part that made a tensor (``part_versions``, :attr:`vconv.frontends.FrontEndPart.
output_version`; a file without it, from before, counts as version 1): a tensor of an older version is made again by
`vconv extract` and refused by training. Tensors:

* ``mel`` float32 ``[n_mels, F]``: the raw natural-log mel, *not* normalised (always there);
* one tensor per extra front-end part (:mod:`vconv.frontends`), under the part's ``feature_key``: e.g.
  ``whisper<L>`` float16 ``[384, F]``, Whisper encoder states of block ``L`` at the mel frame rate, or
  ``pitch_yin`` float32 ``[3, F]``, the pitch tracker's rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from vconv.config import FeatureConfig
from vconv.errors import VconvError
from vconv.fileio import atomic_path

FEATURE_FORMAT_VERSION = 1


def save_features(path: str | Path, mel: torch.Tensor, cfg: FeatureConfig, extra: dict[str, torch.Tensor] | None = None,
                  versions: dict[str, int] | None = None, **meta: str) -> None:
    """Write ``mel [n_mels, F]`` (+ ``extra`` tensors) with its FeatureConfig and format version, atomically;
    ``versions``: the output version of each extra tensor's part, by key (unlisted: 1)."""
    metadata = {
        "format": "vconv-features",
        "format_version": str(FEATURE_FORMAT_VERSION),
        "feature_config": json.dumps(cfg.to_dict(), sort_keys=True),
        "part_versions": json.dumps({k: int(v) for k, v in sorted((versions or {}).items()) if k in (extra or {})}),
        **{k: str(v) for k, v in meta.items()},
    }
    with atomic_path(path) as tmp:
        tensors = {"mel": mel.detach().float(), **(extra or {})}
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def read_feature_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: feature file not found; run `vconv extract` first")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise VconvError(f"{path}: not a vconv feature file ({exc}); delete it and rerun `vconv extract`") from None


def load_features(path: str | Path, expected: FeatureConfig | None = None) -> torch.Tensor:
    """Read ``mel [n_mels, F]``; raise if the version or the FeatureConfig differs from ``expected``."""
    return load_feature_tensors(path, expected)["mel"]


def stored_versions(meta: dict[str, str]) -> dict[str, int]:
    """The output version of each stored tensor's part, by key, from a feature file's metadata (``{}`` before they were
    stored: every tensor then counts as version 1)."""
    try:
        versions = json.loads(meta.get("part_versions", "{}"))
        return {str(k): int(v) for k, v in versions.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def stale_keys(meta: dict[str, str], versions: dict[str, int]) -> list[str]:
    """The keys of ``versions`` (the parts' output versions now) whose stored tensor was made by another version."""
    stored = stored_versions(meta)
    return [key for key, version in versions.items() if stored.get(key, 1) != version]


def check_part_versions(paths: list[Path], versions: dict[str, int]) -> None:
    """Before training reads any of them: a one-line error for the first of ``paths`` (those that exist) whose tensors
    an older (or another) version of their part made, by ``versions``, with how many such files there are. Reads the
    files' headers only."""
    if not versions:
        return
    first: tuple[Path, dict[str, str], list[str]] | None = None
    count = 0
    for path in paths:
        if not path.is_file():  # a missing file is the loader's error, with its own message
            continue
        meta = read_feature_metadata(path)
        keys = stale_keys(meta, versions)
        if keys:
            count += 1
            first = first or (path, meta, keys)
    if first is not None:
        path, meta, keys = first
        raise VconvError(f"{path} (one of {count} such feature files): {stale_said(meta, keys, versions)}")


def stale_said(meta: dict[str, str], stale: list[str], versions: dict[str, int]) -> str:
    """What is stale in a feature file and what to do, in one line."""
    made = stored_versions(meta)
    said = ", ".join(f"{key} made by {f'version {made[key]}' if key in made else 'an unrecorded version'} of its front-end "
                     f"(this vconv makes {versions[key]})" for key in stale)
    return f"{said}; rerun `vconv extract` with the model's config (-c) and --frontends: only that part runs again"


def load_feature_tensors(path: str | Path, expected: FeatureConfig | None = None,
                         keys: tuple[str, ...] = ("mel",), versions: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Read ``keys`` (as stored) after the same checks as :func:`load_features`; a missing key is an error, and so is
    one that ``versions`` (the parts' output versions, by key) says an older part made."""
    path = Path(path)
    meta = checked_metadata(path, expected)
    tensors = load_file(str(path))
    missing = [k for k in keys if k not in tensors]
    if missing:
        raise VconvError(f"{path}: has no {', '.join(missing)} features; rerun `vconv extract` with the model's front-ends")
    stale = stale_keys(meta, {k: v for k, v in (versions or {}).items() if k in keys})
    if stale:
        raise VconvError(f"{path}: {stale_said(meta, stale, versions or {})}")
    return {k: tensors[k] for k in keys}


def checked_metadata(path: Path, expected: FeatureConfig | None = None) -> dict[str, str]:
    """A feature file's metadata (its header alone) after the format and FeatureConfig checks of :func:`load_features`."""
    meta = read_feature_metadata(path)
    if meta.get("format") != "vconv-features":
        raise VconvError(f"{path}: not a vconv feature file")
    version = meta.get("format_version")
    if version != str(FEATURE_FORMAT_VERSION):
        raise VconvError(
            f"{path}: feature format version {version}, this vconv reads {FEATURE_FORMAT_VERSION}; rerun `vconv extract`"
        )
    if expected is not None:
        stored = FeatureConfig.from_dict(json.loads(meta["feature_config"]))
        diffs = stored.differences(expected)
        if diffs:
            raise VconvError(f"{path}: made with another feature config (file vs expected: {'; '.join(diffs)})")
    return meta
