"""Adversarial speaker classifier on the content code (Chou et al. 2018).

``SpeakerClassifier``: ``q [B, code_dim, T'] -> logits [B, n_speakers]``.

The classifier tries to tell the training speaker from the quantised content code. Placed behind a
gradient reversal, a single loss trains it to succeed and the content encoder to make it fail, pushing
the speaker information that survived instance norm and quantisation out of the code. Its accuracy on
held-out codes is also a direct measure of how much speaker information is left.
"""

from __future__ import annotations

import torch
from torch import nn

from vconv.models.layers import ConvBlock, grad_reverse

__all__ = ["SpeakerClassifier"]


class SpeakerClassifier(nn.Module):
    """Frame-level convolutional speaker classifier, logits averaged over time.

    Shapes: ``q [B, code_dim, T'] -> logits [B, n_speakers]``.

    Two convolutions of ``hidden`` channels and a 1x1 output layer give per-frame logits;
    averaging them over time lets every frame vote, so the encoder is pushed to clean every frame and
    not just a pooled summary.
    """

    def __init__(self, *, code_dim: int, hidden: int, n_speakers: int, kernel_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        if n_speakers < 1:
            raise ValueError(f"SpeakerClassifier needs n_speakers >= 1, got {n_speakers}")
        self.code_dim = code_dim
        self.n_speakers = n_speakers
        self.net = nn.Sequential(
            ConvBlock(code_dim, hidden, kernel_size, dropout=dropout),
            ConvBlock(hidden, hidden, kernel_size, residual=True, dropout=dropout),
            nn.Conv1d(hidden, n_speakers, 1),
        )

    def forward(self, q: torch.Tensor, reversal_weight: float | None = None) -> torch.Tensor:
        """``q [B, code_dim, T'] -> logits [B, n_speakers]``.

        With ``reversal_weight`` set, ``q`` first passes a gradient reversal: the classifier's own
        parameters get the ordinary gradient, everything before ``q`` gets ``-reversal_weight`` times it.
        ``None`` means no reversal (e.g. probing a frozen encoder).
        """
        if q.dim() != 3 or q.shape[1] != self.code_dim:
            raise ValueError(f"expected q of shape [B, {self.code_dim}, T'], got {tuple(q.shape)}")
        if reversal_weight is not None:
            q = grad_reverse(q, reversal_weight)
        return self.net(q).mean(dim=-1)
