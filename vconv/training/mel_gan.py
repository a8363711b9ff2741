"""An adversarial loss on the conversion model's output mel: a training-only part of the model trainer.

Why: the decoder is a regression (L1 on the normalised log-mel), so where several spectra fit the content and
the voice it predicts their average: formants and harmonics come out smeared, and smeared spectra sound like
no one in particular. On training voices the model's own output reaches a Resemblyzer similarity of ~0.71 to
another utterance of the speaker, against 0.80 for the vocoder on the real mel (recipes/voices/MODEL_HISTORY.md),
so the regression itself caps how much of a voice the network can carry. A discriminator that tells real log-mel
segments from reconstructed ones, with feature matching on its activations (as HiFi-GAN and Vocos train their
vocoders), pushes the decoder toward spectra with the detail of real speech.

:class:`MelDiscriminator` judges ``[B, n_mels, T]`` log-mel segments as a one-channel image: 2-D convolutions over
(mel band, frame), so it sees the local spectral texture (formant sharpness, harmonic ridges, onsets) anywhere
in the segment, and returns a score map and its activations (:class:`~vconv.vocoders.discriminators.DiscriminatorOutput`
with one sub-discriminator, so the vocoder's loss functions apply unchanged).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from vconv.vocoders.discriminators import DiscriminatorOutput, run_stack

__all__ = ["MelDiscriminator"]


class MelDiscriminator(nn.Module):
    """``log-mel [B, n_mels, T] -> DiscriminatorOutput`` (one score map ``[B, 1, ~n_mels/8, ~T/4]``).

    Four weight-normalised 2-D convolutions (the middle two stride 2 in both axes, the last 2 in frequency) of
    ``channels``, ``2·channels``, ``4·channels``, ``4·channels`` and a 3x3 output convolution; ~0.1 M parameters
    at ``channels=16``.
    """

    def __init__(self, channels: int = 16):
        super().__init__()
        c = channels
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, c, 5, 1, padding=2)),
            weight_norm(nn.Conv2d(c, 2 * c, 5, 2, padding=2)),
            weight_norm(nn.Conv2d(2 * c, 4 * c, 5, 2, padding=2)),
            weight_norm(nn.Conv2d(4 * c, 4 * c, 3, (2, 1), padding=1)),
        ])
        self.out = weight_norm(nn.Conv2d(4 * c, 1, 3, padding=1))

    def forward(self, log_mel: torch.Tensor) -> DiscriminatorOutput:
        if log_mel.dim() != 3:
            raise ValueError(f"expected a log-mel batch [B, n_mels, T], got {tuple(log_mel.shape)}")
        score, features = run_stack(self.convs, self.out, log_mel.unsqueeze(1))
        return DiscriminatorOutput([score], [features])
