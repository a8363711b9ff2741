"""The evaluation protocol: which audio is compared with which, by which judge, and how it is reported.

A protocol is a list of :class:`EvalPair`: a source utterance, the target reference(s) given to the
converter, the converted output, and — for honest similarity — a *different* utterance of the target
(``target_other``) that the converter never saw. :func:`make_pairs` builds such a list from held-out
speakers and a conversion function; :func:`read_protocol` reads one from JSON.

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
- ``cer`` / ``wer``: Whisper tiny.en against the transcript (or, lacking one, the source's own ASR
  output — then the source row's CER is trivially 0 and reported as ``None``).
- ``mcd``: mel-cepstral distortion (dB, DTW) against the parallel target utterance.
- ``f0_corr`` / ``lf0_rmse_cents``: log-F0 agreement with the contour the output should follow
  (converted: the source, same timing; copy synthesis: its input; ground truth: the source via DTW);
  ``register_err_cents``: distance of the mean log-F0 from the target's (``target_other``).
- ``dnsmos_*``: DNSMOS; ``rtf``: seconds of compute per second of input (conversion, vocoder).

:func:`run_evaluation` does all of it and writes ``results.json`` (every per-row score), ``summary.md``
(the table) and ``plots/`` (similarity histograms, a 2-D PCA of speaker embeddings).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from vconv._version import __version__
from vconv.evaluation import metrics as M
from vconv.audio.io import load as load_audio
from vconv.audio.io import save as save_audio
from vconv.errors import VconvError
from vconv.fileio import atomic_path, write_text_atomic
from vconv.evaluation.judges import EVAL_EXTRA, Judges

SYSTEMS = ("converted", "source", "ground_truth", "copy_synthesis")
ANALYSIS_SR = 16000  # MCD and F0 compare every file at one rate, whatever rate each was written at

ConvertFn = Callable[[str, list[str]], tuple[np.ndarray, int]]  # (source path, ref paths) -> (wav [T], sr)
VocodeFn = Callable[[str], tuple[np.ndarray, int]]  # path -> (wav [T], sr) after analysis + vocoder


@dataclass
class EvalPair:
    """One conversion to judge. Paths are strings; only ``source``, ``target_refs`` and ``converted`` are required.

    ``target_other`` should be an utterance of the target that is *not* among ``target_refs``: judging
    similarity against the very reference the converter copied from flatters it. Without one, the
    first reference is used and the row says so (``target_judged_on``).
    """

    source: str
    target_refs: list[str]
    converted: str
    target_other: str | None = None
    target_parallel: str | None = None  # target speaker saying the source's sentence (ground truth)
    source_other: str | None = None  # another utterance of the source speaker
    text: str | None = None  # transcript of the source
    source_speaker: str | None = None
    target_speaker: str | None = None
    convert_seconds: float | None = None  # wall time of the conversion, for RTF
    id: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.target_refs, (str, Path)):
            self.target_refs = [self.target_refs]
        if not self.target_refs:
            raise VconvError(f"pair {self.id or self.source}: needs at least one target reference")
        for name in ("source", "converted", "target_other", "target_parallel", "source_other"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, str(value))
        self.target_refs = [str(p) for p in self.target_refs]
        if not self.id:
            target = self.target_speaker or Path(self.target_refs[0]).stem
            self.id = f"{Path(self.source).stem}->{target}"

    @classmethod
    def from_dict(cls, record: dict[str, Any], base: Path | None = None) -> "EvalPair":
        """Build from a protocol record (``target_ref`` may stand for a one-item ``target_refs``);
        relative paths are resolved against ``base``."""
        rec = dict(record)
        if "target_ref" in rec:
            rec.setdefault("target_refs", [rec.pop("target_ref")])
        missing = [k for k in ("source", "target_refs", "converted") if not rec.get(k)]
        if missing:
            raise VconvError(f"protocol record {record!r}: missing {', '.join(missing)}")
        unknown = set(rec) - set(cls.__dataclass_fields__)
        if unknown:
            raise VconvError(f"protocol record {rec.get('id') or rec['source']}: unknown keys {sorted(unknown)}")

        if base is not None:
            resolve = lambda p: str(base / p)  # noqa: E731 — an absolute p stays as it is under "/"
            for k in ("source", "converted", "target_other", "target_parallel", "source_other"):
                if rec.get(k) is not None:
                    rec[k] = resolve(rec[k])
            refs = rec["target_refs"] if isinstance(rec["target_refs"], list) else [rec["target_refs"]]
            rec["target_refs"] = [resolve(p) for p in refs]
        return cls(**rec)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_protocol(path: str | Path) -> list[EvalPair]:
    """Read pairs from a JSON list or JSON Lines file of :class:`EvalPair` records (paths relative to the file)."""
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: protocol file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise VconvError(f"{path}: not valid JSON/JSONL ({exc.msg} at line {exc.lineno})") from None
    return [EvalPair.from_dict(r, path.parent) for r in records]


# ------------------------------------------------------------------------------------ making pairs


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def make_pairs(
    utterances: Sequence[Any],
    convert_fn: ConvertFn,
    out_dir: str | Path,
    *,
    max_sources_per_speaker_pair: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> list[EvalPair]:
    """Convert every source utterance to every *other* held-out speaker and return the pairs.

    ``utterances``: :class:`vconv.data.Utterance`-like objects (``id``, ``path``, ``speaker``, ``text``).
    For each ordered speaker pair (A → B) and each chosen source utterance of A (all, or a seeded sample
    of ``max_sources_per_speaker_pair``): the target's utterance with the same sentence becomes the
    ground truth (``target_parallel``), and two *other* utterances of B are drawn as the conversion
    reference and the similarity reference, so neither the ground truth nor the judged reference is
    ever shown to the converter. Choices are seeded per (source, target) pair, so they do not depend
    on list order. A target with fewer than two utterances cannot be judged honestly and is skipped.

    Each output is written to ``out_dir/converted/<source id>__to__<target>.wav``; only the
    ``convert_fn`` call is timed (``convert_seconds``), not the file writing.
    """
    by_speaker: dict[str, list[Any]] = {}
    for u in sorted(utterances, key=lambda u: u.id):
        by_speaker.setdefault(u.speaker, []).append(u)
    speakers = sorted(by_speaker)
    if len(speakers) < 2:
        raise VconvError(f"evaluation needs at least two held-out speakers, got {len(speakers)}: {speakers}")
    plan = []
    for a in speakers:
        for b in speakers:
            if a == b or len(by_speaker[b]) < 2:
                continue
            sources = by_speaker[a]
            if max_sources_per_speaker_pair is not None and len(sources) > max_sources_per_speaker_pair:
                sources = random.Random(f"{seed}|{a}|{b}").sample(sources, max_sources_per_speaker_pair)
                sources.sort(key=lambda u: u.id)
            plan.extend((s, b) for s in sources)
    if not plan:
        raise VconvError("no speaker has two or more utterances; each target needs a reference and a second utterance to judge against")

    out = Path(out_dir) / "converted"
    pairs = []
    for src, b in tqdm(plan, desc="converting", unit="pair", disable=not progress):
        rng = random.Random(f"{seed}|{src.id}|{b}")
        targets = by_speaker[b]
        key = M.normalize_text(src.text) if src.text else None
        parallel = next((t for t in targets if key and t.text and M.normalize_text(t.text) == key), None)
        others = [t for t in targets if t is not parallel]
        if len(others) >= 2:
            ref, judge_on = rng.sample(others, 2)
        else:  # only one non-parallel utterance: give up the ground truth rather than leak it
            ref, judge_on, parallel = others[0], parallel, None
        rest = [u for u in by_speaker[src.speaker] if u.id != src.id]
        src_other = rng.choice(rest) if rest else None

        started = time.perf_counter()
        wav, sr = convert_fn(str(src.path), [str(ref.path)])
        elapsed = time.perf_counter() - started
        path = save_audio(out / f"{_safe(src.id)}__to__{_safe(b)}.wav", np.asarray(wav, dtype=np.float32), int(sr), force=force)
        pairs.append(
            EvalPair(
                source=str(src.path),
                target_refs=[str(ref.path)],
                converted=str(path),
                target_other=str(judge_on.path),
                target_parallel=str(parallel.path) if parallel else None,
                source_other=str(src_other.path) if src_other else None,
                text=src.text,
                source_speaker=src.speaker,
                target_speaker=b,
                convert_seconds=elapsed,
                id=f"{src.id}->{b}",
            )
        )
    return pairs


# ------------------------------------------------------------------------------------------ scoring


@dataclass
class _Signal:
    seconds: float
    f0: np.ndarray  # [F] Hz, 0 = unvoiced
    mcep: np.ndarray  # [F, order+1]


class _Analysis:
    """WORLD analysis per file, computed once (many pairs share sources and targets)."""

    def __init__(self) -> None:
        self._signals: dict[str, _Signal] = {}
        self._paths: dict[tuple[str, str], M.MCDResult] = {}

    def get(self, path: str) -> _Signal:
        key = str(Path(path).resolve())
        if key not in self._signals:
            wav, _ = load_audio(path, ANALYSIS_SR, allow_silent=True)
            f0 = M.f0_contour(wav, ANALYSIS_SR)
            self._signals[key] = _Signal(len(wav) / ANALYSIS_SR, f0, M.mel_cepstrum(wav, ANALYSIS_SR, f0=f0))
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
    Judges and WORLD analyses cache per file, so shared references cost once. Keys of a row: ``pair``,
    ``system``, ``output`` and the measures listed in the module docstring (``accepted`` is added by
    :func:`apply_threshold`).
    """
    M._pyworld()  # fail before any work if the extra is missing
    if vocode_fn is not None and work_dir is None:
        raise ValueError("score_pairs: vocode_fn needs a work_dir to write the copy-synthesis audio to")
    analysis = _Analysis()
    vocoded: dict[str, tuple[str, float]] = {}  # input path -> (output path, vocoder seconds)
    rows: list[dict[str, Any]] = []
    for pair in tqdm(pairs, desc="scoring", unit="pair", disable=not progress):
        judged_on = pair.target_other or pair.target_refs[0]
        source_judge = pair.source_other or pair.source
        text, text_from = pair.text, "transcript"
        if text is None and judges.asr is not None:
            text, text_from = judges.asr.transcribe(pair.source), "source_asr"
        gt = pair.target_parallel or next((r for r in pair.target_refs if r != judged_on), None)
        gt_text = text if pair.target_parallel else None
        common = {
            "pair": pair.id,
            "source_speaker": pair.source_speaker,
            "target_speaker": pair.target_speaker,
            "target_judged_on": "other_utterance" if pair.target_other else "conversion_reference",
            "text_from": text_from if text else None,
        }
        outputs: list[tuple[str, str, dict[str, Any]]] = [
            ("converted", pair.converted, dict(text=text, f0_ref=pair.source, f0_align="time",
                                               mcd_ref=pair.target_parallel, seconds=pair.convert_seconds,
                                               per=pair.source)),
            ("source", pair.source, dict(text=None if text_from == "source_asr" else text, f0_ref=None,
                                         f0_align=None, mcd_ref=pair.target_parallel, seconds=None, per=None)),
        ]
        if gt is not None:
            outputs.append(("ground_truth", gt, dict(text=gt_text, f0_ref=pair.source if pair.target_parallel else None,
                                                     f0_align="dtw", mcd_ref=None, seconds=None, per=None)))
            if vocode_fn is not None:
                if gt not in vocoded:
                    started = time.perf_counter()
                    wav, sr = vocode_fn(gt)
                    elapsed = time.perf_counter() - started
                    name = f"{_safe(Path(gt).parent.name)}__{_safe(Path(gt).stem)}.wav"
                    out = save_audio(Path(work_dir) / "copy_synthesis" / name, np.asarray(wav, np.float32), int(sr), force=force)
                    vocoded[gt] = (str(out), elapsed)
                out, elapsed = vocoded[gt]
                outputs.append(("copy_synthesis", out, dict(text=gt_text, f0_ref=gt, f0_align="time",
                                                            mcd_ref=pair.target_parallel, seconds=elapsed, per=gt)))
        for system, output, how in outputs:
            rows.append({"system": system, "output": output, **common,
                         **_score_one(output, judged_on, source_judge, how, judges, analysis)})
    return rows


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


