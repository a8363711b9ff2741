"""Building a registered part from its config section: ``{"kind": NAME, **the part's keyword arguments}``.

The front-ends (:mod:`vconv.frontends`: content, speaker and pitch) and the model's core parts (:mod:`vconv.models.vc`)
are chosen this way: the kind names a registered class (or factory), the section's other keys are its arguments, and
anything else is a one-line error naming the config key.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, TypeVar

from vconv.errors import VconvError

T = TypeVar("T")


def build_part(where: str, registry: Mapping[str, Callable[..., T]], section: Mapping[str, Any], *, also: tuple[str, ...] = (),
               **sizes: Any) -> T:
    """``registry[section["kind"]](**the sizes it takes, **the section's other keys)``.

    ``where`` names the section in errors (``model.content_frontend``); ``also`` are kinds the caller
    handles itself (named in the error); ``sizes`` are arguments the model supplies, not settings.
    """
    settings = dict(section)
    kind = settings.pop("kind", None)
    if not isinstance(kind, str) or kind not in registry:
        raise VconvError(f"{where}.kind must be one of {', '.join([*also, *registry])}, got {kind!r}")
    cls = registry[kind]
    accepted = inspect.signature(cls).parameters  # a class's or a factory function's
    params = [n for n in accepted if n not in sizes]
    unknown = sorted(set(settings) - set(params))
    if unknown:
        raise VconvError(f"{where}: {kind} takes {', '.join(params) or 'no settings'}; unknown key(s) {', '.join(unknown)}")
    try:  # only the sizes this kind reads (a pass-through quantiser reads none)
        return cls(**{name: size for name, size in sizes.items() if name in accepted}, **settings)
    except (TypeError, ValueError) as exc:
        raise VconvError(f"{where}: {exc}") from None
