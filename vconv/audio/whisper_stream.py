"""The Whisper encoder over a stream's consecutive windows: only each window's last part recomputed, attending over all of it.

A stream converts each block with its window of past (3 s by default). Whisper's encoder attends over its whole input
in both directions, so recomputing the window every block costs ~36 ms of a 96 ms block (one thread), and recomputing
only its last part as a separate input (what a stream did before) leaves that part blind to the rest: its states
then lie far from the whole window's (mean cosine 0.75 over the emitted frames of the example).

:class:`WindowEncoder` keeps, for every Whisper state of the window, the keys and values of each transformer block as they were
last computed. A window recomputes its last ``fresh`` samples only; in each block their queries attend over the keys
and values of the whole window: the kept ones before them and their own. That is Transformer-XL's recurrence
inside one encoder pass. The kept states were last computed while they were themselves in the fresh part, with the
right context they had then (``fresh - block``: 1.3 s by default); nothing else differs from the whole window's pass
(mean cosine 0.965 with it on the example, at the separate part's cost: docs/STREAMING.md, "Whisper over the whole
past").

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
import torch.nn.functional as F

from vconv.audio.whisper import HOP, EncoderBlock, WhisperEncoder, WhisperLogMel

GRID = 2 * HOP  # samples per Whisper state at 16 kHz (the stride-2 convolution over 10 ms mel frames)
LEAD_STATES = 3  # states computed before the fresh part and dropped: the STFT window's and the convolutions' reach


class WindowEncoder:
    """``states(window, window_start, fresh) -> (states [N, C], first)``: the encoder's output after block ``layer``
    over a stream's window, with only its last ``fresh`` samples (0: all of it) recomputed (module docstring)."""

    def __init__(self, encoder: WhisperEncoder, log_mel: WhisperLogMel, layer: int) -> None:
        self.encoder, self.log_mel, self.layer = encoder, log_mel, layer
        # per kept grid point: each block's keys and values ([heads, N, width / heads] each), and the output [N, C]
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._output: torch.Tensor | None = None
        self._first = 0  # the grid point of the kept rows' first

    @torch.no_grad()
    def states(self, window: np.ndarray, window_start: int, fresh: int = 0) -> tuple[torch.Tensor, int]:
        first = -(-window_start // GRID)  # the first grid point inside the window
        recompute_from = max(first, -(-(window_start + window.size - fresh) // GRID)) if fresh else first
        if not self._reusable(first, recompute_from):
            recompute_from = first
        kept = slice(first - self._first, recompute_from - self._first)  # the kept rows this window reads
        x = self._embedded(window, window_start, first, recompute_from)  # [n, C]
        keys, values = [], []
        for index in range(self.layer):
            past = (self._keys[index][:, kept], self._values[index][:, kept]) if recompute_from > first else None
            block = self.encoder.blocks[index]
            assert isinstance(block, EncoderBlock)
            x, key, value = _attend_over(block, x, past)
            keys.append(key)
            values.append(value)
        output = x if recompute_from == first else torch.cat([self._output[kept], x], 0)  # type: ignore[index]
        self._keys, self._values, self._output, self._first = keys, values, output, first
        if self.layer == self.encoder.config.layers and self.encoder.final_norm is not None:
            output = self.encoder.final_norm(output)
        return output, first

    def _reusable(self, first: int, recompute_from: int) -> bool:
        """Whether the kept rows cover the window's grid points before ``recompute_from``."""
        kept = self._output
        return kept is not None and self._first <= first and self._first + kept.shape[0] >= recompute_from

    def _embedded(self, window: np.ndarray, window_start: int, first: int, recompute_from: int) -> torch.Tensor:
        """The convolutions' output with the window's positions, ``[n, C]`` for grid points ``recompute_from ..``,
        computed from :data:`LEAD_STATES` grid points earlier (within the window) so the STFT and the convolutions
        have their left context."""
        start = max(first, recompute_from - LEAD_STATES)
        wav = torch.from_numpy(np.ascontiguousarray(window[start * GRID - window_start:], dtype=np.float32))
        wav = wav.to(self.encoder.positions.device)
        with torch.autocast(wav.device.type, enabled=False):  # the log-mel in float32, as the whole-file pass
            log_mel = self.log_mel(wav[None])
        x = F.gelu(self.encoder.conv2(F.gelu(self.encoder.conv1(log_mel)))).transpose(1, 2)[0]
        x = x[recompute_from - start:]
        offset = recompute_from - first
        return x + self.encoder.positions[offset: offset + x.shape[0]]


def _attend_over(block: EncoderBlock, x: torch.Tensor,
                past: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``block`` on ``x [n, C]``, its queries attending over the ``past`` keys and values (``[heads, p, width / heads]``
    each, or none) and its own: ``(output [n, C], keys, values)``, the keys and values of past and ``x`` together."""
    n, width = x.shape
    heads = block.heads
    queries, keys, values = block.qkv(block.attn_norm(x)).view(n, 3, heads, width // heads).permute(1, 2, 0, 3)
    if past is not None:
        keys, values = torch.cat([past[0], keys], 1), torch.cat([past[1], values], 1)
    attended = F.scaled_dot_product_attention(queries[None], keys[None], values[None])[0]  # [heads, n, width / heads]
    x = x + block.out(attended.transpose(0, 1).reshape(n, width))
    return x + block.mlp(block.mlp_norm(x)), keys, values
