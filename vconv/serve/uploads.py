"""From an HTTP body to validated waveforms: the only way client data enters the server.

The multipart body is parsed as it streams in (python-multipart's push parser), never read whole
into memory: every byte is counted against the request limit and every file part against
``max_upload_mb`` as it arrives, and file parts go to files *we* name (``00.upload``, ``01.upload``, ...)
inside the request's temporary folder. The client's filename is never used, so no path from the
client is ever opened. Each file is then checked as audio (header, duration, decodability, silence)
before any conversion work, and each problem is a one-line message naming the field.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO, Callable, Optional

import anyio
import anyio.to_thread
import numpy as np
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from vconv.audio.io import audio_info
from vconv.audio.io import load as load_audio
from vconv.errors import VconvError
from vconv.inference.target import TargetVoice
from vconv.inference.targets import MIN_SECONDS
from vconv.inference.voice_file import looks_like_voice_file
from vconv.serve.jobs import Busy, Gate, Ticket
from vconv.serve.limits import ServeLimits

SOURCE_FIELD = "source"
TARGET_FIELD = "target"
# decoding reads every channel at the file's rate before the downmix: refuse more than stereo at 48 kHz
# per second of audio, so a small, highly compressed file cannot expand into gigabytes of samples
MAX_SAMPLES_PER_SECOND = 2 * 48000
DISCARD_SECONDS = 2.0  # how long a refused upload is read so that its client gets the answer, not a reset


class UploadError(Exception):
    """A request the server refuses: HTTP ``status`` and a one-line ``message`` for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Uploads:
    """The files of one request, in the order received: ``source`` (at most one) and ``targets``."""

    source: Optional[Path] = None
    targets: list[Path] = field(default_factory=list)


