"""The Python API: audio in, audio out, in three lines::

    import vconv
    vc = vconv.load()                                   # the shipped bundle, or a name / folder
    wav = vc.convert("src.wav", refs=["target.wav"])    # float32 [T] at vc.sample_rate

``vconv.VoiceConverter`` is the audio-level pipeline (load → log-mel → normalise → model → vocoder).
It wraps ``vconv.models.VoiceConverter``, the ``nn.Module`` that maps mels to mels. Inputs are paths or
numpy arrays (give ``sr`` for arrays); everything runs on the CPU unless a device is passed.

Long sources are converted in overlapping chunks whose waveforms are cross-faded, so memory stays
bounded whatever the length (the content encoder's instance norm then sees ~``chunk_seconds`` of
context, which is plenty for its per-utterance statistics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from vconv.audio import load as load_audio
from vconv.audio import resample, validate
from vconv.checkpoint import BundleInfo, load_bundle
from vconv.errors import VconvError
from vconv.features import LogMel
from vconv.pretrained import resolve_bundle

AudioInput = Union[str, Path, np.ndarray]
MIN_SECONDS = 0.1  # the content encoder needs a few frames; 0.1 s is ~6 frames at hop 256


class VoiceConverter:
    """One-shot any-to-any conversion with a loaded bundle and a vocoder.

    Attributes: ``model`` (``vconv.models.VoiceConverter``), ``info`` (:class:`BundleInfo`),
    ``vocoder`` (a :class:`vconv.vocoders.Vocoder`), ``sample_rate``.
    """

    def __init__(self, model, info: BundleInfo, vocoder=None, device: str | torch.device = "cpu"):
        from vconv.vocoders import check_compatible, get_vocoder

        self.model = model.to(device).eval()
        self.info = info
        self.device = torch.device(device)
        self.features = info.feature_config
        self.stats = info.feature_stats
        self.extractor = LogMel(self.features).to(self.device)
        self.vocoder = vocoder if vocoder is not None else get_vocoder("griffinlim", self.features)
        check_compatible(self.features, self.vocoder)
        self.vocoder = self.vocoder.to(self.device).eval()

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    # ---------------------------------------------------------------------------------------- inputs

    def prepare_audio(self, audio: AudioInput, sr: int | None, name: str = "<array>") -> np.ndarray:
        """Any input → mono float32 ``[T]`` at the model's rate, validated."""
        if isinstance(audio, (str, Path)):
            wav, _ = load_audio(audio, self.sample_rate, min_seconds=MIN_SECONDS, max_seconds=None)
            return wav
        wav = np.asarray(audio, dtype=np.float32)
        if wav.ndim == 2:  # [T, C] or [C, T]: downmix the smaller axis
            wav = wav.mean(axis=int(np.argmin(wav.shape)))
        if sr is None:
            raise VconvError(f"{name}: a numpy waveform needs its sample rate (sr=...)")
        validate(wav, sr, name, min_seconds=MIN_SECONDS)
        return resample(wav, sr, self.sample_rate)

    def _mel(self, wav: np.ndarray) -> torch.Tensor:
        """``[T]`` → normalised log-mel ``[1, n_mels, F]`` on the device."""
        with torch.no_grad():
            mel = self.extractor(torch.from_numpy(wav).to(self.device)[None])
        return self.stats.normalize(mel.cpu()).to(self.device)

    # ------------------------------------------------------------------------------------- embedding

    @torch.no_grad()
    def speaker_embedding(self, refs: Sequence[AudioInput] | AudioInput, sr: int | None = None) -> torch.Tensor:
        """Average speaker embedding ``[1, S]`` of one or several references (not normalised)."""
        refs = [refs] if isinstance(refs, (str, Path, np.ndarray)) else list(refs)
        if not refs:
            raise VconvError("at least one target reference is needed")
        mels = [self._mel(self.prepare_audio(r, sr, str(r) if not isinstance(r, np.ndarray) else "<array>"))[0] for r in refs]
        return self.model.embed_speaker(mels)

    @torch.no_grad()
    def embed(self, wavs: Sequence[AudioInput] | AudioInput, sr: int | None = None) -> np.ndarray:
        """L2-normalised speaker embeddings ``[N, S]``, one per input utterance."""
        wavs = [wavs] if isinstance(wavs, (str, Path, np.ndarray)) else list(wavs)
        rows = [self.speaker_embedding([w], sr) for w in wavs]
        emb = torch.nn.functional.normalize(torch.cat(rows).float(), dim=-1)
        return emb.cpu().numpy()

    # ------------------------------------------------------------------------------------ conversion

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
        embedding = self.speaker_embedding(refs, sr)
        return self.convert_wav(wav, embedding, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds)

    @torch.no_grad()
    def copy_synthesis(self, source: AudioInput, sr: int | None = None) -> np.ndarray:
        """The vocoder alone on the source's own log-mel (no conversion): the floor of any conversion's quality."""
        wav = self.prepare_audio(source, sr, str(source) if not isinstance(source, np.ndarray) else "<array>")
        with torch.no_grad():
            log_mel = self.extractor(torch.from_numpy(wav).to(self.device)[None])
        audio = self.vocoder(log_mel)[0].float().cpu().numpy()
        return np.pad(audio, (0, max(0, wav.size - audio.size)))[: wav.size]

    def convert_wav(self, wav: np.ndarray, embedding: torch.Tensor, *, chunk_seconds: float = 20.0, overlap_seconds: float = 1.0) -> np.ndarray:
        """Model-rate ``[T]`` + embedding ``[1, S]`` → converted ``[T]``, chunked with linear cross-fades."""
        hop = self.features.hop_length
        chunk = max(hop * 8, int(chunk_seconds * self.sample_rate) // hop * hop)
        overlap = min(chunk // 2, int(overlap_seconds * self.sample_rate) // hop * hop)
        if wav.size <= chunk:
            return self._convert_chunk(wav, embedding)
        out = np.zeros(wav.size, dtype=np.float32)
        step = chunk - overlap
        fade_in = np.linspace(0.0, 1.0, overlap, dtype=np.float32)
        for start in range(0, wav.size, step):
            piece = self._convert_chunk(wav[start : start + chunk], embedding)
            if start > 0 and overlap:
                n = min(overlap, piece.size)
                piece[:n] *= fade_in[:n]
                out[start : start + n] *= 1.0 - fade_in[:n]
            out[start : start + piece.size] += piece
            if start + chunk >= wav.size:
                break
        return out

    @torch.no_grad()  # convert_wav is also called directly (convert_paths): never build an autograd graph
    def _convert_chunk(self, wav: np.ndarray, embedding: torch.Tensor) -> np.ndarray:
        mel = self._mel(wav)
        # the target embedding is computed once per file, so go through the parts rather than convert()
        q = self.model.encode_content(mel).quantized
        converted = self.model.decoder(q, embedding, mel.shape[-1])
        log_mel = self.stats.denormalize(converted.float().cpu()).to(self.device)
        audio = self.vocoder(log_mel)[0].float().cpu().numpy()
        if audio.size < wav.size:  # the vocoder yields (F-1)*hop samples: pad the tail to the source length
            audio = np.pad(audio, (0, wav.size - audio.size))
        return audio[: wav.size]


def load(name_or_path: str | Path | None = None, *, vocoder: str | None = None, device: str | torch.device = "cpu") -> VoiceConverter:
    """Load a bundle by name or folder (default: the shipped model) as a :class:`VoiceConverter`."""
    from vconv.vocoders import get_vocoder, load_bundle_vocoder

    bundle = resolve_bundle(name_or_path)
    model, info = load_bundle(bundle, device)
    # the bundle's own (trained) vocoder by default; a name (e.g. "griffinlim") overrides it
    voc = load_bundle_vocoder(bundle, info.feature_config) if vocoder in (None, "vocos") else None
    if vocoder == "vocos" and voc is None:
        raise VconvError(f"{bundle}: this bundle has no trained vocos vocoder (attach one with `vconv train-vocoder --attach`)")
    if voc is None and vocoder:
        voc = get_vocoder(vocoder, info.feature_config)
    return VoiceConverter(model, info, voc, device)
