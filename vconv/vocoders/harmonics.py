"""Harmonic excitation in the mel domain: the output's melody written into the converted log-mel before the vocoder.

The decoder renders the spectral envelope (the words, the timbre) well and the melody poorly: fine-tuned with the
source's contour it follows the voicing but smears its harmonics and moves them only a little with the F0 it is given
(recipes/voices/MODEL_HISTORY.md, "The pitch path"). The vocoder, on the other hand, follows the harmonics of the mel it
is given (copy synthesis keeps the melody). So before the vocoder, each voiced frame of the converted log-mel
``x [n_mels]`` is given the harmonics of the output F0, in the log-mel domain, keeping its band energies::

    envelope   = x averaged over the bands within half a harmonic spacing of each band's centre
                 (the decoder's own smeared harmonics out; where bands are wider than the spacing, x itself)
    envelope  -> bands below 1.5 F0 raised to the band at 2 F0 (a fundamental weaker than its second harmonic is
                 heard, by listeners and by pitch trackers, an octave up), or to h1_h2 below it for a target voice
                 whose own fundamental is that much weaker (its H1-H2, measured on its references: :func:`h1_h2`)
    out        = envelope + depth * (log mel(comb at F0) - log mel(flat))   (the comb's modulation of each band,
                 deepened by :data:`COMB_DEPTH`; it fades where a band spans several harmonics, so the upper spectrum
                 is the decoder's)

Unvoiced frames are left as they are; voicing in [0, 1] blends. Per frame, so a stream's windows get the same as a
file. Measured against the earlier source-filter rebuild (cepstral envelope on a comb), which cost half the words: this
keeps them (recipes/voices/MODEL_HISTORY.md, "Harmonic excitation in the mel domain"). No weights; about a millisecond
per second of audio (9 ms for 10 s on two loaded cores).
"""

from __future__ import annotations

import math

import torch

from vconv.audio.logmel import LogMel

__all__ = ["impose_harmonics", "h1_h2", "MIN_H1_H2", "MIN_H1_H2_FRAMES"]

LOBE_BINS = 0.9  # the comb's peak width (Gaussian sigma) in FFT bins: a Hann window's main lobe
APERIODIC_LOW, APERIODIC_HIGH = 0.2, 0.9  # the flat share of a voiced frame's excitation at 0 Hz and at Nyquist
# the comb's modulation is deepened by this factor: at the mel's resolution a comb is barely sampled (under 1 kHz the
# bands lie 37 Hz apart), and the vocoder renders a shallow one weakly periodic. 1.5 (2026-11-27) gave DNSMOS 1.89 ->
# 2.30 on 40 held-out pairs; 2.5 (2026-11-29), on the 100, DNSMOS 2.25 -> 2.51, SIM→target and F0 correlation held,
# CER +0.011 ± 0.028 per pair (recipes/voices/MODEL_HISTORY.md, "A deeper comb again")
COMB_DEPTH = 2.5
MIN_H1_H2_FRAMES = 16  # voiced frames (a quarter second) before a voice's H1-H2 is measured rather than left unknown
# a fundamental kept at most this far (nats) below the second harmonic: piper_joe's references read -2.6 to -3.1;
# lower says more about a channel (a telephone's or a rumble filter's high-pass) than about a voice, and with no
# fundamental at all listeners and trackers hear the output an octave up
MIN_H1_H2 = -4.0


@torch.no_grad()
def impose_harmonics(log_mel: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor, logmel: LogMel,
                     floor: float, h1_h2: float | None = None) -> torch.Tensor:
    """``log_mel [B, n_mels, T]`` (natural log) given the harmonics of ``f0 [B, T]`` Hz where ``voiced [B, T]`` (in
    [0, 1]); ``floor`` is the natural-log floor of the features; ``h1_h2``: the output voice's H1-H2 in nats
    (:func:`h1_h2` of its references; None: unknown, the fundamental raised to the second harmonic's level; the rule
    applies to the smoothed envelope, the comb is added on top). Returns ``[B, n_mels, T]``."""
    x = log_mel.float()
    f0 = f0.float().clamp(min=40.0)
    voicing = voiced.float()[:, None, :]  # [B, 1, T]
    centres = logmel.band_centres.to(x.device)  # [M]
    # a voice whose fundamental is weaker than its second harmonic keeps it so (piper_joe's references: 2.6 nats
    # below): raised to the second's level, its conversions were heard as another speaker (recipes/voices/
    # MODEL_HISTORY.md, "The target's own fundamental"); a stronger one is not raised beyond the second's level
    below = min(max(h1_h2, MIN_H1_H2), 0.0) if h1_h2 is not None else 0.0
    envelope = voicing * _raise_fundamental(_smooth_over_harmonic(x, f0, centres), f0, centres, below) + (1 - voicing) * x
    # no loudness renormalisation: the comb's peaks add power in the resolved low bands, and scaling the frame back
    # would lower the upper bands (the consonants) instead; measured, it cost words (CER 0.20 -> 0.26 on 20 pairs)
    return torch.maximum(envelope + COMB_DEPTH * comb_modulation(f0, voiced, logmel), torch.full_like(x, floor))


