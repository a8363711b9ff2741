"""YIN on a stream's consecutive windows, each frame measured once.

A stream converts a window of ~1.6 s for every 96 ms block (:mod:`vconv.inference.streaming`), and the pitch path
tracks the whole window each time, as the file conversion tracks the whole file. YIN's per-frame work (the
difference function, its normalisation, the lag) reads only the frame's own 64 ms, so a frame that lies wholly
inside two consecutive windows gets the same measures in both: :class:`WindowPitch` keeps them and measures only
the frames the window has not seen whole before (its first frames, which read the zeros before the window's
start, and the new frames at its end). What depends on the whole window (the loud level that decides silence,
the run edges, the median) is decided again on every window, as :func:`vconv.audio.pitch.track_pitch` decides it.
The result is the same track (``tests/test_pitch.py`` compares it, window by window); the block's pitch work falls
from ~4 ms to ~1 ms of one core (docs/STREAMING.md; the octave-slip path of 2026-11-28 adds ~0.3 ms).
"""

from __future__ import annotations

import torch

from vconv.audio.pitch import FrameMeasures, PitchTrack, YinGrid, decide_voicing, frame_measures


class WindowPitch:
    """``track(window [T], window_start) -> PitchTrack``, as :func:`~vconv.audio.pitch.track_pitch` gives it for
    ``window``, for windows of one stream: ``window_start`` is the window's first sample in the stream, a multiple
    of ``hop`` (each window starts a whole number of hops after the previous one, or anywhere after a gap), negative
    while the window holds the primer before sample 0 (the target's speech, left out of the register the octave-slip
    path keeps to)."""

    def __init__(self, grid: YinGrid, threshold: float, voicing: float) -> None:
        self.grid, self.threshold, self.voicing = grid, threshold, voicing
        self._kept: FrameMeasures | None = None  # measures of frames read whole, stream frames `_first` on
        self._first = 0
        self.measured = 0  # frames measured so far (the work done; the tests count it)

    @torch.no_grad()
    def track(self, window: torch.Tensor, window_start: int) -> PitchTrack:
        grid = self.grid
        if window.dim() != 1 or window_start % grid.hop:
            raise ValueError(f"expected a mono window [T] starting on a hop, got {tuple(window.shape)} at {window_start}")
        x = window.float()
        chunks = grid.chunks(x)  # [F, window], a view
        frames, first = chunks.shape[0], window_start // grid.hop
        half = grid.window // 2
        whole_from = -(-half // grid.hop)  # the first frame that reads no zeros before the window's start
        # ... and the last + 1 that reads none after its end (a frame reads `window - half` samples from its centre on:
        # not `half` when the window is odd, as 64 ms is at 22.05 kHz)
        whole_to = max(whole_from, (x.shape[0] - (grid.window - half)) // grid.hop + 1)
        reuse_from, reuse_to = self._reusable(first, whole_from, whole_to)
        parts = []
        if reuse_from > 0:
            parts.append(self._measure(chunks[:reuse_from]))
        if reuse_to > reuse_from:
            assert self._kept is not None
            parts.append(self._kept[first + reuse_from - self._first : first + reuse_to - self._first])
        if frames > reuse_to:
            parts.append(self._measure(chunks[reuse_to:]))
        measures = FrameMeasures.cat(parts)
        self._kept, self._first = measures[whole_from:whole_to], first + whole_from
        # frames before stream sample 0 are the primer (the target's speech): not the register the slip path keeps to
        return decide_voicing(measures, grid, self.voicing, own_from=max(0, -window_start // grid.hop))

    def _reusable(self, first: int, whole_from: int, whole_to: int) -> tuple[int, int]:
        """The window's frames ``[start, stop)`` whose measures are kept (read whole by an earlier window and by this
        one); ``(whole_from, whole_from)`` when there are none."""
        if self._kept is None:
            return whole_from, whole_from
        start = max(whole_from, self._first - first)
        stop = min(whole_to, self._first + self._kept.lag.shape[0] - first)
        return (start, stop) if stop > start else (whole_from, whole_from)

    def _measure(self, chunks: torch.Tensor) -> FrameMeasures:
        self.measured += chunks.shape[0]
        return frame_measures(chunks, self.grid, self.threshold)
