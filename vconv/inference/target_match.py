"""Target-spectrum matching: move the converted log-mel's long-term spectrum onto the target's.

The decoder's AdaIN renders a voice from one speaker embedding; for voices far from the few dozen it
was trained on, the output keeps an averaged timbre (the held-out similarity to the target stalls near
0.58 whatever the front-end, ``recipes/voices/MODEL_HISTORY.md``). The long-term average spectrum of
the target reference is a cheap, robust part of that timbre (vocal-tract length, breathiness, and also
the reference's channel). Before vocoding, the converted utterance takes the band means of the target's
speech frames as a shape (at its own level, below) and, in ``meanstd`` mode, their spread (the classic mean/variance conversion
of spectral features, applied per band in the log-mel domain). The spread is scaled on the band's
slow contour only (a Hann-smoothed copy, ``SLOW_FRAMES`` ≈ 140 ms); the frame-to-frame detail passes
unscaled, because widening it also widens the frame-rate jitter, which the vocoder renders as a
62.5 Hz beat (beat index on the README example: 1.77 with everything scaled, 1.06 this way, 1.28
unmatched; the held-out similarity is the same, ``recipes/voices/MODEL_HISTORY.md``)::

    slow = smooth(x);  y[b, t] = (slow[b, t] - mean_x[b]) * clamp(std_t[b] / std_x[b], 0.5, 2) + shape_t[b] + (x - slow)[b, t]
    (the ratio 1 in the bands under ``SPREAD_FROM_HZ``, which carry the melody)
    shape_t[b] = mean_t[b] - avg_b'(mean_t[b']) + avg_b'(mean_x[b'])     (the target's shape at the converted level)

(the averages over the target's voice bands only, and for a band that holds a noise floor, below, ratio 1 and
``min(mean_x[b], shape_t[b])``.)

A conversion of a source recorded in a room (one the enhancer cleaned, ``--enhance``) has its spread only narrowed
toward the target's, never widened (``widen=False``): widening scales up the slow contour the network made from a
reverberant source, room smear and all, and Whisper base then heard fewer words (100 held-out pairs in a 0.45 s, 20 dB
room: CER 0.237 -> 0.212, paired -0.025 +- 0.018, SIM->target -0.005 +- 0.003, success 83 % both; clean, where narrowing
alone costs the same voice for no words, -0.005 +- 0.016, widening stays: ``docs/ROOMS.md``, "The room's spread").
It is decided where the cleaning is, for each chunk of a long file (the chunks' 1 s cross-fades join the two rules);
a dry but noisy source that the estimates place in a room (SNR under 18 dB) counts as cleaned too, though the rule
was measured in a reverberant, noisy room only; with ``--enhance on`` every source is cleaned, and narrowed.

The band means are moved as a shape: the converted utterance keeps its own overall level (mean over
bands), so a loud reference does not make a loud (or clipped) conversion.

Statistics are pooled over *speech* frames only (loudness within ``SPEECH_RANGE_NATS`` of a loud
frame), so pauses do not drag the mean down. A reference recorded in a noisy room has bands where the noise, not the
voice, sets the level (above ~5 kHz a 20 dB hiss sits 2 nats over a band-limited voice): a band whose speech-frame
mean stands less than ``VOICE_MODULATION_NATS`` over its own quiet level (the ``QUIET_QUANTILE`` of all its frames)
moves with nothing in it, so its level is the noise's (:attr:`SpectrumStats.voiced_bands`). Such a band is not given
to the conversion: it is only kept from rising above that level (the voice there is quieter still), its spread is
left alone, and the level the shape is taken at is the mean over the voice's bands alone; a target with no voice band
is not matched at all. A reference with long stretches of digital silence (a tenth of its frames: a noise gate, padded
ends) pulls the quiet level down to the floor, and every band then reads as the voice's: the rule fails safe, as
matching was before it.
A band at digital silence (within ``SILENCE_NATS`` of the floor: a band-limited recording) is the voice's: it has
nothing there; a band below ``LOWEST_VOICE_HZ`` is not judged (matched as it always was). With fewer than ``MIN_SPEECH_FRAMES`` speech frames on
either side the statistics are not trusted and the utterance is left as the model made it. A long file is
converted (and matched) in chunks; a chunk whose source is room tone compared with the whole file
(:func:`is_pause`) is not matched at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from vconv.errors import VconvError

MODES = ("meanstd", "mean", "off")
DEFAULT_MODE = "meanstd"
# 3 nats of mel magnitude ≈ 26 dB below a loud frame (the 98th percentile, not the maximum: a click is no anchor)
SPEECH_RANGE_NATS = 3.0
LOUD_QUANTILE = 0.98
MIN_SPEECH_FRAMES = 16  # ≈ 0.26 s at 62.5 frames/s
STD_RATIO_RANGE = (0.5, 2.0)  # a near-constant band must not be blown up, nor a lively one flattened
# a chunk whose loudest frames are this far below the file's (≈ 30 dB) is room tone, not speech: white noise
# 32 dB below the README example's voice sits 4.1 nats below it, the voice itself 26 dB quieter 3.0
PAUSE_RANGE_NATS = 3.5
# a band whose speech frames stand less than this over its quiet level carries no voice, only a noise floor
# (measured on 40 held-out references: clean, every band from 60 Hz up that is not digital silence stands 1.2-4 nats over it; in a 20 dB room the
# upper bands of the band-limited voices 0.3-0.6; 1.0 took in a full-band voice's noisy upper bands and cost it
# similarity, 0.7 did not: docs/ROOMS.md, "The references' noise floor")
VOICE_MODULATION_NATS = 0.7
QUIET_QUANTILE = 0.10
QUANTILE_VALUES = 2**24  # the most torch.quantile takes in one call
# below the lowest fundamental of speech a band is rumble, not voice or hiss: always matched, as it was before
LOWEST_VOICE_HZ = 60.0
SILENCE_NATS = 2.0  # above the features' log floor: a band this quiet is digital silence, not a noise floor
SLOW_FRAMES = 9  # the spread is scaled on the contour smoothed over this many frames (≈ 140 ms at 62.5 frames/s)
# below this the bands hold a speaking voice's fundamental and first harmonics: scaling their slow contour to the
# target's spread moved the output's harmonics against the excitation's and cost the melody (100 held-out pairs: F0
# correlation 0.690 -> 0.742 with these bands' spread left to the model, their means still moved; SIM->target
# -0.006; conversions to piper_joe 0.454 -> 0.645; recipes/voices/MODEL_HISTORY.md, "The melody's path")
SPREAD_FROM_HZ = 600.0


@dataclass(frozen=True)
class SpectrumStats:
    """Per-band statistics of the speech frames of one or more log-mels.

    ``mean`` and ``std``: ``[n_mels, 1]`` (natural-log mel magnitude); ``frames``: how many speech
    frames they pool; ``voiced_bands``: ``[n_mels, 1]`` bool, the bands whose level is the voice's rather than a
    noise floor's (module docstring; ``None``: all of them, as statistics made before vconv told them apart).
    """

    mean: torch.Tensor
    std: torch.Tensor
    frames: int
    voiced_bands: torch.Tensor | None = None

    @property
    def trusted(self) -> bool:
        return self.frames >= MIN_SPEECH_FRAMES


def check_mode(mode: str, what: str = "target matching") -> str:
    """``mode`` if it is one of :data:`MODES`, else a one-line error naming ``what`` (e.g. the CLI flag)."""
    if mode not in MODES:
        raise VconvError(f"{what} {mode!r}: unknown; choose one of {', '.join(MODES)}")
    return mode


def loud_level(log_mel: torch.Tensor) -> float:
    """``[n_mels, F]`` → the loudness of its loud frames: the ``LOUD_QUANTILE`` of the per-frame mean
    log-magnitude (``-inf`` for no frames)."""
    loudness = log_mel.float().mean(0)  # [F]
    if loudness.numel() == 0:
        return float("-inf")
    return float(torch.quantile(loudness, LOUD_QUANTILE)) if loudness.numel() > 1 else float(loudness.max())


def frame_energy(log_mel: torch.Tensor) -> torch.Tensor:
    """``[n_mels, F]`` → ``[F]``: each frame's log of its mean mel magnitude."""
    return torch.logsumexp(log_mel.float(), dim=0) - math.log(log_mel.shape[0])


