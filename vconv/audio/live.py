"""Live audio devices for ``vconv stream``: a microphone as a reader, a loudspeaker as a writer.

Through ``sounddevice`` (PortAudio), an optional extra: ``pip install 'vconv[live]'`` plus the PortAudio
library from the system (Debian/Ubuntu: ``apt-get install libportaudio2``). Without either, or without a
device, every entry point raises one :class:`~vconv.errors.VconvError` line that says which.

:class:`DeviceReader` is a reader for :func:`vconv.inference.stream_run.run_stream` (``read(n)`` blocks until
``n`` samples have been captured, so the device sets the pace); :class:`DeviceWriter` a writer (``write``
queues samples that the device's callback plays, waiting while a second is queued, so a file played to a
loudspeaker goes at the loudspeaker's pace; ``close`` waits for the rest to play). Both move audio between
PortAudio's thread and ours through a lock-guarded buffer: the callbacks never allocate more than a block.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

from vconv.errors import VconvError

INSTALL_HINT = "pip install 'vconv[live]' and the PortAudio library (Debian/Ubuntu: apt-get install libportaudio2)"
PCM16 = 32768.0
MAX_BACKLOG_SECONDS = 0.5  # captured audio waiting to be read past this is dropped: a live stream that fell behind
# catches up (a gap in the output) instead of trailing the speaker by ever more
MAX_QUEUED_SECONDS = 1.0  # a writer holds at most this much unplayed audio: a faster source (a file) waits for the device


def sounddevice() -> Any:
    """The ``sounddevice`` module, or a one-line VconvError saying what to install."""
    try:
        import sounddevice as sd
    except ImportError:
        raise VconvError(f"live audio devices need the sounddevice package: {INSTALL_HINT}") from None
    except OSError:  # sounddevice is there but PortAudio is not
        raise VconvError(f"live audio devices need the PortAudio library: {INSTALL_HINT}") from None
    return sd


def list_devices() -> str:
    """The audio devices PortAudio sees, one per line (``>``/``<`` marks the default input/output)."""
    sd = sounddevice()
    try:
        devices = sd.query_devices()
    except Exception as exc:  # PortAudioError and friends: no sound system at all
        raise VconvError(f"cannot list audio devices: {exc}") from None
    if not len(devices):
        return "no audio devices found"
    return str(devices)


def _device(spec: str | None) -> int | str | None:
    """A device given as its number in ``--list-devices`` or a part of its name; None, "" or "default": the
    system's default."""
    if spec in (None, "", "default"):
        return None
    return int(spec) if spec.isdigit() else spec


def _open(kind: str, factory: Any, spec: str | None, sample_rate: int | None, callback: Any) -> tuple[Any, int]:
    sd = sounddevice()
    device = _device(spec)
    try:
        info = sd.query_devices(device, kind)
        rate = int(sample_rate or info["default_samplerate"])
        # 16-bit at the device: what microphones and sound cards speak natively (ALSA's float conversion is not
        # always exact); the conversion to and from float32 is ours
        stream = factory(sd)(device=device, channels=1, samplerate=rate, dtype="int16", callback=callback)
    except (ValueError, sd.PortAudioError) as exc:
        name = "default " + kind if device is None else f"{kind} device {spec!r}"
        raise VconvError(f"{name}: {str(exc).splitlines()[0]} (vconv stream --list-devices shows what there is)") from None
    return stream, rate


class DeviceReader:
    """A capture device as a stream reader: mono float32 at ``sample_rate`` (default: the device's own)."""

    def __init__(self, device: str | None = None, sample_rate: int | None = None) -> None:
        self._buffer: deque[np.ndarray] = deque()
        self._buffered = 0
        self._ready = threading.Condition()
        self._stream, self.sample_rate = _open("input", lambda sd: sd.InputStream, device, sample_rate, self._captured)
        self.overflows = 0
        self.dropped_seconds = 0.0
        self._started = False  # capture starts at the first read: nothing piles up while the model loads

    def _captured(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status:
            self.overflows += 1
        with self._ready:
            self._buffer.append(indata[:, 0].astype(np.float32) / PCM16)
            self._buffered += frames
            self._ready.notify()

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` captured samples (waits for them; Ctrl-C interrupts the wait); fewer, and then none,
        once the device has stopped (unplugged, or a capture that ends), which ends the stream."""
        if not self._started:
            self._stream.start()
            self._started = True
        with self._ready:
            while self._buffered < n and self._stream.active:
                self._ready.wait(timeout=0.1)  # a timeout, so Ctrl-C is seen in the main thread
            out = np.concatenate(list(self._buffer)) if self._buffer else np.zeros(0, np.float32)
            self._buffer.clear()
            excess = out.size - n - int(MAX_BACKLOG_SECONDS * self.sample_rate)
            if excess > 0:  # the oldest goes: what is said now matters more than what was said a while ago
                out = out[excess:]
                self.dropped_seconds += excess / self.sample_rate
            self._buffer.append(out[n:])
            self._buffered = max(0, out.size - n)
        return out[:n]

    def close(self) -> None:
        if self._started:
            self._stream.stop()
        self._stream.close()


class DeviceWriter:
    """A playback device as a stream writer: ``write`` queues, the device plays; silence when nothing is queued."""

    def __init__(self, device: str | None = None, sample_rate: int | None = None) -> None:
        self._queue: deque[np.ndarray] = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._drained = threading.Event()
        self._stream, self.sample_rate = _open("output", lambda sd: sd.OutputStream, device, sample_rate, self._play)
        self.underruns = 0
        self._limit = int(MAX_QUEUED_SECONDS * self.sample_rate)
        self._stream.start()

    def _play(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        filled = 0
        with self._lock:
            while filled < frames and self._queue:
                head = self._queue[0]
                take = min(frames - filled, head.size)
                outdata[filled : filled + take, 0] = head[:take]  # already int16
                filled += take
                if take == head.size:
                    self._queue.popleft()
                else:
                    self._queue[0] = head[take:]
            self._queued -= filled
            if not self._queue:
                self._drained.set()
        if filled < frames:
            outdata[filled:, 0] = 0
            if filled:
                self.underruns += 1

    def write(self, samples: np.ndarray) -> None:
        if not samples.size:
            return
        pcm = np.clip(np.round(np.asarray(samples, np.float32) * PCM16), -PCM16, PCM16 - 1).astype(np.int16)
        while self._queued > self._limit and self._stream.active:  # the device sets the pace
            self._drained.wait(timeout=0.05)
        with self._lock:
            self._queue.append(pcm)
            self._queued += pcm.size
            self._drained.clear()

    def close(self) -> None:
        """Play what is queued, then close the device."""
        self._drained.wait(timeout=self._queued / self.sample_rate + 1.0)
        self.abort()

    def abort(self) -> None:
        self._stream.stop()
        self._stream.close()
