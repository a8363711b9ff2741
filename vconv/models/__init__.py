"""The voice-conversion model and its parts (content/speaker encoders, AdaIN decoder, adversary)."""

from __future__ import annotations

from vconv.models.adversary import SpeakerClassifier
from vconv.models.content import ContentEncoder
from vconv.models.decoder import AdaINDecoder
from vconv.models.speaker import SpeakerEncoder
from vconv.models.vc import ReconstructionOutput, VoiceConversionModel, build_model

__all__ = [
    "AdaINDecoder",
    "ContentEncoder",
    "ReconstructionOutput",
    "SpeakerClassifier",
    "SpeakerEncoder",
    "VoiceConversionModel",
    "build_model",
]
