"""`vconv stream` with live devices (vconv.audio.live), against a stand-in for the sounddevice module.

The stand-in is a sound card with a clock: a thread that calls the stream's callback every block, capturing
from a given signal (the microphone) or collecting what is played (the loudspeaker). It replaces PortAudio
only; the readers, writers, CLI wiring and conversion are the real ones. (A real PortAudio run on this
machine's ALSA null device was checked by hand; a null device has no clock, so it cannot stand in a test.)
"""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import invoke

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class FakeCard:
    """One microphone (plays ``signal`` once, then stops) and one loudspeaker (keeps what it is given)."""

    def __init__(self, signal: np.ndarray, rate: int, block: int = 160) -> None:
        self.signal, self.rate, self.block = signal, rate, block
        self.played: list[np.ndarray] = []
        self.opened: list[dict] = []

    def module(self) -> types.ModuleType:
        card = self
        sd = types.ModuleType("sounddevice")

        class PortAudioError(Exception):
            pass

        class Stream:
            def __init__(self, kind: str, device=None, channels=1, samplerate=None, dtype=None, callback=None):
                if device not in (None, 0, "Fake"):
                    raise ValueError(f"No {kind} device matching {device!r}")
                card.opened.append({"kind": kind, "rate": samplerate, "dtype": dtype})
                self.kind, self.callback, self.active, self._thread = kind, callback, False, None

            def start(self):
                self.active = True
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()

            def _run(self):
                at = 0
                while self.active:
                    if self.kind == "input":
                        piece = card.signal[at : at + card.block]
                        if piece.size == 0:
                            self.active = False  # the capture ended
                            break
                        self.callback(piece[:, None].copy(), piece.size, None, None)
                        at += piece.size
                    else:
                        out = np.zeros((card.block, 1), np.int16)
                        self.callback(out, card.block, None, None)
                        card.played.append(out[:, 0].copy())
                    time.sleep(0.0005)  # a fast clock: the test need not take the signal's duration

            def stop(self):
                self.active = False
                if self._thread is not None:
                    self._thread.join()

            def close(self):
                self.active = False

        sd.PortAudioError = PortAudioError
        sd.InputStream = lambda **kw: Stream("input", **kw)
        sd.OutputStream = lambda **kw: Stream("output", **kw)

        def query_devices(device=None, kind=None):
            if kind is None:
                return "  0 Fake, ALSA (1 in, 1 out)"
            if device not in (None, 0, "Fake"):
                raise ValueError(f"No {kind} device matching {device!r}")
            return {"name": "Fake", "default_samplerate": float(card.rate)}

        sd.query_devices = query_devices
        return sd


@pytest.fixture
def source():
    wav, rate = sf.read(EXAMPLES / "source.wav", dtype="int16")
    return wav, rate


def test_microphone_to_file(tmp_path, monkeypatch, source):
    wav, rate = source
    card = FakeCard(wav, rate)
    monkeypatch.setitem(sys.modules, "sounddevice", card.module())
    monkeypatch.setattr("vconv.audio.live.MAX_BACKLOG_SECONDS", 60.0)  # the fake clock runs faster than real time
    out = tmp_path / "mic.wav"
    result = invoke("stream", "-t", EXAMPLES / "target.wav", "--input-device", "default", "-o", out)
    assert result.exit_code == 0, result.output
    assert card.opened == [{"kind": "input", "rate": rate, "dtype": "int16"}]
    converted, out_rate = sf.read(out, dtype="float32")
    assert out_rate == rate and converted.size == wav.size  # everything captured, converted and flushed
    original = wav.astype(np.float32) / 32768
    assert np.sqrt(np.mean(converted ** 2)) > 0.01  # speech, not silence
    assert np.abs(np.corrcoef(converted, original)[0, 1]) < 0.5  # converted, not the input passed through


def test_file_to_loudspeaker(monkeypatch, source):
    wav, rate = source
    card = FakeCard(np.zeros(0, np.int16), rate)
    monkeypatch.setitem(sys.modules, "sounddevice", card.module())
    result = invoke("stream", "-t", EXAMPLES / "target.wav", "-i", EXAMPLES / "source.wav", "--output-device", "0")
    assert result.exit_code == 0, result.output
    played = np.concatenate(card.played)
    sounding = np.flatnonzero(np.abs(played) > 300)
    assert sounding.size > rate // 2  # at least half a second of converted speech reached the loudspeaker
    assert sounding.size <= wav.size  # and no more than the input's length of it


def test_list_devices(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", FakeCard(np.zeros(0, np.int16), 16000).module())
    result = invoke("stream", "--list-devices")
    assert result.exit_code == 0 and "Fake" in result.stdout


@pytest.mark.parametrize(("module", "reason"), [
    (None, "need the sounddevice package: pip install 'vconv[live]'"),
    ("oserror", "need the PortAudio library"),
])
def test_missing_library_is_one_line(monkeypatch, tmp_path, module, reason):
    if module == "oserror":  # the package is there, PortAudio is not: its import raises OSError
        import builtins

        real_import = builtins.__import__

        def fake_import(name, *args, **kwargs):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return real_import(name, *args, **kwargs)

        monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
        monkeypatch.setattr(builtins, "__import__", fake_import)
    else:
        monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    result = invoke("stream", "-t", EXAMPLES / "target.wav", "--input-device", "default", "-o", tmp_path / "o.wav")
    assert result.exit_code == 1 and reason in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.output


@pytest.mark.parametrize(("args", "reason"), [
    (["--input-device", "7", "-o", "{out}"], "input device '7': No input device matching"),
    (["--input-device", "0", "-i", "{src}", "-o", "{out}"], "either --input or --input-device"),
    (["-i", "{src}", "--output-device", "0", "-o", "{out}"], "either --output or --output-device"),
    (["--input-device", "0", "--realtime", "-o", "{out}"], "a microphone keeps its own pace"),
])
def test_device_options_are_one_line_errors(monkeypatch, tmp_path, args, reason):
    monkeypatch.setitem(sys.modules, "sounddevice", FakeCard(np.zeros(0, np.int16), 16000).module())
    filled = [a.format(src=EXAMPLES / "source.wav", out=tmp_path / "o.wav") for a in args]
    result = invoke("stream", "-t", EXAMPLES / "target.wav", *filled)
    assert result.exit_code == 1, result.output
    assert reason in result.stderr and result.stderr.strip().count("\n") == 0
    assert not list(tmp_path.iterdir())


def test_a_reader_that_fell_behind_drops_its_oldest_audio(monkeypatch):
    from vconv.audio.live import MAX_BACKLOG_SECONDS, DeviceReader

    rate = 16000
    signal = (np.arange(3 * rate) // 2).astype(np.int16)  # a ramp: each sample says when it was captured
    card = FakeCard(signal, rate)
    monkeypatch.setitem(sys.modules, "sounddevice", card.module())
    reader = DeviceReader(None)
    first = reader.read(160)
    time.sleep(1.0)  # the fake clock captures everything meanwhile: a reader far behind
    late = reader.read(160)
    assert reader.dropped_seconds > 1.0
    backlog = reader.read(int(2 * rate))  # what is left is at most the allowed backlog
    assert backlog.size <= MAX_BACKLOG_SECONDS * rate
    assert first[0] == 0 and 2 * late[0] * 32768 > rate  # the late read starts over a second into the capture
    reader.close()
