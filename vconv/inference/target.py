"""What a conversion needs of its target voice, prepared once (:meth:`VoiceConverter.target_voice
<vconv.inference.converter.VoiceConverter.target_voice>`) and shared by every source, chunk and stream block."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from vconv.inference.target_match import SpectrumStats
from vconv.models.contour import Register


@dataclasses.dataclass(frozen=True)
class TargetVoice:
    """What a conversion needs of its target references, computed once per target.

    ``embedding``: ``[1, S]`` the speaker embedding (references averaged), which drives AdaIN;
    ``spectrum``: the references' long-term log-mel statistics for target-spectrum matching;
    ``primer``: the references' last :data:`PRIMER_SECONDS` of audio at the model's rate, float32 ``[n]``: a stream
    (:mod:`vconv.inference.streaming`) starts with it as past context, so its first windows are normalised on
    speech rather than on a few frames; it is never emitted;
    ``fit_losses``: when the embedding was fitted to the references (:mod:`vconv.inference.voice_fit`), their
    reconstruction L1 before each fit step and after the last (the first is the speaker encoder's embedding's); empty
    when it was not;
    ``register``: for a model with the pitch path, the references' pitch register (mean and spread of their voiced
    log-F0, :class:`~vconv.models.contour.Register`), the level a converted voice speaks at; None otherwise;
    ``h1_h2``: for a model with the pitch path, the references' H1-H2 (how much weaker their fundamental is than the
    second harmonic, nats: :func:`vconv.vocoders.harmonics.h1_h2`), which the harmonic excitation keeps; None when
    unknown (too little voicing, or a voice file made before it was measured);
    ``origin``: where it came from: ``"computed"`` from the references now, ``"cache"`` (the cache of prepared voices) or
    ``"file"`` (a voice file, :mod:`vconv.inference.voice_file`);
    ``register_rules``: for a voice file's register, the pitch rules it was measured under
    (:data:`vconv.models.contour.PITCH_RULES`; None for a file made before they were recorded).
    """

    embedding: torch.Tensor
    spectrum: SpectrumStats
    primer: np.ndarray | None = None
    fit_losses: tuple[float, ...] = ()
    origin: str = "computed"
    register: Register | None = None
    h1_h2: float | None = None
    register_rules: str | None = None


PRIMER_SECONDS = 3.0  # as much as a stream's default context (3 s) takes


@dataclasses.dataclass(frozen=True)
class SourcePitch:
    """What a conversion needs of its source's pitch (a model with the pitch path): the decoder's ``contour [1, 3, F]``,
    the output ``f0 [1, F]`` in Hz and the ``voicing [1, F]`` in [0, 1] (voiced × periodicity) of the harmonic
    excitation (:mod:`vconv.vocoders.harmonics`), and the output voice's ``h1_h2`` there (None: unknown)."""

    contour: torch.Tensor
    f0: torch.Tensor
    voicing: torch.Tensor
    h1_h2: float | None = None
