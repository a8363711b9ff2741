"""Audio in and out: load anything libsndfile reads as mono float32 at a chosen rate, and save atomically.

Every way a file can be unusable ends in a :class:`~vconv.errors.VconvError` with one line naming the
file and the reason (the clear-errors contract of docs/ARCHITECTURE.md), so the CLI never shows a traceback. Two things are converted rather than
refused: the channel count (downmixed to mono by averaging) and the sample rate (resampled with soxr).
Arrays handed to the Python API go through :func:`as_float_audio` (integer PCM scaled to [-1, 1]) and
:func:`check_sample_rate`; a WAV cut short is refused (:func:`audio_info` compares its header with its
size), and so are channels that cancel when mixed to mono. :func:`inspect_audio` checks a file of any
length in blocks, so its memory stays bounded.

Source audio is only ever read: ``save`` refuses to overwrite unless asked and writes through a
temporary file that is renamed into place, so an interrupted write never leaves half a file.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from vconv.errors import VconvError
from vconv.fileio import atomic_path, write_failure

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
SILENCE_PEAK = 1e-4  # below this peak (-80 dBFS) a file counts as silent
DEFAULT_MAX_SECONDS = 30 * 60.0  # a whole-file load above this is refused (convert and info take any length)
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000  # what any rate argument may be: telephone-band to studio DXD
# float samples far above full scale are integer PCM passed as float (e.g. int16 values): refuse, never clip
MAX_FLOAT_MAGNITUDE = 32.0
_PCM_SCALE = {1: 128.0, 2: 32768.0, 4: 2147483648.0}  # bytes per integer sample -> full scale


def check_sample_rate(sr: object, name: str = "sample rate") -> int:
    """``sr`` as an int if it is a whole number of Hz in ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``, else a VconvError.

    0 or 1 Hz would divide by zero or ask soxr for millions of output samples per input one.
    """
    if isinstance(sr, (bool, np.bool_)) or not isinstance(sr, (int, np.integer)):
        raise VconvError(f"{name}: expected a whole number of Hz in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}, got {sr!r}")
    if not MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE:
        raise VconvError(f"{name}: {int(sr)} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    return int(sr)


def as_float_audio(audio: object, name: str = "<array>") -> np.ndarray:
    """An array of samples as float32 in [-1, 1]: integer PCM scaled by its full scale, floats checked.

    int8/int16/int32 are divided by 2**7/2**15/2**31, uint8 (8-bit WAV) is centred at 128. int64, other
    unsigned types, bool, complex and object arrays are refused, and so are floats far outside [-1, 1]
    (> :data:`MAX_FLOAT_MAGNITUDE`, integer PCM stored as float) - either would give a wrong voice silently.
    """
    arr = np.asarray(audio)
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "f":
        wav = arr.astype(np.float32, copy=False)
        finite = np.abs(wav[np.isfinite(wav)]) if wav.size else wav
        peak = float(finite.max()) if finite.size else 0.0
        if peak > MAX_FLOAT_MAGNITUDE:
            raise VconvError(f"{name}: float samples reach {peak:.4g}, far outside -1..1 (integer PCM as float?); "
                             "scale them to -1..1, e.g. divide 16-bit values by 32768")
        return wav
    if kind == "i" and size in _PCM_SCALE:
        return (arr.astype(np.float64) / _PCM_SCALE[size]).astype(np.float32)
    if kind == "u" and size == 1:
        return ((arr.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    raise VconvError(f"{name}: {arr.dtype} samples are not audio; pass float32 in -1..1 or int8/int16/int32 PCM")


def downmix(data: np.ndarray, name: str | Path = "<array>", *, allow_silent: bool = False) -> np.ndarray:
    """``[T, C]`` → mono ``[T]`` (channel mean); channels that cancel each other are an error, not "silence"."""
    if data.ndim != 2 or data.shape[1] == 1:
        return np.ascontiguousarray(data[:, 0] if data.ndim == 2 else data, dtype=np.float32)
    wav = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    if not allow_silent and wav.size and _peak(wav) < SILENCE_PEAK and _peak(data) >= SILENCE_PEAK:
        if all(_peak(data[:, c]) >= SILENCE_PEAK for c in range(data.shape[1])):
            raise VconvError(f"{name}: channels cancel when mixed to mono (one is the other inverted); keep one channel")
    return wav


def _peak(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Header of an audio file (frames, rate, channels) without reading samples."""
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise VconvError(f"{path}: not a readable audio file ({_reason(exc)})") from None
    if info.format in ("WAV", "WAVEX"):
        _check_wav_complete(path, info)
    return info


