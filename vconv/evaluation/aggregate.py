"""Aggregation: the per-system summary of the scored rows, and the Markdown table that shows it."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from vconv.evaluation import metrics as M
from vconv.evaluation.scoring import SYSTEMS

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
            flags = [r[key] for r in sel if r.get(key) is not None]
            s[name] = float(np.mean(flags)) if flags else None
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
        "- **CER/WER**: the ASR judge (named under *Judges*) vs the transcript, corpus-level (total edits / total length), text lowercased without punctuation.",
        "- **MCD**: mel-cepstral distortion (c1–c24, WORLD envelope, DTW) vs the target speaking the same sentence.",
        "- **F0 corr / log-F0 RMSE**: Praat's autocorrelation pitch (parselmouth; a second pass under each recording's own ceiling, 1.9 × its 65th percentile) on both sides, over jointly voiced frames "
        "after a mean-variance shift; converted is compared with "
        "the source, copy synthesis with its input, ground truth with the source (DTW). **register err**: |mean log-F0 − target's| in cents.",
        "- **RTF**: compute seconds per second of input (converted: the conversion, including the one extra vocoder "
        "pass that makes the unmatched row when there is one; copy synthesis: the vocoder); "
        "`benchmarks/bench_convert.py` measures conversion speed on an idle machine.",
        "- Rows: *converted* = the conversion as `vconv convert` makes it; *unmatched* = the same model output "
        "without target-spectrum matching (the network's own voice); "
        "*source* = input unchanged (floor), *ground_truth* = the target's own utterance (ceiling), "
        "*copy_synthesis* = ground truth through the vocoder alone.",
    ]
    for note in meta.get("notes", []):
        lines.append(f"- {note}")
    if meta.get("judges"):
        lines += ["", "Judges: " + "; ".join(f"{k}: {v}" for k, v in meta["judges"].items() if v) + "."]
    return "\n".join(lines) + "\n"
