"""Chunking of long inputs (vconv.inference.chunking): coverage, no slivers, cross-fades that sum to one."""

from __future__ import annotations

import numpy as np
import pytest

from vconv.inference.chunking import chunk_starts, overlap_add, process_in_chunks, stream_chunks


@pytest.mark.parametrize("overlap", [0, 16, 64])
@pytest.mark.parametrize("length", [100, 256, 257, 300, 513, 520, 1000, 1001])
def test_chunks_cover_the_input_on_hop_boundaries_and_leave_no_sliver(length, overlap):
    chunk, hop = 256, 8
    starts = chunk_starts(length, chunk, overlap, hop)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(s % hop == 0 for s in starts)
    assert starts[-1] + chunk >= length  # the last chunk reaches the end
    for a, b in zip(starts, starts[1:]):
        assert b - a <= chunk - overlap  # neighbours overlap by at least `overlap`: no gap
    sizes = [min(chunk, length - s) for s in starts]
    assert min(sizes) >= min(length, chunk // 4)  # never a few samples for the model to convert alone


def test_overlap_zero_with_a_tail_of_a_few_samples_moves_the_last_chunk_back():
    # the defect: with no overlap, 2 chunks + 10 samples left a 10-sample chunk (less than one mel frame)
    assert chunk_starts(2 * 256 + 10, 256, 0, 8) == [0, 256, 272]  # the last chunk is a whole one, ending at 528


@pytest.mark.parametrize(("length", "overlap"), [(1000, 0), (1000, 64), (1001, 100), (2 * 256 + 3, 0), (200, 50)])
def test_identity_through_chunks_is_the_input(length, overlap):
    x = np.random.default_rng(0).standard_normal(length).astype(np.float32)
    y = process_in_chunks(x, lambda piece: piece.copy(), chunk=256, overlap=overlap, hop=8)
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-6)  # the fades sum to one wherever chunks overlap


def _spoilt_at_the_edges(piece: np.ndarray, edge: int = 16) -> np.ndarray:
    """A stand-in for a model whose output is wrong near the ends of its input: zeros there."""
    out = piece.copy()
    out[:edge] = out[-edge:] = 0.0
    return out


@pytest.mark.parametrize("overlap", [0, 64])
def test_context_keeps_a_models_edge_effects_away_from_the_joins(overlap):
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    inner = slice(16, -16)  # the signal's own ends stay edges: no context exists there
    without = process_in_chunks(x, _spoilt_at_the_edges, chunk=256, overlap=overlap, hop=8)
    assert np.abs(without - x)[inner].max() > 0.5  # joins carry the dropouts (overlap only softens them)
    with_ctx = process_in_chunks(x, _spoilt_at_the_edges, chunk=256, overlap=overlap, hop=8, context=16)
    np.testing.assert_allclose(with_ctx[inner], x[inner], rtol=0, atol=1e-6)


def test_context_is_clipped_at_the_signal_ends_and_frames_stay_on_the_hop_grid():
    seen = []

    def record(piece: np.ndarray) -> np.ndarray:
        seen.append(piece[0])  # x[i] == i, so the first value is where the piece starts
        return piece.copy()

    x = np.arange(600, dtype=np.float32)
    y = process_in_chunks(x, record, chunk=256, overlap=0, hop=8, context=24)
    np.testing.assert_array_equal(y, x)
    assert seen == [0, 256 - 24, 512 - 24]  # chunks start at 0, 256, 512; none reads before 0 (or past the end)
    assert all(s % 8 == 0 for s in seen)


@pytest.mark.parametrize("context", [-8, 12])
def test_bad_context_is_refused(context):
    with pytest.raises(ValueError, match="context"):
        process_in_chunks(np.zeros(1000, np.float32), lambda p: p, chunk=256, overlap=0, hop=8, context=context)


def test_overlap_add_cross_fades_linearly():
    out = overlap_add(6, [0, 2], [np.ones(4, np.float32), 2 * np.ones(4, np.float32)])
    np.testing.assert_allclose(out, [1, 1, 1, 2, 2, 2])  # fade over the 2 shared samples: 1*(1-w) + 2*w, w = 0, 1
    out = overlap_add(7, [0, 2], [np.ones(5, np.float32), 2 * np.ones(5, np.float32)])
    np.testing.assert_allclose(out, [1, 1, 1, 1.5, 2, 2, 2])


@pytest.mark.parametrize(("chunk", "overlap"), [(10, 10), (10, 20), (10, -1)])
def test_bad_chunk_settings_are_refused(chunk, overlap):
    with pytest.raises(ValueError, match="chunk > overlap"):
        chunk_starts(100, chunk, overlap)


def test_overlap_add_takes_the_pieces_one_at_a_time():
    """A generator of pieces gives what a list gives, and each piece is made only when the previous one
    has been added (so a long conversion holds the output and one chunk, not every chunk)."""
    pieces = [np.full(5, float(i + 1), np.float32) for i in range(4)]
    made: list[int] = []

    def lazily():
        for i, piece in enumerate(pieces):
            made.append(i)
            yield piece
            assert made[-1] == i  # not asked for the next before this one was used

    np.testing.assert_array_equal(overlap_add(14, [0, 3, 6, 9], lazily()), overlap_add(14, [0, 3, 6, 9], pieces))
    with pytest.raises(ValueError, match="at least one piece"):
        overlap_add(4, [], iter([]))


@pytest.mark.parametrize(("length", "chunk", "overlap", "context"), [(1000, 256, 64, 32), (1001, 300, 0, 16),
                                                                    (200, 256, 64, 32), (5000, 512, 100, 64)])
def test_stream_chunks_equals_process_in_chunks(length, chunk, overlap, context):
    """Read a span at a time and written as it comes, a chunked conversion is the in-memory one, sample for sample."""
    wav = np.random.default_rng(length).standard_normal(length).astype(np.float32)

    def model(x: np.ndarray) -> np.ndarray:  # edge-dependent, so the context and the joins matter
        return np.cumsum(x) / (1 + np.arange(x.size)) + x[::-1].mean()

    reads: list[tuple[int, int]] = []

    def read(start: int, stop: int) -> np.ndarray:
        reads.append((start, stop))
        return wav[start:stop]

    out: list[np.ndarray] = []
    stream_chunks(length, read, model, out.append, chunk=chunk, overlap=overlap, hop=16 if context else 1, context=context)
    expected = process_in_chunks(wav, model, chunk=chunk, overlap=overlap, hop=16 if context else 1, context=context)
    np.testing.assert_allclose(np.concatenate(out), expected, rtol=1e-6, atol=1e-6)
    assert max(stop - start for start, stop in reads) <= chunk + 2 * context  # never the whole signal
