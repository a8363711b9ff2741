"""Which torch devices exist here, and a one-line error for one that does not (before anything is loaded)."""

from __future__ import annotations

import torch

from vconv.errors import VconvError


def available_devices() -> list[str]:
    """``cpu``, then ``cuda:N`` for each visible GPU, then ``mps`` on Apple silicon when usable."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` if this machine has it; else a VconvError naming the ones it has.

    Without the check, ``cuda`` on a machine without CUDA ends in an AssertionError deep inside torch.
    """
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device))
    except (RuntimeError, TypeError, ValueError):
        raise VconvError(f"device {device!r} is not a device name; available: {', '.join(available_devices())}") from None
    available = available_devices()
    if dev.type == "cpu":
        return dev
    name = dev.type if dev.index is None else f"{dev.type}:{dev.index}"
    if dev.type == "cuda" and any(a.startswith("cuda:") for a in available) and dev.index is None:
        return dev
    if name not in available:
        raise VconvError(f"device {str(device)!r} is not available; available: {', '.join(available)}")
    return dev
