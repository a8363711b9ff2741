"""Two `vconv evaluate` reports of the same pairs, compared pair by pair: is a change within the judges' noise?

Usage: python benchmarks/compare_reports.py BASELINE/results.json CHANGED/results.json [--systems converted unmatched]

Both reports must come from the same manifest, seed and sampling (``--sources-per-pair``, ``--seed``), so
each conversion pair is judged in both. For each system (``converted``: as shipped, with target-spectrum
matching; ``unmatched``: the model's own output) and measure it prints the baseline's mean, the changed
report's mean and their paired difference with its 95 % confidence interval (``1.96 * sd / sqrt(n)`` of the
per-pair differences). A change "holds the figures" when every interval covers 0 or lies on the good side.
Pitch measures (the F0 correlation and the register error) are compared only between reports of the same pitch judge
run the same way (a report made before 2026-11-28, without one named, was judged by WORLD dio; Praat's tracker since,
under each recording's own ceiling since the second pass): across judges they are left out, said on stderr. The judge's
name says "frames read over it unvoiced" since 2026-11-29; reports of 2026-11-28 judged so already read as another
judge here (the conservative side: their pitch measures are left out).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

# measure -> whether a larger value is better
MEASURES = {
    "sim_target": True,
    "sim_source": False,
    "success": True,
    "cer": False,
    "dnsmos_ovrl": True,
    "f0_corr": True,
    "register_err_cents": False,
}


PITCH_MEASURES = {"f0_corr", "register_err_cents"}


def read_report(report: Path) -> dict[str, Any]:
    """A ``results.json`` (or the report folder holding it); a one-line exit when it is missing, corrupt or not a
    report (a report still being written has no results.json yet)."""
    from vconv.errors import VconvError
    from vconv.fileio import read_json_object

    path = report / "results.json" if report.is_dir() else report
    try:
        data = read_json_object(path, "vconv evaluate report")
    except VconvError as err:
        raise SystemExit(f"error: {err}") from None
    if not isinstance(data.get("rows"), list):
        raise SystemExit(f"error: {path}: not a vconv evaluate report (no rows)")
    return data


def rows_by_pair(report: Path, system: str) -> dict[str, dict[str, Any]]:
    """``{pair id: row}`` of one system in a report."""
    return {row["pair"]: row for row in read_report(report)["rows"] if row.get("system") == system}


def pitch_judge(report: Path) -> str:
    """The tracker that judged a report's pitch and how it was run, without its version: the judge's first word and the
    settings after the first comma (reports before 2026-11-28 name none: WORLD dio judged them)."""
    named = read_report(report).get("meta", {}).get("judges", {}).get("pitch") or "WORLD dio + stonemask"
    tracker, _, settings = named.partition(",")
    return " ".join([tracker.split()[0], settings.strip()]).strip()


def paired_difference(before: list[float], after: list[float]) -> tuple[float, float]:
    """``(mean of after - before, half-width of its 95 % interval)`` over paired values."""
    diffs = [b - a for a, b in zip(before, after)]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, math.nan
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    return mean, 1.96 * sd / math.sqrt(n)


def compare(baseline: Path, changed: Path, systems: list[str]) -> list[dict[str, Any]]:
    """One record per (system, measure): n, baseline mean, changed mean, difference, interval, verdict."""
    records = []
    measures = dict(MEASURES)
    judges = pitch_judge(baseline), pitch_judge(changed)
    if judges[0] != judges[1]:
        print(f"note: pitch measures left out: the reports' pitch judges differ ({judges[0]} / {judges[1]})", file=sys.stderr)
        measures = {m: v for m, v in MEASURES.items() if m not in PITCH_MEASURES}
    for system in systems:
        before, after = rows_by_pair(baseline, system), rows_by_pair(changed, system)
        pairs = sorted(set(before) & set(after))
        if not pairs:
            continue
        for measure, larger_is_better in measures.items():
            kept = [p for p in pairs if before[p].get(measure) is not None and after[p].get(measure) is not None]
            if not kept:
                continue
            a = [float(before[p][measure]) for p in kept]
            b = [float(after[p][measure]) for p in kept]
            diff, half = paired_difference(a, b)
            worse = (diff + half < 0) if larger_is_better else (diff - half > 0)
            records.append({"system": system, "measure": measure, "n": len(kept), "baseline": sum(a) / len(a),
                            "changed": sum(b) / len(b), "difference": diff, "ci95": half,
                            "verdict": "worse" if worse else "holds"})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("changed", type=Path)
    parser.add_argument("--systems", nargs="+", default=["converted", "unmatched"])
    parser.add_argument("--json", type=Path, help="Also write the records to this JSON file.")
    args = parser.parse_args()
    records = compare(args.baseline, args.changed, args.systems)
    if not records:
        raise SystemExit("error: the two reports share no judged pairs (same manifest, seed and --sources-per-pair?)")
    print("| system | measure | n | baseline | changed | paired difference (95 % CI) | |")
    print("|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['system']} | {r['measure']} | {r['n']} | {r['baseline']:.3f} | {r['changed']:.3f} | "
              f"{r['difference']:+.3f} ± {r['ci95']:.3f} | {r['verdict']} |")
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
