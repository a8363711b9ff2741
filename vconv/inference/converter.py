"""The Python API: audio in, audio out, in three lines::

    import vconv
    vc = vconv.load()                                   # the shipped bundle, or a name / folder
    wav = vc.convert("src.wav", refs=["target.wav"])    # float32 [T] at vc.sample_rate

:class:`VoiceConverter` is the audio-level pipeline: audio -> :class:`~vconv.audio.frontend.FrontEnd`
(log-mel, normalised) -> :meth:`VoiceConversionModel.convert <vconv.models.vc.VoiceConversionModel.convert>`
-> front-end (back to log-mel) -> target-spectrum matching (:mod:`vconv.inference.target_match`) -> vocoder. Inputs are paths or numpy arrays (give ``sr`` for arrays);
everything runs on the CPU unless a device is passed.

Long sources are converted in overlapping chunks whose waveforms are cross-faded
(:mod:`vconv.inference.chunking`), so memory stays bounded whatever the length.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence, Union

import numpy as np
import torch

from vconv.audio.frontend import FrontEnd
from vconv.audio.io import as_float_audio, check_sample_rate, downmix, resample, validate
from vconv.audio.io import load as load_audio
from vconv.bundles import BundleInfo, load_bundle
from vconv.errors import VconvError
from vconv.inference.chunking import process_in_chunks, stream_chunks
from vconv.inference.precision import compute_in, resolve_precision, store_lowered
from vconv.inference.registry import resolve_bundle
from vconv.inference.settings import ConversionSettings
from vconv.inference.target import PRIMER_SECONDS, SourcePitch, TargetVoice
from vconv.inference.target_match import (
    MIN_SPEECH_FRAMES,
    energy_level,
    frame_energy,
    is_pause,
    level_of_energies,
    match_spectrum,
    spectrum_stats,
)
from vconv.inference.voice_file import VoiceCache, VoiceSource, load_voice, reference_digests, voice_file_in
from vconv.inference.voice_fit import MAX_FIT_SECONDS, FitReference, VoiceFit, crop_references, fit_embedding
from vconv.models.contour import Register, decoder_contour, output_log_f0, voiced_register
from vconv.vocoders.harmonics import impose_harmonics

if TYPE_CHECKING:
    from vconv.inference.streaming import StreamConverter
    from vconv.models.vc import VoiceConversionModel

AudioInput = Union[str, Path, np.ndarray]
MIN_SECONDS = 0.1  # the content encoder needs a few frames; 0.1 s is ~6 frames at hop 256
MAX_REFERENCE_SECONDS = 120.0  # of a longer target reference (or file to embed) its first two minutes are used


class VoiceConverter:
    """One-shot any-to-any conversion with a loaded bundle and a vocoder.

    Attributes: ``model`` (:class:`vconv.models.VoiceConversionModel`), ``frontend``
    (:class:`~vconv.audio.frontend.FrontEnd`), ``info`` (:class:`BundleInfo`), ``vocoder`` (a
    :class:`vconv.vocoders.Vocoder`), ``sample_rate``, ``target_match`` (``meanstd``, ``mean`` or ``off``:
    how the converted spectrum is moved onto the target's, :mod:`vconv.inference.target_match`), ``compute_dtype``
    (what the networks compute in: float32, or bfloat16 autocast, :mod:`vconv.inference.precision`), ``fit_steps``
    (0, or the Adam steps that fit each target's speaker embedding to its references, :mod:`vconv.inference.voice_fit`);
    for a model with the pitch path (:mod:`vconv.models.contour`), ``pitch_register`` (``target``: the output speaks at the
    target's pitch level; ``source``: at the source's) and ``pitch_shift`` (semitones added to the output's F0).
    """

    def __init__(self, model, frontend: FrontEnd, info: BundleInfo, vocoder=None, device: str | torch.device = "cpu",
                 settings: ConversionSettings | None = None, **options: Any):
        """``settings`` (:class:`~vconv.inference.settings.ConversionSettings`), or its fields as keyword ``options``;
        its ``vocoder``, ``fast`` and ``device`` are :func:`load`'s to apply: here ``vocoder`` is the vocoder itself
        (default :data:`~vconv.bundles.vocoder.DEFAULT_VOCODER`) and ``device`` where everything runs."""
        from vconv.bundles.vocoder import DEFAULT_VOCODER
        from vconv.vocoders import check_compatible, get_vocoder

        settings = settings_of(settings, options)
        self.settings = settings
        self.model = model.to(device).eval()
        self.frontend = frontend.to(device)
        self.info = info
        self.device = torch.device(device)
        self.features = frontend.cfg
        self.vocoder = vocoder if vocoder is not None else get_vocoder(DEFAULT_VOCODER, self.features)
        check_compatible(self.features, self.vocoder)
        self.vocoder = self.vocoder.to(self.device).eval()
        self.target_match = settings.target_match
        self.compute_dtype = resolve_precision(settings.precision, self.device)
        self.fit_steps = settings.fit_steps
        self.pitch_shift, self.pitch_register = check_pitch_controls(self.model, settings.pitch_shift, settings.pitch_register)
        # the converted mel rebuilt on a harmonic comb at the output F0 before the vocoder (vconv.vocoders.harmonics): off by
        # default: it makes a pitch shift land and keeps the voicing, but on the held-out voices it cost words (CER 0.27 ->
        # 0.53) and WORLD dio reads an octave up on its output (recipes/voices/MODEL_HISTORY.md, "The pitch path")
        self.harmonics = settings.harmonics
        if self.harmonics and not self.model.reads_pitch:
            raise VconvError("harmonic excitation needs a model with the pitch path (it places the harmonics at its F0)")
        self.voice_cache: VoiceCache | None = None  # fitted voices kept across conversions (the CLI sets one)
        self.fit_progress: Callable[[int, int], None] | None = None  # told (step, steps) during a fit

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    def compute(self, part: str = "model") -> ContextManager:
        """The context a network runs in (bfloat16 autocast or nothing, :attr:`compute_dtype`): ``part`` is
        ``"model"`` (the conversion network, its speaker and reference encoders) or ``"vocoder"`` (a vocoder
        whose weights tolerate it; Griffin-Lim's least-squares inversion always stays float32)."""
        return compute_in(self.dtype_of(part), self.device)

    def dtype_of(self, part: str = "model") -> torch.dtype:
        """What ``part`` (as :meth:`compute` names them) computes in: :attr:`compute_dtype`, but float32 for a
        vocoder that does not tolerate bfloat16."""
        if part == "vocoder" and not getattr(self.vocoder, "mixed_precision", False):
            return torch.float32
        return self.compute_dtype

    # ---------------------------------------------------------------------------------------- inputs

    def prepare_audio(self, audio: AudioInput, sr: int | None, name: str = "<array>") -> np.ndarray:
        """Any input → mono float32 ``[T]`` at the model's rate, validated."""
        if isinstance(audio, (str, Path)):
            wav, _ = load_audio(audio, self.sample_rate, min_seconds=MIN_SECONDS, max_seconds=None)
            return wav
        if sr is None:
            raise VconvError(f"{name}: a numpy waveform needs its sample rate (sr=...)")
        sr = check_sample_rate(sr, f"{name}: sr")
        wav = as_float_audio(audio, name)  # int16/int32 PCM scaled to [-1, 1]; nonsense dtypes refused
        if wav.ndim == 2:  # [T, C] or [C, T]: downmix the smaller axis
            wav = downmix(wav if np.argmin(wav.shape) == 1 else wav.T, name)
        validate(wav, sr, name, min_seconds=MIN_SECONDS)
        return resample(wav, sr, self.sample_rate)

    @torch.no_grad()
    def _model_input(self, wav: np.ndarray) -> torch.Tensor:
        """``[T]`` → what the content encoder reads, ``[1, C, F]`` (normalised log-mel or Whisper states)."""
        return self.frontend.content_input(wav)

    def _energy_level_in_blocks(self, read: Callable[[int, int], np.ndarray], length: int, block: int) -> float:
        """:func:`~vconv.inference.target_match.energy_level` of a long ``[length]`` signal read a span at a time,
        its log-mel computed ``block`` samples at a time: the whole file's spectrogram would take ~60 bytes per
        sample (600 MB for 10 minutes)."""
        energies = [frame_energy(self.frontend.log_mel(read(s, min(length, s + block)))) for s in range(0, length, block)]
        return level_of_energies(torch.cat(energies))

    def _vocode(self, log_mel: torch.Tensor, num_samples: int) -> np.ndarray:
        """Log-mel ``[1, n_mels, F]`` → ``[num_samples]`` audio (the vocoder yields (F-1)*hop; pad the tail)."""
        with self.compute("vocoder"):
            audio = self.vocoder(log_mel)[0].float().cpu().numpy()
        return np.pad(audio, (0, max(0, num_samples - audio.size)))[:num_samples]

    # ------------------------------------------------------------------------------------- embedding

    def _prepare_refs(self, refs: Sequence[AudioInput] | AudioInput, sr: int | None) -> list[np.ndarray]:
        """One or several references → prepared waveforms ``[T_i]`` (at least one)."""
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
        alone. With :attr:`voice_cache` set, a fitted voice is looked up by the references' content and the bundle,
        and stored after its fit, so a second conversion to the same target pays no fit."""
        voice_path = voice_file_in(refs)
        if voice_path is not None:
            return self.open_voice(voice_path)
        return self.prepared_target(refs, sr)[0]

    def open_voice(self, path: str | Path) -> TargetVoice:
        """A voice file made with this bundle (:mod:`vconv.inference.voice_file`); a one-line error for another's."""
        return load_voice(path, self.info.path.name, self.info.digest)

    @torch.no_grad()
    def prepared_target(self, refs: Sequence[AudioInput] | AudioInput, sr: int | None = None) -> tuple[TargetVoice, VoiceSource]:
        """:meth:`target_voice` of audio references (computed, or from :attr:`voice_cache`), and what it depends on
        (the bundle, the fit, the references' content: a voice file's provenance and the cache's key)."""
        wavs = self._prepare_refs(refs, sr)  # each reference loaded and checked once
        source = VoiceSource(self.info.path.name, self.info.digest, self.sample_rate, self.fit_steps, reference_digests(wavs),
                             str(self.compute_dtype).removeprefix("torch."))
        cache = self.voice_cache if self.fit_steps else None
        cached = cache.get(source) if cache else None
        if cached is not None:
            return cached, source
        voice = self._prepare_voice(wavs)
        if cache:
            cache.put(source, voice)
        return voice, source

    def _prepare_voice(self, wavs: list[np.ndarray]) -> TargetVoice:
        """:meth:`target_voice` of prepared references ``[T_i]``, computed."""
        log_mels = [self.frontend.log_mel(w[None])[0] for w in wavs]
        primer = np.concatenate(wavs)[-int(PRIMER_SECONDS * self.sample_rate):].astype(np.float32)  # the references' tail
        embedding = self._embed_inputs(self._speaker_inputs(wavs))
        fit_losses: tuple[float, ...] = ()
        if self.fit_steps:
            fit = self._fit_voice(wavs, log_mels, embedding)
            embedding, fit_losses = fit.embedding, fit.losses
        return TargetVoice(embedding=embedding, spectrum=spectrum_stats(log_mels),
                           primer=primer, fit_losses=fit_losses, register=self._register_of(wavs))

    def _register_of(self, wavs: list[np.ndarray]) -> Register | None:
        """The pitch register of prepared references ``[T_i]`` (pooled), for a model with the pitch path; else None."""
        if not self.model.reads_pitch:
            return None
        return voiced_register([self.frontend.pitch_input(w)[0] for w in wavs])

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
        with self.compute():
            return fit_embedding(self.model, crop_references(references, max_frames), embedding, steps=self.fit_steps,
                                 progress=self.fit_progress)

    @torch.no_grad()
    def embed(self, wavs: Sequence[AudioInput] | AudioInput, sr: int | None = None) -> np.ndarray:
        """L2-normalised speaker embeddings ``[N, S]``, one per input utterance."""
        wavs = [wavs] if isinstance(wavs, (str, Path, np.ndarray)) else list(wavs)
        rows = [self.speaker_embedding([w], sr) for w in wavs]
        emb = torch.nn.functional.normalize(torch.cat(rows).float(), dim=-1)
        return emb.cpu().numpy()

    # ------------------------------------------------------------------------------------ conversion

    def stream(self, target: TargetVoice | Sequence[AudioInput] | AudioInput, *, block_ms: float = 96.0,
               lookahead_ms: float = 48.0, context_ms: float = 1500.0, crossfade_ms: float = 32.0,
               vocoder_passes: bool = True, sample_rate: int | None = None, sr: int | None = None,
               prime: bool = True, edge_hold_frames: int = 4,
               prime_matching: bool = True) -> "StreamConverter":
        """A live converter to ``target`` (references, prepared once, or a :class:`TargetVoice`): ``push(pcm) ->
        pcm`` any number of samples at a time, ``flush()`` for the rest (:mod:`vconv.inference.streaming`).

        ``sample_rate``: the stream's audio rate (default the model's); ``sr``: the rate of numpy references.
        Latency (``.latency_ms``): the block plus the look-ahead, each rounded to whole mel hops. ``vocoder_passes``:
        the neural vocoder's post-processing on every block, as offline (on by default). ``prime``: start with the target references' last
        ``context_ms`` of speech as past context (never emitted), so the first blocks are not normalised on a few
        frames alone (docs/STREAMING.md measures both). ``edge_hold_frames``: the window's last content frame held this
        many frames past its edge for the network, instead of the zero padding that reads as the end of an utterance.
        ``prime_matching``: until a quarter second of the stream's own speech is converted, its spectrum is moved with
        the converted primer's band means (shape only) instead of being left unmatched (docs/STREAMING.md).
        """
        from vconv.inference.streaming import StreamConverter, StreamSettings

        prepared = target if isinstance(target, TargetVoice) else self.target_voice(target, sr)
        settings = StreamSettings(block_ms=block_ms, lookahead_ms=lookahead_ms, crossfade_ms=crossfade_ms, context_ms=context_ms,
                                  vocoder_passes=vocoder_passes, prime=prime, edge_hold_frames=edge_hold_frames,
                                  prime_matching=prime_matching)
        return StreamConverter(self, prepared, settings, sample_rate=sample_rate)

    def matching_skipped(self, target: TargetVoice) -> str | None:
        """Why this converter's matching mode cannot match onto ``target`` (one line), or ``None`` when it can.

        Matching is skipped, not refused, when the references hold too little speech for trusted
        statistics: the conversion is then the model's own output, and the caller should say so.
        """
        if self.target_match == "off" or target.spectrum.trusted:
            return None
        frames_per_second = self.sample_rate / self.features.hop_length
        return (f"target-spectrum matching skipped: the target references hold {target.spectrum.frames / frames_per_second:.2f} s "
                f"of speech, at least {MIN_SPEECH_FRAMES / frames_per_second:.2f} s is needed; the output is the model's own")

    @torch.no_grad()
    def convert(
        self,
        source: AudioInput,
        refs: Sequence[AudioInput] | AudioInput,
        sr: int | None = None,
        *,
        chunk_seconds: float = 20.0,
        overlap_seconds: float = 1.0,
    ) -> np.ndarray:
        """Convert ``source`` to the voice of ``refs`` (embeddings averaged); float32 ``[T]`` at ``sample_rate``.

        ``sr`` applies to numpy inputs. The output has the source's length.
        """
        name = str(source) if not isinstance(source, np.ndarray) else "<array>"
        wav = self.prepare_audio(source, sr, name)
        target = self.target_voice(refs, sr)
        return self.convert_wav(wav, target, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds)

    @torch.no_grad()
    def copy_synthesis(self, source: AudioInput, sr: int | None = None) -> np.ndarray:
        """The vocoder alone on the source's own log-mel (no conversion): the floor of any conversion's quality."""
        wav = self.prepare_audio(source, sr, str(source) if not isinstance(source, np.ndarray) else "<array>")
        return self._vocode(self.frontend.log_mel(wav[None]), wav.size)

    @torch.no_grad()  # convert_wav is also called directly (convert_paths): never build an autograd graph
    def convert_wav(self, wav: np.ndarray, target: TargetVoice | torch.Tensor, *, chunk_seconds: float = 20.0,
                    overlap_seconds: float = 1.0) -> np.ndarray:
        """Model-rate ``[T]`` + target → converted ``[T]``, in cross-faded chunks of ``chunk_seconds``.

        See :meth:`convert_wav_pair` (this is its first output, the conversion as configured).
        """
        return self.convert_wav_pair(wav, target, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                                     unmatched=False)[0]

    @torch.no_grad()
    def convert_wav_pair(self, wav: np.ndarray, target: TargetVoice | torch.Tensor, *, chunk_seconds: float = 20.0,
                         overlap_seconds: float = 1.0, unmatched: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``(converted [T], the model's own output [T] or None)``: with ``unmatched`` the same model output is
        also vocoded without target-spectrum matching (what the network alone does), at the cost of one more
        vocoder pass, not a second conversion.

        ``target``: a :class:`TargetVoice` (:meth:`target_voice`), or a bare embedding ``[1, S]``, which
        converts without target-spectrum matching (there are no target statistics to match).
        Each chunk is matched on its own statistics (chunks are long enough, 20 s by default, for them to be stable),
        except a chunk whose source holds no speech compared with the whole file (``target_match.is_pause``).
        Every chunk is converted with ``CONTEXT_SECONDS`` of its neighbours on each side, cut off again before
        the cross-fade, so a join never falls where the model's input ends (its output is off at the edges:
        :mod:`vconv.inference.chunking`); ``overlap_seconds`` is only the cross-fade, and may be 0.
        """
        chunk, overlap, context = self._chunking(chunk_seconds, overlap_seconds)
        convert_chunk = self._chunk_converter(target, lambda: self._energy_level_in_blocks(lambda a, b: wav[a:b], wav.size, chunk),
                                              several=wav.size > chunk, unmatched=unmatched,
                                              file_register=lambda: self._register_in_blocks(lambda a, b: wav[a:b], wav.size, chunk))
        converted = process_in_chunks(wav, convert_chunk, chunk=chunk, overlap=overlap, hop=self.features.hop_length,
                                      context=context)
        if not unmatched:
            return limit_peak(converted), None
        return limit_peak(converted[0]), limit_peak(converted[1])

    def convert_spans(self, length: int, read: Callable[[int, int], np.ndarray], target: TargetVoice | torch.Tensor,
                      emit: Callable[[np.ndarray], None], *, chunk_seconds: float = 20.0, overlap_seconds: float = 1.0) -> None:
        """:meth:`convert_wav` of a model-rate signal ``[length]`` that is read a span at a time (``read(start,
        stop)``) and handed on as it is made (``emit``, in order): memory is one chunk, whatever the length.

        The output is :meth:`convert_wav`'s before its peak limiting (one gain for the whole file: the
        caller applies it, :func:`limit_peak_gain`, once it has seen every sample).
        """
        chunk, overlap, context = self._chunking(chunk_seconds, overlap_seconds)
        convert_chunk = self._chunk_converter(target, lambda: self._energy_level_in_blocks(read, length, chunk),
                                              several=length > chunk, unmatched=False,
                                              file_register=lambda: self._register_in_blocks(read, length, chunk))
        stream_chunks(length, read, convert_chunk, emit, chunk=chunk, overlap=overlap, hop=self.features.hop_length,
                      context=context)

    def excite(self, log_mel: torch.Tensor, pitch: SourcePitch | None) -> torch.Tensor:
        """``log_mel [1, n_mels, F]`` on a harmonic comb at the output F0 (:attr:`harmonics`), or as it is."""
        if not self.harmonics or pitch is None:
            return log_mel
        frames = log_mel.shape[-1]
        return impose_harmonics(log_mel, pitch.f0[..., :frames], pitch.voicing[..., :frames], self.frontend.logmel,
                                math.log(self.features.log_floor))

    def source_pitch(self, wav: np.ndarray, target: Register | None, source: Register | None = None) -> SourcePitch | None:
        """The decoder's contour of ``wav`` (:meth:`source_contour`) with the output F0 ``[1, F]`` in Hz and the
        voicing ``[1, F]`` (voiced × periodicity) that :meth:`excite` places the harmonics with; None without a pitch path."""
        if not self.model.reads_pitch:
            return None
        rows = self.frontend.pitch_input(wav)
        return self.pitch_of_rows(rows, target, source or voiced_register(rows[0]))

    def pitch_of_rows(self, rows: torch.Tensor, target: Register | None, source: Register) -> SourcePitch:
        """The :class:`SourcePitch` of a pitch part's rows ``[1, 3, F]`` whitened on ``source``, in the output register
        (the ``target``'s, or the source's kept: :attr:`pitch_register`; a target without voiced frames keeps the
        source's), shifted by :attr:`pitch_shift`. The file conversion and the stream both build it here."""
        output = target if self.pitch_register == "target" and target is not None and target.frames else source
        contour = decoder_contour(rows, self.model.config.pitch_register, source=source, output=output,
                                  shift_semitones=self.pitch_shift)
        f0 = torch.exp(output_log_f0(rows[:, 0], source, output, self.pitch_shift))
        return SourcePitch(contour, f0, rows[:, 1] * rows[:, 2])

    def source_contour(self, wav: np.ndarray, target: Register | None, source: Register | None = None) -> torch.Tensor | None:
        """The decoder's contour ``[1, 3, F]`` of model-rate ``wav [T]`` for a model with the pitch path (None without
        one): its melody whitened on ``source`` (default: its own register) and put in the output register (the
        ``target``'s, or the source's kept: :attr:`pitch_register`), shifted by :attr:`pitch_shift` semitones. A
        target without a measured register (no voiced frame in its references) keeps the source's level."""
        pitch = self.source_pitch(wav, target, source)
        return pitch.contour if pitch is not None else None

    def _register_in_blocks(self, read: Callable[[int, int], np.ndarray], length: int, block: int) -> Register:
        """The pitch register of a long ``[length]`` signal, tracked ``block`` samples at a time (pooled)."""
        return voiced_register([self.frontend.pitch_input(read(s, min(length, s + block)))[0] for s in range(0, length, block)])

    def _chunking(self, chunk_seconds: float, overlap_seconds: float) -> tuple[int, int, int]:
        """``(chunk, overlap, context)`` in samples, on hop boundaries."""
        hop = self.features.hop_length
        chunk = max(hop * 8, int(chunk_seconds * self.sample_rate) // hop * hop)
        overlap = min(chunk // 2, int(overlap_seconds * self.sample_rate) // hop * hop)
        return chunk, overlap, int(CONTEXT_SECONDS * self.sample_rate) // hop * hop

    def _chunk_converter(self, target: TargetVoice | torch.Tensor, file_level: Callable[[], float], *, several: bool,
                         unmatched: bool, file_register: Callable[[], Register] | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """The function that converts one chunk (with its context) ``[n] -> [n]`` (``[2, n]`` with ``unmatched``).

        ``file_level`` measures the whole source's speech level; it is called once, only when there are
        ``several`` chunks and matching is on (a chunk far quieter than the file is a pause, not matched).
        ``file_register`` measures the whole source's pitch register (a model with the pitch path, several chunks):
        every chunk's melody is then whitened on the same level, so joins do not step in pitch.
        """
        if isinstance(target, TargetVoice):
            embedding, spectrum = target.embedding, target.spectrum
            if spectrum.mean.shape[0] != self.features.n_mels:
                raise VconvError(f"the target's spectrum has {spectrum.mean.shape[0]} mel bands, this model {self.features.n_mels}: "
                                 "compute the target with this converter's target_voice()")
        else:
            embedding, spectrum = target, None
        matching = spectrum is not None and self.target_match != "off"
        level = file_level() if matching and several else None
        register = target.register if isinstance(target, TargetVoice) else None
        source_register = file_register() if self.model.reads_pitch and several and file_register is not None else None

        def convert_chunk(piece: np.ndarray) -> np.ndarray:
            # the target embedding is computed once per file and handed to the model's one conversion path
            content = self._model_input(piece)
            pitch = self.source_pitch(piece, register, source_register)
            with self.compute():
                converted = self.model.convert(content, embedding=embedding,
                                               pitch=pitch.contour if pitch is not None else None)
            log_mel = self.frontend.denormalize(converted.float())
            # the piece includes its context: room tone within CONTEXT_SECONDS of speech is matched on that speech's
            # statistics (speech frames only), as a pause inside one chunk is
            pause = level is not None and is_pause(energy_level(self.frontend.log_mel(piece)), level)
            own = self._vocode(self.excite(log_mel, pitch), piece.size) if unmatched else None
            if matching and not pause and spectrum is not None:  # (matching implies a spectrum; said for mypy)
                log_mel = match_spectrum(log_mel, spectrum, self.target_match, floor=math.log(self.features.log_floor))
            elif own is not None:  # nothing matched: the two outputs are one
                return np.stack([own, own])
            out = self._vocode(self.excite(log_mel, pitch), piece.size)
            return out if own is None else np.stack([out, own])

        return convert_chunk


# how much of its neighbours each chunk of a long input sees on either side (trimmed before the cross-fade):
# the model's output settles within ~6 frames (0.1 s) of an input edge; 0.5 s costs 5 % more work at 20 s chunks
CONTEXT_SECONDS = 0.5
PEAK = 0.99  # full scale less a margin, so 16-bit files and players do not clip


def limit_peak_gain(top: float, peak: float = PEAK) -> float:
    """The one gain :func:`limit_peak` applies to a signal whose largest absolute sample is ``top``."""
    return peak / top if top > peak else 1.0


def limit_peak(wav: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """``[T]`` scaled down as a whole when it would exceed ``peak`` (one gain per file, so the chunks of a
    long conversion keep their relative level); unchanged otherwise. The vocoder does not bound its
    output, and a clipped file loses what the user wanted to keep."""
    top = float(np.max(np.abs(wav))) if wav.size else 0.0
    return wav * np.float32(peak / top) if top > peak else wav


def settings_of(settings: ConversionSettings | None, options: dict[str, Any]) -> ConversionSettings:
    """``settings``, or a :class:`ConversionSettings` of ``options`` (checked); both at once is an error."""
    if settings is not None and options:
        raise TypeError(f"give settings or its fields ({', '.join(sorted(options))}), not both")
    return settings if settings is not None else ConversionSettings(**options)


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


def load(name_or_path: str | Path | None = None, settings: ConversionSettings | None = None, **options: Any) -> VoiceConverter:
    """Load a bundle by name or folder (default: the shipped model) as a :class:`VoiceConverter`.

    ``settings`` (:class:`~vconv.inference.settings.ConversionSettings`), or its fields as keyword ``options``
    (``vconv.load(fast=True, pitch_shift=3)``), checked before the bundle loads. ``fast`` runs the bundle's neural vocoder
    without its inference-time post-processing (phase consistency and mel-envelope matching passes): less time per
    conversion (``benchmarks/bench_convert.py`` prints both), at the quality cost that ``recipes/voices/MODEL_HISTORY.md``
    measures ("network only"). ``precision``: ``auto`` (bfloat16 where the CPU computes it natively), ``float32`` or
    ``bfloat16`` (:mod:`vconv.inference.precision`). ``fit_steps``: tune the speaker embedding on the target references for
    this many steps before converting (:mod:`vconv.inference.voice_fit`; 0, the default, uses the speaker encoder's).
    ``pitch_shift`` (semitones, ±24) and ``pitch_register`` (``target`` or ``source``): the pitch controls of a model with
    the pitch path (:class:`VoiceConverter`); ``harmonics``: rebuild the converted mel on a harmonic comb at the output F0
    before the vocoder (:mod:`vconv.vocoders.harmonics`; off by default: measured in recipes/voices/MODEL_HISTORY.md).
    """
    from vconv.bundles import choose_vocoder

    settings = settings_of(settings, options)  # before the bundle: a typo in any setting fails at once
    bundle = resolve_bundle(name_or_path)
    model, frontend, info = load_bundle(bundle, settings.device)
    vocoder = choose_vocoder(bundle, info.feature_config, settings.vocoder, fast=settings.fast)
    converter = VoiceConverter(model, frontend, info, vocoder, settings.device, settings)
    # the networks were built here and run only under the converter's autocast: their weights lowered once
    # the content encoder stays float32: in bfloat16 it flipped VQ code choices (CER 0.28 -> 0.35 on the fixture
    # conversions of tests/test_pretrained.py; 0.29-0.30 with it in float32 and the rest in bfloat16)
    converter.model.content_in_float32 = converter.dtype_of("model") != torch.float32
    store_lowered(converter.model, converter.dtype_of("model"), keep=converter.model.content_encoder)
    store_lowered(converter.vocoder, converter.dtype_of("vocoder"))
    return converter
