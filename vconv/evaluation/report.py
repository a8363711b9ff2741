"""The report on disk: ``results.json`` (every per-row score), ``summary.md`` (the table) and ``plots/``;
and :class:`Report`, what :func:`~vconv.evaluation.run.run_evaluation` returns."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vconv.evaluation import metrics as M
from vconv.evaluation.aggregate import summarize
from vconv.evaluation.pairs import EvalPair
from vconv.evaluation.plots import plot_embeddings, plot_similarity
from vconv.fileio import write_text_atomic


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
