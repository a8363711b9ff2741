"""The one validation layer of every config section: each field against its type hint and its declared range.

:class:`~vconv.config.base.ConfigSection` calls :func:`check_section` after a dataclass is built, so a
config read from YAML, an override, a bundle's ``config.json`` or a checkpoint is checked the same way,
before anything is built from it. A section class declares

* ``SECTION`` - its name as users write it (``features``, ``model``, ``train``, ``vocoder``), used in messages;
* ``LIMITS`` - ``{field: (low, high)}``, inclusive bounds of numeric fields (list fields: of each element).

Types: ``bool`` takes only true/false (not ``"maybe"``, not ``1``); ``int`` takes whole numbers, never a
bool, a fraction, a list or a string; ``float`` takes ints and floats (finite), never a bool; ``str``
only strings; ``X | None`` also ``None``; ``list[int]`` a list of at most :data:`MAX_LIST_ITEMS` ints.
Messages read ``model.decoder.channels: expected 1..4096, got 65536``.
"""

from __future__ import annotations

import functools
import math
import reprlib
import types
import typing
from dataclasses import fields
from typing import Any

from vconv.errors import VconvError

MAX_LIST_ITEMS = 256

_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def section_name(cls: type) -> str:
    """How users write the section of config class ``cls`` (``model``), or its class name when it has none."""
    return getattr(cls, "SECTION", cls.__name__)


@functools.lru_cache(maxsize=None)
def field_hints(cls: type) -> dict[str, Any]:
    """The resolved type hint of every dataclass field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


@functools.lru_cache(maxsize=None)
def limits_of(cls: type) -> dict[str, tuple[float, float]]:
    """``LIMITS`` merged along the class hierarchy (a subclass may narrow or add bounds)."""
    merged: dict[str, tuple[float, float]] = {}
    for klass in reversed(cls.__mro__):
        merged.update(klass.__dict__.get("LIMITS", {}))
    return merged


def check_section(obj: Any) -> None:
    """Raise a one-line VconvError for the first field of ``obj`` that has the wrong type or is out of range."""
    cls = type(obj)
    # typeshed types lru_cache's arguments as Hashable, which a class is; mypy does not see it
    limits = limits_of(cls)  # type: ignore[arg-type]
    for name, hint in field_hints(cls).items():  # type: ignore[arg-type]
        key = f"{section_name(cls)}.{name}"
        value = getattr(obj, name)
        check_type(key, value, hint)
        if name in limits and value is not None:
            low, high = limits[name]
            for item in value if isinstance(value, list) else [value]:
                if not low <= item <= high:
                    got = value if isinstance(value, list) else item
                    raise VconvError(f"{key}: expected {_fmt(low)}..{_fmt(high)}, got {got!r}")


def check_type(key: str, value: Any, hint: Any) -> None:
    """Raise a VconvError when ``value`` does not fit ``hint`` (see the module docstring for the rules)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                check_type(key, value, option)
                return
            except VconvError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is list:
        if not isinstance(value, list):
            raise VconvError(f"{key}: expected a list, got {_show(value)}")
        if len(value) > MAX_LIST_ITEMS:
            raise VconvError(f"{key}: expected at most {MAX_LIST_ITEMS} items, got {len(value)}")
        for item in value:
            check_type(key, item, args[0] if args else Any)
        return
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise VconvError(f"{key}: expected a mapping of key: value, got {_show(value)}")
        if len(value) > MAX_LIST_ITEMS:
            raise VconvError(f"{key}: expected at most {MAX_LIST_ITEMS} keys, got {len(value)}")
        return
    if hint in _TYPE_WORDS and not _fits(value, hint):
        raise VconvError(f"{key}: expected {_TYPE_WORDS[hint]}, got {_show(value)}")


def _fits(value: Any, hint: type) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, hint)


def _show(value: Any) -> str:
    return reprlib.repr(value)  # bounded: a mutated config may hold a million-item list


def _fmt(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)
