"""Networks whose stored weights are assigned in place: built once, parameters on the meta device.

Loading a bundle used to build each network twice (once on the meta device to check the config against
the weights, once for real) and let every layer draw a random initialisation that ``load_state_dict``
then overwrote. Here a network is built once with its *parameters* on the meta device (no storage, so no
initialisation cost and nothing allocated before the parameter budget is checked) while its buffers stay
real: the non-persistent ones (analysis windows, filterbanks) are computed in ``__init__`` and are in no
state dict. The stored weights are then assigned in place (``load_state_dict(assign=True)``).
:mod:`vconv.models.budget` puts the parameter budget check in between for the networks whose sizes a
config sets.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, TypeVar

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook
from torch.overrides import TorchFunctionMode

from vconv.errors import VconvError

M = TypeVar("M", bound=nn.Module)
_building_here = threading.local()  # torch's registration hook is global: act only in the thread that asked


def _to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> Any:
    if param is None or param.is_meta or not getattr(_building_here, "active", False):
        return None  # torch keeps the parameter as it is; what the hook returns instead replaces it
    return nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)


class _SkipFillsOfMeta(TorchFunctionMode):
    """Turns an in-place call on a meta tensor (``nn.init.normal_``, ``Tensor.zero_``...) into a no-op.

    A meta tensor has no values to fill, but several initialisers have no C++ meta kernel and go through
    torch's Python decompositions, whose first use imports torch._dynamo and sympy (about a second here).
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        first = args[0] if args else kwargs.get("tensor")  # nn.init passes its tensor by keyword
        name = getattr(func, "__name__", "")
        if isinstance(first, torch.Tensor) and first.is_meta and name.endswith("_") and not name.endswith("__"):
            return first  # an in-place fill; dunders such as __get__ (of .shape) are not
        return func(*args, **kwargs)


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Inside, every ``nn.Parameter`` a module registers (in this thread) lands on the meta device and
    the initialisers that follow skip it. Buffers are left as they are."""
    handle = register_module_parameter_registration_hook(_to_meta)
    _building_here.active = True
    try:
        with _SkipFillsOfMeta():
            yield
    finally:
        _building_here.active = False
        handle.remove()


def parameter_count(module: nn.Module) -> int:
    """Number of parameter elements, meta or not."""
    return sum(p.numel() for p in module.parameters())


def check_state_matches(skeleton: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse weights ``state`` that do not fit ``skeleton`` key for key and shape for shape (a one-line
    VconvError naming ``what``), so a config that disagrees with its weights is caught before any copy."""
    expected = skeleton.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(expected[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected else
                  f"{wrong[0]}: {tuple(state[wrong[0]].shape)} in the file, {tuple(expected[wrong[0]].shape)} by the config")
        raise VconvError(f"{what}: weights do not match the stored model config ({detail})")


def assign_weights(skeleton: M, state: Mapping[str, torch.Tensor], what: str) -> M:
    """``skeleton`` holding ``state``'s tensors (not copies) as its parameters and persistent buffers.

    Parameters keep their ``requires_grad``; a key or shape that does not fit is a one-line VconvError.
    """
    check_state_matches(skeleton, state, what)
    skeleton.load_state_dict(dict(state), strict=True, assign=True)
    left = next((name for name, t in [*skeleton.named_parameters(), *skeleton.named_buffers()] if t.is_meta), None)
    if left is not None:  # a meta tensor outside the state dict: a bug in the model's code, not the user's
        raise RuntimeError(f"{what}: {left} has no stored value")
    return skeleton


def load_assigned(build: Callable[[], M], state: Mapping[str, torch.Tensor], what: str) -> M:
    """``build()`` with meta parameters, then ``state`` assigned (:func:`assign_weights`)."""
    with parameters_on_meta():
        module = build()
    return assign_weights(module, state, what)
