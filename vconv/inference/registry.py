"""Where model bundles are found: the shipped ones, a user folder, or an explicit path.

Search order for a bundle *name*:

1. each folder in ``$VCONV_MODELS`` (``os.pathsep``-separated), for your own bundles;
2. the shipped bundles: the top-level ``pretrained/`` folder, installed into the wheel as the data
   package ``vconv._bundles`` (so an editable install, a regular ``pip install .`` and a source
   checkout all see the same bundles).

A *path* to a bundle folder is used as it is.

The shipped bundles are pinned: :data:`SHIPPED_CONFIG_SHA256` holds the sha256 of each one's
``config.json`` (which itself records the sha256 of every weight file, checked when it loads), so a
shipped bundle found by name that is not the genuine one is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vconv.errors import VconvError

DEFAULT_BUNDLE = "vconv-voices-small"
# the genuine shipped bundles: name -> sha256 of their config.json (update with the bundle, in one commit)
SHIPPED_CONFIG_SHA256 = {
    "vconv-voices-small": "00df6fa17a7c7055f0d6d7f1244c35ce2182d6806bc043013b43c4ceee618dda",
}


@dataclass(frozen=True)
class BundleLocation:
    name: str
    path: Path
    source: str  # "VCONV_MODELS" or "shipped"


def shipped_root() -> Path | None:
    """The folder that holds the shipped bundles, wherever vconv was installed from."""
    try:
        import vconv._bundles as bundles
    except ImportError:  # a source tree used without installing: fall back to the checkout layout
        candidate = Path(__file__).resolve().parents[2] / "pretrained"
        return candidate if candidate.is_dir() else None
    paths = list(getattr(bundles, "__path__", []))
    return Path(paths[0]) if paths else None


def search_roots() -> list[tuple[Path, str]]:
    roots = [(Path(p), "VCONV_MODELS") for p in os.environ.get("VCONV_MODELS", "").split(os.pathsep) if p]
    shipped = shipped_root()
    if shipped is not None:
        roots.append((shipped, "shipped"))
    return roots


def list_bundles() -> list[BundleLocation]:
    """Every bundle folder (one holding a ``config.json``) under the search roots; first name wins."""
    found: dict[str, BundleLocation] = {}
    for root, source in search_roots():
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if _may_be_bundle(child) and child.name not in found:
                found[child.name] = BundleLocation(child.name, child, source)
    return list(found.values())


def _may_be_bundle(folder: Path) -> bool:
    """Whether ``folder`` holds a ``config.json``; a folder that cannot be looked into is listed too, so that
    `vconv models` marks it unusable with the reason rather than leaving it out unsaid."""
    try:
        return (folder / "config.json").is_file()
    except OSError:
        return True


def resolve_bundle(name_or_path: str | Path | None = None) -> Path:
    """A bundle folder from a path or a name (default: the shipped model)."""
    if name_or_path is None:
        name_or_path = DEFAULT_BUNDLE
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise VconvError(f"{path}: a model must be a bundle folder (config.json + model.safetensors), not a file")
    for bundle in list_bundles():
        if bundle.name == str(name_or_path):
            if bundle.source == "shipped":
                check_shipped(bundle)
            return bundle.path
    known = ", ".join(b.name for b in list_bundles()) or "none found"
    hint = "train one with `vconv train` (it writes RUN_DIR/model)" if name_or_path == DEFAULT_BUNDLE else "see `vconv models`"
    raise VconvError(f"model {name_or_path!r} not found (known bundles: {known}); {hint}")


def check_shipped(bundle: BundleLocation) -> None:
    """Refuse a shipped bundle whose ``config.json`` is not the one :data:`SHIPPED_CONFIG_SHA256` pins."""
    from vconv.fileio import sha256_of

    expected = SHIPPED_CONFIG_SHA256.get(bundle.name)
    if expected is not None and sha256_of(bundle.path / "config.json") != expected:
        raise VconvError(f"{bundle.path}: the shipped bundle {bundle.name!r} is not the genuine one (its config.json "
                         "differs from the digest this vconv release pins); reinstall vconv")
