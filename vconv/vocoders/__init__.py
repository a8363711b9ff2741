"""Vocoders: log-mel ``[B, n_mels, F]`` -> waveform ``[B, (F - 1) * hop_length]``.

``get_vocoder("griffinlim", feature_config)`` builds one by name; :func:`check_compatible` refuses a
vocoder built for other mel settings than the model's. Importing this package registers the built-in
vocoders (``griffinlim``; ``vocos``, the trained neural vocoder, whose normal source is a bundle:
:func:`vconv.bundles.load_bundle_vocoder`); others register themselves with :func:`register_vocoder`.
"""

from __future__ import annotations

from vconv.config import VocoderConfig
from vconv.vocoders.base import VOCODERS, Vocoder, check_compatible, check_vocoder_name, get_vocoder, register_vocoder
from vconv.vocoders.griffinlim import GriffinLim
from vconv.vocoders.vocos import VocosVocoder, load_vocoder

__all__ = ["VOCODERS", "GriffinLim", "Vocoder", "VocoderConfig", "VocosVocoder", "check_compatible", "check_vocoder_name", "get_vocoder",
           "load_vocoder", "register_vocoder"]
