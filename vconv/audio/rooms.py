"""Ordinary rooms, simulated: the reverberation and noise of a laptop recording, applied to clean speech.

A room here is what a microphone a metre or two from the talker hears: the direct sound, a few early reflections
(the desk, the nearest walls) and a diffuse tail decaying by 60 dB in ``rt60`` seconds, faster in the highs (air and
soft furnishings absorb them first), plus background noise at ``snr_db`` below the speech: a coloured hiss (white,
pink or brown) and, in some rooms, mains hum. It is our own generator (a stochastic tail after Schroeder's model of
diffuse decay, early reflections at image-source-like delays), not a geometric simulation: what the model must
learn to ignore is the smearing in time and the noise floor, not one room's modes.

Everything is deterministic by seed: :func:`draw_room` turns ``(seed, key)`` into the same :class:`Room` on every
machine, and :func:`in_room` the same audio. The direct path is kept at its place, so a degraded copy stays aligned
with the clean recording frame for frame (training rebuilds the clean target from it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from vconv.errors import VconvError

NOISE_COLOURS = ("white", "pink", "brown")
DEFAULT_RT60 = (0.2, 0.8)  # seconds: a furnished office to a bare kitchen
DEFAULT_SNR_DB = (10.0, 30.0)  # a fan or traffic close by to a quiet flat


@dataclass(frozen=True)
class Room:
    """One room: ``rt60`` (s, 60 dB decay of the tail), ``snr_db`` (speech to noise power, on the speech's active
    frames), ``colour`` of the noise, ``hum_hz`` (50 or 60, 0 for none) and ``seed`` (its reflections and noise)."""

    rt60: float
    snr_db: float
    colour: str = "pink"
    hum_hz: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.05 <= self.rt60 <= 3.0:
            raise VconvError(f"room rt60 {self.rt60} s: expected 0.05 to 3 s")
        if not -10.0 <= self.snr_db <= 80.0:
            raise VconvError(f"room snr {self.snr_db} dB: expected -10 to 80 dB")
        if self.colour not in NOISE_COLOURS:
            raise VconvError(f"room noise colour {self.colour!r}: one of {', '.join(NOISE_COLOURS)}")


def parse_room(spec: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """``RT60,SNR`` (one room: ``0.45,20``) or ``mixed`` (RT60 0.2-0.8 s, SNR 10-30 dB, a draw per recording) as
    ``(rt60 range, snr range)``; anything else is a one-line VconvError."""
    if spec == "mixed":
        return DEFAULT_RT60, DEFAULT_SNR_DB
    try:
        rt60, snr = (float(x) for x in spec.split(","))
    except ValueError:
        raise VconvError(f"--room {spec!r}: expected RT60,SNR (seconds, dB; e.g. 0.45,20) or mixed") from None
    Room(rt60, snr)  # range-checked
    return (rt60, rt60), (snr, snr)


def draw_room(seed: int, key: str, rt60: tuple[float, float] = DEFAULT_RT60,
              snr_db: tuple[float, float] = DEFAULT_SNR_DB) -> Room:
    """The room of recording ``key`` under ``seed``: RT60 and SNR uniform in their ranges, a noise colour, hum in a
    quarter of the rooms; the same ``(seed, key)`` always gives the same room."""
    rng = np.random.default_rng(stable_seed(seed, key))
    return Room(rt60=float(rng.uniform(*rt60)), snr_db=float(rng.uniform(*snr_db)), colour=str(rng.choice(NOISE_COLOURS)),
                hum_hz=float(rng.choice([50.0, 60.0])) if rng.random() < 0.25 else 0.0, seed=int(rng.integers(2**31)))


def impulse_response(room: Room, sr: int) -> np.ndarray:
    """``[n]`` float64 impulse response: 1 at sample 0 (the direct sound), early reflections in the first 25 ms and
    a diffuse tail with 60 dB decay in ``rt60`` (highs decaying twice as fast), at a direct-to-reverberant ratio that
    falls as the room grows more reverberant (about +4 dB at 0.2 s to -4 dB at 0.8 s)."""
    rng = np.random.default_rng(room.seed)
    n = int(room.rt60 * sr)
    t = np.arange(n) / sr
    rir = np.zeros(n)
    rir[0] = 1.0
    for _ in range(6):  # early reflections: image sources 3-25 ms behind the direct path, weaker with distance
        delay = rng.uniform(0.003, 0.025)
        rir[int(delay * sr)] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6) * 0.005 / delay
    noise = rng.standard_normal(n)
    highs = np.diff(noise, prepend=0.0) * 0.5  # a first difference: the upper bands of the same noise
    decay = 6.9078 / room.rt60  # ln(1000): amplitude down 60 dB at rt60
    tail = (noise - highs) * np.exp(-decay * t) + highs * np.exp(-2 * decay * t)
    tail[: int(0.003 * sr)] = 0.0  # the tail starts after the direct sound
    drr_db = 4.0 - 8.0 * (room.rt60 - 0.2) / 0.6
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(np.sum(tail**2), 1e-12))
    return rir + tail


def background_noise(room: Room, n: int, sr: int) -> np.ndarray:
    """``[n]`` float64 noise of unit power: white, pink (1/f) or brown (1/f²) hiss, plus the room's hum."""
    rng = np.random.default_rng(room.seed + 1)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 20.0)
    spectrum *= {"white": np.ones_like(f), "pink": f**-0.5, "brown": f**-1.0}[room.colour]
    noise = np.fft.irfft(spectrum, n)
    if room.hum_hz:
        t = np.arange(n) / sr
        noise = noise / (np.std(noise) + 1e-12) + sum(0.5 / k * np.sin(2 * np.pi * k * room.hum_hz * t + k) for k in (1, 2, 3))
    return noise / (np.std(noise) + 1e-12)


