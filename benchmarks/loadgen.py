"""Competing CPU load for the benchmarks' loaded figures: ``hogs(n)`` runs ``n`` busy processes while its block runs.

A hog is a Python process spinning in a loop: it holds one core whenever the scheduler gives it one, as a browser
tab, a game or a build would. On the 2-core machines these benchmarks run on, one hog takes a core the benchmark
would otherwise have, and two hogs share both cores with it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

HOG = "while True:\n    pass\n"
LOAD_NAMES = {0: "idle", 1: "one hog", 2: "two hogs"}


@contextmanager
def hogs(count: int) -> Iterator[None]:
    """``count`` CPU-bound processes for the duration of the block (0: none)."""
    procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(count)]
    try:
        if procs:
            time.sleep(0.5)  # running before the first measurement
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def load_name(count: int) -> str:
    return LOAD_NAMES.get(count, f"{count} hogs")
