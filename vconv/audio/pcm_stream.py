"""Audio that flows: readers and writers of mono float32 blocks for ``vconv stream``.

Readers (``read(n) -> float32 [<= n]``, empty at the end; ``sample_rate``): an audio file of any format
libsndfile reads (:class:`FileReader`), raw 16-bit little-endian PCM from a pipe (:class:`RawReader`), or a
WAV arriving on a pipe (:class:`WavPipeReader`: 16-bit or float PCM, any channel count, its header read
as it arrives, a length of "unknown" accepted). Writers (``write(samples)``, ``close()``): an audio file,
written under a temporary name and renamed into place when the stream ends (:class:`FileWriter`), raw
16-bit PCM (:class:`RawWriter`) or a WAV whose header says "length unknown" (:class:`WavPipeWriter`), so a
player can start before the stream ends. Channels are mixed to mono on the way in.
"""

from __future__ import annotations

import errno
import os
import struct
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from vconv.audio.io import audio_info, check_sample_rate, check_written, downmix, output_format
from vconv.errors import VconvError
from vconv.fileio import default_mode, discard_unwritten, write_failure

_PCM16 = 32768.0
_UNKNOWN = 0xFFFFFFFF  # a RIFF/data size a streaming writer does not know yet


class FileReader:
    """An audio file read ``n`` samples at a time, mixed to mono."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.sample_rate = audio_info(self.path).samplerate
        self._file = sf.SoundFile(os.fsencode(self.path))

    def read(self, n: int) -> np.ndarray:
        data = self._file.read(n, dtype="float32", always_2d=True)
        return downmix(data, self.path, allow_silent=True)

    def close(self) -> None:
        self._file.close()


class RawReader:
    """Raw 16-bit little-endian PCM (``channels`` interleaved) from a binary stream."""

    def __init__(self, stream: BinaryIO, sample_rate: int, channels: int = 1, name: str = "stdin") -> None:
        self.stream, self.name, self.channels = stream, name, channels
        self.sample_rate = check_sample_rate(sample_rate, f"{name}: --sample-rate")
        self._carry = b""

    def read(self, n: int) -> np.ndarray:
        frame = 2 * self.channels
        data = self._carry + _read_up_to(self.stream, max(0, n * frame - len(self._carry)))
        whole = len(data) // frame * frame
        self._carry = data[whole:]  # a partial frame waits for the rest of its bytes
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / _PCM16
        return downmix(samples.reshape(-1, self.channels), self.name, allow_silent=True)

    def close(self) -> None:
        pass


class WavPipeReader(RawReader):
    """A WAV file arriving on a binary stream (16-bit PCM or 32-bit float), its header parsed as it comes."""

    def __init__(self, stream: BinaryIO, name: str = "stdin") -> None:
        rate, channels, self._float = _read_wav_header(stream, name)
        super().__init__(stream, rate, channels, name)

    def read(self, n: int) -> np.ndarray:
        if not self._float:
            return super().read(n)
        data = _read_up_to(self.stream, n * 4 * self.channels)
        samples = np.frombuffer(data[: len(data) // (4 * self.channels) * 4 * self.channels], dtype="<f4")
        return downmix(samples.reshape(-1, self.channels).astype(np.float32), self.name, allow_silent=True)


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the stream (a pipe hands out what it has)."""
    parts, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


# Chunks before the audio (fmt, LIST, fact, a cover picture...) are read past, never held: a header may not
# take more than this before its data chunk starts (real ones take kilobytes; a size field of 4 GB on a pipe
# would otherwise be read, or waited for, whole).
MAX_HEADER_BYTES = 64 << 20
_SKIP_BLOCK = 1 << 16  # what skipping a chunk reads at a time
_FMT_BYTES = 16  # the part of the fmt chunk read: tag, channels, rate, byte rate, block align, bits


