"""Harmonic excitation in the mel domain: the converted spectrum's envelope on a harmonic comb at the output's F0.

The decoder renders the spectral envelope well and the melody poorly: fine-tuned with the source's contour it follows
the voicing but moves its harmonics only a little with the F0 it is given (recipes/voices/MODEL_HISTORY.md, "The pitch
path"). The vocoder, on the other hand, follows the harmonics of the mel it is given (copy synthesis keeps the melody:
F0 correlation 0.90). So before the vocoder, each frame of the converted log-mel is rebuilt source-filter style::

    linear magnitude (NNLS from the mel)  --cepstral smoothing-->  envelope [K]
    comb [K] at the output F0 (peaks as wide as the analysis window's main lobe), mixed with a flat spectrum by
    voicing and by frequency (speech is more aperiodic at the top)
    envelope x comb  --mel filterbank, log-->  log-mel  (the frames' loudness kept)

Unvoiced frames keep their envelope on a flat excitation. No weights; a few milliseconds per second of audio.
"""

from __future__ import annotations

import math

import torch

from vconv.audio.logmel import LogMel

__all__ = ["impose_harmonics"]

LIFTER = 24  # cepstral coefficients kept for the envelope: quefrency 1.5 ms at 16 kHz, below a 500 Hz voice's period
LOBE_BINS = 0.9  # the comb's peak width (Gaussian sigma) in FFT bins: a Hann window's main lobe
APERIODIC_LOW, APERIODIC_HIGH = 0.2, 0.9  # the flat share of a voiced frame's excitation at 0 Hz and at Nyquist


@torch.no_grad()
def impose_harmonics(log_mel: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor, logmel: LogMel,
                     floor: float) -> torch.Tensor:
    """``log_mel [B, n_mels, T]`` rebuilt on a harmonic comb at ``f0 [B, T]`` Hz where ``voiced [B, T]`` (in [0, 1]);
    ``floor`` is the natural-log floor of the features. Returns ``[B, n_mels, T]``."""
    cfg = logmel.cfg
    magnitude = logmel.to_linear(log_mel.float(), 8)  # [B, K, T]
    envelope = _cepstral_envelope(magnitude)  # [B, K, T]
    bins = torch.arange(magnitude.shape[1], device=magnitude.device, dtype=torch.float32)  # [K]
    spacing = (f0.float().clamp(min=40.0) * cfg.n_fft / cfg.sample_rate)[:, None, :]  # harmonic period in bins [B, 1, T]
    phase = 2 * math.pi * bins[None, :, None] / spacing
    sharpness = spacing.square() / (2 * math.pi**2 * LOBE_BINS**2)
    comb = ((1 + torch.cos(phase)) / 2).clamp(min=1e-12).pow(sharpness)  # peaks at k * f0, [B, K, T]
    comb = comb / comb.mean(dim=1, keepdim=True).clamp(min=1e-6)  # mean 1 over frequency: the frame's level kept
    flat_share = APERIODIC_LOW + (APERIODIC_HIGH - APERIODIC_LOW) * bins / bins[-1]  # [K]
    periodic = voiced.float()[:, None, :] * (1 - flat_share[None, :, None])
    excitation = periodic * comb + (1 - periodic)
    rebuilt = envelope * excitation
    # the mel of the rebuilt spectrum, each frame scaled back to the loudness the decoder gave it
    mel = logmel.mel_basis @ rebuilt
    before = torch.exp(log_mel.float()).sum(dim=1, keepdim=True)
    mel = mel * (before / mel.sum(dim=1, keepdim=True).clamp(min=1e-9))
    return torch.log(mel.clamp(min=math.exp(floor)))


def _cepstral_envelope(magnitude: torch.Tensor) -> torch.Tensor:
    """The smooth envelope ``[B, K, T]`` of linear magnitudes ``[B, K, T]`` (their real cepstrum cut at :data:`LIFTER`)."""
    log_mag = torch.log(magnitude.clamp(min=1e-7)).transpose(1, 2)  # [B, T, K]
    cepstrum = torch.fft.irfft(log_mag, dim=-1)  # [B, T, n_fft]
    keep = torch.zeros(cepstrum.shape[-1], device=cepstrum.device)
    keep[:LIFTER] = 1.0
    keep[-LIFTER + 1:] = 1.0
    smooth = torch.fft.rfft(cepstrum * keep, dim=-1).real  # [B, T, K]
    return torch.exp(smooth).transpose(1, 2)
