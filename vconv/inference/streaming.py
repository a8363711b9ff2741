"""Live conversion: audio pushed in blocks of any size, converted audio returned as soon as it is final.

The stream is the offline chunked conversion (:mod:`vconv.inference.chunking`) with short chunks and one
sided context, and with its state carried from block to block instead of being recomputed from the whole
file. Output block ``k`` covers ``[k*B, (k+1)*B)`` (``B``: the block, a whole number of mel hops). To make
it, the converter runs on the window ``[k*B - C, (k+1)*B + A)``: ``C`` samples of left context (what the
content front-end, the instance norms and the decoder see of the past) and ``A`` of look-ahead (the right
edge of a convolutional model's input is off for a few frames: the look-ahead keeps it out of what is
emitted). The block and the first ``X <= A`` samples after it are kept; those ``X`` are cross-faded with
the next block's start, so joins have no step. The algorithmic latency, from a sample entering to the
block that holds it leaving, is ``B + A``.

State carried between calls (all of it bounded, whatever the stream's length):

* the input of the last ``C + B + A`` samples (the window) and a resampler's state when the input's rate
  is not the model's;
* the cross-fade tail of the last block (``X`` samples);
* the converted speech's running spectrum statistics, onto which target-spectrum matching maps the
  target's (offline, each chunk's own statistics over 20 s; here, everything converted so far, pooled);
* for a model with the pitch path, the source's running pitch register (its voiced log-F0 so far, pooled, from the
  speaker's known register when one is given: :mod:`vconv.inference.stream_register`; offline, the whole file's), on
  which each window's melody is whitened.
  The tracker runs on the window like the content front-end. YIN's per-frame look-ahead (half a 64 ms frame) lies
  inside the stream's, and its decisions over the signal (silence, the octave-slip path, the smoothing) are taken over
  the window, as a file's over the file; SwiftF0 reads 176 ms each way, so a block's last frames are tracked with
  silence past the window, like the content front-end's.

The vocoder only renders the window's last frames (its receptive field is a few dozen frames), not the
whole left context.

On a machine too busy for its blocks, ``B`` grows once (:mod:`vconv.inference.stream_pace`): from then on the blocks
are longer and the latency is the longer block plus ``A``; block starts stay whole hops and no sample is skipped.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import soxr
import torch

from vconv.audio.io import check_sample_rate
from vconv.errors import VconvError
from vconv.inference.chunking import StreamedOverlapAdd
from vconv.inference.stream_content import RecentContent
from vconv.inference.stream_pace import BlockPace, BlockTimes
from vconv.inference.stream_register import RunningRegister
from vconv.inference.stream_settings import StreamSettings
from vconv.inference.target import SourcePitch, TargetVoice
from vconv.inference.target_match import LOUD_QUANTILE, SPEECH_RANGE_NATS, SpectrumStats, loud_level, match_spectrum, spectrum_stats
from vconv.models.contour import Register

# A known source register (``source_register``) weighs as this much of the stream's own voiced speech: the first blocks
# keep its level, and a voice speaking higher or lower today moves it within seconds (docs/STREAMING.md measures it).
SOURCE_PRIOR_SECONDS = 2.0

if TYPE_CHECKING:  # the converter makes streams (VoiceConverter.stream): a type here, not an import
    from vconv.inference.converter import VoiceConverter

VOCODER_MARGIN_FRAMES = 24  # frames rendered before the emitted ones: the neural vocoder's receptive field is ±24
# the stream's own converted speech frames after which its statistics replace the primer's shape (prime_matching)
PRIMER_MATCHING_FRAMES = 16


@dataclass
class RunningSpectrum:
    """Pooled speech-frame statistics of everything converted so far (sums, so memory stays constant)."""

    total: torch.Tensor | None = None  # [n_mels, 1]
    squares: torch.Tensor | None = None
    frames: int = 0

    def add(self, speech: torch.Tensor) -> None:
        """Pool the speech frames ``[n_mels, F]``."""
        speech = speech.double()
        if speech.shape[-1] == 0:
            return
        if self.total is None or self.squares is None:
            self.total, self.squares = torch.zeros(speech.shape[0], 1, dtype=torch.float64), torch.zeros(speech.shape[0], 1, dtype=torch.float64)
        self.total += speech.sum(1, keepdim=True)
        self.squares += (speech ** 2).sum(1, keepdim=True)
        self.frames += speech.shape[-1]

    def stats(self) -> SpectrumStats | None:
        if self.total is None or self.squares is None or not self.frames:
            return None
        mean = self.total / self.frames
        std = (self.squares / self.frames - mean ** 2).clamp_min(0).sqrt()
        return SpectrumStats(mean.float(), std.float(), self.frames)


class StreamConverter:
    """``push(pcm) -> pcm`` any number of samples at a time, ``flush() -> pcm`` for the rest.

    Made by :meth:`VoiceConverter.stream <vconv.inference.converter.VoiceConverter.stream>`; ``target`` is
    prepared once. Input and output are mono float32 at ``sample_rate`` (default the model's). The output
    trails the input by :attr:`latency_ms`; after ``flush`` it has exactly the input's length.
    """

    def __init__(self, converter: "VoiceConverter", target: TargetVoice, settings: StreamSettings = StreamSettings(),
                 sample_rate: int | None = None, source_register: Register | None = None) -> None:
        self.converter, self.target, self.settings = converter, target, settings
        self.model = converter.model  # the offline model, run on each window
        self.model_rate = converter.sample_rate
        self.embedding = target.embedding
        self.sample_rate = check_sample_rate(self.model_rate if sample_rate is None else sample_rate, "stream sample rate")
        self.hop = converter.features.hop_length
        self.block, self.lookahead, self.crossfade, self.context = settings.samples(self.hop, self.model_rate)
        self.first_block = self.block  # the block asked for; :attr:`block` may grow on a busy machine (stream_pace)
        self.times = BlockTimes()
        self._inbound = self._resampler(self.sample_rate, self.model_rate)
        self._outbound = self._resampler(self.model_rate, self.sample_rate)
        self._buffer = np.zeros(0, np.float32)  # model-rate input from sample `_buffer_start` on
        self._buffer_start = 0
        if settings.prime and target.primer is not None:  # past context before sample 0: read, never emitted
            primed = min(self.context, target.primer.size) // self.hop * self.hop
            self._buffer = np.array(target.primer[target.primer.size - primed:], np.float32)
            self._buffer_start = -primed
        self._received = 0  # model-rate samples received so far
        self._next_block = 0  # start of the next block to convert
        self._ready: list[np.ndarray] = []
        self._joiner = StreamedOverlapAdd(2**62, self._ready.append)
        self._spectrum = RunningSpectrum()
        # the source's register from its blocks so far (pitch path), from its known register if given
        self._register = RunningRegister(source_register, round(SOURCE_PRIOR_SECONDS * self.model_rate / self.hop))
        self._primer_spectrum: SpectrumStats | None = None  # the converted primer's (prime_matching)
        self._flushed = False
        margin = round(settings.frontend_margin_ms * self.model_rate / 1000)
        self._content = RecentContent(converter.frontend, self.hop, self._recent_part(margin), margin,
                                      settings.recent_frontend, self.block / self.model_rate,
                                      fresh=round(settings.frontend_fresh_ms * self.model_rate / 1000))
        self._pace = BlockPace(self.block, settings.busy_block(self.hop, self.model_rate))
        # the window's pitch rows, each frame's YIN measures reused from the window before (vconv.audio.pitch_stream)
        self._pitch_rows = converter.frontend.window_pitch() if self.model.reads_pitch else None

    def _recent_part(self, margin: int) -> int:
        """The content front-end's recomputed part, in samples: a reused frame keeps ``recent - block`` of right
        context, never less than the ``margin``, whatever the block."""
        return max(round(self.settings.frontend_recent_ms * self.model_rate / 1000), self.block + self.lookahead + margin)

    @property
    def latency_ms(self) -> float:
        """The algorithmic latency, block + look-ahead, in ms (the block may grow: :mod:`vconv.inference.stream_pace`)."""
        return 1000.0 * (self.block + self.lookahead) / self.model_rate

    @property
    def can_grow(self) -> bool:
        """Whether this stream's block may grow on a busy machine (:attr:`StreamSettings.busy_block_ms`): a live one."""
        return bool(self._pace.grow_to)

    @property
    def grown_after(self) -> int | None:
        """Blocks converted before the block grew to :attr:`StreamSettings.busy_block_ms` (None: it has not)."""
        return self._pace.grown_after

    def _grow_block(self) -> None:
        """From the next block on, blocks of :attr:`StreamSettings.busy_block_ms` (vconv.inference.stream_pace)."""
        self.block = self._pace.grow_to
        self._content.resize(self._recent_part(self._content.margin), self.block / self.model_rate)

    @staticmethod
    def _resampler(rate_in: int, rate_out: int) -> soxr.ResampleStream | None:
        return None if rate_in == rate_out else soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ")

    # ------------------------------------------------------------------------------------------ API

    @property
    def short_blocks(self) -> int:
        """Blocks converted with only the content front-end's recent part (``recent_frontend``: short of time)."""
        return self._content.blocks_on

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Take ``pcm [n]`` (float32 in -1..1, any ``n``); return the converted samples that are ready."""
        if self._flushed:
            raise VconvError("this stream was flushed; start a new one with vc.stream(...)")
        samples = _check_block(pcm)
        if self._inbound is not None:
            samples = self._inbound.resample_chunk(samples)
        self._append(samples)
        while self._received >= self._next_block + self.block + self.lookahead:
            self._convert_block(final=False)
        return self._take()

    def flush(self) -> np.ndarray:
        """Convert what is left (with the look-ahead there is) and return it; the stream is then closed."""
        if self._flushed:
            return np.zeros(0, np.float32)
        if self._inbound is not None:
            self._append(self._inbound.resample_chunk(np.zeros(0, np.float32), last=True))
        self._flushed = True
        while self._next_block < self._received:
            self._convert_block(final=self._next_block + self.block >= self._received)
        return self._take(last=True)

    # ------------------------------------------------------------------------------------- internals

    def _append(self, samples: np.ndarray) -> None:
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        self._received += samples.size

    def _take(self, last: bool = False) -> np.ndarray:
        out = np.concatenate(self._ready) if self._ready else np.zeros(0, np.float32)
        self._ready.clear()
        if self._outbound is not None:
            out = self._outbound.resample_chunk(out, last=last)
        return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)

    def _convert_block(self, final: bool) -> None:
        start = self._next_block
        stop = min(self._received, start + self.block)
        window_start = max(self._buffer_start, start - self.context)  # the primer before sample 0, if any
        window_stop = min(self._received, stop + self.lookahead)
        window = self._buffer[window_start - self._buffer_start : window_stop - self._buffer_start]
        keep = (stop if final else min(window_stop, stop + self.crossfade)) - start
        began = time.perf_counter()
        ended = self._flushed and window_stop == self._received  # the input's true end: nothing to hold
        piece = self._convert_window(window, start - window_start, keep, hold=0 if ended else self.settings.edge_hold_frames,
                                     window_start=window_start)
        # the stream's last, partial block (flush) is judged against a whole block: nothing waits for it
        seconds, duration = time.perf_counter() - began, (self.block if final else stop - start) / self.model_rate
        self.times.add(seconds, duration)
        self._content.record(seconds)
        if not final and self._pace.record(seconds, duration):
            self._grow_block()
        if final:  # nothing follows: the piece ends the stream exactly at the input's length
            self._joiner.add(start, piece, None)
        else:
            self._joiner.add(start, piece, stop)
        self._next_block = stop
        drop = max(0, stop - self.context - self._buffer_start)  # what no later window reaches
        self._buffer, self._buffer_start = self._buffer[drop:], self._buffer_start + drop

    @torch.no_grad()
    def _convert_window(self, window: np.ndarray, lead: int, keep: int, hold: int = 0, window_start: int = 0) -> np.ndarray:
        """Samples ``[lead, lead + keep)`` of ``window``, converted: front-end -> model -> matching -> vocoder;
        the content's last frame held ``hold`` more frames for the network (:attr:`StreamSettings.edge_hold_frames`)."""
        conv, target = self.converter, self.target
        # [1, C, F]; a content network (Whisper) in the networks' arithmetic (bfloat16 where the CPU has it; its log-mel
        # stays float32), where offline it stays float32: a block has a deadline, and on the held-out pairs the stream
        # kept its words (docs/STREAMING.md). A log-mel content input is not a network: float32.
        with conv.compute() if conv.frontend.content is not None else contextlib.nullcontext():
            content = self._content.states(window, window_start)
        frames = content.shape[-1]
        if hold > 0 and _speech_at_edge(window, self.hop):
            content = torch.cat([content, content[..., -1:].expand(-1, -1, hold)], -1)
        pitch = self._window_pitch(window, lead, window_start) if self.model.reads_pitch else None
        log_mel = conv.decode_mel(content, self.embedding, pitch)[..., :frames]  # [1, n_mels, F], frame j centred at j*hop
        first_new = lead // self.hop  # the block's own frames join the running statistics: those that are
        # speech by the whole window's loudness (a block of silence alone would count all of its frames)
        floor = math.log(conv.features.log_floor)
        level = loud_level(log_mel[0])
        if level >= floor + SPEECH_RANGE_NATS:
            block = log_mel[0, :, first_new : first_new + self.block // self.hop]
            self._spectrum.add(block[:, block.float().mean(0) >= level - SPEECH_RANGE_NATS])
        if self.settings.prime_matching and self._next_block == 0 and lead > 0:
            # the first window: everything before the block is the primer (the target's speech, converted)
            self._primer_spectrum = spectrum_stats([log_mel[0, :, :first_new]])
        if conv.target_match != "off":
            own, mode = self._spectrum.stats(), conv.target_match
            primer = self._primer_spectrum
            if (own is None or own.frames < PRIMER_MATCHING_FRAMES) and primer is not None and primer.trusted:
                # until the stream has PRIMER_MATCHING_FRAMES of its own speech, the primer's statistics move the
                # spectrum's shape only: their spread and level are the target's speech, not this source's (scaled on
                # them, a quieter source's first frames came out quieter still)
                own, mode = primer, "mean"
            if own is not None:
                log_mel = match_spectrum(log_mel, target.spectrum, mode, floor=floor, own=own,
                                         band_centres=conv.frontend.logmel.band_centres)
        skip = max(0, first_new - VOCODER_MARGIN_FRAMES)  # render only the last frames, from a margin before the block
        audio = conv.render(log_mel, pitch, start=skip, post_process=self.settings.vocoder_passes)
        offset = lead - skip * self.hop
        audio = np.pad(audio, (0, max(0, offset + keep - audio.size)))
        return audio[offset : offset + keep]


    def _window_pitch(self, window: np.ndarray, lead: int, window_start: int) -> SourcePitch:
        """The window's :class:`SourcePitch`: the decoder's contour ``[1, 3, F]`` (its melody whitened on the source's
        register so far: the blocks before, pooled with this window's frames from the block on: the primer before sample 0 is the
        target's speech, not the source's; put in the output register, :meth:`VoiceConverter.source_pitch`), with the
        output F0 and voicing."""
        conv = self.converter
        assert self._pitch_rows is not None  # made for a model that reads pitch
        rows = self._pitch_rows(window, window_start)  # [1, 3, F]
        first_new = lead // self.hop
        new = rows[0, :, first_new:]
        source = self._register.estimate(new[0][new[1] > 0.5])
        block = rows[0, :, first_new : first_new + self.block // self.hop]
        self._register.add(block[0][block[1] > 0.5])  # the block's own frames join the history
        return conv.pitch_of_rows(rows, self.target.register, source, self.target.h1_h2)


def _speech_at_edge(window: np.ndarray, hop: int, frames: int = 2) -> bool:
    """Whether the last ``frames`` hops of ``window [T]`` are speech by the window's own loudness: only then is its
    edge held (:attr:`StreamSettings.edge_hold_frames`). At a pause or where speech fades out, the zero padding's
    "it ends here" is the right guess (held, the fade-out of an utterance came out too loud). Measured on the
    samples' RMS per hop (log, magnitude scale, as the log-mel's levels), not on a spectrum: it runs every block."""
    count = window.size // hop
    if count <= frames:
        return False
    power = np.square(window[window.size - count * hop:], dtype=np.float32).reshape(count, hop).mean(1)
    level = 0.5 * np.log(np.maximum(power, 1e-12))  # [count] log RMS per hop
    edge = float(np.log(np.mean(np.exp(level[-frames:]))))
    return edge >= float(np.quantile(level, LOUD_QUANTILE)) - SPEECH_RANGE_NATS


def _check_block(pcm: np.ndarray) -> np.ndarray:
    """A pushed block as float32 ``[n]``; stereo, NaN/Inf and non-audio types are one-line errors."""
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise VconvError(f"stream input: expected mono samples [n], got shape {tuple(arr.shape)}; mix to one channel first")
    if arr.dtype.kind != "f":
        raise VconvError(f"stream input: expected float samples in -1..1, got {arr.dtype}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise VconvError(f"stream input: {int(np.count_nonzero(~np.isfinite(arr)))} NaN/Inf samples in this block")
    return arr.astype(np.float32, copy=False)
