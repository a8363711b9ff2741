"""The Whisper encoder over a stream's windows (vconv.audio.whisper_stream): its recomputed part attends over the kept
states of the whole window, on an absolute 20 ms grid. A small random encoder: the arithmetic, not the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vconv.audio.whisper import WhisperEncoder, WhisperEncoderConfig, WhisperLogMel
from vconv.audio.whisper_stream import GRID, WindowEncoder
from vconv.errors import VconvError
from vconv.frontends.whisper import align_to_mel_frames


def _encoder(final_norm: bool = False, positions: int = 400) -> WhisperEncoder:
    torch.manual_seed(0)
    config = WhisperEncoderConfig(width=64, heads=4, layers=3, positions=positions, final_norm=final_norm)
    encoder = WhisperEncoder(config)
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
    encoder, wav = _encoder(final_norm=True), _noise(16000)
    window = WindowEncoder(encoder, WhisperLogMel(), 3)  # the last block: the final norm too
    states, first = window.states(wav, 3 * GRID, fresh=0)
    assert first == 3 and not window.reused
    torch.testing.assert_close(states, _whole(encoder, wav, 3), atol=1e-5, rtol=1e-4)


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


def test_consecutive_windows_read_whole_start_on_the_streams_grid():
    """Windows whose starts move by 96 ms (4.8 grid points) each start at their first grid point inside, with the
    positions counted from there: recomputed whole, the last window is the whole pass over it."""
    encoder, signal = _encoder(), _noise(40000, seed=2)
    window = WindowEncoder(encoder, WhisperLogMel(), 3)
    width, step = 16000, 1536
    for start in range(0, signal.size - width, step):
        states, first = window.states(signal[start:start + width], start, fresh=width)  # all recomputed
    assert first == -(-start // GRID) > 0
    torch.testing.assert_close(states, _whole(encoder, signal[first * GRID:start + width], 3), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("start", [1000, -2500])  # a primed stream's windows start before its sample 0
def test_the_next_window_keeps_exactly_the_states_before_its_recomputed_part(start):
    """The next window (96 ms on, its new tail different) keeps the rows of every grid point before
    ``ceil((end - fresh) / 320)``, the same instants' rows of the window before, and recomputes the rest: each of those
    attends over the new tail, so none is the window before's."""
    encoder, signal = _encoder(), _noise(40000, seed=3)
    window = WindowEncoder(encoder, WhisperLogMel(), 2)
    width, fresh = 16000, 6400
    offset = 4000  # signal index of the stream's sample 0
    before, first_before = window.states(signal[offset + start:offset + start + width], start, fresh=0)
    nxt = start + 1536
    after, first_after = window.states(signal[offset + nxt:offset + nxt + width], nxt, fresh=fresh)
    assert window.reused and first_after == -(-nxt // GRID) and first_before == -(-start // GRID)
    recompute_from = -(-(nxt + width - fresh) // GRID)
    kept = recompute_from - first_after
    shared = before[first_after - first_before:]
    torch.testing.assert_close(after[:kept], shared[:kept], atol=0, rtol=0)
    assert (after[kept:kept + shared.shape[0] - kept] - shared[kept:]).abs().amax(1).min() > 1e-4


def test_a_fresh_part_longer_than_the_window_reads_it_whole():
    encoder, wav = _encoder(), _noise(16000)
    window = WindowEncoder(encoder, WhisperLogMel(), 2)
    window.states(wav, 0, fresh=0)
    states, _ = window.states(wav, 0, fresh=10 * wav.size)
    assert not window.reused
    torch.testing.assert_close(states, _whole(encoder, wav, 2), atol=1e-5, rtol=1e-4)


def test_a_window_longer_than_whispers_positions_is_a_one_line_error():
    window = WindowEncoder(_encoder(positions=20), WhisperLogMel(), 2)  # 20 positions: 0.4 s
    with pytest.raises(VconvError, match="Whisper reads at most") as err:
        window.states(_noise(8000), 0)
    assert "\n" not in str(err.value)


def test_a_window_too_short_for_the_grid_is_read_whole_from_its_start():
    """A stream with almost no context (a 16 ms block, nothing else): its 256-sample window is read as a file's."""
    from types import SimpleNamespace

    from vconv.frontends.whisper import WhisperContent

    part = WhisperContent(layer=2)
    part.encoder = _encoder()
    frontend = SimpleNamespace(cfg=SimpleNamespace(sample_rate=16000, hop_length=256))
    read = part.window_states(frontend)
    for start in (0, 256, 512):
        states, reused = read(_noise(256, seed=start), start, 0)
        assert states.shape == (64, 2) and not reused and torch.isfinite(states).all()


def test_a_window_off_the_grid_is_aligned_to_the_mel_frames_by_its_offset():
    ramp = torch.arange(10.0).view(1, 1, 10)  # grid point `first + j` at j
    aligned = align_to_mel_frames(ramp, 4, 62.5, offset=-0.5)  # the window starts half a grid step before its first
    torch.testing.assert_close(aligned[0, 0], torch.tensor([0.0, 0.3, 1.1, 1.9]))
