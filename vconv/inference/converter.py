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

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

import numpy as np
import torch

from vconv.audio.frontend import FrontEnd
from vconv.audio.io import as_float_audio, check_sample_rate, downmix, resample, validate
from vconv.audio.io import load as load_audio
from vconv.bundles import BundleInfo, load_bundle
from vconv.errors import VconvError
from vconv.inference.chunking import process_in_chunks, stream_chunks
from vconv.inference.pitch_stage import PitchStage, check_pitch_controls
from vconv.inference.precision import compute_in, resolve_precision, store_lowered
from vconv.inference.registry import resolve_bundle
from vconv.inference.settings import ConversionSettings
from vconv.inference.stream_settings import StreamSettings
from vconv.inference.target import SourcePitch, TargetVoice
from vconv.inference.target_match import (
    MIN_SPEECH_FRAMES,
    energy_level,
    frame_energy,
    is_pause,
    level_of_energies,
    match_spectrum,
)
from vconv.inference.targets import MIN_SECONDS, AudioInput, TargetPreparation
from vconv.models.contour import Register

if TYPE_CHECKING:
    from vconv.inference.streaming import StreamConverter



class VoiceConverter(TargetPreparation, PitchStage):
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
        # the harmonics of the output F0 written into the converted mel before the vocoder (vconv.vocoders.harmonics): on
        # by default for a model with the pitch path, where it keeps the melody, the voicing and the words
        # (recipes/voices/MODEL_HISTORY.md, "Harmonic excitation in the mel domain")
        if settings.harmonics and not self.model.reads_pitch:
            raise VconvError("harmonic excitation needs a model with the pitch path (it places the harmonics at its F0)")
        self.harmonics = self.model.reads_pitch if settings.harmonics is None else settings.harmonics
        self.enhance = settings.enhance  # the source and references cleaned of a room first (TargetPreparation.heard)
        self.voice_cache = None  # prepared voices kept across conversions (the CLI sets one)
        self.fit_progress = None  # told (step, steps) during a fit

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

    # ------------------------------------------------------------------- the stages every conversion runs
    # A file's chunks (convert_wav, convert_spans) and a stream's windows (vconv.inference.streaming) run the same three
    # stages: the source's pitch (source_pitch / pitch_of_rows), the network (decode_mel), the output (render). What
    # differs between them is only how they cut the source and how they match the spectrum between decode and render.

    def decode_mel(self, content: torch.Tensor, embedding: torch.Tensor, pitch: SourcePitch | None) -> torch.Tensor:
        """The network stage: content features ``[1, C, F]`` in the target's voice (``embedding [1, S]``; the source's
        ``pitch`` for a model with the pitch path) -> the converted natural-log mel ``[1, n_mels, F]``, float32."""
        with self.compute():
            converted = self.model.convert(content, embedding=embedding, pitch=pitch.contour if pitch is not None else None)
        return self.frontend.denormalize(converted.float())

    def render(self, log_mel: torch.Tensor, pitch: SourcePitch | None = None, *, start: int = 0,
               post_process: bool = True) -> np.ndarray:
        """The output stage: log-mel ``[1, n_mels, F]`` (given the harmonics of ``pitch``'s F0, :attr:`harmonics`),
        from frame ``start`` on, through the vocoder (its post-processing passes unless ``post_process`` is off) ->
        ``[(F - start - 1) * hop]`` float32 audio."""
        excited = self.excite(log_mel, pitch, start)  # in float32, outside the vocoder's precision
        with self.compute("vocoder"):
            audio = self.vocoder.render(excited, post_process=post_process)
        return audio[0].float().cpu().numpy()

    def _vocode(self, log_mel: torch.Tensor, num_samples: int, pitch: SourcePitch | None = None) -> np.ndarray:
        """:meth:`render` of ``[1, n_mels, F]`` as ``[num_samples]`` audio (the vocoder yields (F-1)*hop; pad the tail)."""
        audio = self.render(log_mel, pitch)
        return np.pad(audio, (0, max(0, num_samples - audio.size)))[:num_samples]

    # ------------------------------------------------------------------------------------ conversion

    def stream(self, target: TargetVoice | Sequence[AudioInput] | AudioInput, settings: StreamSettings | None = None, *,
               sample_rate: int | None = None, sr: int | None = None,
               source_voice: Register | Sequence[AudioInput] | AudioInput | None = None, **options: Any) -> "StreamConverter":
        """A live converter to ``target`` (references, prepared once, or a :class:`TargetVoice`): ``push(pcm) ->
        pcm`` any number of samples at a time, ``flush()`` for the rest (:mod:`vconv.inference.streaming`).

        ``settings``: a :class:`~vconv.inference.stream_settings.StreamSettings` (default its defaults), with any of its
        fields given by name in ``options`` changed (``block_ms=128``, ``context_ms=1500``, ``recent_frontend="off"``,
        ...; each checked, an unknown name a TypeError). The latency (``.latency_ms``) is the block plus the look-ahead,
        each rounded to whole mel hops. A stream whose ``busy_block_ms`` is longer than its block grows it once blocks
        keep missing their deadlines (:mod:`vconv.inference.stream_pace`, which also warms such a stream up: ~0.1 s); a
        caller that pushes a file as fast as it goes passes ``busy_block_ms=0``.
        ``sample_rate``: the stream's audio rate (default the model's); ``sr``: the rate of numpy references.
        ``source_voice``: for a model with the pitch path, the streamed speaker's own voice (recordings of it, a voice file,
        or its :class:`Register`): the stream whitens the melody on its register from the first block, where it would
        otherwise learn it from the stream's first seconds (:meth:`voice_register`; docs/STREAMING.md).
        """
        from vconv.inference.stream_pace import warm_up
        from vconv.inference.streaming import StreamConverter

        settings = StreamSettings.with_options(settings, **options)
        prepared = target if isinstance(target, TargetVoice) else self.target_voice(target, sr)
        known = source_voice if source_voice is None else self.voice_register(source_voice, sr)
        stream = StreamConverter(self, prepared, settings, sample_rate=sample_rate, source_register=known)
        if stream.can_grow:  # a live stream: a twin pays the networks' first calls before its first deadline
            twin = dataclasses.replace(settings, busy_block_ms=0.0)
            warm_up(lambda: StreamConverter(self, prepared, twin, sample_rate=sample_rate, source_register=known), stream, prepared.primer)
        return stream

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
        convert_chunk = self._chunk_converter(target, lambda a, b: wav[a:b], wav.size, chunk, unmatched=unmatched)
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
        convert_chunk = self._chunk_converter(target, read, length, chunk, unmatched=False)
        stream_chunks(length, read, convert_chunk, emit, chunk=chunk, overlap=overlap, hop=self.features.hop_length,
                      context=context)

    def _chunking(self, chunk_seconds: float, overlap_seconds: float) -> tuple[int, int, int]:
        """``(chunk, overlap, context)`` in samples, on hop boundaries."""
        hop = self.features.hop_length
        chunk = max(hop * 8, int(chunk_seconds * self.sample_rate) // hop * hop)
        overlap = min(chunk // 2, int(overlap_seconds * self.sample_rate) // hop * hop)
        return chunk, overlap, int(CONTEXT_SECONDS * self.sample_rate) // hop * hop

    def _chunk_converter(self, target: TargetVoice | torch.Tensor, read: Callable[[int, int], np.ndarray], length: int,
                         chunk: int, *, unmatched: bool) -> Callable[[np.ndarray], np.ndarray]:
        """The function that converts one chunk (with its context) ``[n] -> [n]`` (``[2, n]`` with ``unmatched``) of a
        source of ``length`` samples that ``read(start, stop)`` gives, in chunks of ``chunk`` samples.

        A source of several chunks is measured once, whole, for what its chunks share: its speech level (with matching
        on: a chunk far quieter than the file is a pause, not matched), its pitch register (a model with the pitch
        path: every chunk's melody whitened on the same level, so joins do not step in pitch) and, with ``enhance
        auto``, whether it was recorded in a room (decided on its start, :meth:`file_in_a_room`: every chunk cleaned
        or none, so the sound does not change at a join).
        """
        if isinstance(target, TargetVoice):
            embedding, spectrum = target.embedding, target.spectrum
            if spectrum.mean.shape[0] != self.features.n_mels:
                raise VconvError(f"the target's spectrum has {spectrum.mean.shape[0]} mel bands, this model {self.features.n_mels}: "
                                 "compute the target with this converter's target_voice()")
        else:
            embedding, spectrum = target, None
        matching = spectrum is not None and self.target_match != "off"
        several = length > chunk
        level = self._energy_level_in_blocks(read, length, chunk) if matching and several else None
        register = target.register if isinstance(target, TargetVoice) else None
        h1_h2 = target.h1_h2 if isinstance(target, TargetVoice) else None
        source_register = self._register_in_blocks(read, length, chunk) if self.model.reads_pitch and several else None
        in_room = self.file_in_a_room(read, length) if several else None

        def convert_chunk(recorded: np.ndarray) -> np.ndarray:
            # the target embedding is computed once per file and handed to the model's one conversion path
            piece, cleaned = self.heard_cleaned(recorded, in_room)
            pitch = self.source_pitch(piece, register, source_register, h1_h2)
            log_mel = self.decode_mel(self._model_input(piece), embedding, pitch)
            # the piece includes its context: room tone within CONTEXT_SECONDS of speech is matched on that speech's
            # statistics (speech frames only), as a pause inside one chunk is (measured as recorded, as the file is)
            pause = level is not None and is_pause(energy_level(self.frontend.log_mel(recorded)), level)
            own = self._vocode(log_mel, piece.size, pitch) if unmatched else None
            if matching and not pause and spectrum is not None:  # (matching implies a spectrum; said for mypy)
                # a source the enhancer took a room out of: its conversion's spread is only narrowed (target_match)
                log_mel = match_spectrum(log_mel, spectrum, self.target_match, floor=math.log(self.features.log_floor),
                                         band_centres=self.frontend.logmel.band_centres, widen=not cleaned)
            elif own is not None:  # nothing matched: the two outputs are one
                return np.stack([own, own])
            out = self._vocode(log_mel, piece.size, pitch)
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
    the pitch path (:class:`VoiceConverter`); ``harmonics``: write the harmonics of the output F0 into the converted mel
    before the vocoder (:mod:`vconv.vocoders.harmonics`; None, the default: on for a model with the pitch path).
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
