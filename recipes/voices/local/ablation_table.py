"""Markdown table of training runs judged by `vconv evaluate`: one row per (label, run folder, report folder).

    python recipes/voices/local/ablation_table.py \
        "mel/mel=exp/base/train_mel_mel:exp/base/eval_mel_mel" \
        "whisper/dvector=exp/base/train_whisper2_dvector:exp/base/eval_whisper2_dvector" ...

Each run gives two rows when its report has the model's own output (``vconv evaluate`` with matching on,
the default): *own output* (the report's *unmatched* row: the network alone) and *matched* (its
*converted* row: as `vconv convert` makes it); an older report gives its *converted* row alone.
Columns: the held-out figures of that row (success, Resemblyzer similarity to the
target and to the source, Whisper CER with the source row's CER beside it, DNSMOS, conversion RTF) and
the run's last validation record in ``log.jsonl`` (reconstruction L1 with the speaker path from another
utterance, adversary balanced accuracy on the content codes with its chance level, codebook
perplexity), plus the steps and the training wall time the log holds (``train_s``, summed over resumes;
logs older than that field give an estimate from steps/s, marked ≈). RTF is the idle figure of
``benchmarks/bench_convert.py --json EVAL_DIR/bench_convert.json`` when that file exists (the bundle's
own vocoder), else the one ``vconv evaluate`` measured, marked ≈, which is only as idle as the machine
was. A row whose report is missing is printed with dashes, so a table can be drawn while runs are going.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vconv.training.runs import logged_wall_minutes, read_log

COLUMNS = ("system", "steps", "train min", "success", "SIM→target", "SIM→source", "CER (source)", "DNSMOS",
           "RTF", "valid L1", "adversary bal. acc (chance)", "perplexity")


def last_validation(run_dir: Path) -> tuple[dict, int, str]:
    """``(last valid record, last step, training minutes as text)`` from ``run_dir/log.jsonl``."""
    log = run_dir / "log.jsonl"
    if not log.is_file():
        return {}, 0, "–"
    records = read_log(log)
    valid = [r for r in records if r.get("split") == "valid"]
    minutes, exact = logged_wall_minutes(records)
    text = "–" if minutes is None else f"{'' if exact else '≈'}{minutes:.0f}"
    return (valid[-1] if valid else {}), (records[-1]["step"] if records else 0), text


def idle_rtf(eval_dir: Path, measured_in_evaluate: float | None) -> str:
    """The bundle's RTF from ``bench_convert.json`` (its default vocoder), else evaluate's, marked ≈."""
    bench = eval_dir / "bench_convert.json"
    if bench.is_file():
        figures = json.loads(bench.read_text())
        return f"{figures['rtf'][figures['default_vocoder']]:.4f}"
    return "–" if measured_in_evaluate is None else f"≈{measured_in_evaluate:.3f}"


def rows(label: str, run_dir: Path, eval_dir: Path) -> list[list[str]]:
    """The table rows of one run: own output and matched, or the converted row alone (see the module docstring)."""
    results = eval_dir / "results.json"
    summary = json.loads(results.read_text())["summary"] if results.is_file() else {}
    if "unmatched" not in summary:
        return [row(label, run_dir, eval_dir, summary, "converted")]
    return [row(f"{label}, own output", run_dir, eval_dir, summary, "unmatched"),
            row(f"{label}, matched", run_dir, eval_dir, summary, "converted")]


def row(label: str, run_dir: Path, eval_dir: Path, summary: dict | None = None, system: str = "converted") -> list[str]:
    """The cells of one table row: ``system``'s figures from the report's ``summary`` (read when None)."""
    if summary is None:
        results = eval_dir / "results.json"
        summary = json.loads(results.read_text())["summary"] if results.is_file() else {}
    valid, steps, minutes = last_validation(run_dir)
    conv, source = summary.get(system, {}), summary.get("source", {})
    timed = summary.get("converted", {})  # the conversion is timed once, for both rows

    def fmt(value, pattern: str) -> str:
        return "–" if value is None else pattern.format(value)

    adversary = "–"
    if "adv_bal_acc" in valid:
        adversary = f"{valid['adv_bal_acc']:.3f} ({valid.get('adv_chance', float('nan')):.3f})"
    return [
        label, fmt(steps or None, "{:,}"), minutes,
        fmt(conv.get("success_rate"), "{:.0%}"), fmt(conv.get("sim_target"), "{:.3f}"), fmt(conv.get("sim_source"), "{:.3f}"),
        f"{fmt(conv.get('cer'), '{:.3f}')} ({fmt(source.get('cer'), '{:.3f}')})",
        fmt(conv.get("dnsmos_ovrl"), "{:.2f}"), idle_rtf(eval_dir, timed.get("rtf")),
        fmt(valid.get("recon"), "{:.3f}"), adversary, fmt(valid.get("perplexity"), "{:.0f}"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="+", metavar="LABEL=RUN_DIR:EVAL_DIR")
    args = parser.parse_args(argv)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for spec in args.rows:
        label, sep, dirs = spec.partition("=")
        run_dir, sep2, eval_dir = dirs.partition(":")
        if not (sep and sep2 and label and run_dir and eval_dir):
            parser.error(f"{spec!r}: expected LABEL=RUN_DIR:EVAL_DIR")
        lines += ["| " + " | ".join(cells) + " |" for cells in rows(label, Path(run_dir), Path(eval_dir))]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
