"""Long inputs in bounded memory: split a waveform into overlapping chunks and cross-fade them back.

The one place where chunking and overlap-add live. A chunk is converted on its own, so the content
encoder's instance norm sees ``chunk`` samples of context (20 s by default: plenty for per-utterance
statistics) and memory stays bounded whatever the length. Neighbouring chunks overlap by ``overlap``
samples, joined with a linear cross-fade (the two weights sum to one, so a signal that both chunks
agree on passes unchanged).

Chunks start on hop boundaries. When the remainder after the last full step would be a sliver
(shorter than ``min_tail``), the last chunk is moved back so that it is a whole ``chunk`` long and
overlaps its neighbour by more: no chunk is ever too short for the model (a few samples would give
the instance norm nothing to normalise), whatever ``overlap`` is - including 0.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def chunk_starts(length: int, chunk: int, overlap: int, hop: int = 1, min_tail: int | None = None) -> list[int]:
    """Start samples of the chunks that cover ``[0, length)``; ``chunk > overlap >= 0``.

    Returns ``[0]`` when one chunk covers everything. Starts are ``chunk - overlap`` apart (multiples of
    ``hop`` when ``chunk`` and ``overlap`` are); when the last chunk would be shorter than ``min_tail``
    (default ``chunk // 4``), it is moved back to end exactly at ``length`` (rounded up to a hop) instead.
    """
    if chunk <= overlap or overlap < 0:
        raise ValueError(f"need chunk > overlap >= 0, got chunk {chunk}, overlap {overlap}")
    if length <= chunk:
        return [0]
    step = chunk - overlap
    starts = list(range(0, length - chunk, step))
    last = starts[-1] + step  # the first start whose chunk reaches the end
    if length - last < (chunk // 4 if min_tail is None else min_tail):
        last = -(-(length - chunk) // hop) * hop  # a full-length last chunk, on a hop boundary
    starts.append(last)
    return starts


def overlap_add(length: int, starts: list[int], pieces: list[np.ndarray]) -> np.ndarray:
    """Join ``pieces[i]`` (placed at ``starts[i]``) into one ``[length]`` signal, cross-fading overlaps.

    Where piece ``i`` overlaps its predecessor, the predecessor fades out linearly and piece ``i`` fades in,
    over the whole overlapping span.
    """
    out = np.zeros(length, dtype=np.float32)
    end_of_previous = 0
    for start, piece in zip(starts, pieces):
        piece = np.asarray(piece, dtype=np.float32)[: length - start].copy()
        shared = max(0, min(end_of_previous - start, piece.size))
        if shared:
            fade_in = np.linspace(0.0, 1.0, shared, dtype=np.float32)
            piece[:shared] *= fade_in
            out[start : start + shared] *= 1.0 - fade_in
        out[start : start + piece.size] += piece
        end_of_previous = start + piece.size
    return out


def process_in_chunks(wav: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], *, chunk: int, overlap: int,
                      hop: int = 1) -> np.ndarray:
    """``fn`` applied to overlapping chunks of ``wav [T]`` and cross-faded back into ``[T]``.

    ``fn`` maps a ``[n]`` chunk to ``[n]`` samples. One chunk (no copy, no fade) when ``T <= chunk``.
    """
    starts = chunk_starts(wav.size, chunk, overlap, hop)
    if len(starts) == 1:
        return fn(wav)
    return overlap_add(wav.size, starts, [fn(wav[s : s + chunk]) for s in starts])
