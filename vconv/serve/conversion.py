"""What one conversion request computes, on the shared :class:`~vconv.inference.converter.VoiceConverter`.

:func:`run_conversion` is the whole job of a worker thread: the target embedding (references
averaged) and :meth:`VoiceConverter.convert_wav` (the one inference path, timed), then what the page
shows beside the audio: the speaker similarity of the result to the target and to the source by the
model's *own* speaker encoder (not an independent judge: ``vconv evaluate`` is the measurement), and
the source, target and converted log-mels as small 8-bit images on one shared colour scale.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass
from typing import cast

import numpy as np
import soundfile as sf
import torch

from vconv.audio.io import SILENCE_PEAK
from vconv.inference.converter import VoiceConverter
from vconv.inference.target import TargetVoice

SIMILARITY_ENCODER = "vconv's own speaker encoder (not an independent judge)"
MEL_COLUMNS = 600  # enough for the page's width; longer mels are averaged down in time
MEL_RANGE = 80.0 / 20.0 * np.log(10.0)  # 80 dB below the loudest bin, in natural-log amplitude units


@dataclass
class ConversionResult:
    """The converted audio ``wav`` (float32 ``[T]`` at ``sample_rate``, the source's length), the
    seconds the conversion took, cosine similarities by the model's speaker encoder (``None`` for a
    silent output), and the mel images ``{"source", "target", "converted"}`` (see :func:`mel_images`)."""

    wav: np.ndarray
    sample_rate: int
    seconds: float
    similarity: dict[str, float | None]
    mels: dict[str, dict]

    @property
    def duration(self) -> float:
        return self.wav.size / self.sample_rate


def run_conversion(converter: VoiceConverter, source: np.ndarray, targets: list[np.ndarray] | list[TargetVoice]) -> ConversionResult:
    """Convert ``source`` ``[T]`` to the voice of ``targets`` (``[T_i]`` each, at ``converter.sample_rate``), or of a
    voice opened from an uploaded voice file (a list of that one voice)."""
    sr = converter.sample_rate
    start = time.perf_counter()
    target = as_target_voice(converter, targets)
    wav = converter.convert_wav(source, target)
    seconds = time.perf_counter() - start
    return ConversionResult(
        wav=wav, sample_rate=sr, seconds=seconds,
        similarity=similarities(converter, source, target.embedding, wav),
        # a voice file's target shows the references' tail it keeps (its primer)
        mels=mel_images(converter, {"source": source, "target": _target_audio(targets, target, source), "converted": wav}),
    )


def as_target_voice(converter: VoiceConverter, targets: list[np.ndarray] | list[TargetVoice]) -> TargetVoice:
    """The prepared voice of uploaded references ``[T_i]`` (embedding [1, S], references averaged, and spectrum
    statistics), or the voice already opened from an uploaded voice file."""
    first = targets[0]
    if isinstance(first, TargetVoice):
        return first
    return converter.target_voice(cast(list[np.ndarray], targets), converter.sample_rate)


def _target_audio(targets: list[np.ndarray] | list[TargetVoice], voice: TargetVoice, source: np.ndarray) -> np.ndarray:
    first = targets[0]
    if isinstance(first, np.ndarray):
        return first
    return voice.primer if voice.primer is not None else source


@torch.no_grad()
def similarities(converter: VoiceConverter, source: np.ndarray, target_embedding: torch.Tensor, converted: np.ndarray) -> dict[str, float | None]:
    """Cosines between L2-normalised embeddings ``[1, S]``: converted↔target, converted↔source, and
    source↔target (the starting point, so the first two can be read against it)."""
    sr = converter.sample_rate

    def unit(e: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(e.float(), dim=-1)

    tgt, src = unit(target_embedding), unit(converter.speaker_embedding([source], sr))
    out = unit(converter.speaker_embedding([converted], sr)) if np.max(np.abs(converted)) >= SILENCE_PEAK else None

    def cos(a: torch.Tensor | None, b: torch.Tensor) -> float | None:
        return None if a is None else round(float((a * b).sum()), 4)

    return {"to_target": cos(out, tgt), "to_source": cos(out, src), "source_to_target": cos(src, tgt)}


@torch.no_grad()
def mel_images(converter: VoiceConverter, wavs: dict[str, np.ndarray], columns: int = MEL_COLUMNS) -> dict[str, dict]:
    """Log-mels of ``wavs`` (``[T]`` each) as 8-bit images for the page to draw.

    Each is ``{"bins": n_mels, "frames": W, "seconds": d, "data": base64 of uint8 [n_mels, W]}``, row 0
    the lowest mel band, ``W <= columns`` (time averaged down). All share one scale: 255 is the loudest
    bin of the three, 0 is 80 dB below it, so the images compare like for like.
    """
    mels = {name: converter.frontend.log_mel(wav).float().cpu() for name, wav in wavs.items()}  # [n_mels, F]
    top = max(float(m.max()) for m in mels.values())
    images = {}
    for name, mel in mels.items():
        if mel.shape[-1] > columns:
            mel = torch.nn.functional.adaptive_avg_pool1d(mel[None], columns)[0]
        scaled = ((mel - (top - MEL_RANGE)) / MEL_RANGE).clamp(0, 1) * 255
        pixels = scaled.round().to(torch.uint8).numpy()
        images[name] = {
            "bins": int(pixels.shape[0]), "frames": int(pixels.shape[1]),
            "seconds": round(wavs[name].size / converter.sample_rate, 3),
            "data": base64.b64encode(np.ascontiguousarray(pixels).tobytes()).decode("ascii"),
        }
    return images


def wav_bytes(wav: np.ndarray, sample_rate: int) -> bytes:
    """``[T]`` float audio as a 16-bit PCM WAV file in memory (what the page plays and downloads)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wav, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
