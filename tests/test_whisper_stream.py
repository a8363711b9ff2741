"""The Whisper encoder over a stream's windows (vconv.audio.whisper_stream): its recomputed part attends over the kept
states of the whole window, on an absolute 20 ms grid. A small random encoder: the arithmetic, not the weights."""

from __future__ import annotations

import numpy as np
import torch

from vconv.audio.whisper import WhisperEncoder, WhisperEncoderConfig, WhisperLogMel
from vconv.audio.whisper_stream import GRID, WindowEncoder
from vconv.frontends.whisper import align_to_mel_frames


def _encoder() -> WhisperEncoder:
    torch.manual_seed(0)
    encoder = WhisperEncoder(WhisperEncoderConfig(width=64, heads=4, layers=3, positions=400, final_norm=False))
    with torch.no_grad():
        encoder.positions.normal_(0, 0.5)  # (zero in a fresh module: make the positions count)
    return encoder.eval()


def _noise(samples: int, seed: int = 1) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


def _whole(encoder: WhisperEncoder, wav: np.ndarray, layer: int) -> torch.Tensor:
    """The whole-input pass ``[N, C]``, as the file conversion computes it."""
    with torch.no_grad():
        return encoder(WhisperLogMel()(torch.from_numpy(wav)[None]), layer)[0]


def test_a_window_read_whole_on_the_grid_is_the_whole_input_pass():
    encoder, wav = _encoder(), _noise(16000)
    states, first = WindowEncoder(encoder, WhisperLogMel(), 2).states(wav, 3 * GRID, fresh=0)
    assert first == 3
    torch.testing.assert_close(states, _whole(encoder, wav, 2), atol=1e-5, rtol=1e-4)


def test_a_recomputed_part_attends_over_the_kept_states_as_the_whole_pass_does():
    """Read twice, the second time recomputing only its last 0.4 s: the kept states are the whole pass's, and the
    recomputed ones attend over them, so the result is the whole pass (a separate pass over the part is not)."""
    encoder, wav = _encoder(), _noise(24000)
    window = WindowEncoder(encoder, WhisperLogMel(), 3)
    window.states(wav, 0, fresh=0)
    again, first = window.states(wav, 0, fresh=6400)
    whole = _whole(encoder, wav, 3)
    torch.testing.assert_close(again, whole, atol=1e-4, rtol=1e-3)
    tail = _whole(encoder, wav[-6400:], 3)  # the part alone: blind to the 1.1 s before it
    assert (tail - whole[-tail.shape[0]:]).abs().mean() > 10 * (again - whole).abs().mean()


def test_consecutive_windows_keep_their_states_on_the_streams_grid():
    """Windows whose starts move by 96 ms (4.8 grid points) each start at their first grid point inside, with the
    positions counted from there: recomputed whole, the last window is the whole pass over it."""
    encoder, signal = _encoder(), _noise(40000, seed=2)
    window = WindowEncoder(encoder, WhisperLogMel(), 3)
    width, step = 16000, 1536
    for start in range(0, signal.size - width, step):
        states, first = window.states(signal[start:start + width], start, fresh=width)  # all recomputed
    assert first == -(-start // GRID) > 0
    torch.testing.assert_close(states, _whole(encoder, signal[first * GRID:start + width], 3), atol=1e-5, rtol=1e-4)


def test_a_kept_state_is_the_same_instant_in_the_next_window():
    """Read with a part recomputed, the next window's kept rows are the rows the window before computed for the
    same grid points, whatever the windows' starts."""
    encoder, signal = _encoder(), _noise(40000, seed=3)
    window = WindowEncoder(encoder, WhisperLogMel(), 2)
    before, first_before = window.states(signal[1000:17000], 1000, fresh=0)
    after, first_after = window.states(signal[2536:18536], 2536, fresh=6400)
    kept = (18536 - 6400) // GRID + 1 - first_after  # rows before the recomputed part (a ceiling division)
    torch.testing.assert_close(after[:kept - 1], before[first_after - first_before:][:kept - 1])


def test_a_window_off_the_grid_is_aligned_to_the_mel_frames_by_its_offset():
    ramp = torch.arange(10.0).view(1, 1, 10)  # grid point `first + j` at j
    aligned = align_to_mel_frames(ramp, 4, 62.5, offset=-0.5)  # the window starts half a grid step before its first
    torch.testing.assert_close(aligned[0, 0], torch.tensor([0.0, 0.3, 1.1, 1.9]))
