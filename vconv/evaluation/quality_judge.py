"""The quality judge: DNSMOS (SIG/BAK/OVRL and P.808) from ``speechmos``, on ONNX Runtime."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vconv.evaluation.judge_common import JUDGE_SR, cached_per_file, dist_version, missing_extra, power_mel, shared_model, to_judge_rate


def _dnsmos_melspec(audio: np.ndarray, n_mels: int = 120, frame_size: int = 320, hop_length: int = 160,
                    sr: int = 16000, to_db: bool = True) -> np.ndarray:
    """speechmos's ``DNSMOS.audio_melspec`` (``[F, n_mels]``, dB relative to the max, 80 dB range,
    then ``(dB + 40) / 40``) on :func:`power_mel`."""
    mel = power_mel(audio, sr, frame_size + 1, hop_length, n_mels)
    if not to_db:
        return mel
    db = 10.0 * np.log10(np.maximum(mel, 1e-10)) - 10.0 * np.log10(max(float(mel.max()), 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return (db + 40.0) / 40.0


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
            raise missing_extra("speechmos")
        self.num_threads = num_threads
        self._model_obj = None
        self._cache: dict[str, Mos] = {}

    def _model(self):
        if self._model_obj is None:
            self._model_obj = shared_model(("dnsmos", self.num_threads), self._build)
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
        model.audio_melspec = _dnsmos_melspec  # same numbers, no numba compile (see power_mel)
        return model

    @property
    def version(self) -> str:
        return f"speechmos {dist_version('speechmos')} DNSMOS"

    def score_wav(self, wav: np.ndarray, sr: int) -> Mos:
        """DNSMOS of a mono waveform ``[T]`` at ``sr``."""
        from speechmos import dnsmos

        x = np.clip(to_judge_rate(wav, sr), -1.0, 1.0)
        window = int(dnsmos.INPUT_LENGTH * JUDGE_SR)
        if len(x) < window:
            x = np.resize(x, window)  # np.resize repeats the clip cyclically
        out = self._model()(x, JUDGE_SR, False)
        return Mos(float(out["ovrl_mos"]), float(out["sig_mos"]), float(out["bak_mos"]), float(out["p808_mos"]))

    def score(self, path: str | Path) -> Mos:
        """DNSMOS of an audio file, computed once per path."""
        return cached_per_file(self._cache, path, self.score_wav)
