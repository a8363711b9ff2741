"""The report's plots (matplotlib, no pyplot): similarity histograms per system and a 2-D PCA of speaker embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vconv.evaluation.judge_common import missing_extra
from vconv.evaluation.scoring import SYSTEMS
from vconv.fileio import atomic_path


def require_matplotlib() -> None:
    """Fail with the install command if matplotlib (part of the eval extra) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise missing_extra("matplotlib") from None


def _save_figure(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)


def plot_similarity(rows: Sequence[dict[str, Any]], path: Path, threshold: float | None = None) -> Path:
    """Histograms of ``sim_target`` per system (the EER threshold as a dashed line)."""
    require_matplotlib()
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state is touched

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    bins = np.linspace(0.0, 1.0, 41)  # Resemblyzer embeddings are non-negative: cosine lies in [0, 1]
    for system in SYSTEMS:
        vals = [r["sim_target"] for r in rows if r["system"] == system and r.get("sim_target") is not None]
        if vals:  # the conversion filled, its reference rows as outlines, so coinciding ones stay visible
            style: dict[str, Any] = (dict(histtype="stepfilled", alpha=0.35) if system == "converted"
                                     else dict(histtype="step", linewidth=1.8))
            ax.hist(vals, bins=bins.tolist(), label=f"{system} (n={len(vals)})", **style)
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
    require_matplotlib()
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
            projected = [(e - mean) @ axes for k, sp, e in points if k == kind and sp == s]
            if projected:
                xy = np.array(projected)
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