def _read_wav_header(stream: BinaryIO, name: str) -> tuple[int, int, bool]:
    """``(rate, channels, is_float)`` from a WAV header on a stream, leaving it at the first sample."""
    riff = _read_up_to(stream, 12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise VconvError(f"{name}: not a WAV stream (for headerless PCM pass --raw --sample-rate N)")
    fmt: tuple[int, int, int, int] | None = None
    used = 12
    for _ in range(64):  # chunks before the data: fmt, LIST, fact...
        head = _read_up_to(stream, 8)
        if len(head) < 8:
            break
        chunk, size = head[:4], struct.unpack("<I", head[4:])[0]
        if chunk == b"data":
            if fmt is None:
                break
            tag, channels, rate, bits = fmt
            if (tag, bits) not in ((1, 16), (3, 32), (0xFFFE, 16), (0xFFFE, 32)) or channels < 1:
                raise VconvError(f"{name}: WAV stream of {bits}-bit samples (format {tag}); stream 16-bit PCM or 32-bit float")
            return check_sample_rate(rate, f"{name}: sample rate"), channels, bits == 32
        used += 8 + size + (size & 1)
        if used > MAX_HEADER_BYTES:  # refused before a byte of the chunk is read
            raise VconvError(f"{name}: WAV stream whose chunks before the audio take {used >> 20} MB, over the "
                             f"{MAX_HEADER_BYTES >> 20} MB a header may; stream a plain WAV (or headerless PCM with --raw)")
        body = _read_up_to(stream, min(size, _FMT_BYTES)) if chunk == b"fmt " else b""
        if not _skip(stream, size + (size & 1) - len(body)):
            break
        if len(body) >= _FMT_BYTES:
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:_FMT_BYTES])
            fmt = (tag, channels, rate, bits)
    raise VconvError(f"{name}: WAV stream without a format and data chunk")


def _skip(stream: BinaryIO, size: int) -> bool:
    """Read past ``size`` bytes a block at a time, keeping none; False if the stream ended first."""
    while size > 0:
        got = len(stream.read(min(size, _SKIP_BLOCK)))
        if not got:
            return False
        size -= got
    return True


class FileWriter:
    """An audio file written as the stream goes, under a temporary name renamed into place by :meth:`close`
    (:meth:`abort` removes it): no half-written file ever carries the output's name."""

    def __init__(self, path: str | Path, sample_rate: int, *, force: bool = False) -> None:
        self.path = Path(path)
        fmt, subtype = output_format(self.path)
        if self.path.exists() and not force:
            raise VconvError(f"{self.path}: already exists; pass --force to overwrite")
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=self.path.suffix)
        except OSError as exc:
            raise VconvError(f"{self.path}: cannot write here ({exc.strerror or exc})") from None
        os.close(fd)
        self._tmp = Path(tmp)
        self._file = sf.SoundFile(os.fsencode(self._tmp), "w", sample_rate, 1, subtype=subtype, format=fmt)
        self.frames = 0  # written so far: what the file must hold when it is closed

    def write(self, samples: np.ndarray) -> None:
        if samples.size:
            try:
                self._file.write(np.clip(samples, -1.0, 1.0))
            except (RuntimeError, OSError) as exc:  # a full disk among them
                raise VconvError(f"{self.path}: {write_failure(self._tmp, exc)}") from None
            self.frames += samples.size

    def close(self) -> None:
        try:
            self._file.close()
            check_written(self._tmp, self.frames, self.path)  # Ogg's writer hides a short write
            os.chmod(self._tmp, default_mode())
            os.replace(self._tmp, self.path)
        except (RuntimeError, OSError) as exc:
            raise VconvError(f"{self.path}: {write_failure(self._tmp, exc)}") from None
        finally:
            self._tmp.unlink(missing_ok=True)  # still there only if something failed

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class RawWriter:
    """Raw 16-bit little-endian mono PCM to a binary stream, flushed after every block.

    A stream that cannot take more (standard output on a full disk or ``/dev/full``, a device error) is a one-line
    VconvError naming ``name``; a pipe whose reader has gone (``| head``) stays a BrokenPipeError, which the CLI
    ends quietly, as other tools do."""

    def __init__(self, stream: BinaryIO, name: str = "standard output") -> None:
        self.stream, self.name = stream, name
        self._failed = False

    def write(self, samples: np.ndarray) -> None:
        if samples.size:
            pcm = np.clip(np.round(samples * (_PCM16 - 1)), -_PCM16, _PCM16 - 1).astype("<i2")
            self._put(pcm.tobytes())

    def _put(self, data: bytes) -> None:
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._failed = True
            discard_unwritten(self.stream)  # else every later flush, the interpreter's last one too, fails again
            reason = "no space left on the device" if exc.errno == errno.ENOSPC else f"could not write ({exc.strerror or exc})"
            raise VconvError(f"{self.name}: {reason}") from None

    def close(self) -> None:
        if not self._failed:
            self._put(b"")

    def abort(self) -> None:
        self.close()


class WavPipeWriter(RawWriter):
    """A 16-bit mono WAV to a binary stream; its header, written first, gives the lengths as unknown."""

    def __init__(self, stream: BinaryIO, sample_rate: int, name: str = "standard output") -> None:
        super().__init__(stream, name)
        fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, 2 * sample_rate, 2, 16)
        self._put(b"RIFF" + struct.pack("<I", _UNKNOWN) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                  + b"data" + struct.pack("<I", _UNKNOWN))
