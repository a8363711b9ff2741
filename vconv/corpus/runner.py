"""Running a corpus: items through an engine with a progress bar, then the output manifest and the totals."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from vconv.corpus.engines import WorkerFactory, run_engine
from vconv.corpus.jobs import CorpusItem, ItemResult, write_output_manifest


@dataclass
class CorpusReport:
    """Totals of a corpus run: ``results`` per item (input order), the output manifest, the wall time."""

    results: list[ItemResult] = field(default_factory=list)
    manifest: Path | None = None
    wall_seconds: float = 0.0
    made: str = "converted"  # the status of an item done in this run ("embedded" for embeddings)
    gathered: Path | None = None  # a file gathering every output (embeddings.npz), when the run writes one

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def audio_hours(self) -> float:
        return sum(r.seconds for r in self.results) / 3600

    def summary(self) -> str:
        speed = self.audio_hours * 3600 / self.wall_seconds if self.wall_seconds else 0.0
        return (f"{self.count(self.made)} {self.made}, {self.count('done')} already done, {self.count('failed')} failed; "
                f"{self.audio_hours:.3f} h of audio in {self.wall_seconds:.1f} s ({speed:.1f}x real time); "
                f"manifest {self.manifest}" + (f"; gathered in {self.gathered}" if self.gathered else ""))


def run_corpus(items: Sequence[CorpusItem], out_dir: str | Path, spec: WorkerFactory, *, engine: str, workers: int,
               address: str | None, progress: bool, desc: str = "corpus", made: str = "converted",
               finish: Callable[[CorpusReport], None] | None = None) -> CorpusReport:
    """``items`` through ``engine`` with a progress bar (utterances, audio hours, failures, real-time factor), then the
    output manifest (and ``finish(report)``, before the manifest, for what gathers the outputs)."""
    report = CorpusReport(made=made)
    bar = tqdm(total=len(items), unit="utt", desc=desc, disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()

    totals = {"seconds": 0.0, "failed": 0}  # running sums: a corpus has many short items

    def done(result: ItemResult) -> None:
        totals["seconds"] += result.seconds
        totals["failed"] += result.status == "failed"
        bar.update(1)
        bar.set_postfix(hours=f"{totals['seconds'] / 3600:.3f}", failed=totals["failed"],
                        rtf=f"{(time.perf_counter() - started) / max(totals['seconds'], 1e-9):.3f}", refresh=False)

    try:
        report.results = run_engine(engine, items, spec, workers=workers, done=done, address=address)
    finally:
        bar.close()
    report.wall_seconds = time.perf_counter() - started
    if finish is not None:
        finish(report)
    report.manifest = write_output_manifest(out_dir, report.results)
    return report
