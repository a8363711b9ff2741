"""Scoring: every pair as four systems, each output by every judge, and the speaker verifier's threshold.

Every pair is scored as four **systems**, so each number has its floor and ceiling in the same table:

==================  =============================================================================
``converted``       the conversion output
``source``          the source utterance unchanged (floor for similarity, ceiling for content)
``ground_truth``    the target speaker's own utterance: the parallel one (same sentence) if there is
                    one, else a reference utterance (then content/MCD are not applicable)
``copy_synthesis``  the ground truth through the vocoder alone (``vocode_fn``): what the vocoder
                    costs before any conversion
==================  =============================================================================

Measures per row (``None`` where not applicable):

- ``sim_target`` / ``sim_source``: Resemblyzer cosine with ``target_other`` / with another utterance of
  the source speaker (``source_other``; the source itself if there is none); ``success``:
  ``sim_target > sim_source``; ``accepted``: ``sim_target >=`` the EER threshold of a verifier built
  from genuine/impostor pairs of the real utterances of the evaluation speakers.
- ``cer`` / ``wer``: the ASR judge (Whisper base by default) against the transcript (or, lacking one, the source's own ASR
  output — then the source row's CER is trivially 0 and reported as ``None``).
- ``mcd``: mel-cepstral distortion (dB, DTW) against the parallel target utterance.
- ``f0_corr`` / ``lf0_rmse_cents``: log-F0 agreement with the contour the output should follow
  (converted: the source, same timing; copy synthesis: its input; ground truth: the source via DTW);
  ``register_err_cents``: distance of the mean log-F0 from the target's (``target_other``).
- ``dnsmos_*``: DNSMOS; ``rtf``: seconds of compute per second of input (conversion, vocoder).

:func:`verification` builds the verifier (EER threshold) and :func:`apply_threshold` sets ``accepted``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from vconv.audio.io import load as load_audio
from vconv.audio.io import save as save_audio
from vconv.errors import VconvError
from vconv.evaluation import metrics as M
from vconv.evaluation.judges import Judges
from vconv.evaluation.pairs import EvalPair, safe_name
from vconv.evaluation.pitch_judge import f0_contour, parselmouth_module
from vconv.fileio import absolute

# unmatched: the model's own output (target-spectrum matching off), from the same conversion as "converted"
SYSTEMS = ("converted", "unmatched", "source", "ground_truth", "copy_synthesis")
ANALYSIS_SR = 16000  # MCD and F0 compare every file at one rate, whatever rate each was written at

VocodeFn = Callable[[str], tuple[np.ndarray, int]]  # path -> (wav [T], sr) after analysis + vocoder


@dataclass
class _Signal:
    seconds: float
    f0: np.ndarray  # [F] Hz, 0 = unvoiced
    mcep: np.ndarray  # [F, order+1]


class _Analysis:
    """Pitch (Praat) and envelope (WORLD) analysis per file, computed once (many pairs share sources and targets)."""

    def __init__(self) -> None:
        self._signals: dict[str, _Signal] = {}
        self._paths: dict[tuple[str, str], M.MCDResult] = {}

    def get(self, path: str) -> _Signal:
        key = str(Path(path).resolve())
        if key not in self._signals:
            wav, _ = load_audio(path, ANALYSIS_SR, allow_silent=True)
            self._signals[key] = _Signal(len(wav) / ANALYSIS_SR, f0_contour(wav, ANALYSIS_SR), M.mel_cepstrum(wav, ANALYSIS_SR))
        return self._signals[key]

    def mcd(self, ref: str, test: str) -> M.MCDResult:
        key = (str(Path(ref).resolve()), str(Path(test).resolve()))
        if key not in self._paths:
            self._paths[key] = M.mcd_dtw(self.get(ref).mcep, self.get(test).mcep)
        return self._paths[key]


def _num(x: float | None) -> float | None:
    """JSON-safe float: NaN/inf → None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def score_pairs(
    pairs: Sequence[EvalPair],
    judges: Judges,
    *,
    vocode_fn: VocodeFn | None = None,
    work_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Score every pair as the four systems; returns one flat dict per (pair, system).

    ``vocode_fn`` adds the copy-synthesis rows; its outputs are written under ``work_dir/copy_synthesis``.
    Judges and the pitch and WORLD analyses cache per file, so shared references cost once. Keys of a row: ``pair``,
    ``system``, ``output`` and the measures listed in the module docstring (``accepted`` is added by
    :func:`apply_threshold`).
    """
    M._pyworld()  # fail before any work if the extra is missing
    parselmouth_module()
    if vocode_fn is not None and work_dir is None:
        raise ValueError("score_pairs: vocode_fn needs a work_dir to write the copy-synthesis audio to")
    analysis = _Analysis()
    copies = _CopySynthesis(vocode_fn, work_dir, pairs, force)
    rows: list[dict[str, Any]] = []
    for pair in tqdm(pairs, desc="scoring", unit="pair", disable=not progress):
        judged_on = pair.target_other or pair.target_refs[0]
        source_judge = pair.source_other or pair.source
        text, text_from = pair.text, "transcript"
        if text is None and judges.asr is not None:
            text, text_from = judges.asr.transcribe(pair.source), "source_asr"
        common = {
            "pair": pair.id,
            "source_speaker": pair.source_speaker,
            "target_speaker": pair.target_speaker,
            "target_judged_on": "other_utterance" if pair.target_other else "conversion_reference",
            "text_from": text_from if text else None,
        }
        for system, output, how in _systems(pair, judged_on, text, text_from, copies):
            rows.append({"system": system, "output": output, **common,
                         **_score_one(output, judged_on, source_judge, how, judges, analysis)})
    return rows


def _systems(pair: EvalPair, judged_on: str, text: str | None, text_from: str,
             copies: "_CopySynthesis") -> list[tuple[str, str, dict[str, Any]]]:
    """``(system, audio, how to score it)`` of one pair: converted, source, ground truth, copy synthesis."""
    gt = pair.target_parallel or next((r for r in pair.target_refs if r != judged_on), None)
    gt_text = text if pair.target_parallel else None
    outputs: list[tuple[str, str, dict[str, Any]]] = [
        ("converted", pair.converted, dict(text=text, f0_ref=pair.source, f0_align="time",
                                           mcd_ref=pair.target_parallel, seconds=pair.convert_seconds,
                                           per=pair.source)),
        ("source", pair.source, dict(text=None if text_from == "source_asr" else text, f0_ref=None,
                                     f0_align=None, mcd_ref=pair.target_parallel, seconds=None, per=None)),
    ]
    if pair.unmatched is not None:  # scored as the conversion is; not timed on its own (one more vocoder pass)
        outputs.insert(1, ("unmatched", pair.unmatched, dict(text=text, f0_ref=pair.source, f0_align="time",
                                                            mcd_ref=pair.target_parallel, seconds=None, per=pair.source)))
    if gt is not None:
        outputs.append(("ground_truth", gt, dict(text=gt_text, f0_ref=pair.source if pair.target_parallel else None,
                                                 f0_align="dtw", mcd_ref=None, seconds=None, per=None)))
        if copies.vocode_fn is not None:
            out, elapsed = copies.of(gt)
            outputs.append(("copy_synthesis", out, dict(text=gt_text, f0_ref=gt, f0_align="time",
                                                        mcd_ref=pair.target_parallel, seconds=elapsed, per=gt)))
    return outputs


class _CopySynthesis:
    """The vocoder's resynthesis of each ground truth, once per file, written under ``work_dir/copy_synthesis``."""

    def __init__(self, vocode_fn: VocodeFn | None, work_dir: str | Path | None, pairs: Sequence[EvalPair], force: bool):
        self.vocode_fn, self.work_dir, self.force = vocode_fn, work_dir, force
        self.vocoded: dict[str, tuple[str, float]] = {}  # input path -> (output path, vocoder seconds)
        # every file the pairs read: a copy-synthesis output must never be one of them
        self.inputs = {absolute(f) for p in pairs for f in (p.source, p.converted, *p.target_refs, p.target_other,
                                                            p.target_parallel, p.source_other) if f}
        self.written: dict[Path, str] = {}  # copy-synthesis output -> the reference it vocodes

    def of(self, gt: str) -> tuple[str, float]:
        """``(output path, vocoder seconds)`` of the copy synthesis of ``gt``."""
        if gt not in self.vocoded:
            assert self.vocode_fn is not None and self.work_dir is not None
            started = time.perf_counter()
            wav, sr = self.vocode_fn(gt)
            elapsed = time.perf_counter() - started
            name = f"{safe_name(Path(gt).parent.name)}__{safe_name(Path(gt).stem)}.wav"
            dest = Path(self.work_dir) / "copy_synthesis" / name
            # two references that flatten to one name, or a name that is an input: refused, not overwritten
            if absolute(dest) in self.inputs or self.written.setdefault(absolute(dest), gt) != gt:
                raise VconvError(f"{dest}: copy synthesis of {gt} would overwrite "
                                 f"{self.written.get(absolute(dest), 'an evaluation input')}; rename one of them")
            out = save_audio(dest, np.asarray(wav, np.float32), int(sr), force=self.force)
            self.vocoded[gt] = (str(out), elapsed)
        return self.vocoded[gt]


def _score_one(
    output: str, judged_on: str, source_judge: str, how: dict[str, Any], judges: Judges, analysis: _Analysis
) -> dict[str, Any]:
    """The measures of one output file. ``how``: its transcript, F0 reference and alignment, MCD reference,
    compute seconds and the input they were spent on (for RTF)."""
    row: dict[str, Any] = {}
    if judges.speaker is not None:
        st, ss = judges.speaker.similarity(output, judged_on), judges.speaker.similarity(output, source_judge)
        row.update(sim_target=_num(st), sim_source=_num(ss), success=bool(st > ss))
    else:
        row.update(sim_target=None, sim_source=None, success=None)

    row.update(ref_text=how["text"], asr_text=None, cer=None, wer=None, char_errors=None, chars=None, word_errors=None, words=None)
    if judges.asr is not None and how["text"]:
        hyp = judges.asr.transcribe(output)
        er = M.error_rates(how["text"], hyp)
        row.update(asr_text=hyp, **{k: v for k, v in asdict(er).items()})

    sig = analysis.get(output)
    row["mcd"] = row["mcd_frames"] = None
    if how["mcd_ref"] is not None:
        res = analysis.mcd(how["mcd_ref"], output)
        row.update(mcd=_num(res.mcd), mcd_frames=res.frames)

    row.update(f0_corr=None, lf0_rmse_cents=None, f0_voiced=None, f0_align=None)
    if how["f0_ref"] is not None:
        ref = analysis.get(how["f0_ref"])
        if how["f0_align"] == "dtw":
            res = analysis.mcd(how["f0_ref"], output)
            f0s = M.f0_scores(ref.f0, sig.f0, res.ref_idx + res.ref_start, res.test_idx + res.test_start)
        else:
            f0s = M.f0_scores(ref.f0, sig.f0)
        row.update(f0_corr=_num(f0s.corr), lf0_rmse_cents=_num(f0s.rmse_cents), f0_voiced=f0s.voiced, f0_align=how["f0_align"])
    row["register_err_cents"] = _num(abs(M.cents(M.log_f0_mean(sig.f0) - M.log_f0_mean(analysis.get(judged_on).f0))))

    if judges.quality is not None:
        mos = judges.quality.score(output)
        row.update(dnsmos_ovrl=mos.ovrl, dnsmos_sig=mos.sig, dnsmos_bak=mos.bak, dnsmos_p808=mos.p808)
    else:
        row.update(dnsmos_ovrl=None, dnsmos_sig=None, dnsmos_bak=None, dnsmos_p808=None)
    row["seconds"] = sig.seconds
    row["rtf"] = _num(how["seconds"] / analysis.get(how["per"]).seconds) if how["seconds"] is not None else None
    return row


# ------------------------------------------------------------------------------------ verification


def verification(judges: Judges, pool: dict[str, str]) -> M.EERResult | None:
    """EER and threshold of the speaker judge on all genuine/impostor pairs of the pool (None if either kind is absent)."""
    if judges.speaker is None:
        return None
    paths = sorted(pool)
    emb = np.stack([judges.speaker.embed(p) for p in paths])  # [N, 256], unit rows
    sims = emb @ emb.T
    labels = np.array([pool[p] for p in paths])
    iu = np.triu_indices(len(paths), k=1)
    same = labels[iu[0]] == labels[iu[1]]
    if not same.any() or same.all():
        return None
    return M.eer(sims[iu][same], sims[iu][~same])


def linkability(judges: Judges, pool: dict[str, str], pairs: Sequence[EvalPair]) -> M.EERResult | None:
    """How well the speaker judge still links a conversion to its *source* speaker: the EER of trials that pair each
    converted utterance with the source speaker's real utterances (genuine, the source file itself left out) and with
    those of every other *source* speaker but its target (impostors: the speakers an attacker would enrol; a target
    voice from outside them, such as a pool voice of an anonymised corpus, is no impostor, as it would flatter
    privacy). 50 % is chance: anonymisation wants it high, while a conversion that keeps the source's voice leaves it
    low. None without a speaker judge or speaker labels."""
    if judges.speaker is None:
        return None
    paths = sorted(pool)
    emb = np.stack([judges.speaker.embed(p) for p in paths])  # [N, 256], unit rows
    labels = np.array([pool[p] for p in paths])
    enrolled = np.isin(labels, sorted({p.source_speaker for p in pairs if p.source_speaker}))
    genuine: list[float] = []
    impostor: list[float] = []
    for pair in pairs:
        if not pair.source_speaker:
            continue
        sims = emb @ judges.speaker.embed(pair.converted)
        own = (labels == pair.source_speaker) & (np.array(paths) != str(Path(pair.source).resolve()))
        other = enrolled & (labels != pair.source_speaker) & (labels != (pair.target_speaker or ""))
        genuine += sims[own].tolist()
        impostor += sims[other].tolist()
    return M.eer(genuine, impostor) if genuine and impostor else None


def apply_threshold(rows: list[dict[str, Any]], threshold: float | None) -> None:
    """Set ``accepted`` on every row (``sim_target >= threshold``; None without a threshold or a score)."""
    for row in rows:
        st = row.get("sim_target")
        row["accepted"] = None if threshold is None or st is None else bool(st >= threshold)
