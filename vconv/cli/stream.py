"""`vconv stream`: live conversion from a file, a pipe or a microphone to a file, a pipe or a loudspeaker
(:mod:`vconv.inference.streaming`; the devices: :mod:`vconv.audio.live`).

Everything the user gave is checked (the input opened, the output's place, the target references) before
the model loads; the algorithmic latency is printed once at the start and the compute per block when the
stream ends (at the end of the input, or on Ctrl-C, which flushes what came in).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from vconv.cli.common import (
    FIT_VOICE_HELP,
    PRECISION_HELP,
    TARGET_MATCH_HELP,
    conversion_settings,
    echo_out,
    enhance_option,
    friendly_errors,
    load_converter,
    no_cache_option,
    pitch_options,
    threads_option,
)
from vconv.errors import VconvError
from vconv.inference.stream_settings import BOUNDS_MS, DEFAULTS, StreamSettings
from vconv.inference.stream_settings import CLI_NAMES as STREAM_CLI_NAMES
from vconv.inference.threads import apply_threads

STDIO = Path("-")
# the stream's small per-block calls: one thread (measured in benchmarks/bench_stream.py, idle and beside competing
# processes; see docs/STREAMING.md "A busy machine")
STREAM_THREADS = 1
STREAM_THREADS_HELP = (f"Compute threads (default {STREAM_THREADS}: the stream's per-block work measures best on one, idle and on a "
                       "busy machine). Idle threads sleep rather than spin.")


def _bounded(help_text: str, key: str) -> str:
    """``help_text`` with the option's allowed range (:data:`vconv.inference.stream_settings.BOUNDS_MS`)."""
    low, high = BOUNDS_MS[key]
    return f"{help_text} From {low:g} to {high:g}."


