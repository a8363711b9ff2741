"""Running a live conversion from a reader to a writer, paced like a microphone or as fast as possible.

:func:`run_stream` is what ``vconv stream`` does, as a function: read one block's worth of input, push it,
write what comes out; at the end (or on Ctrl-C) flush, so the output holds everything that came in. With
``realtime`` a file is read at the pace it would play (block ``i`` is available at ``i`` block durations
after the start), and a block *misses its deadline* when its converted audio is ready later than one
block duration after its input was complete; without it, a block misses when converting it took longer
than its duration (it would have fallen behind a live input).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vconv.inference.streaming import StreamConverter


class Reader(Protocol):
    sample_rate: int

    def read(self, n: int) -> np.ndarray: ...


class Writer(Protocol):
    def write(self, samples: np.ndarray) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


@dataclass
class StreamReport:
    """What a run did: seconds in and out, blocks, deadline misses, and whether Ctrl-C ended it."""

    seconds_in: float = 0.0
    seconds_out: float = 0.0
    pushes: int = 0
    missed: int = 0
    interrupted: bool = False
    block_seconds: list[float] = field(default_factory=list)  # compute per converted block

    def summary(self, block_ms: float) -> str:
        p50, p95, p99 = (1000 * float(np.percentile(self.block_seconds, q)) if self.block_seconds else 0.0 for q in (50, 95, 99))
        return (f"streamed {self.seconds_in:.1f} s in, {self.seconds_out:.1f} s out; {len(self.block_seconds)} blocks, "
                f"compute per block p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms (block {block_ms:.0f} ms); "
                f"{self.missed} missed their deadline" + ("; interrupted" if self.interrupted else ""))


def run_stream(stream: StreamConverter, reader: Reader, writer: Writer, *, realtime: bool = False) -> StreamReport:
    """Convert everything ``reader`` yields into ``writer`` through ``stream``; the writer is closed at the end."""
    report = StreamReport()
    started = time.perf_counter()
    try:
        while True:
            # one block at the input's rate (the block may grow on a busy machine: vconv.inference.stream_pace)
            block_in = max(1, round(stream.block * reader.sample_rate / stream.model_rate))
            block_s = block_in / reader.sample_rate
            if realtime:  # the input of this push is complete at its end time
                time.sleep(max(0.0, started + report.seconds_in + block_s - time.perf_counter()))
            samples = reader.read(block_in)
            if samples.size == 0:
                break
            arrived = time.perf_counter()
            converted_before = len(stream.times.seconds)
            out = stream.push(samples)
            done = time.perf_counter()
            report.seconds_in += samples.size / reader.sample_rate
            report.pushes += 1
            if len(stream.times.seconds) > converted_before and done - arrived > block_s:
                report.missed += 1
            writer.write(out)
            report.seconds_out += out.size / stream.sample_rate
    except KeyboardInterrupt:  # Ctrl-C is how a live stream ends: keep what came in
        report.interrupted = True
    except BaseException:
        writer.abort()  # a bad block or a failed write: no half-made output under the output's name
        raise
    try:
        out = stream.flush()
        writer.write(out)
    except BaseException:
        writer.abort()
        raise
    report.seconds_out += out.size / stream.sample_rate
    writer.close()
    report.block_seconds = list(stream.times.seconds)
    return report
