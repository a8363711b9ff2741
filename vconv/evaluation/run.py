"""The whole evaluation in one call: pair (or read pairs), score, verify, aggregate, write the report.

:func:`run_evaluation` does all of it and writes ``results.json`` (every per-row score), ``summary.md``
(the table) and ``plots/`` (similarity histograms, a 2-D PCA of speaker embeddings).
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from vconv._version import __version__
from vconv.errors import VconvError
from vconv.evaluation import metrics as M
from vconv.evaluation.aggregate import aggregate, summarize
from vconv.evaluation.judges import Judges, check_independence
from vconv.evaluation.pairs import ConvertFn, EvalPair, make_pairs, speaker_pool
from vconv.evaluation.pitch_judge import parselmouth_module
from vconv.evaluation.plots import require_matplotlib
from vconv.evaluation.report import Report, write_report
from vconv.evaluation.scoring import ANALYSIS_SR, VocodeFn, apply_threshold, linkability, score_pairs, verification


def run_evaluation(
    pairs: Sequence[EvalPair] | None = None,
    *,
    out_dir: str | Path,
    utterances: Sequence[Any] | None = None,
    convert_fn: ConvertFn | None = None,
    judges: Judges | None = None,
    vocode_fn: VocodeFn | None = None,
    max_sources_per_speaker_pair: int | None = None,
    target_refs: int = 1,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    plots: bool = True,
    notes: Sequence[str] | Callable[[], Sequence[str]] = (),
    title: str | None = None,
    model_config: Any = None,
) -> Report:
    """Evaluate given ``pairs``, or convert held-out ``utterances`` with ``convert_fn`` first (:func:`make_pairs`).

    Writes ``out_dir/{results.json, summary.md, plots/}`` (plus ``converted/`` and ``copy_synthesis/``
    audio when it makes them). Refuses to overwrite an earlier report unless ``force``. ``judges``
    defaults to all three (:meth:`Judges.load`), which fails at once with the pip command when the
    eval extra is missing. The verifier's genuine/impostor pairs come from ``utterances`` plus every
    real file the pairs mention. ``model_config`` (the model's ModelConfig) lets
    :func:`~vconv.evaluation.judges.check_independence` refuse a judge that shares weights with the model.
    ``target_refs`` target utterances go to the converter per pair (:func:`make_pairs`); the report notes
    how many were given when that is more than one. ``notes`` are the caller's lines for the report; a
    callable is asked after the conversions, for notes that depend on them.
    """
    out = Path(out_dir)
    if (out / "results.json").exists() and not force:
        raise VconvError(f"{out / 'results.json'}: already exists; pass --force to overwrite")
    if pairs is None and (utterances is None or convert_fn is None):
        raise VconvError("run_evaluation needs either pairs, or utterances and a convert_fn")
    judges = _ready_judges(judges, plots, model_config)
    timing: dict[str, float] = {}
    started = time.perf_counter()
    asked = None if pairs is not None else target_refs  # a given protocol brings its own references
    if pairs is None:
        assert utterances is not None and convert_fn is not None  # refused above otherwise
        pairs = make_pairs(utterances, convert_fn, out, max_sources_per_speaker_pair=max_sources_per_speaker_pair,
                           target_refs=target_refs, seed=seed, force=force, progress=progress)
        timing["convert_s"] = time.perf_counter() - started
    pairs = list(pairs)
    if not pairs:
        raise VconvError("nothing to evaluate: the protocol has no pairs")
    started = time.perf_counter()
    rows = score_pairs(pairs, judges, vocode_fn=vocode_fn, work_dir=out, force=force, progress=progress)
    pool = speaker_pool(pairs, utterances)
    verify = verification(judges, pool)
    apply_threshold(rows, verify.threshold if verify else None)
    linked = linkability(judges, pool, pairs)
    timing["score_s"] = time.perf_counter() - started

    meta = _meta(pairs, rows, pool, judges, list(notes() if callable(notes) else notes), asked, title, seed, timing)
    _say_linkability(meta, linked)
    summary = aggregate(rows)
    files = write_report(out, rows, summary, verify, meta, pairs=pairs, points=_embedding_points(judges, pool, pairs), plots=plots)
    return Report(rows, summary, verify, summarize(summary, verify, meta), pairs, files, meta)


def _say_linkability(meta: dict[str, Any], linked: Any) -> None:
    """The source-speaker linkability (:func:`~vconv.evaluation.scoring.linkability`) into the report's meta and notes."""
    if linked is not None:
        meta["source_linkability_eer"] = round(linked.eer, 4)
        meta["notes"].append(f"Source-speaker linkability: the speaker judge links a conversion to its source speaker at "
                             f"EER {100 * linked.eer:.1f} % (50 % = chance; anonymisation wants it high).")


def _ready_judges(judges: Judges | None, plots: bool, model_config: Any) -> Judges:
    """The judges (default: all three), after checking the extras are there and no judge shares the model's weights."""
    M._pyworld()
    parselmouth_module()
    if plots:  # before any work: a missing extra is named at once
        require_matplotlib()
    judges = judges if judges is not None else Judges.load()
    check_independence(judges, model_config)
    return judges


def _meta(pairs: list[EvalPair], rows: list[dict[str, Any]], pool: dict[str, str], judges: Judges, notes: list[str],
          asked: int | None, title: str | None, seed: int, timing: dict[str, float]) -> dict[str, Any]:
    """The report's ``meta``: what was judged, by what, and the notes a reader needs (the caller's first)."""
    auto_notes = list(notes)
    if any(p.target_other is None for p in pairs):
        auto_notes.append("Some pairs had no unseen target utterance: their SIM→target is against the conversion reference (optimistic).")
    if any(r.get("text_from") == "source_asr" for r in rows):
        auto_notes.append("Some sources had no transcript: CER/WER are against the source's own ASR output, and the source row has no CER.")
    given = [len(p.target_refs) for p in pairs]
    if max(given) > 1 or (asked or 1) > 1:
        what = "from the protocol" if asked is None else f"{asked} asked (a target with few utterances gives fewer)"
        auto_notes.append(f"Target references per pair, averaged by the speaker path: {min(given)} to {max(given)}, "
                          f"mean {sum(given) / len(given):.1f}; {what}.")
    if len(pairs) < 30:
        auto_notes.append(f"Only {len(pairs)} pairs: treat differences of a few points as noise.")
    return {
        "title": title,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "vconv_version": __version__,
        "judges": judges.describe(),
        "n_pairs": len(pairs),
        "n_speakers_in_verifier": len(set(pool.values())),
        "seed": seed,
        "target_refs": {"asked": asked, "min": min(given), "max": max(given)},
        "analysis_sample_rate": ANALYSIS_SR,
        "timing": timing,
        "notes": auto_notes,
    }


def _embedding_points(judges: Judges, pool: dict[str, str], pairs: list[EvalPair]) -> list[tuple[str, str, Any]] | None:
    """``(kind, speaker, embedding)`` of every real utterance and conversion, for the projection plot."""
    if judges.speaker is None:
        return None
    points = [("real", spk, judges.speaker.embed(p)) for p, spk in sorted(pool.items())]
    points += [("converted", p.target_speaker or Path(p.target_refs[0]).resolve().parent.name, judges.speaker.embed(p.converted))
               for p in pairs]
    return points
