"""A conversion's target voice prepared from its references (or the cache of them): the speaker embedding (fitted on
request), the spectrum statistics, the pitch register and the primer (:class:`~vconv.inference.target.TargetVoice`),
or a voice file read.

:class:`TargetPreparation` is the part of :class:`~vconv.inference.converter.VoiceConverter` that owns this: every
conversion (a file, a stream, the page) prepares its target here once and hands the result to the conversion stages.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence, Union

import numpy as np
import torch

from vconv.audio.frontend import FrontEnd
from vconv.audio.io import SILENCE_PEAK
from vconv.audio.io import load as load_audio
from vconv.bundles import BundleInfo
from vconv.config import FeatureConfig
from vconv.errors import VconvError
from vconv.inference.target import PRIMER_SECONDS, TargetVoice
from vconv.inference.target_match import SpectrumStats, spectrum_stats
from vconv.inference.threads import one_thread
from vconv.inference.voice_file import VoiceCache, VoiceSource, load_voice, reference_digests, voice_file_in
from vconv.inference.voice_fit import MAX_FIT_SECONDS, FitReference, VoiceFit, crop_references, fit_embedding
from vconv.models.contour import MIN_VOICED_FRAMES, TARGET_TRIM_SEMITONES, Register, decoder_contour, voiced_register
from vconv.vocoders.harmonics import h1_h2

if TYPE_CHECKING:
    from vconv.models.vc import VoiceConversionModel

AudioInput = Union[str, Path, np.ndarray]
MIN_SECONDS = 0.1  # the content encoder needs a few frames; 0.1 s is ~6 frames at hop 256
MAX_REFERENCE_SECONDS = 120.0  # of a longer target reference (or file to embed) its first two minutes are used


class TargetPreparation:
    """Target references -> :class:`TargetVoice` (a mixin of :class:`~vconv.inference.converter.VoiceConverter`, which
    gives it the model, the front-end, the precision and the audio checks it uses)."""

    model: "VoiceConversionModel"
    frontend: FrontEnd
    info: BundleInfo
    features: FeatureConfig
    fit_steps: int
    compute_dtype: torch.dtype
    voice_cache: VoiceCache | None  # prepared voices kept across conversions (the CLI sets one)
    fit_progress: Callable[[int, int], None] | None  # told (step, steps) during a fit
    enhance: str  # off, auto or on: inputs cleaned of a room's reverberation and noise first (:meth:`heard`)

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    if TYPE_CHECKING:  # given by the converter (its precision and its audio checks)
        def compute(self, part: str = "model") -> ContextManager[Any]: ...

        def prepare_audio(self, audio: AudioInput, sr: int | None, name: str = "<array>") -> np.ndarray: ...


    def heard(self, wav: np.ndarray) -> np.ndarray:
        """A model-rate input ``[T]`` as the networks read it: with :attr:`enhance` ``on`` (``auto``: when its estimates
        place it in a room), its late reverberation and steady noise taken out (:mod:`vconv.audio.enhance`), else as
        recorded."""
        return self.heard_cleaned(wav)[0]

    def heard_cleaned(self, wav: np.ndarray, in_room: bool | None = None) -> tuple[np.ndarray, bool]:
        """:meth:`heard`'s ``[T]``, and whether the enhancer cleaned it (``auto``: its estimates placed it in a room,
        reverberant or noisy; ``on``: every input long enough to clean). ``in_room``: with ``auto``, the decision
        already made for the file this is a chunk of (:meth:`file_in_a_room`), instead of one on ``wav`` itself."""
        if self.enhance == "off" or in_room is False:
            return wav, False
        from vconv.audio.enhance import enhance, enhance_in_a_room

        x = np.asarray(wav, dtype=np.float32)
        if self.enhance == "on" or in_room:
            cleaned = enhance(x, self.sample_rate)
            return cleaned, cleaned is not x  # a clip too short to clean comes back as it was
        cleaned_in_room = enhance_in_a_room(x, self.sample_rate)
        return (x, False) if cleaned_in_room is None else (cleaned_in_room, True)

    def file_in_a_room(self, read: Callable[[int, int], np.ndarray], length: int) -> bool | None:
        """With ``enhance auto``, whether a source of ``length`` samples (``read(start, stop)``) was recorded in a room,
        decided once on :data:`~vconv.audio.enhance.ROOM_DECISION_SECONDS` from its first sound on (a lead-in of digital
        silence would read as a dry room; :func:`~vconv.audio.enhance.recorded_in_a_room`); None for another mode. Why
        once: a file is recorded in one room, and chunk by chunk the quick estimate made a clean 2-minute file's
        conversion 43 % slower and could clean one chunk and not the next. Like the estimate itself, it is meant for
        speech: a file that opens on a steady hum or music is judged on that."""
        if self.enhance != "auto":
            return None
        from vconv.audio.enhance import ROOM_DECISION_SECONDS, recorded_in_a_room

        begin = _first_sound(read, length, self.sample_rate)
        excerpt = read(begin, min(length, begin + int(ROOM_DECISION_SECONDS * self.sample_rate)))
        return recorded_in_a_room(np.asarray(excerpt, dtype=np.float32), self.sample_rate)

    def _prepare_refs(self, refs: Sequence[AudioInput] | AudioInput, sr: int | None) -> list[np.ndarray]:
        """One or several references → prepared waveforms ``[T_i]`` (at least one)."""
        return [self.heard(w) for w in self._recorded_refs(refs, sr)]

    def _recorded_refs(self, refs: Sequence[AudioInput] | AudioInput, sr: int | None) -> list[np.ndarray]:
        """One or several references → waveforms ``[T_i]`` at the model's rate, as recorded (not yet :meth:`heard`)."""
        refs = [refs] if isinstance(refs, (str, Path, np.ndarray)) else list(refs)
        if not refs:
            raise VconvError("at least one target reference is needed")
        return [self._reference_audio(r, sr) for r in refs]

    def _reference_audio(self, ref: AudioInput, sr: int | None) -> np.ndarray:
        """A reference at the model's rate: of a file, its first :data:`MAX_REFERENCE_SECONDS` only."""
        if isinstance(ref, (str, Path)):
            return load_audio(ref, self.sample_rate, min_seconds=MIN_SECONDS, max_seconds=None,
                              first_seconds=MAX_REFERENCE_SECONDS)[0]
        return self.prepare_audio(ref, sr, "<array>")

    def _embed_prepared(self, wavs: list[np.ndarray]) -> torch.Tensor:
        """Prepared waveforms → their average speaker embedding ``[1, S]``."""
        return self._embed_inputs(self._speaker_inputs(wavs))

    def _speaker_inputs(self, wavs: list[np.ndarray]) -> list[torch.Tensor]:
        """What the speaker encoder reads of each prepared waveform: normalised log-mels ``[n_mels, T_i]``."""
        return [self.frontend.speaker_input(w)[0] for w in wavs]

    def _embed_inputs(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The speaker encoder's inputs → their average speaker embedding ``[1, S]``."""
        with self.compute():
            return self.model.embed_speaker(inputs).float()

    @torch.no_grad()
    def speaker_embedding(self, refs: Sequence[AudioInput] | AudioInput, sr: int | None = None) -> torch.Tensor:
        """Average speaker embedding ``[1, S]`` of one or several references (not normalised)."""
        return self._embed_prepared(self._prepare_refs(refs, sr))

    @torch.no_grad()
    def target_voice(self, refs: Sequence[AudioInput] | AudioInput, sr: int | None = None) -> TargetVoice:
        """The speaker embedding (fitted to the references when :attr:`fit_steps` > 0) and the log-mel statistics of
        one or several target references; or a voice file saved earlier (:mod:`vconv.inference.voice_file`), given
        alone. With :attr:`voice_cache` set, the voice is looked up by the references' content and the bundle, and
        stored once computed, so a second conversion to the same target pays no fit and no preparation."""
        voice_path = voice_file_in(refs)
        if voice_path is not None:
            return self.open_voice(voice_path)
        return self.prepared_target(refs, sr)[0]

    @torch.no_grad()
    def voice_register(self, recordings: Register | Sequence[AudioInput] | AudioInput, sr: int | None = None) -> Register:
        """The pitch register of a voice, for a model with the pitch path: measured on one or several recordings of it
        (trimmed as a target's, :data:`TARGET_TRIM_SEMITONES`), or a voice file's, given alone. A stream given its
        source speaker's starts from it instead of learning it over its first seconds (:meth:`VoiceConverter.stream`); a
        :class:`Register` given is checked against the model and returned.
        One-line VconvErrors: no pitch path, a voice file of another bundle, too little voiced speech."""
        if not self.model.reads_pitch:
            raise VconvError("this model has no pitch path (it invents the melody): a voice's pitch register means nothing to it")
        if isinstance(recordings, Register):
            return recordings
        if not isinstance(recordings, (str, Path, np.ndarray)) and not list(recordings):
            raise VconvError("a voice's pitch register needs at least one recording of it")
        voice_path = voice_file_in(recordings)
        if voice_path is not None:
            register, where = self.open_voice(voice_path).register, str(voice_path)
        else:
            rows = [self.frontend.pitch_input(wav)[0] for wav in self._prepare_refs(recordings, sr)]
            named = [str(r) for r in ([recordings] if isinstance(recordings, (str, Path)) else recordings) if isinstance(r, (str, Path))]
            register, where = voiced_register(rows, TARGET_TRIM_SEMITONES), ", ".join(named) or "the voice's recordings"
        if register is None or not register.trusted:
            raise VconvError(f"{where}: too little voiced speech to measure a pitch register (at least "
                             f"{MIN_VOICED_FRAMES} voiced frames, about a quarter second)")
        return register

    def open_voice(self, path: str | Path) -> TargetVoice:
        """A voice file made with this bundle (:mod:`vconv.inference.voice_file`); a one-line error for another's."""
        return load_voice(path, self.info.path.name, self.info.digest)

    @torch.no_grad()
    def prepared_target(self, refs: Sequence[AudioInput] | AudioInput, sr: int | None = None) -> tuple[TargetVoice, VoiceSource]:
        """:meth:`target_voice` of audio references (computed, or from :attr:`voice_cache`), and what it depends on
        (the bundle, the fit, the references' content: a voice file's provenance and the cache's key)."""
        recorded = self._recorded_refs(refs, sr)  # each reference loaded and checked once
        source = VoiceSource(self.info.path.name, self.info.digest, self.sample_rate, self.fit_steps,
                             reference_digests(recorded), str(self.compute_dtype).removeprefix("torch."), self.enhance)
        cache = self.voice_cache
        cached = cache.get(source) if cache else None
        def heard_refs() -> list[np.ndarray]:  # the references as the model reads them (the enhancer's, if it runs)
            return [self.heard(w) for w in recorded]

        if cached is not None:  # the enhancer runs only if an older entry lacks what is measured on the references
            return self._filled_in(cached, heard_refs), source
        voice = self._prepare_voice(heard_refs())
        if cache:
            cache.put(source, voice)
        return voice, source

    def _prepare_voice(self, wavs: list[np.ndarray]) -> TargetVoice:
        """:meth:`target_voice` of prepared references ``[T_i]``, computed."""
        log_mels = self._log_mels(wavs)
        primer = np.concatenate(wavs)[-int(PRIMER_SECONDS * self.sample_rate):].astype(np.float32)  # the references' tail
        embedding = self._embed_inputs(self._speaker_inputs(wavs))
        fit_losses: tuple[float, ...] = ()
        if self.fit_steps:
            fit = self._fit_voice(wavs, log_mels, embedding)
            embedding, fit_losses = fit.embedding, fit.losses
        register, fundamental = self._pitch_of_references(wavs, log_mels)
        return TargetVoice(embedding=embedding, spectrum=self._spectrum_of_references(log_mels),
                           primer=primer, fit_losses=fit_losses, register=register, h1_h2=fundamental)

    def _spectrum_of_references(self, log_mels: list[torch.Tensor]) -> SpectrumStats:
        """The references' log-mels ``[n_mels, F_i]`` -> their pooled speech-frame statistics (``[n_mels, 1]`` each),
        with the bands that carry the voice rather than a room's noise."""
        return spectrum_stats(log_mels, floor=math.log(self.features.log_floor), band_centres=self.frontend.logmel.band_centres)

    def _log_mels(self, wavs: list[np.ndarray]) -> list[torch.Tensor]:
        """Prepared references ``[T_i]`` -> their log-mels ``[n_mels, F_i]``."""
        return [self.frontend.log_mel(w[None])[0] for w in wavs]

    def _filled_in(self, voice: TargetVoice, heard_refs: Callable[[], list[np.ndarray]]) -> TargetVoice:
        """``voice`` (cached before vconv measured the H1-H2 or told the voice's bands from a noise floor's) with what
        it lacks computed from its references (``heard_refs()``, prepared ``[T_i]``): a few milliseconds, no fit, so an
        older cache entry converts as a new one would."""
        lacks_h1_h2 = voice.h1_h2 is None and self.model.reads_pitch
        if not lacks_h1_h2 and voice.spectrum.voiced_bands is not None:
            return voice
        wavs = heard_refs()
        log_mels = self._log_mels(wavs)
        h1_h2 = self._pitch_of_references(wavs, log_mels)[1] if lacks_h1_h2 else voice.h1_h2
        voiced = self._spectrum_of_references(log_mels).voiced_bands
        return dataclasses.replace(voice, h1_h2=h1_h2, spectrum=dataclasses.replace(voice.spectrum, voiced_bands=voiced))

    def _pitch_of_references(self, wavs: list[np.ndarray], log_mels: list[torch.Tensor]) -> tuple[Register | None, float | None]:
        """For a model with the pitch path, the pitch register and the H1-H2 (:func:`~vconv.vocoders.harmonics.h1_h2`)
        of prepared references ``[T_i]`` with their log-mels ``[n_mels, F_i]`` (pooled); else ``(None, None)``."""
        if not self.model.reads_pitch:
            return None, None
        rows = [self.frontend.pitch_input(w)[0] for w in wavs]
        return voiced_register(rows, TARGET_TRIM_SEMITONES), h1_h2(log_mels, rows, self.frontend.logmel.band_centres)

    def _fit_voice(self, wavs: list[np.ndarray], log_mels: list[torch.Tensor], embedding: torch.Tensor) -> VoiceFit:
        """The embedding ``[1, S]`` tuned on the references (:mod:`vconv.inference.voice_fit`), from ``embedding``."""
        max_frames = int(MAX_FIT_SECONDS * self.sample_rate / self.features.hop_length)
        references, frames = [], 0
        for wav, log_mel in zip(wavs, log_mels):  # only what the fit reads goes through the content front-end
            if frames >= max_frames:
                break
            pitch = None
            if self.model.reads_pitch:  # the reference's own contour, in its own register (the fit reconstructs it)
                pitch = decoder_contour(self.frontend.pitch_input(wav), self.model.config.pitch_register)
            references.append(FitReference(self.frontend.content_input(wav), self.frontend.normalize(log_mel)[None], pitch))
            frames += log_mel.shape[-1]
        with self.compute(), one_thread():  # many small backward passes: faster on one thread (threads.one_thread)
            return fit_embedding(self.model, crop_references(references, max_frames), embedding, steps=self.fit_steps,
                                 progress=self.fit_progress)

    @torch.no_grad()
    def embed(self, wavs: Sequence[AudioInput] | AudioInput, sr: int | None = None) -> np.ndarray:
        """L2-normalised speaker embeddings ``[N, S]``, one per input utterance."""
        wavs = [wavs] if isinstance(wavs, (str, Path, np.ndarray)) else list(wavs)
        rows = [self.speaker_embedding([w], sr) for w in wavs]
        emb = torch.nn.functional.normalize(torch.cat(rows).float(), dim=-1)
        return emb.cpu().numpy()


def _first_sound(read: Callable[[int, int], np.ndarray], length: int, sr: int) -> int:
    """The start of the first second of a ``[length]`` signal (``read(start, stop)``) whose peak reaches
    :data:`~vconv.audio.io.SILENCE_PEAK` (below it: digital silence or dither, nothing a room estimate can read); 0 when
    none does."""
    for start in range(0, length, sr):
        if float(np.abs(read(start, min(length, start + sr))).max(initial=0.0)) >= SILENCE_PEAK:
            return start
    return 0