class _PartWriter:
    """python-multipart callbacks that stream each file part to its own file, enforcing the limits."""

    def __init__(self, folder: Path, limits: ServeLimits):
        self.folder = folder
        self.limits = limits
        self.uploads = Uploads()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._out: Optional[BinaryIO] = None
        self._label = ""
        self._size = 0
        self._parts = 0

    def callbacks(self) -> Any:  # python-multipart's MultipartCallbacks (a TypedDict of these functions)
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._append_header("field", data[start:end]),
            "on_header_value": lambda data, start, end: self._append_header("value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._header_field, self._header_value = {}, b"", b""

    def _append_header(self, which: str, data: bytes) -> None:
        if which == "field":
            self._header_field += data
        else:
            self._header_value += data

    def _header_end(self) -> None:
        self._headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._out, self._size = None, 0
        if name not in (SOURCE_FIELD, TARGET_FIELD):
            return  # an unknown field is read (it counts towards the request limit) but not kept
        if name == SOURCE_FIELD:
            if self.uploads.source is not None:
                raise UploadError(400, "only one source file per conversion")
            self._label = SOURCE_FIELD
        else:
            if len(self.uploads.targets) >= self.limits.max_references:
                raise UploadError(400, f"at most {self.limits.max_references} target references per conversion")
            self._label = f"target {len(self.uploads.targets) + 1}"
        path = self.folder / f"{self._parts:02d}.upload"  # our name: the client's filename is never used
        self._parts += 1
        self._out = open(path, "wb")
        if name == SOURCE_FIELD:
            self.uploads.source = path
        else:
            self.uploads.targets.append(path)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is None:
            return
        self._size += end - start
        if self._size > self.limits.max_upload_bytes:
            raise UploadError(413, f"{self._label}: larger than the {self.limits.max_upload_mb:g} MB upload limit")
        self._out.write(data[start:end])

    def _part_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def paced(chunks: AsyncIterator[bytes], limits: ServeLimits) -> AsyncIterator[bytes]:
    """``chunks``, as long as the client keeps sending: an :class:`UploadError` 408 when nothing comes for
    ``limits.read_timeout`` s, or when, after the first ``limits.upload_grace`` s, the body arrives slower on
    average than ``limits.min_upload_rate`` bytes/s. The second rule bounds an upload's *total* time: a client
    that trickles a byte every few seconds would otherwise hold an upload place for ever (eight of them kept
    the server "busy, retry" for everyone)."""
    iterator = chunks.__aiter__()
    start = time.monotonic()
    received = 0
    while True:
        # the next byte is due when the average rate would otherwise fall below the minimum
        due_by_rate = start + limits.upload_grace + (received + 1) / limits.min_upload_rate - time.monotonic()
        wait = min(limits.read_timeout, max(due_by_rate, 0.0))
        try:
            with anyio.fail_after(wait):
                chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            if wait < limits.read_timeout:
                raise UploadError(408, f"upload too slow: {received} bytes in {time.monotonic() - start:.0f} s (this server "
                                       f"needs at least {limits.min_upload_rate / 1024:g} KB/s)") from None
            raise UploadError(408, f"upload stalled: nothing received for {limits.read_timeout:g} s") from None
        received += len(chunk)
        yield chunk


async def receive_uploads(request: Request, folder: Path, limits: ServeLimits, *, need_source: bool = True) -> Uploads:
    """Stream a ``multipart/form-data`` body into ``folder``: one ``source`` file (unless not ``need_source``),
    1..``max_references`` ``target`` files. Raises :class:`UploadError` (400 malformed or missing, 413 too big)."""
    mime, options = parse_options_header(request.headers.get("content-type", ""))
    if mime != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(400, "expected a multipart/form-data upload with a 'source' file and one or more 'target' files")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_request_bytes:  # refuse before reading a byte
        raise UploadError(413, f"upload of {int(declared) / 2**20:.1f} MB is larger than the server's limit "
                               f"({limits.max_upload_mb:g} MB per file)")
    writer = _PartWriter(folder, limits)
    error: Optional[UploadError] = None
    received = 0
    try:
        parser = MultipartParser(options[b"boundary"], writer.callbacks())
        async for chunk in paced(request.stream(), limits):
            received += len(chunk)  # counted as it arrives: a body without Content-Length is bounded too
            if error is not None:  # refused: read on (bounded) so the client gets the answer, not a reset
                if received > 2 * limits.max_request_bytes:
                    break
                continue
            try:
                if received > limits.max_request_bytes:
                    raise UploadError(413, f"upload larger than the server's limit ({limits.max_upload_mb:g} MB per file)")
                parser.write(chunk)
            except UploadError as exc:
                error = exc
                writer.close()
        if error is None:
            parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise UploadError(400, f"malformed multipart upload ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    except OSError as exc:  # the server's temporary folder is full or gone: the client's answer, the log's line
        raise UploadError(507, f"the server could not store the upload ({exc.strerror or type(exc).__name__}); "
                               "try again later") from None
    finally:
        writer.close()
    if error is not None:
        raise error
    uploads = writer.uploads
    if uploads.source is None and need_source:
        raise UploadError(400, "no source file: upload the audio whose words to keep as 'source'")
    if not uploads.targets:
        raise UploadError(400, "no target reference: upload at least one recording of the target voice as 'target'")
    return uploads


def decode_upload(path: Path, label: str, sample_rate: int, limits: ServeLimits) -> np.ndarray:
    """Check one uploaded file as audio and decode it: mono float32 ``[T]`` at ``sample_rate``.

    Raises :class:`UploadError` 422 for an empty, non-audio, too long, too short, silent or corrupt
    file, with the message naming ``label`` instead of the server-side path.
    """
    if path.stat().st_size == 0:
        raise UploadError(422, f"{label}: empty upload (0 bytes)")
    try:
        info = audio_info(path)
        if info.frames > 0 and info.frames / info.samplerate > limits.max_seconds:  # from the header, before decoding
            raise UploadError(422, f"{label}: {info.frames / info.samplerate:.1f} s is longer than the "
                                   f"{limits.max_seconds:g} s limit of this server")
        if info.channels * info.samplerate > MAX_SAMPLES_PER_SECOND:
            raise UploadError(422, f"{label}: {info.channels} channels at {info.samplerate} Hz is more than this server "
                                   "decodes (up to stereo at 48 kHz)")
        wav, _ = load_audio(path, sample_rate, min_seconds=MIN_SECONDS, max_seconds=None)
    except VconvError as exc:
        raise UploadError(422, _relabel(str(exc), path, label)) from None
    except (OSError, ValueError, RuntimeError) as exc:  # a decoder failing in a way audio.io does not name
        raise UploadError(422, _relabel(f"{label}: could not decode audio ({type(exc).__name__}: {exc})", path, label)) from None
    if wav.size / sample_rate > limits.max_seconds:  # some headers (VBR MP3) under-report the length
        raise UploadError(422, f"{label}: {wav.size / sample_rate:.1f} s is longer than the {limits.max_seconds:g} s limit of this server")
    return wav


def decode_uploads(uploads: Uploads, sample_rate: int, limits: ServeLimits,
                   open_voice: Callable[[Path], TargetVoice] | None = None) -> tuple[np.ndarray | None, list[np.ndarray] | list[TargetVoice]]:
    """The request's source ``[T]`` (None when it sent none) and target references ``[T_i]``, decoded and
    checked (see :func:`decode_upload`); or, when the one target is a voice file (``vconv voice``) and ``open_voice``
    is given, that voice, opened with it (a voice of another model, or a corrupt one, is a 422 naming the field)."""
    source = None if uploads.source is None else decode_upload(uploads.source, SOURCE_FIELD, sample_rate, limits)
    voices = [p for p in uploads.targets if looks_like_voice_file(p)]
    if voices and open_voice is not None:
        if len(uploads.targets) > 1:
            raise UploadError(422, "a voice file is a whole target: upload it alone, not beside other references")
        try:
            return source, [open_voice(voices[0])]
        except VconvError as exc:
            raise UploadError(422, _relabel(str(exc), voices[0], "target 1")) from None
    targets = [decode_upload(p, f"target {i + 1}", sample_rate, limits) for i, p in enumerate(uploads.targets)]
    return source, targets


async def receive_audio(request: Request, upload_root: Path, limits: ServeLimits, sample_rate: int, *,
                        need_source: bool = True, open_voice: Callable[[Path], TargetVoice] | None = None,
                        ) -> tuple[np.ndarray | None, list[np.ndarray] | list[TargetVoice]]:
    """:func:`receive_uploads` into a fresh sub-folder of ``upload_root``, then :func:`decode_uploads` in a worker
    thread; the folder is removed whatever happens (decoded, the uploaded files are no longer needed)."""
    folder = Path(tempfile.mkdtemp(dir=upload_root))
    try:
        received = await receive_uploads(request, folder, limits, need_source=need_source)
        return await anyio.to_thread.run_sync(decode_uploads, received, sample_rate, limits, open_voice)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _relabel(message: str, path: Path, label: str) -> str:
    """``"<tmp path>: reason"`` -> ``"<label>: reason"``: the client never sees server paths."""
    line = message.splitlines()[0] if message else "unreadable audio"
    return line.replace(str(path), label)


async def admit_upload(gate: Gate, request: Request, limits: ServeLimits) -> Ticket:
    """An upload place from ``gate``; when there is none, up to ``limits.max_request_bytes`` of the request's body
    are read (at the upload pace, :func:`paced`) and dropped before :class:`~vconv.serve.jobs.Busy` goes up, so a
    refused client gets the 503 instead of a reset connection (it is still sending when the answer would come)."""
    try:
        return gate.admit()
    except Busy:
        await discard_body(request, limits)
        raise


async def discard_body(request: Request, limits: ServeLimits) -> None:
    """Read and drop up to ``limits.max_request_bytes`` of the body for at most :data:`DISCARD_SECONDS`; a client
    that goes away meanwhile, or sends slower than the upload pace, is not waited for (nothing to answer then).
    The time bound keeps a refused client from holding its connection busy (busy connections are the ones the
    per-address cap never evicts) for as long as a slow upload of the whole budget would take."""
    received = 0
    try:
        with anyio.move_on_after(DISCARD_SECONDS):
            async for chunk in paced(request.stream(), limits):
                received += len(chunk)
                if received > limits.max_request_bytes:
                    break
    except Exception:  # the client went away, or sends too slowly to be waited for
        pass