def energy_level(log_mel: torch.Tensor) -> float:
    """``[n_mels, F]`` → the level of its loud frames by energy: the ``LOUD_QUANTILE`` of each frame's log of
    the mean mel magnitude (``-inf`` for no frames). Unlike :func:`loud_level` (a mean of logs, in which a flat
    noise's high bands weigh as much as the voice's strong low ones) it follows what a listener hears as loud."""
    return level_of_energies(frame_energy(log_mel)) if log_mel.shape[-1] else float("-inf")


def level_of_energies(energy: torch.Tensor) -> float:
    """``[F]`` frame energies (:func:`frame_energy`, possibly of several blocks) → their ``LOUD_QUANTILE``."""
    if energy.numel() == 0:
        return float("-inf")
    return float(torch.quantile(energy, LOUD_QUANTILE)) if energy.numel() > 1 else float(energy.max())


def is_pause(chunk_level: float, file_level: float) -> bool:
    """Whether a chunk of a long file holds no speech: its loud frames stay ``PAUSE_RANGE_NATS`` below the
    whole file's (both :func:`energy_level` of the *source*). Such a chunk (room tone between two takes)
    must not be matched on its own statistics, which would give the noise the voice's spectrum."""
    return chunk_level < file_level - PAUSE_RANGE_NATS


