"""Building a registered part from its config section: ``{"kind": NAME, **the part's keyword arguments}``.

The front-ends (:mod:`vconv.frontends`: content, speaker and pitch) are chosen this way: the kind names a registered class, the section's other keys are its constructor's arguments,
and anything else is a one-line error naming the config key.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, TypeVar

from vconv.errors import VconvError

T = TypeVar("T")


def build_part(where: str, registry: Mapping[str, type[T]], section: Mapping[str, Any], *, also: tuple[str, ...] = (),
               **sizes: Any) -> T:
    """``registry[section["kind"]](**sizes, **the section's other keys)``.

    ``where`` names the section in errors (``model.content_frontend``); ``also`` are kinds the caller
    handles itself (named in the error); ``sizes`` are arguments the model supplies, not settings.
    """
    settings = dict(section)
    kind = settings.pop("kind", None)
    if kind not in registry:
        raise VconvError(f"{where}.kind must be one of {', '.join([*also, *registry])}, got {kind!r}")
    cls = registry[kind]
    params = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", *sizes)]
    unknown = sorted(set(settings) - set(params))
    if unknown:
        raise VconvError(f"{where}: {kind} takes {', '.join(params) or 'no settings'}; unknown key(s) {', '.join(unknown)}")
    try:
        return cls(**sizes, **settings)
    except (TypeError, ValueError) as exc:
        raise VconvError(f"{where}: {exc}") from None
