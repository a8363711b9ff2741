"""A recording from an ordinary room made closer to a close-miked one: late reverberation taken out by weighted
prediction error (WPE) and the steady noise floor by a spectral gain, before the model reads it.

WPE (Nakatani et al., "Speech dereverberation based on variance-normalized delayed linear prediction", 2010) predicts
each STFT bin's late reverberation from the same bin ``DELAY`` frames back and beyond (``TAPS`` frames), weighting
every frame by the inverse of the dry speech's power, and subtracts the prediction; the early reflections (inside the
delay) and the direct path stay. Three passes re-estimate the power from the dereverberated signal. The noise floor
is each bin's mean power over the quietest frames (the room tone between words); a gain of at most unity (floored,
smoothed over a few frames so the floor does not turn into musical noise) takes it down.

Single-channel, offline (the whole recording at once): for a file's source and its target references, not the
stream's blocks.
"""

from __future__ import annotations

import numpy as np
import torch

from vconv.audio.rooms import NOISY_SNR_DB, estimate_snr

# raise it when what the enhancer makes of a recording changes: cached voices are keyed on the references as recorded
# and the enhance mode (vconv.inference.voice_file.VoiceSource), so their entries are then made again (2: the quick
# estimate's sums in single precision, which could turn auto's decision on a reference within 0.04 dB of its threshold)
ENHANCER_VERSION = 2

N_FFT = 512  # 32 ms at 16 kHz: the resolution WPE is usually run at
HOP = 128
DELAY = 3  # frames (24 ms): reflections earlier than this are left alone (they colour, they do not smear)
# frames of prediction when cleaning (320 ms past the delay): against 20, on 100 held-out pairs in a 0.45 s room, the
# same words and similarity, F0 correlation +0.05 and DNSMOS +0.04; clean voices unchanged (docs/ROOMS.md). 10 removed
# less of the room; it costs ~0.09 s of two cores per second of a recording the estimates place in a room
TAPS = 40
# the room estimates' (quick_late_db, late_reverberation_db) prediction: their thresholds were measured with it
ESTIMATE_TAPS = 20
PASSES = 3
POWER_FLOOR = 1e-10
QUIET_SHARE = 0.2  # the quietest fifth of the frames: the room tone between words
OVER_SUBTRACTION = 1.0
GAIN_FLOOR_DB = -15.0  # never remove more than this: deeper gains leave holes the model hears as artefacts


MODES = ("off", "auto", "on")  # never; a recording the estimates place in a room (in_a_room); always
REVERBERANT_DB = -15.0  # late_reverberation_db above it: recorded in a room (docs/ROOMS.md has the measured spread)
# `auto`'s decision reads a quick estimate: one WPE pass over every other bin (a sixth of the work). On 14 held-out
# utterances as recorded and in rooms of RT60 0.2 / 0.45 / 0.8 s it read 2.4 dB (sd 1.0) below the full estimate, and
# against this threshold it decided as the full one on 54 of 56 recordings (the two others: RT60 0.2 s, at the edge).
# Its sums over the frames run in single precision (dereverberate's products): on 210 held-out recordings, as recorded
# and in six rooms, it moved <= 0.04 dB from the double-precision estimate and decided the same on every one, in ~2/3 of
# the time (10 s, and a 2 s reference). That is measured, not guaranteed: solving the equations in double does not undo
# the rounding of sums formed in single precision, only the ridge bounds what it can do.
QUICK_REVERBERANT_DB = -17.4
QUICK_BIN_STRIDE = 2
# a long file's decision is made once, on this much of it from its first sound (a file is recorded in one room;
# vconv.inference.targets.file_in_a_room): as long as a chunk of a file conversion (convert_wav's chunk_seconds)
ROOM_DECISION_SECONDS = 20.0
# STFT bins solved together by WPE, twice as many with single-precision products (the same memory); memory, not the
# result, depends on it: ~130 MB for 60 s at 40 taps
BIN_BLOCK = 8


def check_mode(mode: str, what: str = "enhance") -> str:
    """``mode`` if it is one of :data:`MODES`, else a one-line error naming the option."""
    if mode not in MODES:
        from vconv.errors import VconvError

        raise VconvError(f"{what} {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def enhance(wav: np.ndarray, sr: int, *, dereverb: bool = True, denoise: bool = True,
            only_in_a_room: bool = False) -> np.ndarray:
    """Mono float32 ``[T]`` at ``sr`` → the same length, dereverberated and denoised (each can be turned off).
    ``only_in_a_room``: unchanged unless the blind estimates say it was recorded in a room (:func:`in_a_room`)."""
    x = np.asarray(wav, dtype=np.float32)
    if only_in_a_room:
        cleaned = enhance_in_a_room(x, sr, dereverb=dereverb, denoise=denoise)
        return x if cleaned is None else cleaned
    spec = _spectrum(x)
    return x if spec is None else _cleaned(x, spec, dereverb, denoise)


