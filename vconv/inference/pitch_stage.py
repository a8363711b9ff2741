"""The pitch stage of a conversion: the source's contour for the decoder, in the output register, and the output F0
that the harmonic excitation places its comb at (a model with the pitch path: :mod:`vconv.models.contour`).

:class:`PitchStage` is the part of :class:`~vconv.inference.converter.VoiceConverter` that owns it; a file's chunks
and a stream's windows (:mod:`vconv.inference.streaming`) both build their :class:`SourcePitch` here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from vconv.audio.frontend import FrontEnd
from vconv.config import FeatureConfig
from vconv.errors import VconvError
from vconv.inference.target import SourcePitch
from vconv.models.contour import Register, decoder_contour, output_log_f0, voiced_register
from vconv.vocoders.harmonics import impose_harmonics

if TYPE_CHECKING:
    from vconv.models.vc import VoiceConversionModel


class PitchStage:
    """Source audio or pitch rows -> :class:`SourcePitch` (a mixin of :class:`~vconv.inference.converter.VoiceConverter`,
    which gives it the model, the front-end and the pitch controls: :attr:`pitch_register`, :attr:`pitch_shift`,
    :attr:`harmonics`)."""

    model: "VoiceConversionModel"
    frontend: FrontEnd
    features: FeatureConfig
    pitch_register: str
    pitch_shift: float
    harmonics: bool

    def excite(self, log_mel: torch.Tensor, pitch: SourcePitch | None, start: int = 0) -> torch.Tensor:
        """``log_mel [1, n_mels, F]`` from frame ``start`` on (``[1, n_mels, F - start]``), given the harmonics of the
        output F0 (:attr:`harmonics`), or as it is. The excitation is per frame, so the frames a stream's window drops
        are never computed."""
        log_mel = log_mel[..., start:]
        if not self.harmonics or pitch is None:
            return log_mel
        end = start + log_mel.shape[-1]
        return impose_harmonics(log_mel, pitch.f0[..., start:end], pitch.voicing[..., start:end], self.frontend.logmel,
                                math.log(self.features.log_floor), pitch.h1_h2)

    def source_pitch(self, wav: np.ndarray, target: Register | None, source: Register | None = None,
                     h1_h2: float | None = None) -> SourcePitch | None:
        """The decoder's contour ``[1, 3, F]`` of model-rate ``wav [T]``, its melody whitened on ``source`` (default: its
        own register) and put in the output register (the ``target``'s, or the source's kept: :attr:`pitch_register`),
        shifted by :attr:`pitch_shift` semitones (a target without a measured register keeps the source's level); with
        the output F0 ``[1, F]`` in Hz and the voicing ``[1, F]`` (voiced × periodicity) that :meth:`excite` places the
        harmonics with. None without a pitch path."""
        if not self.model.reads_pitch:
            return None
        rows = self.frontend.pitch_input(wav)
        return self.pitch_of_rows(rows, target, source or voiced_register(rows[0]), h1_h2)

    def pitch_of_rows(self, rows: torch.Tensor, target: Register | None, source: Register,
                      h1_h2: float | None = None) -> SourcePitch:
        """The :class:`SourcePitch` of a pitch part's rows ``[1, 3, F]`` whitened on ``source``, in the output register
        (the ``target``'s, or the source's kept: :attr:`pitch_register`; a target without voiced frames keeps the
        source's), shifted by :attr:`pitch_shift`; ``h1_h2``: the target voice's (:attr:`TargetVoice.h1_h2`), which
        the excitation keeps whatever the register. The file conversion and the stream both build it here."""
        output = target if self.pitch_register == "target" and target is not None and target.frames else source
        contour = decoder_contour(rows, self.model.config.pitch_register, source=source, output=output,
                                  shift_semitones=self.pitch_shift)
        f0 = torch.exp(output_log_f0(rows[:, 0], source, output, self.pitch_shift))
        return SourcePitch(contour, f0, rows[:, 1] * rows[:, 2], h1_h2)

    def _register_in_blocks(self, read: Callable[[int, int], np.ndarray], length: int, block: int) -> Register:
        """The pitch register of a long ``[length]`` signal, tracked ``block`` samples at a time (pooled)."""
        return voiced_register([self.frontend.pitch_input(read(s, min(length, s + block)))[0] for s in range(0, length, block)])


def check_pitch_controls(model: "VoiceConversionModel", shift: float, register: str) -> tuple[float, str]:
    """``(shift, register)`` (already in range: :class:`ConversionSettings`) checked for ``model``: a model without the
    pitch path takes only the defaults (it has no contour to move). One-line VconvErrors."""
    if not model.reads_pitch and (shift or register != "target"):
        raise VconvError("this model has no pitch path (it invents the melody): pitch shift and pitch register need a "
                         "model trained with one (model.pitch_frontend)")
    if shift and model.config.pitch_register == "implicit":
        raise VconvError("this model takes the register from the speaker embedding (pitch_register: implicit): "
                         "it cannot be shifted")
    return shift, register