def _check_wav_complete(path: Path, info: sf._SoundFileInfo) -> None:
    """Refuse a WAV whose data chunk is shorter than its header declares (a copy or download cut short).

    libsndfile silently reads what is there and reports that as the length, so the header is read here.
    """
    with open(path, "rb") as fh:
        riff = fh.read(12)
        if len(riff) < 12 or riff[:4] not in (b"RIFF", b"RIFX") or riff[8:12] != b"WAVE":
            return  # RF64 and others: libsndfile's own length is all there is
        order = "<" if riff[:4] == b"RIFF" else ">"
        size_on_disk, block_align = os.fstat(fh.fileno()).st_size, 0
        for _ in range(1000):  # chunks before the data: fmt, LIST, fact, ...; bounded against a looping file
            head = fh.read(8)
            if len(head) < 8:
                return
            chunk, size = head[:4], struct.unpack(order + "I", head[4:])[0]
            if chunk == b"fmt ":
                body = fh.read(min(size, 16))
                block_align = struct.unpack(order + "H", body[12:14])[0] if len(body) >= 14 else 0
                fh.seek(size - len(body) + (size & 1), os.SEEK_CUR)
            elif chunk == b"data":
                held = size_on_disk - fh.tell()
                if size in (0, 0xFFFFFFFF) or size <= held or block_align <= 0:
                    return  # complete, or written by a streaming writer that never knew its length
                rate = info.samplerate or 1
                raise VconvError(f"{path}: truncated (header says {size // block_align / rate:.2f} s, file holds "
                                 f"{held // block_align / rate:.2f} s); copy or export the file again")
            else:
                fh.seek(size + (size & 1), os.SEEK_CUR)