def enhance_in_a_room(wav: np.ndarray, sr: int, *, dereverb: bool = True, denoise: bool = True) -> np.ndarray | None:
    """:func:`enhance` of mono ``[T]`` if the blind estimates place it in a room (:func:`in_a_room`), else None: a
    recording as most are pays the quick estimate only, and the caller learns which it was."""
    x = np.asarray(wav, dtype=np.float32)
    spec = _spectrum(x)
    if spec is None or not _quickly_in_a_room(x, sr, spec):
        return None
    return _cleaned(x, spec, dereverb, denoise)


def recorded_in_a_room(wav: np.ndarray, sr: int) -> bool:
    """The decision :func:`enhance_in_a_room` makes on mono float32 ``[T]`` (the quick estimate, :func:`in_a_room`),
    alone: False for a clip too short to judge."""
    spec = _spectrum(wav)
    return spec is not None and _quickly_in_a_room(wav, sr, spec)


def _quickly_in_a_room(x: np.ndarray, sr: int, spec: torch.Tensor) -> bool:
    return in_a_room(quick_late_db(spec), estimate_snr(x, sr), reverberant_db=QUICK_REVERBERANT_DB)


def _cleaned(x: np.ndarray, spec: torch.Tensor, dereverb: bool, denoise: bool) -> np.ndarray:
    """``x [T]`` from its spectrum ``spec`` dereverberated and denoised (as asked), the same length."""
    out = dereverberate(spec) if dereverb else spec
    if denoise:
        out = out * noise_gain(_power(out))
    return torch.istft(out, N_FFT, HOP, window=torch.hann_window(N_FFT), length=x.size).numpy().astype(np.float32)


def in_a_room(late_db: float, snr_db: float, reverberant_db: float = REVERBERANT_DB) -> bool:
    """Whether a recording's estimates (:func:`late_reverberation_db`, :func:`vconv.audio.rooms.estimate_snr`) place it
    in a room that costs conversions: reverberant or noisy. ``reverberant_db``: the threshold of the estimate given
    (:data:`QUICK_REVERBERANT_DB` for :func:`quick_late_db`'s)."""
    return late_db > reverberant_db or snr_db < NOISY_SNR_DB


def quick_late_db(spec: torch.Tensor) -> float:
    """:func:`late_reverberation_db`'s estimate made cheaply from a complex STFT ``[F, T]``: one WPE pass over every
    :data:`QUICK_BIN_STRIDE`-th bin (compare with :data:`QUICK_REVERBERANT_DB`)."""
    bins = spec[::QUICK_BIN_STRIDE]
    return _late_db(bins, dereverberate(bins, taps=ESTIMATE_TAPS, passes=1, products=torch.complex64))


def late_reverberation_db(wav: np.ndarray, sr: int, seconds: float = 20.0) -> float:
    """A blind estimate of how reverberant ``wav`` ``[T]`` is: the energy WPE takes out of its first ``seconds`` over
    the whole, in dB (``-inf`` for a silent or too short input). On the held-out voices of ``recipes/voices`` as
    recorded, medians -33 to -25 dB for the synthetic voices and -26 and -18 for the two game actors (whose recordings
    have a little room of their own, a few lines far more); in simulated rooms -17 to -12 dB at RT60 0.2 s, -14 to -10
    at 0.45 s, -12 to -9 at 0.8 s (docs/ROOMS.md). Above :data:`REVERBERANT_DB` it is a room that costs conversions.
    Meant for speech: a sustained, steady sound (a test tone, a held note) reads as reverberant, since WPE predicts
    its steady harmonics as it predicts a room's tail."""
    spec = _spectrum(np.asarray(wav, dtype=np.float32)[: int(seconds * sr)])
    return float("-inf") if spec is None else _late_db(spec, dereverberate(spec, taps=ESTIMATE_TAPS))


def _spectrum(wav: np.ndarray) -> torch.Tensor | None:
    """The complex STFT ``[F, T]`` everything here works on, of float32 ``wav [T]``; None when it is too short to
    predict anything from (under four windows)."""
    if wav.size < N_FFT * 4:
        return None
    return torch.stft(torch.from_numpy(wav), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)


def _late_db(spec: torch.Tensor, dry: torch.Tensor) -> float:
    """The energy of ``spec - dry`` (both ``[F, T]``) over that of ``spec``, in dB (``-inf`` for silence)."""
    total = float(_power(spec).sum())
    if total <= 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(max(float(_power(spec - dry).sum()), 1e-30) / total))