def speaker_pool(pairs: Iterable[EvalPair], utterances: Iterable[Any] | None = None) -> dict[str, str]:
    """Real (unconverted) utterances of the evaluation speakers: resolved path → speaker.

    From ``utterances`` (``path``/``speaker``) when given, plus every real file the pairs mention. A pair
    without speaker labels falls back to the file's folder name (the ``ROOT/<speaker>/...`` layout).
    """
    pool: dict[str, str] = {}

    def add(path: str | None, speaker: str | None) -> None:
        if path is not None:
            pool.setdefault(str(Path(path).resolve()), speaker or Path(path).resolve().parent.name)

    for u in utterances or ():
        add(str(u.path), u.speaker)
    for p in pairs:
        add(p.source, p.source_speaker)
        add(p.source_other, p.source_speaker)
        for r in p.target_refs:
            add(r, p.target_speaker)
        add(p.target_other, p.target_speaker)
        add(p.target_parallel, p.target_speaker)
    return pool


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


def apply_threshold(rows: list[dict[str, Any]], threshold: float | None) -> None:
    """Set ``accepted`` on every row (``sim_target >= threshold``; None without a threshold or a score)."""
    for row in rows:
        st = row.get("sim_target")
        row["accepted"] = None if threshold is None or st is None else bool(st >= threshold)