def in_room(wav: np.ndarray, sr: int, room: Room) -> np.ndarray:
    """Mono ``wav [T]`` as recorded in ``room``: convolved with its impulse response (the direct path kept in place,
    the tail cut at ``T``), plus its noise at ``room.snr_db`` below the speech's active power; float32 ``[T]``, scaled
    down only if it would clip."""
    x = np.asarray(wav, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise VconvError(f"in_room: expected mono audio [T], got shape {tuple(x.shape)}")
    rir = impulse_response(room, sr)
    size = 1 << int(np.ceil(np.log2(x.size + rir.size)))
    wet = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(rir, size), size)[: x.size]
    power = _active_power(x, sr)
    noisy = wet + background_noise(room, x.size, sr) * np.sqrt(power / 10 ** (room.snr_db / 10))
    peak = np.max(np.abs(noisy))
    return (noisy / peak * 0.99 if peak > 0.99 else noisy).astype(np.float32)


def _active_power(x: np.ndarray, sr: int) -> float:
    """Mean power of the louder half of 20 ms frames: the speech, not the pauses between it."""
    frame = max(1, sr // 50)
    frames = x[: x.size // frame * frame].reshape(-1, frame) if x.size >= frame else x[None]
    powers = np.sort(np.mean(frames**2, axis=1))
    return float(np.mean(powers[powers.size // 2 :])) or 1e-10


def stable_seed(seed: int, key: str, bits: int = 64) -> int:
    """A ``bits``-bit number of ``(seed, key)`` that is the same in every process and machine (Python's ``hash`` of a
    str is not): what draws a recording's room, and a corpus speaker's voice (:mod:`vconv.corpus.voices`)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") >> (64 - bits)


NOISY_SNR_DB = 18.0  # estimated (10-15 dB as simulated): a reference or source below it converts worse (vconv info warns)


def estimate_snr(wav: np.ndarray, sr: int) -> float:
    """A blind estimate of ``wav``'s signal-to-noise ratio in dB (mono ``[T]``): the 95th over the 10th percentile of
    its 10 ms frame energies (the loud speech over the noise floor between words); ``inf`` for under 0.3 s or digital
    silence between words."""
    x = np.asarray(wav, dtype=np.float64).reshape(-1)
    hop = max(1, sr // 100)
    frames = x[: x.size // hop * hop].reshape(-1, hop)
    if frames.shape[0] < 30:
        return float("inf")
    power = np.mean(frames**2, axis=1)
    floor = np.percentile(power, 10)
    return float("inf") if floor <= 1e-12 else float(10 * np.log10(np.percentile(power, 95) / floor))
