"""Live conversion (vconv.inference.streaming): blocks of any size, the tail, bounded state, bad blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import vconv
from vconv.errors import VconvError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def vc():
    return vconv.load()


@pytest.fixture(scope="module")
def source(vc):
    return vc.prepare_audio(EXAMPLES / "source.wav", None)


@pytest.fixture(scope="module")
def target(vc):
    return vc.target_voice([EXAMPLES / "target.wav"])


def _run(stream, wav: np.ndarray, sizes) -> np.ndarray:
    out, i = [], 0
    for n in sizes:
        out.append(stream.push(wav[i : i + n]))
        i += n
        if i >= wav.size:
            break
    out.append(stream.flush())
    return np.concatenate(out)


def test_blocks_of_any_size_give_the_output_of_one_push(vc, source, target):
    # every stream in this file that compares outputs turns the 400 ms recent part off: recent_frontend "auto"
    # follows the machine's timing
    whole = _run(vc.stream(target, recent_frontend="off", busy_block_ms=0), source, [source.size])
    rng = np.random.default_rng(0)
    ragged = _run(vc.stream(target, recent_frontend="off", busy_block_ms=0), source, rng.integers(0, 3000, size=10_000))
    singles = _run(vc.stream(target, recent_frontend="off", busy_block_ms=0), source[:8000], [1] * 8000)
    assert whole.shape == ragged.shape == source.shape  # flush returns the tail: as long as the input
    np.testing.assert_allclose(ragged, whole, atol=1e-6)
    np.testing.assert_allclose(singles, _run(vc.stream(target, recent_frontend="off", busy_block_ms=0), source[:8000], [8000]), atol=1e-6)
    assert np.sqrt(np.mean(whole**2)) > 0.01  # speech came out, not silence


def test_output_trails_the_input_by_the_latency(vc, source, target):
    stream = vc.stream(target, recent_frontend="off", busy_block_ms=0, block_ms=80, lookahead_ms=64)
    assert stream.latency_ms == pytest.approx(144.0)  # 5 + 4 hops of 16 ms
    got = 0
    for start in range(0, 12 * 1280, 1280):
        got += stream.push(source[start : start + 1280]).size
        assert start + 1280 - got <= stream.block + stream.lookahead  # what is held back: at most the latency
    assert stream.flush().size == 12 * 1280 - got
    assert stream.flush().size == 0
    with pytest.raises(VconvError, match="flushed"):
        stream.push(source[:100])


def test_the_stream_is_primed_with_the_targets_own_speech(vc, source, target):
    """The primer is past context: read by the first windows, never emitted; without it the start differs."""
    import dataclasses

    rate, hop = vc.sample_rate, vc.features.hop_length
    assert target.primer is not None and target.primer.dtype == np.float32
    assert target.primer.size == min(int(3.0 * rate), vc.prepare_audio(EXAMPLES / "target.wav", None).size)
    stream = vc.stream(target, recent_frontend="off", busy_block_ms=0, context_ms=1000)
    assert stream._buffer_start == -stream.context and stream.context % hop == 0  # the last second of it, before sample 0
    np.testing.assert_array_equal(stream._buffer, target.primer[-stream.context:])
    primed = _run(stream, source, [source.size])
    plain = _run(vc.stream(target, recent_frontend="off", busy_block_ms=0, context_ms=1000, prime=False), source, [source.size])
    unprimed = dataclasses.replace(target, primer=None)
    unprimed_target = _run(vc.stream(unprimed, recent_frontend="off", busy_block_ms=0, context_ms=1000), source, [source.size])
    assert primed.shape == plain.shape == source.shape  # nothing of the primer comes out
    np.testing.assert_array_equal(plain, unprimed_target)  # prime=False is a target without a primer
    first = slice(0, rate // 4)
    assert np.abs(primed[first] - plain[first]).max() > 1e-3  # the first windows read the primer
    # past the context both streams read the same input: with matching off (its running statistics remember the
    # start), the same output
    unmatched = vconv.load(target_match="off")
    late = slice(source.size - rate, source.size)
    primed, plain = (_run(unmatched.stream(target, recent_frontend="off", busy_block_ms=0, context_ms=1000, prime=p), source, [source.size])
                     for p in (True, False))
    assert np.abs(primed[first] - plain[first]).max() > 1e-3
    np.testing.assert_allclose(primed[late], plain[late], atol=1e-6)


def test_the_first_blocks_take_the_spectrum_shape_from_the_converted_primer(vc, source, target):
    """Until a quarter second of the stream's own speech is converted, its spectrum is moved with the converted
    primer's band means (shape only); from then on by its own statistics alone, as without the primer's."""
    rate = vc.sample_rate
    seeded_stream = vc.stream(target, prime_matching=True, recent_frontend="off", busy_block_ms=0)  # exact comparison (see above)
    plain_stream = vc.stream(target, prime_matching=False, recent_frontend="off", busy_block_ms=0)
    assert vc.stream(target, recent_frontend="off", busy_block_ms=0).settings.prime_matching  # on by default
    seeded, plain = _run(seeded_stream, source, [source.size]), _run(plain_stream, source, [source.size])
    assert seeded_stream._primer_spectrum is not None and seeded_stream._primer_spectrum.trusted
    assert plain_stream._primer_spectrum is None
    first, late = slice(0, rate // 4), slice(rate, source.size)  # unmatched without the primer, matched with it
    assert np.abs(seeded[first] - plain[first]).max() > 1e-3
    np.testing.assert_allclose(seeded[late], plain[late], atol=1e-6)


def test_the_window_edge_is_held_only_where_it_is_speech(vc, source, target):
    from vconv.inference.streaming import _speech_at_edge

    hop = vc.features.hop_length
    loud = (0.3 * np.random.default_rng(2).standard_normal(50 * hop)).astype(np.float32)
    fading = loud.copy()
    fading[-2 * hop:] *= np.exp(-6.0)  # the last two hops 6 nats under the window's loud ones: a pause or a fade-out
    assert _speech_at_edge(loud, hop) and not _speech_at_edge(fading, hop)
    assert not _speech_at_edge(loud[: 2 * hop], hop)  # too short to tell
    held, plain = (_run(vc.stream(target, edge_hold_frames=n, recent_frontend="off", busy_block_ms=0), source, [source.size]) for n in (4, 0))
    assert held.shape == plain.shape == source.shape
    assert np.abs(held - plain).max() > 1e-3  # the example's speech has edges the hold changes
    rng = np.random.default_rng(3)
    np.testing.assert_allclose(_run(vc.stream(target, edge_hold_frames=4, recent_frontend="off", busy_block_ms=0), source,
                                    rng.integers(1, 4000, size=1000)), held,
                               atol=1e-6)  # still the output of one push


def test_state_stays_bounded_over_a_long_stream(vc, target):
    stream = vc.stream(target, recent_frontend="off", busy_block_ms=0, context_ms=500)
    noise = (0.05 * np.random.default_rng(1).standard_normal(16000 * 30)).astype(np.float32)
    held = []
    for start in range(0, noise.size, 1600):
        stream.push(noise[start : start + 1600])
        held.append(stream._buffer.size)
    assert max(held[10:]) <= stream.context + stream.block + stream.lookahead + 1600
    assert max(held[-20:]) <= max(held[10:30])  # no growth with the stream's length


def test_another_sample_rate_streams_in_and_out_at_that_rate(vc, source, target):
    from vconv.audio.io import resample

    wav48 = resample(source, 16000, 48000)
    out = _run(vc.stream(target, recent_frontend="off", busy_block_ms=0, sample_rate=48000), wav48, [4800] * 1000)
    assert abs(out.size - wav48.size) <= 3 and np.sqrt(np.mean(out**2)) > 0.01


@pytest.mark.parametrize(("block", "reason"), [
    (np.full(100, np.nan, np.float32), "100 NaN/Inf samples"),
    (np.zeros((100, 2), np.float32), "expected mono samples"),
    (np.zeros(100, np.int16), "expected float samples"),
])
def test_bad_blocks_are_one_line_errors(vc, target, block, reason):
    with pytest.raises(VconvError, match=reason) as err:
        vc.stream(target, recent_frontend="off", busy_block_ms=0).push(block)
    assert "\n" not in str(err.value)


def test_a_bad_rate_is_refused(vc, target):
    with pytest.raises(VconvError, match="stream sample rate"):
        vc.stream(target, recent_frontend="off", busy_block_ms=0, sample_rate=0)


def test_cli_stream_file_to_file_raw_pipe_and_wav_pipe(tmp_path):
    import subprocess
    import sys

    import soundfile as sf

    from tests.conftest import invoke

    out = tmp_path / "live.wav"
    result = invoke("stream", "--target", EXAMPLES / "target.wav", "--input", EXAMPLES / "source.wav", "--output", out)
    assert result.exit_code == 0, result.output
    assert "latency 144 ms (block 96 ms + look-ahead 48 ms)" in result.stderr
    assert "compute per block p50" in result.stderr and "missed their deadline" in result.stderr
    source, rate = sf.read(EXAMPLES / "source.wav", dtype="int16")
    converted, out_rate = sf.read(out, dtype="int16")
    assert out_rate == rate and converted.shape == source.shape and np.abs(converted).max() > 1000
    again = invoke("stream", "-t", EXAMPLES / "target.wav", "-i", EXAMPLES / "source.wav", "-o", out)
    assert again.exit_code == 1 and "already exists; pass --force" in again.stderr
    fitted = invoke("stream", "-t", EXAMPLES / "target.wav", "-i", EXAMPLES / "source.wav", "-o", tmp_path / "fit.wav",
                    "--fit-voice", 5)  # the stream converts in the voice fitted to the reference
    assert fitted.exit_code == 0, fitted.output
    fitted_audio = sf.read(tmp_path / "fit.wav", dtype="int16")[0]
    assert fitted_audio.shape == converted.shape and not np.array_equal(fitted_audio, converted)

    raw = subprocess.run([sys.executable, "-m", "vconv", "stream", "-t", str(EXAMPLES / "target.wav"), "--raw",
                          "--sample-rate", str(rate)], input=source.astype("<i2").tobytes(), capture_output=True, timeout=300)
    assert raw.returncode == 0, raw.stderr.decode()[-500:]
    assert len(raw.stdout) == 2 * source.size  # as long as the input, headerless
    piped = subprocess.run([sys.executable, "-m", "vconv", "stream", "-t", str(EXAMPLES / "target.wav")],
                           input=(EXAMPLES / "source.wav").read_bytes(), capture_output=True, timeout=300)
    assert piped.returncode == 0 and piped.stdout[:4] == b"RIFF" and len(piped.stdout) == 44 + 2 * source.size


@pytest.mark.parametrize(("args", "reason"), [
    (["--raw"], "--raw input needs --sample-rate N"),
    (["--input", "{src}", "--raw"], "--raw is for standard input/output"),
    (["--input", "{src}", "--sample-rate", "44100"], "the output keeps the input's rate"),
    (["--input", "{missing}"], "file not found"),
    (["--input", "{src}", "--target-match", "loud"], "--target-match 'loud': unknown"),
    (["--input", "{src}", "--fit-voice", "-4"], "--fit-voice -4"),
    (["--input", "{src}", "--block-ms", "5000"], "--block-ms 5000.0: a length in ms from 16 to 2000"),
    (["--input", "{src}", "--context-ms", "-1"], "--context-ms -1.0: a length in ms from 0 to 25000"),
])
def test_cli_stream_bad_options_are_one_line_errors(tmp_path, args, reason):
    from tests.conftest import invoke

    filled = [a.format(src=EXAMPLES / "source.wav", missing=tmp_path / "nope.wav") for a in args]
    result = invoke("stream", "-t", EXAMPLES / "target.wav", *filled, "-o", tmp_path / "o.wav")
    assert result.exit_code == 1, result.output
    assert reason in result.stderr and result.stderr.strip().count("\n") == 0 and "Traceback" not in result.output
    assert not list(tmp_path.glob("*o.*wav"))  # no output, no temporary file left behind


def test_stream_settings_are_checked_once_naming_the_option_as_the_caller_knows_it(vc, target):
    """One table of the stream's defaults and bounds (vconv.inference.stream_settings): the API and the command line
    both check through it; options given by name change a settings object, an unknown name is a TypeError."""
    import dataclasses

    from vconv.inference.stream_settings import CLI_NAMES, DEFAULTS, StreamSettings

    with pytest.raises(VconvError, match="^block_ms 5: a length in ms from 16 to 2000$"):
        vc.stream(target, block_ms=5)
    with pytest.raises(VconvError, match="^--recent-frontend 'soon': one of auto, on, off$"):
        StreamSettings(recent_frontend="soon", names=CLI_NAMES)
    with pytest.raises(VconvError, match="edge_hold_frames -1"):
        StreamSettings(edge_hold_frames=-1)
    with pytest.raises(VconvError, match="frontend_fresh_ms 'x'"):
        dataclasses.replace(DEFAULTS, frontend_fresh_ms="x")
    with pytest.raises(TypeError, match="unknown stream setting.*blok_ms"):
        vc.stream(target, blok_ms=128)
    asked = StreamSettings(block_ms=128, recent_frontend="off", busy_block_ms=0)
    stream = vc.stream(target, asked, context_ms=1500)
    assert stream.settings == dataclasses.replace(asked, context_ms=1500.0)
    assert stream.latency_ms == pytest.approx(128 + 48) and abs(stream.context / vc.sample_rate - 1.5) <= 0.008
    assert vc.stream(target, busy_block_ms=0).settings == dataclasses.replace(DEFAULTS, busy_block_ms=0.0)


class _LocalFrontEnd:
    """A content front-end whose states are local (each frame's mean magnitude), so a recomputed tail and the reused
    past must give exactly the whole window's states; it counts the samples it was given."""

    def __init__(self, hop: int) -> None:
        self.hop, self.samples_read = hop, 0

    def content_input(self, wav: np.ndarray):
        import torch

        self.samples_read += wav.size
        frames = 1 + wav.size // self.hop
        padded = np.pad(np.abs(wav), (0, frames * self.hop - wav.size))
        return torch.from_numpy(padded.reshape(frames, self.hop).mean(1))[None, None]

    def window_content(self):
        return None  # local frames: read as the log-mel is, its states reused (FrontEnd.window_content)


def test_the_content_front_end_recomputes_only_the_recent_part_of_a_window():
    from vconv.inference.stream_content import RecentContent

    hop, block, context = 160, 1600, 24000  # the stream rounds block and context to whole hops
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(60000).astype(np.float32)
    whole, recent = _LocalFrontEnd(hop), _LocalFrontEnd(hop)
    cache = RecentContent(recent, hop, recent=6400, margin=4000, mode="on")
    for start in range(0, signal.size - block - 800, block):  # windows as the stream cuts them: context + block + look-ahead
        window_start = max(0, start - context)
        window = signal[window_start : start + block + 800]
        expected = whole.content_input(window)
        got = cache.states(window, window_start)
        assert got.shape == expected.shape and np.allclose(got.numpy(), expected.numpy())
    assert recent.samples_read < 0.5 * whole.samples_read  # the long windows read only their tails
    assert cache.blocks_on > 0


def test_a_long_past_is_read_at_the_cost_of_the_fresh_part_and_not_counted_as_short_of_time():
    from vconv.inference.stream_content import RecentContent

    hop, block, context, fresh, margin = 160, 1600, 48000, 22400, 4000  # 3 s of past, 1.4 s recomputed
    rng = np.random.default_rng(1)
    signal = rng.standard_normal(120000).astype(np.float32)
    whole, reader = _LocalFrontEnd(hop), _LocalFrontEnd(hop)
    cache = RecentContent(reader, hop, recent=6400, margin=margin, mode="off", fresh=fresh)
    reads = []
    for start in range(0, signal.size - block - 800, block):
        window_start = max(0, start - context)
        window = signal[window_start : start + block + 800]
        before = reader.samples_read
        got = cache.states(window, window_start)
        reads.append(reader.samples_read - before)
        expected = whole.content_input(window)
        assert got.shape == expected.shape and np.allclose(got.numpy(), expected.numpy())
    assert max(reads[1:]) <= fresh + margin + hop  # after the first window, never more than the fresh part is read
    assert reads[-1] < 0.6 * (context + block + 800)  # while the window itself holds the whole 3 s of past
    assert cache.blocks_on == 0  # reading the fresh part is not a stream short of time
    assert RecentContent(reader, hop, recent=6400, margin=margin, fresh=3200).fresh == 6400  # never under the recent part


def test_a_stream_short_of_time_reads_the_recent_part_of_a_long_past_and_the_fresh_part_when_calm():
    from vconv.inference.stream_content import CALM_BLOCKS, WARM_BLOCKS, RecentContent

    hop, block, context, fresh, recent, margin = 160, 1600, 48000, 22400, 6400, 4000
    signal = np.random.default_rng(2).standard_normal(120000).astype(np.float32)
    whole, reader = _LocalFrontEnd(hop), _LocalFrontEnd(hop)
    cache = RecentContent(reader, hop, recent=recent, margin=margin, mode="auto", block_seconds=0.1, fresh=fresh)
    for _ in range(WARM_BLOCKS):
        cache.record(0.05)
    starts = list(range(0, signal.size - block - 800, block))

    def convert(start: int) -> int:
        window_start = max(0, start - context)
        window = signal[window_start : start + block + 800]
        before = reader.samples_read
        assert np.allclose(cache.states(window, window_start).numpy(), whole.content_input(window).numpy())
        return reader.samples_read - before

    for start in starts[:40]:
        convert(start)
    cache.record(0.095)  # short of time (within 10 % of the deadline): the recent part
    assert cache.active and convert(starts[40]) <= recent + margin + hop and cache.blocks_on == 1
    cache.resize(8000, 0.2)  # the block grew: the fresh part never falls under the recent one
    assert cache.recent == 8000 and cache.fresh == fresh
    for _ in range(CALM_BLOCKS):
        cache.record(0.05)
    assert not cache.active
    assert recent + margin + hop < convert(starts[41]) <= fresh + margin + hop and cache.blocks_on == 1


def test_the_recent_part_is_read_only_while_the_stream_is_short_of_time():
    from vconv.inference.stream_content import CALM_BLOCKS, ON_COUNT, ON_WINDOW, WARM_BLOCKS, RecentContent

    frontend = _LocalFrontEnd(160)
    auto = RecentContent(frontend, 160, recent=6400, margin=4000, mode="auto", block_seconds=0.1)
    for _ in range(WARM_BLOCKS):
        auto.record(0.5)  # the first blocks pay the networks' cold start: not a sign of a busy machine
    assert not auto.active
    auto.record(0.05)
    assert not auto.active  # idle: the fresh part (here, with fresh=0, the whole window)
    for _ in range(ON_WINDOW):  # an idle machine's jitter: a block over 80 % now and then is not short of time
        auto.record(0.085 if _ % (ON_WINDOW // (ON_COUNT - 1) + 1) == 0 else 0.05)
    assert not auto.active
    for _ in range(ON_WINDOW):  # the jitter's blocks leave the window
        auto.record(0.05)
    for _ in range(ON_COUNT - 1):
        auto.record(0.085)
    assert not auto.active
    auto.record(0.085)  # ON_COUNT of the last ON_WINDOW blocks over 80 %: the next ones read the recent part
    assert auto.active
    for number in range(2 * CALM_BLOCKS - 1):  # calm: none over 80 % (70 % counts); one over it starts the count again
        auto.record(0.085 if number == CALM_BLOCKS - 1 else 0.07)
        assert auto.active
    auto.record(0.07)
    assert not auto.active  # 50 in a row none over 80 %
    auto.record(0.095)  # one block over 90 % of its duration is enough
    assert auto.active
    off = RecentContent(frontend, 160, recent=6400, margin=4000, mode="off", block_seconds=0.1)
    off.record(1.0)
    assert not off.active
    with pytest.raises(VconvError, match="one of auto, on, off"):
        RecentContent(frontend, 160, recent=6400, margin=4000, mode="sometimes")


def test_a_stream_with_the_recent_content_front_end_converts_every_sample(vc, source, target):
    stream = vc.stream(target, recent_frontend="on")
    out = _run(stream, source, [1536] * 1000)
    assert stream.short_blocks > 0
    assert out.size == source.size and np.isfinite(out).all() and np.abs(out).max() > 0.01


def test_stream_cli_checks_the_recent_front_end_mode_before_loading_and_says_how_many_blocks_used_it(tmp_path):
    from tests.conftest import invoke

    bad = invoke("stream", "-t", EXAMPLES / "target.wav", "-i", EXAMPLES / "source.wav", "-o", tmp_path / "x.wav",
                 "--recent-frontend", "sometimes")
    assert bad.exit_code != 0 and "one of auto, on, off" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x.wav").exists()
    on = invoke("stream", "-t", EXAMPLES / "target.wav", "-i", EXAMPLES / "source.wav", "-o", tmp_path / "on.wav",
                "--recent-frontend", "on")
    assert on.exit_code == 0, on.output
    assert (tmp_path / "on.wav").is_file() and "missed their deadline" in on.output


def test_standard_input_from_a_pipe_has_deadlines_and_from_a_file_does_not(tmp_path, monkeypatch):
    """`--recent-frontend auto` stays available to a recorder piped in; `< file.wav` is read as fast as it goes."""
    import io
    import os

    from vconv.cli.stream import STDIO, _live_stdin, _stream_settings

    reading, writing = os.pipe()
    try:
        with os.fdopen(reading, "rb", closefd=False) as pipe:
            monkeypatch.setattr("sys.stdin", pipe)
            assert _live_stdin(STDIO) and not _live_stdin(tmp_path / "a.wav")
    finally:
        os.close(reading)
        os.close(writing)
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    with open(tmp_path / "a.wav", "rb") as regular:
        monkeypatch.setattr("sys.stdin", regular)
        assert not _live_stdin(STDIO)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no descriptor at all (a captured stdin)
    assert not _live_stdin(STDIO)
    assert _stream_settings(True).recent_frontend == "auto" and _stream_settings(True).busy_block_ms == 192
    assert _stream_settings(False).recent_frontend == "off" and _stream_settings(False).busy_block_ms == 0
    assert _stream_settings(False, recent_frontend="on").recent_frontend == "on"


def test_a_stream_too_slow_for_its_block_grows_it_once_and_loses_no_sample(vc, source, target, monkeypatch):
    import vconv.inference.streaming as streaming
    from vconv.inference.stream_pace import LATE_LIMIT

    plain = _run(vc.stream(target, recent_frontend="off", busy_block_ms=0), source, [source.size])
    clock = iter(np.arange(0.0, 1e6, 0.25))  # every block appears to take 0.25 s: longer than a 96 or 192 ms block
    monkeypatch.setattr(streaming.time, "perf_counter", lambda: float(next(clock)))
    stream = vc.stream(target, recent_frontend="off", busy_block_ms=192)
    first = stream.block
    grown = _run(stream, source, [1536] * 1000)
    assert stream.grown_after == LATE_LIMIT and stream.block == 2 * first  # once, after the limit
    assert stream.latency_ms == pytest.approx(240.0)
    assert grown.shape == source.shape and np.all(np.isfinite(grown))
    blocks = stream.grown_after * first
    np.testing.assert_allclose(grown[:blocks], plain[:blocks], atol=1e-6)  # the same until the block grew
    durations = list(stream.times.durations)
    assert durations[: stream.grown_after] == [pytest.approx(first / vc.sample_rate)] * stream.grown_after
    assert max(durations[stream.grown_after:]) == pytest.approx(2 * first / vc.sample_rate)
    assert stream.times.late == len(durations)  # 0.25 s each: every block late
    assert np.sqrt(np.mean(grown[blocks:] ** 2)) > 0.01  # the grown blocks carry speech


def test_the_block_grows_only_on_repeated_late_blocks_and_never_when_asked_not_to():
    from vconv.inference.stream_pace import LATE_LIMIT, LATE_WINDOW, BlockPace

    pace = BlockPace(1536, 3072)
    for i in range(3 * LATE_WINDOW):  # one late block in every LATE_WINDOW: a hiccup, not a busy machine
        assert not pace.record(0.2 if i % LATE_WINDOW == 0 else 0.05, 0.096)
    assert [pace.record(0.2, 0.096) for _ in range(LATE_LIMIT)][-1] and pace.grown_after is not None
    assert not pace.record(0.2, 0.192)  # once only
    never = BlockPace(1536, 0)
    assert not any(never.record(1.0, 0.096) for _ in range(50)) and never.grown_after is None
    assert BlockPace(1536, 1536).grow_to == 0  # not larger: nothing to grow to


def test_stream_summary_says_when_and_to_what_the_block_grew(capsys):
    from types import SimpleNamespace

    from vconv.cli.stream import _summarise
    from vconv.inference.stream_run import StreamReport

    live = SimpleNamespace(first_block=1536, block=3072, model_rate=16000, latency_ms=240.0, grown_after=6, short_blocks=0)
    _summarise(StreamReport(block_seconds=[0.05, 0.2]), live, SimpleNamespace(), "auto")
    err = capsys.readouterr().err
    assert "(block 96 ms)" in err and "after 6 blocks they grew to 192 ms (latency 240 ms" in err
    _summarise(StreamReport(block_seconds=[0.05]), SimpleNamespace(**{**vars(live), "grown_after": None, "block": 1536}),
               SimpleNamespace(), "auto")
    assert "grew" not in capsys.readouterr().err


def test_the_file_conversion_and_the_stream_keep_the_model_s_spread_in_the_melody_s_bands(vc, source, target, monkeypatch):
    # both paths hand the matching the bands' centres, so the bands under SPREAD_FROM_HZ keep the model's spread
    import vconv.inference.converter as converter
    import vconv.inference.streaming as streaming
    from vconv.inference.target_match import match_spectrum

    calls = []

    def recording(*args, **kwargs):
        calls.append(kwargs.get("band_centres"))
        return match_spectrum(*args, **kwargs)

    monkeypatch.setattr(converter, "match_spectrum", recording)
    monkeypatch.setattr(streaming, "match_spectrum", recording)
    vc.convert_wav(source[:16000], target)
    offline = len(calls)
    _run(vc.stream(target, recent_frontend="off", busy_block_ms=0), source[:16000], [16000])
    assert 0 < offline < len(calls)
    assert all(c is not None and c.shape == (vc.features.n_mels,) and float(c.min()) < 600 < float(c.max()) for c in calls)


def test_warm_up_pushes_its_blocks_of_the_primers_tail_through_the_twin_once():
    from types import SimpleNamespace

    from vconv.inference.stream_pace import WARM_UP_BLOCKS, warm_up

    pushed: list[np.ndarray] = []
    made: list[int] = []

    def make_twin():
        made.append(1)
        return SimpleNamespace(block=1536, sample_rate=48000, model_rate=16000, push=pushed.append,
                               flush=lambda: pushed.append(np.zeros(0, np.float32)))

    class Converter:  # any object a weak reference can point to
        pass

    converter = Converter()
    live = SimpleNamespace(converter=converter, settings="settings", sample_rate=48000)
    speech = np.arange(1.0, 6001.0, dtype=np.float32)
    warm_up(make_twin, live, speech)
    assert [p.size for p in pushed] == [3 * 1536] * WARM_UP_BLOCKS + [0]  # blocks at the input rate, then the flush
    joined = np.concatenate(pushed)
    assert np.all(joined[: joined.size - speech.size] == 0) and np.array_equal(joined[-speech.size:], speech)
    warm_up(make_twin, live, speech)  # the same converter, settings and rate: warm already
    assert len(made) == 1
    pushed.clear()
    warm_up(make_twin, SimpleNamespace(converter=converter, settings="other", sample_rate=48000), None)
    assert len(made) == 2 and len(pushed) == WARM_UP_BLOCKS + 1 and not np.any(np.concatenate(pushed))  # silence


def test_a_live_stream_is_warmed_up_once_and_converts_as_an_unwarmed_one(vc, source, target, monkeypatch):
    import vconv.inference.streaming as streaming
    from vconv.inference.stream_pace import _WARMED

    monkeypatch.setattr(streaming.time, "perf_counter", lambda: 0.0)  # every block in no time: none late, none grows
    _WARMED.pop(vc, None)
    plain = _run(vc.stream(target, recent_frontend="off", busy_block_ms=0), source, [1536] * 1000)
    live = vc.stream(target, recent_frontend="off")  # may grow: warmed up by a twin
    assert live.can_grow and (live.settings, live.sample_rate) in _WARMED[vc]
    np.testing.assert_array_equal(_run(live, source, [1536] * 1000), plain)


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_the_streams_content_front_end_runs_in_the_networks_arithmetic_and_a_files_in_float32(source, precision, monkeypatch):
    """A stream's blocks run Whisper under the converter's arithmetic (bfloat16 took ~8 ms off a ~50 ms block and kept
    the words, docs/STREAMING.md); a file conversion's front-end stays float32 whatever it is."""
    import torch

    converter = vconv.load(precision=precision)
    seen: list[object] = []
    real = type(converter.frontend).content_input

    def recording(frontend, wav):
        seen.append((torch.ones(1, 1) @ torch.ones(1, 1)).dtype)  # what a product computes in here
        return real(frontend, wav)

    monkeypatch.setattr(type(converter.frontend), "content_input", recording)
    from vconv.audio.whisper_stream import WindowEncoder  # a stream's Whisper windows

    window_states = WindowEncoder.states

    def recording_window(encoder, *args):
        seen.append((torch.ones(1, 1) @ torch.ones(1, 1)).dtype)
        return window_states(encoder, *args)

    monkeypatch.setattr(WindowEncoder, "states", recording_window)
    target = converter.target_voice([EXAMPLES / "target.wav"])
    seen.clear()
    _run(converter.stream(target, busy_block_ms=0.0, recent_frontend="off"), source[:16000], [1536] * 11)
    assert seen and set(seen) == {getattr(torch, precision)}
    seen.clear()
    converter.convert_wav(source[:16000], target)
    assert seen == [torch.float32]
