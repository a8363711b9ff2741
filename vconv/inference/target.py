"""What a conversion needs of its target voice, prepared once (:meth:`VoiceConverter.target_voice
<vconv.inference.converter.VoiceConverter.target_voice>`) and shared by every source, chunk and stream block."""

from __future__ import annotations

import dataclasses

import torch

from vconv.inference.target_match import SpectrumStats
from vconv.models.reference import ReferenceMemory


@dataclasses.dataclass(frozen=True)
class TargetVoice:
    """What a conversion needs of its target references, computed once per target.

    ``embedding``: ``[1, S]`` the speaker embedding (references averaged), which drives AdaIN;
    ``spectrum``: the references' long-term log-mel statistics for target-spectrum matching;
    ``reference``: for a model with a reference path, the memory of the references' frames it attends over.
    """

    embedding: torch.Tensor
    spectrum: SpectrumStats
    reference: ReferenceMemory | None = None
