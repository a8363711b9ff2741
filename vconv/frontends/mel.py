"""The log-mel front-end parts: the normalised log-mel for the content path and for the speaker path.

Both read what the :class:`~vconv.audio.frontend.FrontEnd` computes anyway (its mel settings and
statistics travel with the model), so they have no weights and their feature key is ``"mel"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vconv.frontends.base import FrontEndPart, register_frontend


class _LogMelPart(FrontEndPart):
    """The normalised log-mel ``[n_mels, F]``."""

    kind = "mel"
    is_log_mel = True

    def channels(self, n_mels: int) -> int:
        return n_mels

    @property
    def feature_key(self) -> str:
        return "mel"

    def compute(self, wav: np.ndarray, frontend: Any) -> torch.Tensor:
        return frontend(wav[None])[0]


@register_frontend
class MelContent(_LogMelPart):
    """Content path: the normalised log-mel (timbre-perturbed in training)."""

    role = "content"

    def describe(self, bundle: Path) -> str:
        return "the normalised log-mel"


@register_frontend
class MelSpeaker(_LogMelPart):
    """Speaker path: the normalised log-mel, read by vconv's own speaker encoder."""

    role = "speaker"

    def describe(self, bundle: Path) -> str:
        return "vconv's own speaker encoder on the log-mel"
