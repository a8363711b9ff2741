"""The config machinery every config section shares: dict and YAML round trips, overrides, ``base:`` inheritance.

Configs are plain dataclasses (no global mutable hparams dict). :class:`ConfigSection` gives each its
``to_dict`` / ``from_dict`` (unknown keys are an error, numeric strings such as YAML's ``1e-4`` become
numbers); :func:`load_sections` reads a YAML run config (a file or a packaged preset name), follows its
``base:`` chain, applies ``section.key=value`` overrides and checks the section names.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from vconv.config.validate import check_section, field_hints, section_name
from vconv.errors import VconvError
from vconv.fileio import write_text_atomic

T = TypeVar("T")


class ConfigSection:
    """Base of every config dataclass (features, model, train, vocoder): the plain-dict round trip.

    ``from_dict`` refuses unknown keys, so a typo in a YAML file or an override is an error. Every field
    is checked against its type hint and the class's ``LIMITS`` when the dataclass is built
    (:mod:`vconv.config.validate`); a subclass with its own ``__post_init__`` calls this one first.
    """

    SECTION = "config"
    LIMITS: dict[str, tuple[float, float]] = {}

    def __post_init__(self) -> None:
        check_section(self)

    def differences(self, other: Any) -> list[str]:
        """Human-readable ``name: mine vs theirs`` for each field that differs from ``other`` (a section of the same kind)."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} vs {getattr(other, f.name)!r}"
            for f in fields(self)  # type: ignore[arg-type]  # every section is a dataclass
            if getattr(self, f.name) != getattr(other, f.name)
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: Any) -> T:
        return from_dict(cls, data)


def from_dict(cls: type[T], data: Any) -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys are an error (typos must not pass silently).

    Numeric strings (YAML's ``1e-5``) become numbers and whole floats (``3000.0``) ints for int fields;
    everything else is checked, not converted.
    """
    section = section_name(cls)
    if not isinstance(data, Mapping):
        raise VconvError(f"{section}: expected a mapping of key: value, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise VconvError(f"{section}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]  # type: ignore[arg-type]
    missing = [name for name in required if name not in data]
    if missing:
        raise VconvError(f"{section}: missing required key(s) {', '.join(missing)}")
    hints = field_hints(cls)  # type: ignore[arg-type]  # a class is hashable (lru_cache's stub says Hashable)
    values = {key: _as_number(section, key, value, hints[key]) for key, value in data.items()}
    return cls(**values)


def _as_number(owner: str, key: str, value: Any, hint: Any) -> Any:
    """A string given for a numeric field, as the number it spells; a whole float for an int field, as an int.

    YAML 1.1 reads ``1e-5`` (no dot) as a *string*, so ``lr: 1e-5`` or ``train.lr=1e-5`` would otherwise
    reach the optimiser as text and fail there with a traceback. Anything else is left to the type check.
    """
    if typing.get_origin(hint) is list:
        return value
    allowed = typing.get_args(hint) or (hint,)
    if int in allowed and float not in allowed and isinstance(value, float) and value.is_integer():
        return int(value)  # JSON and YAML writers may spell 3000 as 3000.0
    if not isinstance(value, str) or str in allowed or not ({int, float} & set(allowed)):
        return value
    try:
        number = float(value)
    except ValueError:
        raise VconvError(f"{owner}.{key}: expected a number, got {value!r}") from None
    if float in allowed:
        return number
    if not number.is_integer():
        raise VconvError(f"{owner}.{key}: expected a whole number, got {value!r}")
    return int(number)  # "2e3" -> 2000


def save_yaml(data: Mapping[str, Any], path: str | Path) -> None:
    """Write ``data`` as YAML atomically (temporary file + rename)."""
    import yaml  # here, not at the top: a conversion reads JSON only, and yaml's import was ~11 ms of its start

    write_text_atomic(path, yaml.safe_dump(_plain(data), sort_keys=False))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with a one-line error for a missing or malformed file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise VconvError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise VconvError(f"{path}: not UTF-8 text; a config is a UTF-8 YAML file") from None
    except (RecursionError, ValueError) as exc:  # nesting thousands deep; a number YAML cannot hold
        raise VconvError(f"{path}: not a usable YAML config ({type(exc).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VconvError(f"{path}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict; values are parsed as YAML (``3``, ``true``, ``[1,2]``).
    ``model.quantizer.kind=none`` swaps the part: the section keeps none of the previous kind's settings."""
    import yaml

    out = _deep_copy(data)
    # a part's kind first: changing it drops the old kind's settings, never those given beside it on the command line
    for item in sorted(overrides, key=lambda item: not item.split("=", 1)[0].strip().endswith(".kind")):
        if "=" not in item:
            raise VconvError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise VconvError(f"override {item!r}: not a YAML value ({str(exc).splitlines()[0]})") from None
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise VconvError(f"override {item!r}: {part} is not a section")
        if parts[-1] == "kind" and node.get("kind", value) != value:
            node.clear()  # another kind of part: the old kind's settings would not fit it (as in _deep_merge)
        node[parts[-1]] = _switched(parts[-1], node.get(parts[-1]), value)
    return out


# part sections whose key was once a boolean switch of the same name (``model.adversary: false``)
SWITCHED_PARTS = ("adversary",)


def _switched(key: str, current: Any, value: Any) -> Any:
    """``value`` given for ``key`` where ``current`` is; a boolean given for a part section that was once a switch
    (:data:`SWITCHED_PARTS`) keeps what it meant: false swaps the part for none, true keeps a section that is on,
    with its settings. Any other boolean is left for the section's own check to refuse."""
    if key in SWITCHED_PARTS and isinstance(value, bool) and isinstance(current, Mapping) and "kind" in current:
        if not value:
            return {"kind": "none"}
        if current["kind"] != "none":
            return _deep_copy(current)
    return value


def _deep_copy(data: Any) -> Any:
    # copy.deepcopy keeps shared parts shared: a YAML whose aliases nest ("billion laughs") stays small
    return copy.deepcopy(data)


def _plain(data: Any) -> Any:
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return _plain(asdict(data))
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data


PACKAGED_CONFIGS = Path(__file__).parent / "presets"


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a config shipped in ``vconv/config/presets`` (``debug``, ``base``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / f"{name_or_path}.yaml"
    if packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))
    raise VconvError(f"{name_or_path}: config not found (neither a file nor a packaged config: {names})")


