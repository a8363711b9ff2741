"""The Whisper encoder over a stream's consecutive windows: only each window's last part recomputed, attending over all of it.

A stream converts each block with its window of past (3 s by default). Whisper's encoder attends over its whole input
in both directions, so recomputing the window every block costs ~36 ms of a 96 ms block (one thread), and recomputing
only its last part as a separate input (what a stream did before) leaves that part blind to the rest: its states
then lie far from the whole window's (mean cosine 0.75 over the emitted frames of the example).

:class:`WindowEncoder` keeps, for every Whisper state of the window, the keys and values of each transformer block as they were
last computed. A window recomputes its last ``fresh`` samples only; in each block their queries attend over the keys
and values of the whole window: the kept ones before them and their own. That is Transformer-XL's recurrence
inside one encoder pass. The kept states were last computed while they were themselves in the fresh part, with the
right context they had then (``fresh - block``: 1.3 s by default), and at the position they had then (below); the
log-mel's floor (80 dB under its loudest bin) is the recomputed part's. Otherwise the pass is the whole window's (mean
cosine 0.965 with it over the example's emitted frames, at the separate part's cost: docs/STREAMING.md, "Whisper over
the whole past").

States are kept on an absolute grid of 20 ms (Whisper's state rate at 16 kHz, counted from the stream's sample 0),
so a state kept from one window is the same frame in the next, whose start moves by a block (96 ms: 4.8 states).
Each window's states start at the first grid point inside it.

Whisper's sinusoidal positions count from each window's start, as a whole-window pass counts them, and a kept key
keeps the position it was computed at: up to 1.3 s further from the window's start than it now lies. Counting them
from a fixed anchor instead would keep every distance exact but take the positions far past those the model was
trained on (a long stream would reach Whisper's last one, 30 s on): shifted by 50 positions alone, Whisper's states
of the example lie at a mean cosine of 0.77 from the unshifted. Measured on the held-out pairs, the anchor was no
better (docs/STREAMING.md, "Whisper over the whole past").

Shapes: ``window [T]`` at 16 kHz, ``window_start`` its first sample in the stream -> ``(states [N, C], first)``: the
states of grid points ``first .. first + N - 1`` (state ``j`` centred on sample ``j * 320`` of the stream).
"""

from __future__ import annotations

import numpy as np
import torch

from vconv.audio.whisper import HOP, N_FFT, SAMPLE_RATE, EncoderBlock, WhisperEncoder, WhisperLogMel
from vconv.errors import VconvError

GRID = 2 * HOP  # samples per Whisper state at 16 kHz (the stride-2 convolution over 10 ms mel frames)
LEAD_STATES = 3  # states computed before the fresh part and dropped: the STFT window's and the convolutions' reach
#: the shortest window read on the grid: a shorter one (a stream with almost no context) is read whole from its start,
#: as a file is (cut to its first grid point it could leave the STFT less than its window)
MIN_WINDOW = 2 * N_FFT + GRID


class WindowEncoder:
    """``states(window, window_start, fresh) -> (states [N, C], first)``: the encoder's output after block ``layer``
    over a stream's window, with only its last ``fresh`` samples (0: all of it) recomputed (module docstring).
    :attr:`reused`: whether the last window kept any states (False: it was read whole)."""

    def __init__(self, encoder: WhisperEncoder, log_mel: WhisperLogMel, layer: int) -> None:
        self.encoder, self.log_mel, self.layer = encoder, log_mel, layer
        # per kept grid point: each block's keys and values ([1, heads, N, width / heads] each), and the output [1, N, C]
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._output: torch.Tensor | None = None
        self._first = 0  # the grid point of the kept rows' first
        self.reused = False

    @torch.no_grad()
    def states(self, window: np.ndarray, window_start: int, fresh: int = 0) -> tuple[torch.Tensor, int]:
        first = -(-window_start // GRID)  # the first grid point inside the window
        if (window_start + window.size) // GRID - first >= self.encoder.positions.shape[0]:
            raise VconvError(f"a stream window of {window.size / SAMPLE_RATE:.1f} s: Whisper reads at most "
                             f"{self.encoder.positions.shape[0] * GRID / SAMPLE_RATE:.0f} s (a shorter --context-ms)")
        recompute_from = max(first, -(-(window_start + window.size - fresh) // GRID)) if fresh else first
        if not self._reusable(first, recompute_from):
            recompute_from = first
        self.reused = recompute_from > first
        kept = slice(first - self._first, recompute_from - self._first)  # the kept rows this window reads
        x = self._embedded(window, window_start, first, recompute_from)  # [1, n, C]
        keys, values = [], []
        for index in range(self.layer):
            block = self.encoder.blocks[index]
            assert isinstance(block, EncoderBlock)
            past = (self._keys[index][:, :, kept], self._values[index][:, :, kept]) if self.reused else None
            x, key, value = block.attend(x, past)
            keys.append(key)
            values.append(value)
        output = torch.cat([self._output[:, kept], x], 1) if self.reused else x  # type: ignore[index]
        self._keys, self._values, self._output, self._first = keys, values, output, first
        return self.encoder.finished(output, self.layer)[0], first

    def _reusable(self, first: int, recompute_from: int) -> bool:
        """Whether the kept rows cover the window's grid points before ``recompute_from``."""
        kept = self._output
        return kept is not None and self._first <= first and self._first + kept.shape[1] >= recompute_from

    def _embedded(self, window: np.ndarray, window_start: int, first: int, recompute_from: int) -> torch.Tensor:
        """The convolutions' output with the window's positions, ``[1, n, C]`` for grid points ``recompute_from ..``,
        computed from :data:`LEAD_STATES` grid points earlier (within the window) so the STFT and the convolutions
        have their left context."""
        start = max(first, recompute_from - LEAD_STATES)
        wav = torch.from_numpy(np.ascontiguousarray(window[start * GRID - window_start:], dtype=np.float32))
        wav = wav.to(self.encoder.positions.device)
        with torch.autocast(wav.device.type, enabled=False):  # the log-mel in float32, as the whole-file pass
            log_mel = self.log_mel(wav[None])
        x = self.encoder.convolved(log_mel)[:, recompute_from - start:]
        offset = recompute_from - first
        return x + self.encoder.positions[offset: offset + x.shape[1]]
