"""Chunking of long inputs (vconv.inference.chunking): coverage, no slivers, cross-fades that sum to one."""

from __future__ import annotations

import numpy as np
import pytest

from vconv.inference.chunking import chunk_starts, overlap_add, process_in_chunks


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


def test_overlap_add_cross_fades_linearly():
    out = overlap_add(6, [0, 2], [np.ones(4, np.float32), 2 * np.ones(4, np.float32)])
    np.testing.assert_allclose(out, [1, 1, 1, 2, 2, 2])  # fade over the 2 shared samples: 1*(1-w) + 2*w, w = 0, 1
    out = overlap_add(7, [0, 2], [np.ones(5, np.float32), 2 * np.ones(5, np.float32)])
    np.testing.assert_allclose(out, [1, 1, 1, 1.5, 2, 2, 2])


@pytest.mark.parametrize(("chunk", "overlap"), [(10, 10), (10, 20), (10, -1)])
def test_bad_chunk_settings_are_refused(chunk, overlap):
    with pytest.raises(ValueError, match="chunk > overlap"):
        chunk_starts(100, chunk, overlap)