def load_sections(name_or_path: str | Path | None, overrides: Sequence[str], sections: Sequence[str],
                  translate: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """A run config as ``{section: mapping}``: YAML file or packaged preset, ``base:`` chain, overrides.

    A YAML may start from another one with a top-level ``base:`` key: a name without ``.yaml``/``.yml``
    (``debug``) is a packaged preset, anything else a path relative to the YAML's own folder
    (``../base.yaml``). The base is loaded first (recursively) and the file's sections are deep-merged
    over it, so an ablation is a few lines (``base: ../base.yaml`` + ``model: {adversary: {kind: none}}``).
    Sections other than ``sections`` are an error. ``translate`` puts each file in today's keys before the files merge
    (:func:`vconv.config.loaders.load_run_sections`), so a newer file's sections win over an older base's keys.
    """
    data = _load_with_base(resolve_config_path(name_or_path), translate=translate) if name_or_path else {}
    data = apply_overrides(data, list(overrides))
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise VconvError(f"unknown config section(s): {', '.join(unknown)}; expected {', '.join(sections)}")
    return {name: data.get(name) or {} for name in sections}


def _load_with_base(path: Path, _chain: tuple[Path, ...] = (),
                    translate: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """``load_yaml`` plus ``base:`` inheritance (see :func:`load_run_config`); cycles are an error."""
    path = path.resolve()
    if path in _chain:
        raise VconvError(f"{path}: config inherits from itself via base: ({' -> '.join(p.name for p in (*_chain, path))})")
    data = load_yaml(path)
    base = data.pop("base", None)
    if translate is not None:
        data = translate(data)
    if base is None:
        return data
    if not isinstance(base, str) or not base.strip():
        raise VconvError(f"{path}: base must be a config name or a relative YAML path, got {base!r}")
    if Path(base).suffix in (".yaml", ".yml"):
        base_path = path.parent / base
        if not base_path.is_file():
            raise VconvError(f"{path}: base config {base_path} not found")
    else:
        base_path = PACKAGED_CONFIGS / f"{base}.yaml"
        if not base_path.is_file():
            names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))
            raise VconvError(f"{path}: base {base!r} is not a packaged config ({names}); use a path ending in .yaml")
    return _deep_merge(_load_with_base(base_path, (*_chain, path), translate), data)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, anything else (lists too) is replaced.

    An empty section (``model:`` with nothing under it, i.e. ``None``) keeps the base's section. A mapping
    that names another ``kind`` than the base's (a front-end part, ``{kind: mel}`` over ``{kind: whisper,
    layer: 4}``) replaces it whole: another kind's settings would not fit it.
    """
    out = _deep_copy(base)
    for key, value in over.items():
        other_kind = isinstance(value, Mapping) and isinstance(out.get(key), dict) and value.get("kind", out[key].get("kind")) != out[key].get("kind")
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and not other_kind:
            out[key] = _deep_merge(out[key], value)
        elif value is None and isinstance(out.get(key), dict):
            continue
        else:
            out[key] = _switched(key, out.get(key), _deep_copy(value))
    return out
