"""A long audio file read a span at a time, mono at the model's rate: memory is one span, not the file.

Conversion of a long source reads it chunk by chunk (:func:`vconv.inference.chunking.stream_chunks`). A
file already at the model's rate is read in place (libsndfile seeks); one at another rate is first
resampled in one sequential pass (soxr's streaming resampler, sample for sample what resampling the whole
file gives) into a scratch file of float32 samples, which is then read in place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from vconv.audio.io import audio_info, downmix
from vconv.errors import VconvError

BLOCK_SECONDS = 10.0  # the sequential passes (resampling, writing) work this much audio at a time


class SpanReader:
    """``path`` as mono float32 ``[length]`` at ``rate``; :meth:`read` gives ``[start, stop)``.

    ``scratch`` is a folder for the resampled copy (only made when the file's rate is not ``rate``); the
    caller removes it. The file is assumed checked already (:func:`vconv.audio.io.inspect_audio`).
    """

    def __init__(self, path: str | Path, rate: int, scratch: str | Path) -> None:
        self.path, self.rate = Path(path), rate
        info = audio_info(self.path)
        self.source_rate = info.samplerate
        self._raw: Path | None = None
        self.length = info.frames
        if info.samplerate != rate:
            self._raw = Path(scratch) / "source.f32"
            self.length = resample_file(self.path, self._raw, rate)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[stop - start]`` from ``start`` (``0 <= start <= stop <= length``), float32 mono."""
        if not 0 <= start <= stop <= self.length:
            raise ValueError(f"span {start}:{stop} outside 0:{self.length}")
        if self._raw is not None:
            return np.fromfile(self._raw, dtype=np.float32, count=stop - start, offset=4 * start)
        try:
            data, _ = sf.read(os.fsencode(self.path), start=start, stop=stop, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise VconvError(f"{self.path}: could not decode audio ({exc})") from None
        return downmix(data, self.path, allow_silent=True)

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        """The whole signal in consecutive blocks of ``size`` samples (the last may be shorter)."""
        for start in range(0, self.length, size):
            yield self.read(start, min(self.length, start + size))


def resample_file(path: Path, raw: Path, rate: int) -> int:
    """Write ``path`` mono at ``rate`` as raw float32 samples to ``raw`` in one pass; returns the count."""
    info = audio_info(path)
    stream = soxr.ResampleStream(info.samplerate, rate, 1, dtype="float32", quality="HQ")
    block, written = max(1, int(BLOCK_SECONDS * info.samplerate)), 0
    with open(raw, "wb") as out:
        for start in range(0, info.frames, block):
            stop = min(info.frames, start + block)
            data, _ = sf.read(os.fsencode(path), start=start, stop=stop, dtype="float32", always_2d=True)
            samples = stream.resample_chunk(downmix(data, path, allow_silent=True), last=stop >= info.frames)
            out.write(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
            written += samples.size
    return written