def comb_modulation(f0: torch.Tensor, voiced: torch.Tensor, logmel: LogMel) -> torch.Tensor:
    """``[B, n_mels, T]``: log mel of a harmonic comb at ``f0 [B, T]`` (mixed with a flat spectrum by ``voiced [B, T]``
    and by frequency: speech is more aperiodic at the top) minus log mel of the flat spectrum."""
    cfg = logmel.cfg
    basis = logmel.mel_basis.float()  # [M, K]
    bins = torch.arange(basis.shape[1], device=basis.device, dtype=torch.float32)  # [K]
    spacing = (f0.float().clamp(min=40.0) * cfg.n_fft / cfg.sample_rate)[:, None, :]  # harmonic period in bins [B, 1, T]
    sharpness = spacing.square() / (2 * math.pi**2 * LOBE_BINS**2)
    comb = ((1 + torch.cos(2 * math.pi * bins[None, :, None] / spacing)) / 2).clamp(min=1e-12).pow(sharpness)
    comb = comb / comb.mean(dim=1, keepdim=True).clamp(min=1e-6)  # [B, K, T], peaks at k * f0, mean 1
    flat_share = APERIODIC_LOW + (APERIODIC_HIGH - APERIODIC_LOW) * bins / bins[-1]  # [K]
    periodic = voiced.float()[:, None, :] * (1 - flat_share[None, :, None])
    excitation = periodic * comb + (1 - periodic)
    flat = basis.sum(dim=1)[None, :, None]
    return torch.log((basis @ excitation).clamp(min=1e-9)) - torch.log(flat.clamp(min=1e-9))


def _smooth_over_harmonic(x: torch.Tensor, f0: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``x [B, M, T]`` averaged, per frame, over the bands whose centres lie within ``f0 [B, T] / 2`` of each band's
    (``centres [M]`` ascending): a running sum over the bands, read at each band's window edges, so O(B M T)."""
    half = (f0 / 2)[:, None, :]  # [B, 1, T]
    first = torch.searchsorted(centres, (centres[None, :, None] - half).contiguous(), side="left")  # [B, M, T]
    last = torch.searchsorted(centres, (centres[None, :, None] + half).contiguous(), side="right")  # one past, [B, M, T]
    running = torch.nn.functional.pad(x.double().cumsum(dim=1), (0, 0, 1, 0))  # [B, M + 1, T], running[:, 0] = 0
    total = torch.gather(running, 1, last) - torch.gather(running, 1, first)
    return (total / (last - first).clamp(min=1)).to(x.dtype)


def _raise_fundamental(envelope: torch.Tensor, f0: torch.Tensor, centres: torch.Tensor, below: float = 0.0) -> torch.Tensor:
    """``envelope [B, M, T]`` with the bands below 1.5 ``f0 [B, T]`` raised to ``below`` (nats, <= 0) under the band
    nearest 2 ``f0`` (never lowered)."""
    second = _nearest_band(centres, 2 * f0)[:, None, :]  # [B, 1, T]
    low = centres[None, :, None] < 1.5 * f0[:, None, :]
    return torch.where(low, torch.maximum(envelope, torch.gather(envelope, 1, second) + below), envelope)


def _nearest_band(centres: torch.Tensor, hz: torch.Tensor) -> torch.Tensor:
    """The index of the band whose centre (``centres [M]`` Hz) is nearest each frequency of ``hz [...]`` -> ``[...]``."""
    return (centres.reshape(-1, *([1] * hz.dim())) - hz[None]).abs().argmin(dim=0)


def h1_h2(log_mels: list[torch.Tensor], pitches: list[torch.Tensor], centres: torch.Tensor) -> float | None:
    """A voice's H1-H2 in the log-mel: the median, over the voiced frames of its recordings, of the band nearest F0
    minus the band nearest 2 F0 (natural log; 0 for a flat spectrum, negative where the fundamental is the weaker:
    the classic voice-quality measure, read at the mel's resolution). ``log_mels``: ``[n_mels, F_i]`` each;
    ``pitches``: a pitch part's rows ``[3, F_i]`` (log-F0, voiced, periodicity) of the same recordings; ``centres``:
    the bands' centres ``[n_mels]`` Hz. None below :data:`MIN_H1_H2_FRAMES` voiced frames."""
    values = []
    for log_mel, pitch in zip(log_mels, pitches):
        frames = min(log_mel.shape[-1], pitch.shape[-1])
        bands = centres.to(log_mel.device)
        f0 = pitch[0, :frames].float().exp().to(log_mel.device)  # [F]
        first, second = _nearest_band(bands, f0), _nearest_band(bands, 2 * f0)  # [F] each
        at = torch.arange(frames, device=log_mel.device)
        difference = log_mel[first, at].float() - log_mel[second, at].float()
        values.append(difference[(pitch[1, :frames] > 0.5).to(log_mel.device)].cpu())
    voiced = torch.cat(values) if values else torch.zeros(0)
    return float(voiced.median()) if voiced.numel() >= MIN_H1_H2_FRAMES else None