# ------------------------------------------------------------------------------------------ summary

_MEANS = ("sim_target", "sim_source", "mcd", "f0_corr", "lf0_rmse_cents", "register_err_cents",
          "dnsmos_ovrl", "dnsmos_p808", "rtf")


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-system summary: means (with ``n_<measure>``), a 95 % CI half-width for ``sim_target``, success
    and accept rates, and corpus-level CER/WER (total edits / total reference length)."""
    out: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        sel = [r for r in rows if r["system"] == system]
        if not sel:
            continue
        s: dict[str, Any] = {"n": len(sel)}
        for key in _MEANS:
            vals = np.array([r[key] for r in sel if r.get(key) is not None], dtype=np.float64)
            s[key] = float(vals.mean()) if vals.size else None
            s[f"n_{key}"] = int(vals.size)
            if key == "sim_target" and vals.size > 1:
                s["sim_target_ci95"] = float(1.96 * vals.std(ddof=1) / math.sqrt(vals.size))
        for key, name in (("success", "success_rate"), ("accepted", "accept_rate")):
            vals = [r[key] for r in sel if r.get(key) is not None]
            s[name] = float(np.mean(vals)) if vals else None
        for unit in ("char", "word"):
            errs = [r[f"{unit}_errors"] for r in sel if r.get(f"{unit}_errors") is not None]
            lens = [r[f"{unit}s"] for r in sel if r.get(f"{unit}s") is not None]
            s["cer" if unit == "char" else "wer"] = (sum(errs) / sum(lens)) if lens and sum(lens) else None
        out[system] = s
    return out


def _fmt(x: Any, spec: str = ".3f", pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.0f} %" if pct else format(x, spec)


def summarize(summary: dict[str, dict[str, Any]], verify: M.EERResult | None = None, meta: dict[str, Any] | None = None) -> str:
    """The Markdown report: one table row per system, then what each column means and the caveats."""
    meta = meta or {}
    head = ["system", "n", "SIM→target ↑", "SIM→source", "success ↑", "accept ↑", "CER ↓", "WER ↓",
            "MCD dB ↓", "F0 corr ↑", "log-F0 RMSE ¢ ↓", "register err ¢ ↓", "DNSMOS ↑", "P.808 ↑", "RTF ↓"]
    lines = ["# vconv evaluation", ""]
    if meta.get("title"):
        lines += [str(meta["title"]), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, s in summary.items():
        sim = _fmt(s["sim_target"])
        if s.get("sim_target_ci95") is not None:
            sim += f" ± {s['sim_target_ci95']:.3f}"
        cells = [system, str(s["n"]), sim, _fmt(s["sim_source"]), _fmt(s["success_rate"], pct=True),
                 _fmt(s["accept_rate"], pct=True), _fmt(s["cer"]), _fmt(s["wer"]), _fmt(s["mcd"], ".2f"),
                 _fmt(s["f0_corr"]), _fmt(s["lf0_rmse_cents"], ".0f"), _fmt(s["register_err_cents"], ".0f"),
                 _fmt(s["dnsmos_ovrl"], ".2f"), _fmt(s["dnsmos_p808"], ".2f"), _fmt(s["rtf"], ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if verify is not None:
        lines.append(
            f"Verifier from the evaluation speakers' real utterances: EER {100 * verify.eer:.1f} % at cosine "
            f"threshold {verify.threshold:.3f} ({verify.genuine} genuine, {verify.impostor} impostor pairs); "
            "*accept* = share of rows at or above it."
        )
    else:
        lines.append("No verifier threshold (needs a speaker judge and at least two speakers with two utterances): *accept* is –.")
    lines += [
        "",
        "- **SIM→target**: Resemblyzer cosine with an utterance of the target the converter did not see "
        "(± 95 % CI); **SIM→source**: with another utterance of the source speaker; **success**: closer to target than to source.",
        "- **CER/WER**: Whisper tiny.en vs the transcript, corpus-level (total edits / total length), text lowercased without punctuation.",
        "- **MCD**: mel-cepstral distortion (c1–c24, WORLD envelope, DTW) vs the target speaking the same sentence.",
        "- **F0 corr / log-F0 RMSE**: over jointly voiced frames after a mean-variance shift; converted is compared with "
        "the source, copy synthesis with its input, ground truth with the source (DTW). **register err**: |mean log-F0 − target's| in cents.",
        "- **RTF**: compute seconds per second of input (converted: the conversion; copy synthesis: the vocoder).",
        "- Rows: *source* = input unchanged (floor), *ground_truth* = the target's own utterance (ceiling), "
        "*copy_synthesis* = ground truth through the vocoder alone.",
    ]
    for note in meta.get("notes", []):
        lines.append(f"- {note}")
    if meta.get("judges"):
        lines += ["", "Judges: " + "; ".join(f"{k}: {v}" for k, v in meta["judges"].items() if v) + "."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- output


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise VconvError(f"vconv evaluate needs the eval extra (matplotlib is not installed): {EVAL_EXTRA}") from None


def _save_figure(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)


def plot_similarity(rows: Sequence[dict[str, Any]], path: Path, threshold: float | None = None) -> Path:
    """Histograms of ``sim_target`` per system (the EER threshold as a dashed line)."""
    _require_matplotlib()
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state is touched

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    bins = np.linspace(0.0, 1.0, 41)  # Resemblyzer embeddings are non-negative: cosine lies in [0, 1]
    for system in SYSTEMS:
        vals = [r["sim_target"] for r in rows if r["system"] == system and r.get("sim_target") is not None]
        if vals:  # the conversion filled, its reference rows as outlines, so coinciding ones stay visible
            style = dict(histtype="stepfilled", alpha=0.35) if system == "converted" else dict(histtype="step", linewidth=1.8)
            ax.hist(vals, bins=bins, label=f"{system} (n={len(vals)})", **style)
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"EER threshold {threshold:.2f}")
    ax.set_xlabel("cosine similarity to an unseen utterance of the target (Resemblyzer)")
    ax.set_ylabel("rows")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def plot_embeddings(points: Sequence[tuple[str, str, np.ndarray]], path: Path) -> Path:
    """2-D PCA of speaker embeddings: ``points`` are ``(kind, speaker, [D])`` with kind ``real`` or ``converted``.

    The axes are fitted on the real utterances only, so converted outputs are placed in the space the
    real speakers span (a good conversion lands in its target's cluster).
    """
    _require_matplotlib()
    from matplotlib.figure import Figure

    real = np.stack([e for k, _, e in points if k == "real"])  # [N, D]
    mean = real.mean(0)
    _, _, vt = np.linalg.svd(real - mean, full_matrices=False)
    axes = vt[:2].T  # [D, 2]
    speakers = sorted({s for _, s, _ in points})
    colors = {s: f"C{i % 10}" for i, s in enumerate(speakers)}
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    for kind, marker, size in (("real", "o", 28), ("converted", "x", 36)):
        for s in speakers:
            xy = [(e - mean) @ axes for k, sp, e in points if k == kind and sp == s]
            if xy:
                xy = np.array(xy)
                ax.scatter(xy[:, 0], xy[:, 1], marker=marker, s=size, color=colors[s],
                           label=s if kind == "real" else None, alpha=0.8)
    ax.scatter([], [], marker="x", color="gray", label="converted (colour = target)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("Resemblyzer embeddings: ● real utterances, × conversions")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def write_report(
    out_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    summary: dict[str, dict[str, Any]],
    verify: M.EERResult | None,
    meta: dict[str, Any],
    *,
    pairs: Sequence[EvalPair] = (),
    points: Sequence[tuple[str, str, np.ndarray]] | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``results.json``, ``summary.md`` and (if ``plots``) ``plots/similarity.png`` and
    ``plots/embeddings.png`` into ``out_dir``; each file through a temp file and a rename."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if plots:
        (out / "plots").mkdir(exist_ok=True)
        files["similarity_plot"] = plot_similarity(rows, out / "plots" / "similarity.png", verify.threshold if verify else None)
        if points and any(k == "real" for k, _, _ in points) and len({s for _, s, _ in points}) > 1:
            files["embedding_plot"] = plot_embeddings(points, out / "plots" / "embeddings.png")
    results = {
        "meta": meta,
        "verification": asdict(verify) if verify else None,
        "summary": summary,
        "pairs": [p.to_dict() for p in pairs],
        "rows": list(rows),
    }
    files["results"] = out / "results.json"
    write_text_atomic(files["results"], json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    files["summary"] = out / "summary.md"
    write_text_atomic(files["summary"], summarize(summary, verify, meta))
    return files


# ---------------------------------------------------------------------------------------- top level


@dataclass
class Report:
    """What :func:`run_evaluation` produced: every row, the per-system summary, the verifier, and the files."""

    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    verification: M.EERResult | None
    summary_markdown: str
    pairs: list[EvalPair]
    files: dict[str, Path] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def run_evaluation(
    pairs: Sequence[EvalPair] | None = None,
    *,
    out_dir: str | Path,
    utterances: Sequence[Any] | None = None,
    convert_fn: ConvertFn | None = None,
    judges: Judges | None = None,
    vocode_fn: VocodeFn | None = None,
    max_sources_per_speaker_pair: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    plots: bool = True,
    notes: Sequence[str] = (),
    title: str | None = None,
) -> Report:
    """Evaluate given ``pairs``, or convert held-out ``utterances`` with ``convert_fn`` first (:func:`make_pairs`).

    Writes ``out_dir/{results.json, summary.md, plots/}`` (plus ``converted/`` and ``copy_synthesis/``
    audio when it makes them). Refuses to overwrite an earlier report unless ``force``. ``judges``
    defaults to all three (:meth:`Judges.load`), which fails at once with the pip command when the
    eval extra is missing. The verifier's genuine/impostor pairs come from ``utterances`` plus every
    real file the pairs mention.
    """
    out = Path(out_dir)
    if (out / "results.json").exists() and not force:
        raise VconvError(f"{out / 'results.json'}: already exists; pass --force to overwrite")
    if pairs is None and (utterances is None or convert_fn is None):
        raise VconvError("run_evaluation needs either pairs, or utterances and a convert_fn")
    M._pyworld()
    if plots:
        _require_matplotlib()
    judges = judges if judges is not None else Judges.load()

    timing: dict[str, float] = {}
    started = time.perf_counter()
    if pairs is None:
        pairs = make_pairs(utterances, convert_fn, out, max_sources_per_speaker_pair=max_sources_per_speaker_pair,
                           seed=seed, force=force, progress=progress)
        timing["convert_s"] = time.perf_counter() - started
    pairs = list(pairs)
    if not pairs:
        raise VconvError("nothing to evaluate: the protocol has no pairs")

    started = time.perf_counter()
    rows = score_pairs(pairs, judges, vocode_fn=vocode_fn, work_dir=out, force=force, progress=progress)
    pool = speaker_pool(pairs, utterances)
    verify = verification(judges, pool)
    apply_threshold(rows, verify.threshold if verify else None)
    timing["score_s"] = time.perf_counter() - started

    auto_notes = list(notes)
    if any(p.target_other is None for p in pairs):
        auto_notes.append("Some pairs had no unseen target utterance: their SIM→target is against the conversion reference (optimistic).")
    if any(r.get("text_from") == "source_asr" for r in rows):
        auto_notes.append("Some sources had no transcript: CER/WER are against the source's own ASR output, and the source row has no CER.")
    if len(pairs) < 30:
        auto_notes.append(f"Only {len(pairs)} pairs: treat differences of a few points as noise.")
    meta = {
        "title": title,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "vconv_version": __version__,
        "judges": judges.describe(),
        "n_pairs": len(pairs),
        "n_speakers_in_verifier": len(set(pool.values())),
        "seed": seed,
        "analysis_sample_rate": ANALYSIS_SR,
        "timing": timing,
        "notes": auto_notes,
    }
    summary = aggregate(rows)
    points = None
    if judges.speaker is not None:
        points = [("real", spk, judges.speaker.embed(p)) for p, spk in sorted(pool.items())]
        points += [("converted", p.target_speaker or Path(p.target_refs[0]).resolve().parent.name, judges.speaker.embed(p.converted))
                   for p in pairs]
    files = write_report(out, rows, summary, verify, meta, pairs=pairs, points=points, plots=plots)
    return Report(rows, summary, verify, summarize(summary, verify, meta), pairs, files, meta)
