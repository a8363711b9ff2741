"""Whole corpora: a manifest converted (augmentation, anonymisation) on one machine or many, resumable.

``vconv convert MANIFEST.jsonl -o OUT`` (or :func:`convert_corpus`): every utterance of the manifest to ``OUT/<id>.wav``
and ``OUT/manifest.jsonl`` listing each with its status (:mod:`vconv.corpus.jobs`); the voices by the manifest's
``target`` fields, ``--target``, ``--targets FILE`` per source speaker or ``--anonymise SEED``
(:mod:`vconv.corpus.voices`); the work spread by an engine (:mod:`vconv.corpus.engines`: local processes or Ray),
always the same code (:mod:`vconv.corpus.work`). A rerun converts only what is missing or changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from vconv.corpus.engines import ENGINES, run_engine
from vconv.corpus.jobs import ItemResult, plan_items, write_output_manifest
from vconv.corpus.voices import TargetPolicy, read_voice_list
from vconv.corpus.work import WorkerSpec

__all__ = ["ENGINES", "CorpusReport", "convert_corpus"]


@dataclass
class CorpusReport:
    """Totals of a corpus run: ``results`` per item (input order), the output manifest, the wall time."""

    results: list[ItemResult] = field(default_factory=list)
    manifest: Path | None = None
    wall_seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def audio_hours(self) -> float:
        return sum(r.seconds for r in self.results) / 3600

    def summary(self) -> str:
        speed = self.audio_hours * 3600 / self.wall_seconds if self.wall_seconds else 0.0
        return (f"{self.count('converted')} converted, {self.count('done')} already done, {self.count('failed')} failed; "
                f"{self.audio_hours:.3f} h of audio in {self.wall_seconds:.1f} s ({speed:.1f}x real time); "
                f"manifest {self.manifest}")


def convert_corpus(manifest: str | Path, out_dir: str | Path, *, bundle: str | Path, settings: Any,
                   target: Sequence[str] = (), targets_file: str | Path | None = None, anonymise: int | None = None,
                   engine: str = "local", workers: int = 1, address: str | None = None, threads: int | None = None,
                   force: bool = False, progress: bool = True) -> CorpusReport:
    """Convert every utterance of ``manifest`` into ``out_dir`` (see the module docstring); failures are listed in the
    report and the output manifest, and never stop the corpus."""
    items = plan_items(manifest, out_dir)
    pool = read_voice_list(targets_file) if targets_file else ()
    first: dict[str, str] = {}
    for item in sorted(items, key=lambda i: i.id):
        first.setdefault(item.speaker, item.source)
    policy = TargetPolicy(tuple(str(t) for t in target), pool, anonymise or 0, anonymise is not None, first).check()
    spec = WorkerSpec(str(bundle), settings, policy, threads, force)
    report = CorpusReport()
    bar = tqdm(total=len(items), unit="utt", desc="corpus", disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()

    def done(result: ItemResult) -> None:
        report.results.append(result)
        hours = sum(r.seconds for r in report.results) / 3600
        bar.update(1)
        bar.set_postfix(hours=f"{hours:.3f}", failed=report.count("failed"),
                        rtf=f"{(time.perf_counter() - started) / max(hours * 3600, 1e-9):.3f}")

    try:
        report.results = run_engine(engine, items, spec, workers=workers, done=done, address=address)
    finally:
        bar.close()
    report.wall_seconds = time.perf_counter() - started
    report.manifest = write_output_manifest(out_dir, report.results)
    return report
