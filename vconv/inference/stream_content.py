"""The content front-end of a stream: each window's states with only its recent part recomputed.

The Whisper content front-end attends over its whole input in both directions, so the states of a window depend on
all of it; recomputing the whole 1.5 s context on every 96 ms block was the largest share of a block's work (22 of
~56 ms, one thread). :class:`RecentContent` recomputes only the window's last ``recent`` samples, reading ``margin``
more before them as left context (their own states are discarded: the first frames of an input have no left
context); the states before come from the previous window, each frame as it was last computed: with at least
``recent - block`` of right context, where recomputing gives it up to the whole window's. What that costs in words
and saves in time is measured in docs/STREAMING.md ("A busy machine").

A window longer than ``fresh`` (plus ``margin``) is read the same way when the stream has time: its last ``fresh``
samples recomputed, the states before reused. That is how a stream reads 3 s of past at the front-end cost of 1.5 s:
a reused frame was last computed with ``fresh - block`` (1.3 s) of right context, nearly what the whole file gives it,
and the conversion network still reads the whole window (docs/STREAMING.md, "A longer past").

A content part that can recompute a window's last part while attending over all of it (Whisper's,
:mod:`vconv.audio.whisper_stream`: it keeps every block's keys and values, not only the output) does the recomputing itself:
``recent`` or ``fresh`` samples as above, but its recomputed states read the whole window and its kept ones are the
same instants' (a 20 ms grid), so the margin is not needed. A part that cannot (the log-mel, whose frames are local)
is read as above.

The short recent part costs words (Whisper's, attending over the whole window: CER +0.03 on a fresh stream and +0.05 in
a session on the held-out pairs; docs/STREAMING.md), so by default (``mode="auto"``) it is on only while the stream
is short of time: once a block's compute took more than :data:`NEAR_MISS` of its duration, or :data:`ON_COUNT` of the last
:data:`ON_WINDOW` blocks took more than :data:`ON_ABOVE` of their duration, until :data:`CALM_BLOCKS` blocks in a row
took no more than that. An idle machine's own jitter is not a sign: on two idle cores a block took p95 0.74x and p99
0.78x its duration with the 1.4 s part, and a single block over 0.75x had turned the 400 ms part on for 621 of a
real-time minute's 625 blocks, for ~2 ms a block (docs/STREAMING.md, "The recent part only when the machine is busy").
``"on"``: always; ``"off"``: never.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from vconv.errors import VconvError
from vconv.inference.settings import RECENT_FRONTEND_MODES as MODES

ON_ABOVE = 0.8  # ON_COUNT of the last ON_WINDOW blocks over this share of their duration turn the recent part on (auto)
ON_COUNT, ON_WINDOW = 3, 20
NEAR_MISS = 0.9  # ... and so does one block over this share: the next one may be late
CALM_BLOCKS = 50  # ~5 s of 96 ms blocks in a row none over ON_ABOVE turn it off again (>= ON_WINDOW: by then no
# block over it is left in the window, so it cannot switch straight back on)
WARM_BLOCKS = 2  # the first blocks' times include the networks' cold start: they never switch it on


class RecentContent:
    """``states(window, window_start) -> [1, C, F]``, as ``frontend.content_input(window)`` but with only the last
    ``recent`` samples recomputed while the stream is short of time, and the last ``fresh`` samples otherwise (0: the
    whole window); a content part that can attends over the kept states (``frontend.window_content``), another reads
    ``margin`` more as left context. ``window_start``: the window's first sample in the stream, a multiple of ``hop``
    (each window starts a whole number of hops after the previous one)."""

    def __init__(self, frontend: Any, hop: int, recent: int, margin: int, mode: str = "auto",
                 block_seconds: float = 0.096, fresh: int = 0) -> None:
        if mode not in MODES:
            raise VconvError(f"recent front-end mode {mode!r}: one of {', '.join(MODES)}")
        self.frontend, self.hop, self.mode, self.block_seconds = frontend, hop, mode, block_seconds
        self.recent, self.margin = recent // hop * hop, margin // hop * hop
        self._fresh_asked = fresh // hop * hop  # 0: the whole window when not short of time
        self.active = mode == "on"
        self.blocks_on = 0  # blocks converted with the recent part only (how often the stream was short of time)
        self._calm = self._seen = 0
        self._over: deque[bool] = deque(maxlen=ON_WINDOW)  # the last blocks: over ON_ABOVE of their duration or not
        # a content part that recomputes a window's last part attending over all of it (Whisper) does the work itself
        self._over_window = frontend.window_content()
        self._states: torch.Tensor | None = None  # [1, C, n]: the last window's states, from frame `_first` of the stream
        self._first = 0

    def resize(self, recent: int, block_seconds: float) -> None:
        """A stream whose block grew (vconv.inference.stream_pace): its recomputed part and its block's length."""
        self.recent, self.block_seconds = recent // self.hop * self.hop, block_seconds

    @property
    def fresh(self) -> int:
        """The part recomputed when not short of time, in samples: never less than :attr:`recent` (0: all of it)."""
        return max(self._fresh_asked, self.recent) if self._fresh_asked else 0

    def record(self, seconds: float) -> None:
        """A block's compute time: in ``auto``, switch on when it was short of time, off after a calm stretch."""
        self._seen += 1
        if self.mode != "auto" or self._seen <= WARM_BLOCKS:
            return
        share = seconds / self.block_seconds
        self._over.append(share > ON_ABOVE)
        self._calm = 0 if share > ON_ABOVE else self._calm + 1
        if share > NEAR_MISS or sum(self._over) >= ON_COUNT:
            self.active = True
        elif self.active and self._calm >= CALM_BLOCKS:
            self.active = False

    def states(self, window: np.ndarray, window_start: int) -> torch.Tensor:
        part = self.recent if self.active else self.fresh  # the recomputed part (0: all of the window)
        if self._over_window is not None:  # the part itself recomputes `part`, attending over the whole window
            states, reused = self._over_window(window, window_start, part)
            self.blocks_on += self.active and reused
            return states
        hop = self.hop
        first, frames = window_start // hop, 1 + window.size // hop
        cut = max(0, (window.size - part) // hop) if part else 0  # window frame from which the states are recomputed
        known = self._states
        reusable = known is not None and self._first <= first and self._first + known.shape[-1] >= first + cut
        if cut == 0 or not reusable:
            states = self.frontend.content_input(window)  # a short window, the first, or nothing to reuse: all of it
        else:
            begin = max(0, cut - self.margin // hop)  # the recomputed input starts `margin` before the cut
            recomputed = self.frontend.content_input(window[begin * hop:])  # [1, C, frames - begin]
            assert known is not None  # reusable
            reused = known[..., first - self._first : first - self._first + cut]
            states = torch.cat([reused, recomputed[..., cut - begin:]], -1)
            self.blocks_on += self.active
        if states.shape[-1] != frames:
            raise AssertionError(f"stream content frames: {states.shape[-1]} for a window of {frames}")
        self._states, self._first = states, first
        return states