def dereverberate(spec: torch.Tensor, delay: int = DELAY, taps: int = TAPS, passes: int = PASSES,
                  products: torch.dtype = torch.complex128) -> torch.Tensor:
    """WPE on a complex STFT ``[F, T]`` (every bin its own predictor): the late reverberation predicted from frames
    ``t - delay - k`` (k < ``taps``) subtracted from frame ``t``; complex64 ``[F, T]``. The bins are solved
    :data:`BIN_BLOCK` at a time (twice as many with complex64 products): the result is the same, and a call needs a few
    MB for a few seconds (all bins at once took 60-70 MB for 3.5 s, per request of a server), ~130 MB for a minute.
    ``products``: complex128 or complex64, the precision of the sums over the frames (the small normal equations are
    solved in double either way). complex64 halves the quick estimate's memory traffic; the cleaning keeps complex128 (in
    single precision its output moved 0.3 %, and the room row's judged figures with it, docs/ROOMS.md)."""
    if products not in (torch.complex64, torch.complex128):
        raise ValueError(f"products must be torch.complex64 or torch.complex128, got {products}")
    floor = POWER_FLOOR * max(float(_power(spec).max()), 1.0)
    block = BIN_BLOCK * (2 if products == torch.complex64 else 1)  # the same memory per block
    return torch.cat([_dereverberate_bins(spec[start : start + block].to(products), delay, taps, passes, floor)
                      for start in range(0, spec.shape[0], block)])


def _dereverberate_bins(spec: torch.Tensor, delay: int, taps: int, passes: int, floor: float) -> torch.Tensor:
    """:func:`dereverberate` of ``[f, T]`` bins (complex64 or complex128: the precision of its products), ``floor``
    the whole spectrum's power floor."""
    frames = spec.shape[1]
    padded = torch.nn.functional.pad(spec, (delay + taps - 1, 0))
    # past[f, t, j] = spec[f, t - delay - (taps - 1 - j)]: a strided view, not a copy (the taps' order is the solution's)
    past = padded.unfold(1, taps, 1)[:, :frames]  # [f, T, K]
    dry = spec
    for _ in range(passes):
        # the frames weighted by the inverse of the dry speech's power, through its square root on both sides, so the
        # normal equations are two batched products of one weighted [f, T, K] copy and its adjoint (the past itself is
        # a view; before, it was copied, weighted into a second copy and copied again by einsum: a quick estimate's
        # cost halved)
        root = _power(dry).clamp_min(floor).rsqrt()  # [f, T]
        scaled = past * root[..., None]
        adjoint = scaled.transpose(1, 2).conj().resolve_conj()  # [f, K, T], once for both products
        # the normal equations are ill-conditioned in single precision, so they are solved in double whatever the
        # products' precision (which keeps its own rounding: measured for the quick estimate, see QUICK_REVERBERANT_DB)
        correlation = (adjoint @ scaled).to(torch.complex128)  # [f, K, K]
        cross = (adjoint @ (spec * root)[..., None]).to(torch.complex128)  # [f, K, 1]
        ridge = 1e-6 * correlation.diagonal(dim1=-2, dim2=-1).real.mean(-1).clamp_min(POWER_FLOOR)
        correlation = correlation + ridge[:, None, None] * torch.eye(taps, dtype=correlation.dtype)
        filters = torch.linalg.solve(correlation, cross).to(spec.dtype)  # [f, K, 1]
        dry = spec - (scaled @ filters)[..., 0] / root  # the prediction from `scaled`: `past` is a view, not a copy
    return dry.to(torch.complex64)


def _power(spec: torch.Tensor) -> torch.Tensor:
    """``|spec|^2`` of a complex ``[F, T]`` as ``re^2 + im^2`` (no square root taken and undone)."""
    return torch.view_as_real(spec).square().sum(-1)


def noise_gain(power: torch.Tensor) -> torch.Tensor:
    """Power ``[F, T]`` → a gain ``[F, T]`` in [floor, 1] that takes each bin's steady noise floor away: the noise is the
    mean power of the quietest :data:`QUIET_SHARE` of frames (the room tone between words), subtracted
    ``OVER_SUBTRACTION`` times, the gain floored and smoothed over three frames (against musical noise)."""
    frames = power.shape[1]
    quiet = power.sum(0).argsort()[: max(1, int(QUIET_SHARE * frames))]
    noise = power[:, quiet].mean(1, keepdim=True)  # [F, 1]
    gain = (1.0 - OVER_SUBTRACTION * noise / power.clamp_min(POWER_FLOOR)).clamp_min(10 ** (GAIN_FLOOR_DB / 10))
    smooth = torch.nn.functional.avg_pool1d(gain[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    return smooth.sqrt()
