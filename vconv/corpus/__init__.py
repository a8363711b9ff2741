"""Whole corpora: a manifest converted (augmentation, anonymisation) or embedded on one machine or many, resumable.

``vconv convert MANIFEST.jsonl -o OUT`` (or :func:`convert_corpus`): every utterance of the manifest to ``OUT/<id>.wav``
and ``OUT/manifest.jsonl`` listing each with its status (:mod:`vconv.corpus.jobs`); the voices by the manifest's
``target`` fields, ``--target``, ``--targets FILE`` per source speaker or ``--anonymise SEED``
(:mod:`vconv.corpus.voices`); the work spread by an engine (:mod:`vconv.corpus.engines`: local processes or Ray),
always the same code (:mod:`vconv.corpus.work`). A rerun converts only what is missing or changed.
``vconv embed MANIFEST.jsonl -o OUT/`` (or :func:`~vconv.corpus.embedding.embed_corpus`) does the same with speaker
embeddings: ``OUT/<id>.npy`` per utterance, the same manifest, and ``OUT/embeddings.npz`` gathering them by speaker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from vconv.corpus.embedding import embed_corpus
from vconv.corpus.engines import ENGINES
from vconv.corpus.jobs import plan_items
from vconv.corpus.runner import CorpusReport, run_corpus
from vconv.corpus.voices import TargetPolicy, read_voice_list
from vconv.corpus.work import WorkerSpec

__all__ = ["ENGINES", "CorpusReport", "convert_corpus", "embed_corpus"]


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
    return run_corpus(items, out_dir, spec, engine=engine, workers=workers, address=address, progress=progress)
