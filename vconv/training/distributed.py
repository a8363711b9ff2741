"""Where a trainer runs: one process on a CPU, or one process per GPU under ``torchrun`` (PyTorch DDP).

``torchrun`` describes the process group in the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``);
without it everything here is a no-op and the same code trains on one device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (a no-op when single-process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(local_rank: int = 0) -> torch.device:
    """CUDA if present (one GPU per local rank), else Apple MPS, else CPU; never assumed."""
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def start_process(threads: int | None, progress: bool) -> tuple[DistInfo, torch.device, bool]:
    """What every trainer does first: join DDP if launched by torchrun, pick the device, cap the
    threads; returns ``(dist, device, show_progress)`` (only the main rank shows a progress bar)."""
    info = setup_distributed()
    if threads:
        torch.set_num_threads(threads)
    return info, pick_device(info.local_rank), progress and info.is_main


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16``); None when it cannot be told.

    Without it, CPU bf16 autocast is emulated: measured on a 2-core AMD EPYC without AVX-512, one training
    step of the 256-channel model took 30 s under bf16 against 0.7 s in fp32.
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return None
    if not flags:
        return None
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))
