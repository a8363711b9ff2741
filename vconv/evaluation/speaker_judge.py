"""The speaker judge: Resemblyzer's d-vector LSTM (256-d, L2-normalised), independent of vconv's own speaker encoder.

A model must not grade its own conversions, so similarity is judged with Resemblyzer, never with the
speaker encoder of the model under test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from vconv.errors import VconvError
from vconv.evaluation.judge_common import EVAL_EXTRA, cached_per_file, dist_version, missing_extra, power_mel, shared_model, to_judge_rate
from vconv.inference.threads import torch_threads


@contextlib.contextmanager
def _pkg_resources_stand_in() -> Iterator[None]:
    """Let ``import webrtcvad`` (a Resemblyzer dependency) succeed on setuptools >= 81.

    webrtcvad 2.0.10 runs ``pkg_resources.get_distribution('webrtcvad').version`` at import time and
    nothing else from it; setuptools 81 removed ``pkg_resources``. Rather than pinning an old setuptools
    into every user's environment, we put a one-function stand-in in ``sys.modules`` for the duration
    of that import only (and only if the real module is absent), then remove it so no other package
    sees it.
    """
    if "pkg_resources" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
        yield
        return
    from importlib.metadata import version

    shim = types.ModuleType("pkg_resources")
    shim.get_distribution = lambda name: types.SimpleNamespace(version=version(name))  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim
    try:
        yield
    finally:
        if sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]


class SpeakerJudge:
    """Resemblyzer speaker embeddings: file or waveform → ``[256]`` unit vector.

    Follows Resemblyzer's own recipe (volume normalisation and VAD trimming of long pauses, 1.6 s
    partial windows at 1.3 per second, mean of partial embeddings re-normalised), with one change
    for speed: partials go through the LSTM **one at a time** as ``[1, 160, 40]``. Resemblyzer batches
    all partials of an utterance, so every utterance length is a new batch shape, and oneDNN re-plans
    its LSTM for each new shape (measured here: 33 s instead of < 1 s per minute of audio).
    ``num_threads=1`` by default: a batch-1 LSTM step is too small to gain from a second thread and
    measurably loses to contention when the other core is busy.
    """

    name = "resemblyzer"

    def __init__(self, num_threads: int | None = 1, device: str = "cpu"):
        if importlib.util.find_spec("resemblyzer") is None:
            raise missing_extra("resemblyzer")
        self.num_threads = num_threads
        self.device = device
        self._encoder = None
        self._cache: dict[str, np.ndarray] = {}

    def _model(self):
        if self._encoder is None:
            with _pkg_resources_stand_in(), warnings.catch_warnings():
                # resemblyzer imports scipy.ndimage.morphology (deprecated alias) and webrtcvad warns
                # about pkg_resources; neither concerns our users
                warnings.simplefilter("ignore")
                try:
                    from resemblyzer import VoiceEncoder
                except ImportError as exc:
                    raise VconvError(f"resemblyzer could not be imported ({exc}); reinstall it: {EVAL_EXTRA}") from None
            self._encoder = shared_model(("resemblyzer", self.device), lambda: VoiceEncoder(self.device, verbose=False).eval())
        return self._encoder

    @property
    def version(self) -> str:
        return f"resemblyzer {dist_version('resemblyzer')}"

    def embed_wav(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Embedding ``[256]`` (float32, unit norm) of a mono waveform ``[T]`` at ``sr``."""
        import torch

        encoder = self._model()  # first: it imports resemblyzer with the stand-in and warnings handled
        from resemblyzer import hparams
        from resemblyzer.audio import normalize_volume, trim_long_silences

        x = to_judge_rate(wav, sr)
        x = normalize_volume(x, hparams.audio_norm_target_dBFS, increase_only=True)
        trimmed = trim_long_silences(x)
        # the VAD can remove (nearly) everything from a broken conversion; judge the raw audio then
        if len(trimmed) >= hparams.sampling_rate // 2:
            x = trimmed
        wav_slices, mel_slices = encoder.compute_partial_slices(len(x), rate=1.3, min_coverage=0.75)
        if wav_slices[-1].stop > len(x):
            x = np.pad(x, (0, wav_slices[-1].stop - len(x)))
        # = resemblyzer.audio.wav_to_mel_spectrogram (25 ms / 10 ms, 40 bands, power), without librosa's stft
        mel = power_mel(x, hparams.sampling_rate, 400, 160, hparams.mel_n_channels)  # [F, 40]
        parts = []
        with torch.inference_mode(), torch_threads(self.num_threads):
            for s in mel_slices:
                parts.append(encoder(torch.from_numpy(np.ascontiguousarray(mel[s][None])))[0].numpy())
        mean = np.mean(parts, axis=0)
        norm = np.linalg.norm(mean)
        return (mean / norm if norm > 0 else mean).astype(np.float32)

    def embed(self, path: str | Path) -> np.ndarray:
        """Embedding ``[256]`` of an audio file, computed once per path."""
        return cached_per_file(self._cache, path, self.embed_wav)

    def similarity(self, a: str | Path, b: str | Path) -> float:
        """Cosine similarity of the embeddings of two files (both unit norm, so a dot product)."""
        return float(np.dot(self.embed(a), self.embed(b)))

    @property
    def cache(self) -> dict[str, np.ndarray]:
        """Embeddings computed so far, by resolved path (for plots)."""
        return self._cache