def speech_frames(log_mel: torch.Tensor) -> torch.Tensor:
    """``[n_mels, F]`` → ``[n_mels, F']``: the frames whose mean log-magnitude is within
    ``SPEECH_RANGE_NATS`` of the loud frames (``F' ≤ F``; all of them for a constant input)."""
    if log_mel.shape[-1] == 0:
        return log_mel
    return log_mel[:, log_mel.float().mean(0) >= loud_level(log_mel) - SPEECH_RANGE_NATS]


def spectrum_stats(log_mels: Sequence[torch.Tensor], floor: float | None = None,
                   band_centres: torch.Tensor | None = None) -> SpectrumStats:
    """Pooled speech-frame statistics of log-mels ``[n_mels, F_i]`` (several references are one voice). With the
    features' ``floor`` (``log(log_floor)``) and the bands' centre frequencies ``[n_mels]`` (Hz) the statistics also
    say which bands carry the voice (:attr:`SpectrumStats.voiced_bands`); without them, all of them (the converted
    side's own statistics)."""
    if not log_mels:
        raise VconvError("spectrum statistics need at least one log-mel")
    frames = torch.cat([speech_frames(m) for m in log_mels], dim=1).float()  # [n_mels, ΣF']
    n = frames.shape[1]
    if n == 0:
        zeros = torch.zeros(frames.shape[0], 1)
        return SpectrumStats(zeros, zeros, 0)
    mean = frames.mean(1, keepdim=True)
    std = frames.std(1, keepdim=True, unbiased=False) if n > 1 else torch.zeros_like(mean)
    voiced = None
    if floor is not None and band_centres is not None:
        voiced = voiced_bands(torch.cat([m.float() for m in log_mels], dim=1), mean, floor, band_centres)
    return SpectrumStats(mean, std, n, voiced)


def voiced_bands(log_mel: torch.Tensor, speech_mean: torch.Tensor, floor: float, band_centres: torch.Tensor) -> torch.Tensor:
    """All frames of the references ``[n_mels, F]``, their speech frames' band means ``[n_mels, 1]`` and the bands'
    centres ``[n_mels]`` (Hz) -> ``[n_mels, 1]`` bool: the bands whose level is the voice's, i.e. that stand
    ``VOICE_MODULATION_NATS`` over their own quiet level, or sit at digital silence (module docstring). A band below
    ``LOWEST_VOICE_HZ`` is not judged: it holds the recording's rumble, which matching has always copied."""
    if log_mel.numel() > QUANTILE_VALUES:  # torch.quantile takes at most 2**24 values: hours of references, thinned evenly
        log_mel = log_mel[:, :: math.ceil(log_mel.numel() / QUANTILE_VALUES)]
    quiet = torch.quantile(log_mel, QUIET_QUANTILE, dim=1, keepdim=True)
    below_voice = (band_centres.to(speech_mean.device) < LOWEST_VOICE_HZ)[:, None]
    return (speech_mean - quiet >= VOICE_MODULATION_NATS) | (speech_mean < floor + SILENCE_NATS) | below_voice


def noise_floor_note(target: SpectrumStats, band_centres: torch.Tensor) -> str | None:
    """One line naming the target's bands that hold only a noise floor (:attr:`SpectrumStats.voiced_bands`), given
    the bands' centres ``[n_mels]`` (Hz); None when every band carries the voice, or when the statistics are too few to
    be trusted (the matching is then skipped, and says so itself)."""
    if not target.trusted or target.voiced_bands is None or bool(target.voiced_bands.all()):
        return None
    noise = band_centres.cpu()[~target.voiced_bands[:, 0].cpu()]
    return (f"{noise.numel()} of {band_centres.numel()} mel bands of the target references (between "
            f"{float(noise.min()) / 1000:.1f} and {float(noise.max()) / 1000:.1f} kHz) hold only their room's noise: "
            "target matching leaves them to the model (docs/ROOMS.md)")


def spread_rules(enhance: str) -> str:
    """What a ``meanstd`` conversion's output depends on besides its settings (a corpus keys its outputs on it, so
    outputs of older rules are not taken for this vconv's): the melody's bands, and with ``enhance`` on or auto, a
    cleaned source's spread narrowed only."""
    rule = f"spread from {SPREAD_FROM_HZ:g} Hz"
    return rule if enhance == "off" else f"{rule}, a cleaned source's narrowed only"


