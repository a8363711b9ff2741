"""Speaker embeddings of a whole corpus: ``vconv embed MANIFEST.jsonl -o OUT/`` on the corpus engines.

Every utterance's L2-normalised speaker embedding (float32 ``[S]``) goes to ``OUT/<id>.npy``, with the same records,
output manifest, resumption and engines as a corpus conversion (:mod:`vconv.corpus.work`); its key is the source's
bytes and the bundle's digest. At the end ``OUT/embeddings.npz`` gathers every embedded utterance, in the layout
``vconv embed FILES -o X.npz`` writes: ``utterances`` (ids) and ``utterance_vectors`` ``[N, S]``, ``speakers`` and
``speaker_vectors`` ``[K, S]`` (each speaker's normalised mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vconv.corpus.jobs import OUTPUT_MANIFEST, CorpusItem, ItemResult, item_key, load_json_lines, plan_items
from vconv.corpus.runner import CorpusReport, run_corpus
from vconv.corpus.work import ItemWorker
from vconv.errors import VconvError
from vconv.fileio import atomic_path
from vconv.inference.threads import apply_threads

GATHERED = "embeddings.npz"
EMBEDDING_VERSION = "speaker-embedding-1"  # part of every key: bump it when the embedding of a file changes meaning


@dataclass(frozen=True)
class EmbeddingSpec:
    """What an embedding worker builds itself from: the ``bundle`` folder, ``threads`` per worker, ``force``."""

    bundle: str
    threads: int | None = None
    force: bool = False

    def build(self) -> "EmbeddingWorker":
        return EmbeddingWorker(self)


class EmbeddingWorker(ItemWorker):
    """Embeds items with one model load (the bundle's speaker encoder, as ``vconv embed``)."""

    made = "embedded"

    def __init__(self, spec: EmbeddingSpec) -> None:
        from vconv.inference.converter import load

        apply_threads(spec.threads)  # each worker's own (the engine runs several side by side)
        self.force = spec.force
        self.converter = load(spec.bundle)
        self.settings_key = f"{self.converter.info.digest}|{EMBEDDING_VERSION}"

    def describe(self, item: CorpusItem, result: ItemResult) -> None:
        result.key = item_key(item, (), self.settings_key)

    def produce(self, item: CorpusItem) -> float:
        from vconv.audio.io import audio_info

        seconds = float(audio_info(item.source).duration)
        vector = self.converter.embed([item.source])[0].astype(np.float32)
        with atomic_path(item.output) as tmp, open(tmp, "wb") as fh:
            np.save(fh, vector)
        return seconds


def embed_corpus(manifest: str | Path, out_dir: str | Path, *, bundle: str | Path, engine: str = "local",
                 workers: int = 1, address: str | None = None, threads: int | None = None, force: bool = False,
                 progress: bool = True) -> CorpusReport:
    """Embed every utterance of ``manifest`` into ``out_dir`` (see the module docstring); failures are listed in the
    report and the output manifest, and never stop the corpus."""
    items = plan_items(manifest, out_dir, suffix=".npy")
    gathered = Path(out_dir) / GATHERED
    if (gathered.exists() or (Path(out_dir) / OUTPUT_MANIFEST).exists()) and not force and not _embedded_here(Path(out_dir)):
        raise VconvError(f"{out_dir}: holds an {GATHERED} or a manifest not written by vconv embed; "
                         "pass --force to replace them, or choose another folder")
    spec = EmbeddingSpec(str(bundle), threads, force)

    def gather(report: CorpusReport) -> None:
        report.gathered = gather_embeddings(report.results, Path(out_dir))

    return run_corpus(items, out_dir, spec, engine=engine, workers=workers, address=address, progress=progress,
                      desc="embed", made=EmbeddingWorker.made, finish=gather)


def _embedded_here(out_dir: Path) -> bool:
    """Whether ``out_dir``'s manifest is an earlier ``vconv embed`` run's (its outputs are ``.npy``)."""
    try:
        rows = load_json_lines(out_dir / OUTPUT_MANIFEST)
    except (OSError, ValueError):
        return False
    return bool(rows) and all(str(row.get("output", "")).endswith(".npy") for row in rows if isinstance(row, dict))


def gather_embeddings(results: list[ItemResult], out_dir: Path) -> Path | None:
    """``OUT/embeddings.npz`` from every embedded (now or earlier) item; None when there is none."""
    from vconv.inference.batch import Embeddings

    rows = [r for r in results if r.status in (EmbeddingWorker.made, "done")]
    if not rows:  # nothing to gather: an earlier run's file would no longer match the manifest
        (out_dir / GATHERED).unlink(missing_ok=True)
        return None
    vectors = np.stack([np.load(r.output) for r in rows]).astype(np.float32)
    speakers = list(dict.fromkeys(r.speaker for r in rows))
    index = {speaker: i for i, speaker in enumerate(speakers)}
    means = np.zeros((len(speakers), vectors.shape[1]), np.float64)
    np.add.at(means, np.array([index[r.speaker] for r in rows]), vectors)  # sums; normalised below, as the means are
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    gathered = Embeddings([r.id for r in rows], vectors, speakers, means.astype(np.float32), [])
    return gathered.save(out_dir / GATHERED, force=True)
