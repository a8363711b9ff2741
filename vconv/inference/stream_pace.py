"""When a stream's block grows: a machine too busy to keep the default block's deadlines.

A stream's block costs about the same whatever its length (most of the work is the window of left context the
networks re-read, not the block), so a longer block is the one lever that turns missed deadlines into kept ones: on
two cores beside two CPU-bound processes, 96 ms blocks took p99 1.75x their duration and 43 % were late, 192 ms blocks
p99 0.88x and none late (docs/STREAMING.md, "A busy machine"). Late blocks are gaps the listener hears, over and
over; a longer block is 96 ms more latency, paid once, as one gap where the block grows.

:class:`BlockPace` decides it: once :data:`LATE_LIMIT` of the last :data:`LATE_WINDOW` blocks took longer than they
last, the block grows, once, for the rest of the stream (shrinking it again would drop audio that is already late).
Every block counts, the first too: :func:`warm_up` has a throwaway twin pay the networks' first calls before a live
stream starts. Beside two CPU-bound processes the late blocks then numbered the limit, 2 in each of four one-minute
runs (p99 0.75-0.98x the block), where 2 of the last 20 with the first two blocks skipped left 3-5 (0.99-1.01x;
docs/STREAMING.md).
The content front-end's recent part (:mod:`vconv.inference.stream_content`) is the cheaper step and comes first: it
switches on when blocks come near their deadline (``stream_content.NEAR_MISS``, ``ON_COUNT`` of ``ON_WINDOW`` over
``ON_ABOVE``). :class:`BlockTimes` keeps what both read: each block's compute and its own length.
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from vconv.inference.streaming import StreamConverter

LATE_WINDOW = 100  # blocks looked back over (~10 s of 96 ms blocks): a busy machine's late blocks can be sparse
LATE_LIMIT = 2  # late blocks among them that grow the block (idle and one hog made 0-0.5 % late)
MAX_BLOCKS_TIMED = 90_000
WARM_UP_BLOCKS = 2  # blocks a live stream's throwaway twin converts before the live one starts (warm_up)


class BlockPace:
    """``record(seconds, block_seconds) -> bool``: whether the stream should grow its block now. ``grow_to``: the
    grown block in samples (0, or not longer than ``block``, the block it starts with: never grow)."""

    def __init__(self, block: int, grow_to: int) -> None:
        self.grow_to = grow_to if grow_to > block else 0
        self.grown_after: int | None = None  # blocks converted before the block grew (None: it has not)
        self._late: deque[bool] = deque(maxlen=LATE_WINDOW)
        self._seen = 0

    def record(self, seconds: float, block_seconds: float) -> bool:
        """One converted block: its compute ``seconds`` and its duration ``block_seconds``."""
        self._seen += 1
        if not self.grow_to or self.grown_after is not None:
            return False
        self._late.append(seconds > block_seconds)
        if sum(self._late) < LATE_LIMIT:
            return False
        self.grown_after = self._seen
        return True


@dataclass
class BlockTimes:
    """Compute seconds per converted block (for the p50/p95/p99 a live user cares about): the last
    ``MAX_BLOCKS_TIMED`` blocks (two hours of 80 ms blocks), so a stream of any length keeps a bounded list."""

    seconds: deque = field(default_factory=lambda: deque(maxlen=MAX_BLOCKS_TIMED))
    durations: deque = field(default_factory=lambda: deque(maxlen=MAX_BLOCKS_TIMED))  # each block's own length, s
    # blocks whose compute took longer than the block lasts (a gap in what a listener hears), over the whole stream
    late: int = 0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.seconds, q)) if self.seconds else 0.0

    def add(self, seconds: float, duration: float) -> None:
        self.seconds.append(seconds)
        self.durations.append(duration)
        self.late += seconds > duration

    def share_of_block(self, q: float) -> float:
        """The ``q``-th percentile of compute over each block's own length (the block may grow mid-stream)."""
        return float(np.percentile(np.divide(self.seconds, self.durations), q)) if self.seconds else 0.0


# the (settings, input rate) of the streams each converter has warmed up: the first calls are paid once per process
_WARMED: "weakref.WeakKeyDictionary[object, set]" = weakref.WeakKeyDictionary()


def warm_up(make_twin: Callable[[], "StreamConverter"], live: "StreamConverter", speech: np.ndarray | None) -> None:
    """Convert :data:`WARM_UP_BLOCKS` blocks of ``speech`` (float32 ``[n]``, the target's primer; silence without one)
    with a throwaway twin of the ``live`` stream (``make_twin()``), then drop it: the process's first calls of the
    networks (memory, kernels) are paid before the live stream's first deadline, not by its first block (idle: 0.59x
    its length after the warm-up, 0.65x without). Once per converter, stream settings and input rate."""
    done = _WARMED.setdefault(live.converter, set())
    if (live.settings, live.sample_rate) in done:
        return
    twin = make_twin()
    size = -(-twin.block * twin.sample_rate // twin.model_rate)  # one block at the twin's input rate
    audio = np.zeros(WARM_UP_BLOCKS * size, np.float32)
    if speech is not None and speech.size:
        tail = speech[-audio.size:]
        audio[audio.size - tail.size:] = tail
    for start in range(0, audio.size, size):
        twin.push(audio[start : start + size])
    twin.flush()  # the blocks still waiting for their look-ahead (and a resampler's delay) are converted too
    done.add((live.settings, live.sample_rate))
