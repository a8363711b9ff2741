"""The parameter budget: a network is counted with its parameters on the ``meta`` device before any
storage is allocated for them.

Range checks per config field (:mod:`vconv.config.validate`) bound each size, but not their product: a
mutated ``config.json`` with every size near its bound would still ask for tens of GB. Parameters on the
meta device have no storage, so counting there is cheap and exact; above :data:`MAX_PARAMETERS` the build
is refused with a one-line error before a byte of weights is allocated. A network that is then loaded
keeps that skeleton and receives its weights in place (:func:`load_network`); one that is trained is
built again for real, with its initialisation (:func:`build_within_budget`).
"""

from __future__ import annotations

from typing import Callable, Mapping, TypeVar

import torch

from vconv.errors import VconvError
from vconv.skeleton import assign_weights, parameter_count, parameters_on_meta

MAX_PARAMETERS = 200_000_000  # 0.8 GB of float32 weights; the shipped model has ~9 M, its vocoder 3.6 M

M = TypeVar("M", bound=torch.nn.Module)


def build_skeleton(build: Callable[[], M], what: str, limit: int | None = None) -> M:
    """``build()`` with its parameters on the meta device, once it is known to have at most ``limit``
    (default :data:`MAX_PARAMETERS`) of them; else a one-line VconvError naming ``what``."""
    limit = MAX_PARAMETERS if limit is None else limit
    with parameters_on_meta():
        module = build()
    count = parameter_count(module)
    if count > limit:
        raise VconvError(f"{what}: {count / 1e6:,.0f} M parameters is above the {limit / 1e6:,.0f} M limit; "
                         "the config's sizes are far larger than any vconv model")
    return module


def build_within_budget(build: Callable[[], M], what: str, limit: int | None = None) -> M:
    """``build()``, initialised for training, once its skeleton has passed :func:`build_skeleton`."""
    build_skeleton(build, what, limit)
    return build()


def load_network(build: Callable[[], M], state: Mapping[str, torch.Tensor], what: str, limit: int | None = None) -> M:
    """The network ``build()`` makes holding ``state``: built once, within the budget, and no weight
    initialised that is then overwritten (:mod:`vconv.skeleton`)."""
    return assign_weights(build_skeleton(build, what, limit), state, what)
