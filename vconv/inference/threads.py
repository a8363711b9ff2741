"""How vconv's computation shares the CPU: how many threads it computes with, and how idle ones wait.

PyTorch's CPU kernels run their parallel regions on an OpenMP pool (libgomp here). By default libgomp's worker
threads *spin* for a while when a region ends, waiting for the next one. On an idle machine that saves a wake-up;
on a busy one (a browser, a call, a build, or two conversions at once) it is the opposite: every region waits for
all its threads, and a thread whose core another process holds is not running, so each small region costs a
scheduler time slice. The voice fit's many small backward passes and the stream's per-block calls suffered most
(benchmarks/bench_convert.py and bench_stream.py measure idle and loaded side by side). With
``OMP_WAIT_POLICY=PASSIVE`` waiting threads sleep at once, so vconv degrades in proportion to the CPU it gets.

The wait policy is read once, when the OpenMP runtime starts, i.e. when torch is first imported: :func:`prepare_threads`
must run before that. The CLI calls it first thing; a program using the API calls ``vconv.prepare_threads()`` before
importing torch (or sets ``OMP_WAIT_POLICY=PASSIVE`` in its environment). A policy the user set is kept.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from vconv.errors import VconvError

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"
MAX_THREADS = 256


def prepare_threads() -> bool:
    """Set the OpenMP wait policy to passive unless the environment already names one; True when it takes effect
    (torch not imported yet in this process), False when it came too late to matter."""
    os.environ.setdefault(WAIT_POLICY_VARIABLE, DEFAULT_WAIT_POLICY)
    return "torch" not in sys.modules


def check_threads(threads: int | None, what: str = "--threads") -> int | None:
    """``threads`` if it is None (the default) or a usable count, else a one-line :class:`VconvError`."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise VconvError(f"{what} {threads}: expected 1 to {MAX_THREADS} threads")
    return threads


def apply_threads(threads: int | None) -> None:
    """Compute with ``threads`` intra-op threads (None: leave torch's choice, one per core). Before torch is imported
    this only sets ``OMP_NUM_THREADS``, which torch reads when it starts (so a command that fails on its input still
    fails before paying for torch); after, it also tells torch."""
    count = check_threads(threads)
    if count is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(count)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(count)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run torch ops with ``count`` intra-op threads inside the block, then restore the caller's count (None, or the
    count already set: nothing is changed)."""
    import torch

    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def one_thread() -> Iterator[None]:
    """:func:`torch_threads` of one. For work made of many small parallel regions, where a second thread costs more in
    wake-ups than it brings: the voice fit (30 backward passes through the decoder on a few seconds of frames) of the
    README's target took 0.66 s on one thread and 1.03 s on two, on two idle cores (median of 5, 2026-11-29;
    docs/BENCHMARKS.md).

    On the main thread only. torch's count is also a process-wide default that a thread takes when it first computes
    and keeps, so changing it in a server's worker thread could leave the requests of threads started meanwhile on
    one thread for good; there the block runs on the thread's own count."""
    import threading

    with torch_threads(1 if threading.current_thread() is threading.main_thread() else None):
        yield