@friendly_errors
def stream(
    target: List[Path] = typer.Option([], "--target", "-t", readable=False, help="Target speaker reference (a file); repeat to average several. Or a voice file (`vconv voice`), alone."),
    input_path: Path = typer.Option(STDIO, "--input", "-i", readable=False, help="Audio file to stream from, or - for standard input (a WAV stream, or headerless PCM with --raw)."),
    output: Path = typer.Option(STDIO, "--output", "-o", readable=False, help="Output .wav/.flac/.ogg file, or - for standard output (a WAV stream, or headerless PCM with --raw)."),
    block_ms: float = typer.Option(DEFAULTS.block_ms, "--block-ms", help=_bounded("Block length in ms (rounded to whole 16 ms hops); the latency is the block plus the look-ahead.", "block_ms")),
    lookahead_ms: float = typer.Option(DEFAULTS.lookahead_ms, "--lookahead-ms", help=_bounded("Look-ahead in ms: more costs latency and gives the model's right edge more room.", "lookahead_ms")),
    context_ms: float = typer.Option(DEFAULTS.context_ms, "--context-ms", help=_bounded("Left context in ms that each block is converted with (the content front-end recomputes the window's last ~1.4 s every block, attending over the kept states of the rest).", "context_ms")),
    prime: bool = typer.Option(DEFAULTS.prime, "--prime/--no-prime", help="Start with the target's own speech as left context (never output), so the first blocks are not normalised on a few frames."),
    busy_block_ms: float = typer.Option(DEFAULTS.busy_block_ms, "--busy-block-ms", help=_bounded("The block grows to this (once) when blocks keep missing their deadlines on a busy machine: more latency instead of gaps. 0 (or not longer than --block-ms) never grows it; a file read as fast as it goes never does.", "busy_block_ms")),
    recent_frontend: str = typer.Option(DEFAULTS.recent_frontend, "--recent-frontend", metavar="auto|on|off", help="Recompute only the last 400 ms of the content front-end per block (cheaper, costs some words): auto = while blocks come near their deadline (a busy machine), on = always, off = never."),
    raw: bool = typer.Option(False, "--raw", help="Standard input/output is headerless 16-bit little-endian PCM (mono out; --channels in)."),
    sample_rate: Optional[int] = typer.Option(None, "--sample-rate", help="Rate of raw input (required with --raw on standard input); the output keeps the input's rate."),
    channels: int = typer.Option(1, "--channels", min=1, max=16, help="Interleaved channels of raw input (mixed to mono)."),
    source_voice: List[Path] = typer.Option([], "--source-voice", readable=False, help="Your own voice, for a model with the pitch path: a recording of the speaker being streamed (repeat for several), or a voice file (`vconv voice`) of it, alone. The stream starts in its pitch register instead of learning it over the first seconds, so a short stream keeps the melody better (docs/STREAMING.md)."),
    realtime: bool = typer.Option(False, "--realtime", help="Read a file at the pace it plays (as a microphone would), not as fast as possible."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle name or folder; default: the shipped model."),
    target_match: str = typer.Option("meanstd", "--target-match", help=TARGET_MATCH_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    fit_voice: int = typer.Option(0, "--fit-voice", metavar="STEPS", help=FIT_VOICE_HELP),
    pitch_shift: float = pitch_options()[0],
    pitch_register: str = pitch_options()[1],
    enhance: str = enhance_option(),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    input_device: Optional[str] = typer.Option(None, "--input-device", help="Capture from a microphone instead: its number or part of its name in --list-devices, or 'default' (needs vconv[live])."),
    output_device: Optional[str] = typer.Option(None, "--output-device", help="Play on a loudspeaker instead of writing: its number or part of its name, or 'default' (needs vconv[live])."),
    list_devices: bool = typer.Option(False, "--list-devices", help="List the audio devices (needs vconv[live]) and exit."),
    no_cache: bool = no_cache_option(),
    threads: Optional[int] = threads_option(STREAM_THREADS_HELP),
) -> None:
    """Convert a stream as it comes, block by block, with bounded latency (file or standard input to file or standard
    output). Prints the latency, then the compute per block (p50/p95/p99) and deadline misses; Ctrl-C keeps what came in."""
    if list_devices:
        from vconv.audio.live import list_devices as devices

        echo_out(devices())
        return
    apply_threads(threads or STREAM_THREADS)
    live = realtime or input_device is not None or _live_stdin(input_path)
    options = _stream_settings(live, block_ms=block_ms, lookahead_ms=lookahead_ms, context_ms=context_ms, prime=prime,
                               busy_block_ms=busy_block_ms, recent_frontend=recent_frontend)
    settings = conversion_settings(target_match=target_match, precision=precision, fit_steps=fit_voice,
                                   pitch_shift=pitch_shift, pitch_register=pitch_register, enhance=enhance)
    _check_target(target)
    _check_source_voice(source_voice)
    _check_sources(input_path, output, input_device, output_device, raw, realtime, [*target, *source_voice])
    if raw and input_path == STDIO and sample_rate is None and input_device is None:
        raise VconvError("--raw input needs --sample-rate N (headerless PCM does not say its rate)")
    reader = _open_reader(input_path, raw, sample_rate, channels, input_device)
    if sample_rate is not None and sample_rate != reader.sample_rate:
        raise VconvError(f"--sample-rate {sample_rate}: {input_path} is {reader.sample_rate} Hz, and the output keeps the input's rate")
    writer = _open_writer(output, raw, reader.sample_rate, force, output_device)
    try:
        report, converter_stream = _run(target, reader, writer, model, settings, options, realtime, no_cache, source_voice)
    except BaseException:
        writer.abort()
        raise
    finally:
        getattr(reader, "close", lambda: None)()
    _summarise(report, converter_stream, reader, options.recent_frontend)


def _summarise(report: Any, live: Any, reader: Any, recent_frontend: str) -> None:
    """The run's summary on stderr: compute per block and misses, and what a busy machine changed."""
    first_block_ms = 1000 * live.first_block / live.model_rate
    typer.echo(report.summary(first_block_ms), err=True)
    if live.grown_after is not None:
        typer.echo(f"the machine was too busy for {first_block_ms:.0f} ms blocks: after {live.grown_after} blocks they grew to "
                   f"{1000 * live.block / live.model_rate:.0f} ms (latency {live.latency_ms:.0f} ms; --busy-block-ms 0 keeps "
                   "the block)", err=True)
    if live.short_blocks and recent_frontend == "auto":
        typer.echo(f"{live.short_blocks} block(s) read only the front-end's recent part (short of time; "
                   "--recent-frontend off never does)", err=True)
    if getattr(reader, "dropped_seconds", 0.0) > 0:  # a microphone whose stream fell behind (vconv.audio.live)
        typer.echo(f"dropped {reader.dropped_seconds:.1f} s of microphone audio while the conversion was behind", err=True)


def _live_stdin(input_path: Path) -> bool:
    """Whether the input is standard input fed as it is made (a pipe or a socket from a recorder): its blocks have
    deadlines. ``< file.wav`` (a regular file) is read as fast as it goes, as a named file is."""
    if input_path != STDIO:
        return False
    try:
        return not stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # no real descriptor (a test's captured stdin): as a file
        return False


def _stream_settings(live: bool, **values: Any) -> StreamSettings:
    """The stream's options, checked, errors naming the flags. Without deadlines (a file read as fast as it goes) the
    block stays the one asked for and ``--recent-frontend auto`` is ``off``: no deadline to be short of, every word,
    and the same output every run."""
    options = StreamSettings(**values, names=STREAM_CLI_NAMES)
    if live:
        return options
    recent = "off" if options.recent_frontend == "auto" else options.recent_frontend
    return dataclasses.replace(options, busy_block_ms=0.0, recent_frontend=recent)


def _run(target: List[Path], reader: Any, writer: Any, model: Optional[str], settings: Any, options: StreamSettings,
         realtime: bool, no_cache: bool = False, source_voice: Optional[List[Path]] = None) -> tuple[Any, Any]:
    from vconv.inference.stream_run import run_stream

    converter = load_converter(model, settings, no_cache=no_cache)
    live = converter.stream([str(t) for t in target], options, sample_rate=reader.sample_rate,
                            source_voice=[str(v) for v in source_voice] if source_voice else None)
    _note_stale_source_voice(converter, source_voice or [])
    typer.echo(f"latency {live.latency_ms:.0f} ms (block {1000 * live.block / live.model_rate:.0f} ms + look-ahead "
               f"{1000 * live.lookahead / live.model_rate:.0f} ms), plus the device's own", err=True)
    return run_stream(live, reader, writer, realtime=realtime), live


def _check_target(target: List[Path]) -> None:
    """The target (audio references, or one voice file), before the model loads or a device opens."""
    from vconv.audio.io import inspect_audio
    from vconv.inference.voice_file import check_target_files

    if not target:
        raise VconvError("give the target voice: --target REF.wav (repeat for several references) or --target NAME.voice")
    check_target_files(target, inspect_audio)


def _note_stale_source_voice(converter: Any, source_voice: List[Path]) -> None:
    """A note on stderr for a ``--source-voice`` voice file whose register was measured under older pitch rules."""
    from vconv.inference.voice_file import stale_register_note, voice_file_in

    path = voice_file_in([str(v) for v in source_voice])
    note = stale_register_note(converter.open_voice(path), path) if path is not None else None
    if note:
        typer.echo(note, err=True)


def _check_source_voice(source_voice: List[Path]) -> None:
    """``--source-voice`` (recordings of the streamed speaker, or one voice file), before the model loads."""
    from vconv.audio.io import inspect_audio
    from vconv.inference.voice_file import check_target_files

    if source_voice:
        check_target_files(source_voice, inspect_audio)


def _check_sources(input_path: Path, output: Path, input_device: Optional[str], output_device: Optional[str],
                   raw: bool, realtime: bool, target: List[Path]) -> None:
    """One input and one output: a device excludes a file or pipe on the same side; the output file is none of
    the files read."""
    if input_device is not None and input_path != STDIO:
        raise VconvError("give either --input or --input-device, not both")
    if output_device is not None and output != STDIO:
        raise VconvError("give either --output or --output-device, not both")
    if input_device is not None and realtime:
        raise VconvError("--realtime paces a file; a microphone keeps its own pace")
    if raw and input_device is not None and output_device is not None:
        raise VconvError("--raw is for standard input/output; with two devices there is neither")
    _check_not_an_input(output, input_path if input_device is None else None, target)


def _check_not_an_input(output: Path, input_path: Optional[Path], target: List[Path]) -> None:
    """Refuse an output file that is the input file or a target reference (also through a link), as ``convert``
    does: with --force it would be written over while it is read, and the user's own audio would be lost."""
    from vconv.fileio import check_distinct_outputs

    if output != STDIO:
        source = input_path if input_path is not None and input_path != STDIO else None
        check_distinct_outputs([(source, output)], [(ref, "target reference") for ref in target])


def _standard(name: str, stream: Any) -> Any:
    """The binary side of standard input or output; a closed one (``<&-``, ``>&-``: Python then has None) is a
    one-line error before anything is read or converted."""
    if stream is None:
        side = "input" if name == "stdin" else "output"
        option = "--input FILE" if name == "stdin" else "--output FILE"
        raise VconvError(f"standard {side} is closed; give {option}, or open it (a pipe or a redirection)")
    return stream.buffer


def _open_reader(path: Path, raw: bool, sample_rate: Optional[int], channels: int, device: Optional[str] = None) -> Any:
    from vconv.audio.pcm_stream import FileReader, RawReader, WavPipeReader

    if device is not None:
        from vconv.audio.live import DeviceReader

        return DeviceReader(device, sample_rate)
    if path != STDIO:
        if raw:
            raise VconvError("--raw is for standard input/output; an input file is read by its own header")
        return FileReader(path)
    if raw:
        assert sample_rate is not None  # checked by the caller
        return RawReader(_standard("stdin", sys.stdin), sample_rate, channels)
    return WavPipeReader(_standard("stdin", sys.stdin))


def _open_writer(path: Path, raw: bool, sample_rate: int, force: bool, device: Optional[str] = None) -> Any:
    from vconv.audio.pcm_stream import FileWriter, RawWriter, WavPipeWriter

    if device is not None:
        from vconv.audio.live import DeviceWriter

        return DeviceWriter(device, sample_rate)
    if path != STDIO:
        return FileWriter(path, sample_rate, force=force)
    stdout = _standard("stdout", sys.stdout)
    return RawWriter(stdout) if raw else WavPipeWriter(stdout, sample_rate)