def slow_contour(log_mel: torch.Tensor, frames: int = SLOW_FRAMES) -> torch.Tensor:
    """``[n_mels, F]`` → the same shape, each band smoothed over time by a normalised Hann window of ``frames``
    taps (edges padded with their own value, so a constant band stays constant)."""
    window = torch.hann_window(frames + 2, dtype=log_mel.dtype, device=log_mel.device)[1:-1]
    window = (window / window.sum()).view(1, 1, -1)
    padded = F.pad(log_mel[:, None, :], (frames // 2, frames - 1 - frames // 2), mode="replicate")  # [n_mels, 1, F + frames - 1]
    return F.conv1d(padded, window)[:, 0]


def match_spectrum(log_mel: torch.Tensor, target: SpectrumStats, mode: str = DEFAULT_MODE,
                   floor: float | None = None, own: SpectrumStats | None = None,
                   band_centres: torch.Tensor | None = None, widen: bool = True) -> torch.Tensor:
    """Converted log-mel ``[B, n_mels, F]`` → the same shape with each band that carries the target's voice moved onto
    ``target`` (a band holding the references' noise floor only capped by it: module docstring).

    Unchanged when ``mode`` is ``off``, when either side has too few speech frames to trust, or for an
    utterance (a chunk of a long file) whose loudest frames are within ``SPEECH_RANGE_NATS`` of ``floor``:
    near-silence has no spectrum to move, and giving it the voice's would paint it onto the noise. ``floor``
    (the features' ``log(log_floor)``): no value ends below it, since a widened spread would otherwise
    push pauses under anything the vocoder ever saw. ``own``: the converted speech's statistics when they
    come from elsewhere (a stream pools everything converted so far); by default each utterance's own.
    ``band_centres`` ``[n_mels]`` (Hz): the bands below :data:`SPREAD_FROM_HZ` keep the model's spread (their means
    still move); without them every band's spread is matched. ``widen``: off, a band's spread is only narrowed toward
    the target's, never widened (the file conversion of a source recorded in a room: module docstring).
    """
    check_mode(mode)
    if mode == "off" or not target.trusted:
        return log_mel
    out = []
    given = own
    for x in log_mel:  # each utterance of the batch has its own statistics
        own = given if given is not None else spectrum_stats([x])
        silent = floor is not None and loud_level(x) < floor + SPEECH_RANGE_NATS
        if not own.trusted or silent:
            out.append(x)
            continue
        mean = own.mean.to(x)
        tmean, voice = _target_shape(target, mean)
        if mode == "mean":
            out.append(x - mean + tmean)
            continue
        ratio = (target.std.to(x) / own.std.to(x).clamp_min(1e-3)).clamp(*STD_RATIO_RANGE)
        if not widen:
            ratio = ratio.clamp_max(1.0)
        if voice is not None:  # a noise floor's spread is not the voice's
            ratio = torch.where(voice, ratio, torch.ones_like(ratio))
        if band_centres is not None:  # the melody's bands: their spread is the model's (SPREAD_FROM_HZ)
            ratio = torch.where((band_centres.to(x.device) < SPREAD_FROM_HZ)[:, None], torch.ones_like(ratio), ratio)
        slow = slow_contour(x)
        out.append((slow - mean) * ratio + tmean + (x - slow))
    matched = torch.stack(out)
    return matched if floor is None else matched.clamp_min(floor)


def _target_shape(target: SpectrumStats, own_mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The band means ``[n_mels, 1]`` a converted utterance with band means ``own_mean`` is moved to, and the bands that
    carry the target's voice (``None``: all). The target's spectral *shape*, at the converted utterance's own level (the
    mean over bands of the log-magnitude): loudness stays the model's, only the timbre moves. A band of the target's
    that holds a noise floor (:attr:`SpectrumStats.voiced_bands`) counts in neither level and only caps the output."""
    tmean = target.mean.to(own_mean)
    voice = target.voiced_bands
    if voice is None or bool(voice.all()):
        return tmean - tmean.mean() + own_mean.mean(), None
    if not bool(voice.any()):  # nothing of the voice to take a shape from: the output stays the model's
        return own_mean, torch.zeros_like(own_mean, dtype=torch.bool)
    voice = voice.to(own_mean.device)
    shaped = tmean - tmean[voice].mean() + own_mean[voice].mean()
    return torch.where(voice, shaped, torch.minimum(own_mean, shaped)), voice