def load(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    min_seconds: float = 0.0,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_silent: bool = False,
    first_seconds: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 ``[T]`` in [-1, 1] and resample to ``sample_rate`` (if given).

    ``first_seconds``: read only the file's beginning (a speaker reference of an hour needs no more than a
    few minutes; memory stays bounded); the checks below then apply to what was read.

    Returns ``(wav, sr)``. Raises :class:`VconvError` for a missing, unreadable, non-audio, empty,
    all-silent (unless ``allow_silent``), NaN/Inf-containing, too short (< ``min_seconds``) or too long
    (> ``max_seconds``) file.
    """
    path = Path(path)
    info = audio_info(path)
    if info.frames == 0:
        raise VconvError(f"{path}: empty audio (0 samples)")
    seconds = info.frames / info.samplerate
    if max_seconds is not None and seconds > max_seconds:
        raise VconvError(
            f"{path}: {seconds / 60:.1f} min is longer than the {max_seconds / 60:.0f} min limit for reading a whole "
            "file here; split it into shorter files (`vconv convert` converts any length in chunks)"
        )
    expected = info.frames if first_seconds is None else min(info.frames, int(first_seconds * info.samplerate))
    try:
        data, sr = sf.read(os.fsencode(path), dtype="float32", always_2d=True, stop=expected)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise VconvError(f"{path}: could not decode audio ({_reason(exc)}); the file is truncated or corrupt") from None
    if data.shape[0] < expected:
        raise VconvError(f"{path}: truncated (header says {info.frames / sr:.2f} s, file holds {data.shape[0] / sr:.2f} s)")
    wav = downmix(data, path, allow_silent=allow_silent)
    validate(wav, sr, path, min_seconds=min_seconds, allow_silent=allow_silent)
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


@dataclass
class AudioSummary:
    """What :func:`inspect_audio` found: the header, the seconds actually decoded and the peak of the mono mix."""

    info: sf._SoundFileInfo
    seconds: float
    peak: float


def inspect_audio(path: str | Path, *, min_seconds: float = 0.0, block_seconds: float = 10.0) -> AudioSummary:
    """Decode ``path`` in blocks of ``block_seconds`` and check it like :func:`load` does, for a file of any length.

    Memory stays at one block whatever the duration (a 31-minute file is no problem).
    """
    path = Path(path)
    info = audio_info(path)
    if info.frames == 0:
        raise VconvError(f"{path}: empty audio (0 samples)")
    block = max(1, int(block_seconds * info.samplerate))
    frames, peak, channel_peaks, bad = 0, 0.0, np.zeros(info.channels), 0
    try:
        for data in sf.blocks(os.fsencode(path), blocksize=block, dtype="float32", always_2d=True):
            finite = np.isfinite(data)
            bad += int(data.size - np.count_nonzero(finite))
            data = np.where(finite, data, 0.0)
            channel_peaks = np.maximum(channel_peaks, np.abs(data).max(axis=0))
            peak = max(peak, _peak(data.mean(axis=1)))
            frames += data.shape[0]
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise VconvError(f"{path}: could not decode audio ({_reason(exc)}); the file is truncated or corrupt") from None
    sr = info.samplerate
    if frames < info.frames:
        raise VconvError(f"{path}: truncated (header says {info.frames / sr:.2f} s, file holds {frames / sr:.2f} s)")
    if bad:
        raise VconvError(f"{path}: contains {bad} NaN/Inf samples; the file is corrupt")
    if frames / sr < min_seconds:
        raise VconvError(f"{path}: too short ({frames / sr:.2f} s < {min_seconds:.2f} s minimum)")
    if peak < SILENCE_PEAK:
        if info.channels > 1 and channel_peaks.min() >= SILENCE_PEAK:
            raise VconvError(f"{path}: channels cancel when mixed to mono (one is the other inverted); keep one channel")
        raise VconvError(f"{path}: audio is silent (peak below -80 dBFS)")
    return AudioSummary(info, frames / sr, peak)


def validate(
    wav: np.ndarray, sr: int, name: str | Path = "<array>", *, min_seconds: float = 0.0, allow_silent: bool = False
) -> None:
    """Check a mono waveform ``[T]`` for the bad-input cases; raise a one-line :class:`VconvError`."""
    check_sample_rate(sr, f"{name}: sample rate")
    if wav.ndim != 1:
        raise VconvError(f"{name}: expected mono audio [T], got shape {tuple(wav.shape)}")
    if wav.size == 0:
        raise VconvError(f"{name}: empty audio (0 samples)")
    if not np.all(np.isfinite(wav)):
        bad = int(np.count_nonzero(~np.isfinite(wav)))
        raise VconvError(f"{name}: contains {bad} NaN/Inf samples; the file is corrupt")
    if wav.size / sr < min_seconds:
        raise VconvError(f"{name}: too short ({wav.size / sr:.2f} s < {min_seconds:.2f} s minimum)")
    if not allow_silent and float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise VconvError(f"{name}: audio is silent (peak below -80 dBFS)")


def resample(wav: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """Resample ``[T]`` float32 with soxr (high quality, deterministic); both rates are checked first."""
    if orig_sr == target_sr:
        return wav
    for rate, name in ((orig_sr, "input sample rate"), (target_sr, "output sample rate")):
        # fractional rates are fine here (speed perturbation resamples by a factor), absurd ones are not
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise VconvError(f"{name}: expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {rate!r}")
    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


# extension -> libsndfile (format, subtype) of every writer: `save`, the stream's FileWriter, long files
OUTPUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def output_format(path: str | Path) -> tuple[str, str]:
    """``(format, subtype)`` libsndfile writes ``path`` in, by its extension; a one-line VconvError otherwise."""
    found = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise VconvError(f"{path}: unsupported output extension; use .wav, .flac or .ogg")
    return found


def save(path: str | Path, wav: np.ndarray, sr: int, *, force: bool = False, subtype: str = "PCM_16") -> Path:
    """Write ``[T]`` float audio atomically (temp file in the same folder, then rename).

    An existing file is kept unless ``force``: nothing the user owns is overwritten by accident.
    The format follows the extension (wav, flac, ogg); samples are clipped to [-1, 1].
    """
    path = Path(path)
    if path.exists() and not force:
        raise VconvError(f"{path}: already exists; pass --force to overwrite")
    fmt, default_subtype = output_format(path)
    if fmt == "OGG":  # Vorbis is Ogg's only subtype here; PCM subtypes apply to the others
        subtype = default_subtype
    check_sample_rate(sr, f"{path}: sample rate")
    data = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    with atomic_path(path, overwrite=force) as tmp:
        try:
            sf.write(os.fsencode(tmp), data, sr, format=fmt, subtype=subtype)
        except (RuntimeError, OSError) as exc:  # libsndfile's errors (a full disk among them) are RuntimeErrors
            raise VconvError(f"{path}: {write_failure(tmp, exc)}") from None
        check_written(tmp, data.shape[0], path)
    return path


def check_written(tmp: str | Path, frames: int, path: str | Path) -> None:
    """Refuse the just-closed output ``tmp`` (to be renamed to ``path``) unless it holds the ``frames`` written.

    libsndfile's Ogg Vorbis writer ignores failed writes: on a full disk the file is cut short and every call
    returns as if all went well. Its FLAC writer does the same when the disk fills while the file is closed (the
    last frames are lost and the header's length is never written). Reading the length back finds both: for Ogg
    libsndfile takes it from the last complete page (a millisecond even for an hour), for FLAC from the header,
    for WAV from the data the file really holds; so every output is checked the same way before it gets its name.
    """
    if frames == 0:  # nothing to lose (and an Ogg file without a page of audio does not open)
        return
    try:
        held = sf.info(os.fsencode(tmp)).frames
    except (sf.LibsndfileError, RuntimeError):  # cut inside its headers: not even readable
        held = -1
    if held != frames:
        shortfall = OSError(f"the file holds {max(held, 0)} of the {frames} samples written; disk full?")
        raise VconvError(f"{path}: {write_failure(Path(tmp), shortfall)}")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise VconvError(f"{path}: file not found")
    if path.is_dir():
        raise VconvError(f"{path}: is a directory, expected an audio file")
    kind = _special_kind(path)
    if kind:  # opening a FIFO blocks until a writer comes; a device can be endless: refused before opening
        raise VconvError(f"{path}: is a {kind}, not a regular file")
    if not os.access(path, os.R_OK):
        raise VconvError(f"{path}: permission denied")


def _special_kind(path: Path) -> str:
    """``""`` for a regular file (or a link to one), else what it is: "FIFO", "device", "socket"."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""  # unreadable or vanished: the checks that follow say so
    if stat.S_ISREG(mode):
        return ""
    return "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
