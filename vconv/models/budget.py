"""The parameter budget: a network is built on the ``meta`` device and counted before it is built for real.

Range checks per config field (:mod:`vconv.config.validate`) bound each size, but not their product: a
mutated ``config.json`` with every size near its bound would still ask for tens of GB. Building on the
meta device allocates no storage, so counting there is cheap and exact; above :data:`MAX_PARAMETERS`
the build is refused with a one-line error before a byte is allocated.
"""

from __future__ import annotations

from typing import Callable, Mapping, TypeVar

import torch

from vconv.errors import VconvError

MAX_PARAMETERS = 200_000_000  # 0.8 GB of float32 weights; the shipped model has ~9 M, its vocoder 3.6 M

M = TypeVar("M", bound=torch.nn.Module)


def count_on_meta(build: Callable[[], torch.nn.Module]) -> int:
    """Parameters of the module ``build()`` makes, built on the meta device (no memory is allocated)."""
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def build_within_budget(build: Callable[[], M], what: str, limit: int | None = None) -> M:
    """``build()`` once it is known to have at most ``limit`` (default :data:`MAX_PARAMETERS`) parameters;
    else a VconvError naming ``what``."""
    limit = MAX_PARAMETERS if limit is None else limit
    count = count_on_meta(build)
    if count > limit:
        raise VconvError(f"{what}: {count / 1e6:,.0f} M parameters is above the {limit / 1e6:,.0f} M limit; "
                         "the config's sizes are far larger than any vconv model")
    return build()


def check_state_matches(skeleton: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse weights ``state`` that do not fit ``skeleton`` (built on the meta device) key for key and shape
    for shape, so a config that disagrees with its weights is caught before the real model is allocated."""
    expected = skeleton.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(expected[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected else
                  f"{wrong[0]}: {tuple(state[wrong[0]].shape)} in the file, {tuple(expected[wrong[0]].shape)} by the config")
        raise VconvError(f"{what}: weights do not match the stored model config ({detail})")
