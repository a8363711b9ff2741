"""Converting a file of any length with memory bounded by one chunk, not by the file.

A source longer than one conversion chunk is never held whole: it is checked in blocks
(:func:`~vconv.audio.io.inspect_audio`), read a chunk at a time at the model's rate
(:class:`~vconv.audio.spans.SpanReader`), converted chunk by chunk (:meth:`VoiceConverter.convert_spans
<vconv.inference.converter.VoiceConverter.convert_spans>`) into a scratch file of float32 samples, and
written out from it in blocks: resampled to the output rate if asked, with the one peak-limiting gain
for the whole file (known only once every sample is made), atomically under the output's name. The
output is what converting the whole file in memory gives (`tests/test_convert.py`).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from vconv.audio.io import check_sample_rate, check_written, inspect_audio, output_format
from vconv.audio.spans import BLOCK_SECONDS, SpanReader
from vconv.errors import VconvError
from vconv.fileio import atomic_path, write_failure
from vconv.inference.converter import TargetVoice, VoiceConverter, limit_peak_gain
from vconv.inference.targets import MIN_SECONDS


def convert_long_file(converter: VoiceConverter, source: Path, target: TargetVoice, dest: Path, *, rate: int,
                      force: bool = False) -> float:
    """Convert ``source`` into ``dest`` at ``rate`` Hz in bounded memory; returns the seconds converted."""
    if dest.exists() and not force:
        raise VconvError(f"{dest}: already exists; pass --force to overwrite")
    fmt, subtype = output_format(dest)
    check_sample_rate(rate, f"{dest}: sample rate")
    inspect_audio(source, min_seconds=MIN_SECONDS)  # NaN, silence, truncation...: checked in blocks
    with tempfile.TemporaryDirectory(prefix="vconv-long-") as scratch, _scratch_errors(Path(scratch)):
        reader = SpanReader(source, converter.sample_rate, scratch)
        raw = Path(scratch) / "converted.f32"
        peak = 0.0  # of the model-rate output
        with open(raw, "wb") as out:
            def write(samples: np.ndarray) -> None:
                nonlocal peak
                peak = max(peak, float(np.abs(samples).max()) if samples.size else 0.0)
                out.write(samples.tobytes())

            converter.convert_spans(reader.length, reader.read, target, write)
        if rate != converter.sample_rate:  # resampled in one streaming pass, then limited like convert_wav's output
            raw = _resample_raw(raw, converter.sample_rate, rate, Path(scratch) / "resampled.f32")
            # the in-memory path limits at the model's rate, resamples, and limits again: one gain of the larger peak
            peak = max(peak, max((float(np.abs(b).max()) for b in _raw_blocks(raw, rate)), default=0.0))
        gain = limit_peak_gain(peak)
        with atomic_path(dest, overwrite=force) as tmp:
            written = 0
            try:
                with sf.SoundFile(os.fsencode(tmp), "w", rate, 1, subtype=subtype, format=fmt) as fh:
                    for block in _raw_blocks(raw, rate):
                        fh.write(np.clip(block * np.float32(gain), -1.0, 1.0))
                        written += block.size
            except (RuntimeError, OSError) as exc:  # libsndfile's errors, a full disk among them
                raise VconvError(f"{dest}: {write_failure(tmp, exc)}") from None
            check_written(tmp, written, dest)  # Ogg's writer hides a short write
    return reader.length / converter.sample_rate


@contextmanager
def _scratch_errors(scratch: Path) -> Iterator[None]:
    """A full or failing temporary folder while converting: one line naming it."""
    try:
        yield
    except OSError as exc:
        raise VconvError(f"{scratch.parent}: temporary folder: {write_failure(scratch, exc)} "
                         "(set TMPDIR to a folder with room for a long conversion)") from None


def _raw_blocks(raw: Path, rate: int) -> Iterator[np.ndarray]:
    """The float32 samples of ``raw`` in blocks of :data:`BLOCK_SECONDS`."""
    block = int(BLOCK_SECONDS * rate)
    with open(raw, "rb") as fh:
        while True:
            samples = np.fromfile(fh, dtype=np.float32, count=block)
            if samples.size == 0:
                return
            yield samples


def _resample_raw(raw: Path, rate: int, new_rate: int, out_path: Path) -> Path:
    stream = soxr.ResampleStream(rate, new_rate, 1, dtype="float32", quality="HQ")
    blocks = _raw_blocks(raw, rate)
    with open(out_path, "wb") as out:
        block = next(blocks, None)
        while block is not None:
            following = next(blocks, None)
            out.write(np.ascontiguousarray(stream.resample_chunk(block, last=following is None), np.float32).tobytes())
            block = following
    return out_path
