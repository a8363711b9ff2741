"""Engines: who runs the workers (:class:`~vconv.corpus.work.ItemWorker`: conversion or embedding). They only
schedule; the work is the same code.

* ``local`` (the default): ``workers`` processes on this machine, each loading the model once (one worker runs in this
  process). A worker that dies (killed, out of memory) breaks the pool: the items it had not finished are given to a
  new pool, up to :data:`ATTEMPTS` times; what finished is never redone (its record says so).
* ``ray``: ``workers`` Ray actors over an existing cluster (``--address``, e.g. ``ray://host:10001`` or ``auto``; none:
  a local one), each loading the model once; Ray restarts an actor that dies and retries its task. Needs
  ``pip install 'vconv[cluster]'``.

Each engine calls ``done(result)`` as items finish (the progress bar), in whatever order they finish.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Protocol, Sequence

from vconv.corpus.jobs import CorpusItem, ItemResult
from vconv.corpus.work import ItemWorker
from vconv.errors import VconvError

ENGINES = ("local", "ray")
ATTEMPTS = 3  # pools (or actor lives) an item may outlast before it is reported as failed
CHUNK = 8  # items per task at most

Done = Callable[[ItemResult], None]


class WorkerFactory(Protocol):
    """A picklable spec a process or a Ray actor builds its own worker from (WorkerSpec, EmbeddingSpec)."""

    def build(self) -> ItemWorker: ...


def run_engine(engine: str, items: Sequence[CorpusItem], spec: WorkerFactory, *, workers: int, done: Done,
               address: str | None = None) -> list[ItemResult]:
    """Do ``items`` with ``engine``; the results in the items' order."""
    if engine not in ENGINES:
        raise VconvError(f"--engine {engine!r}: one of {', '.join(ENGINES)}")
    if workers < 1:
        raise VconvError(f"--workers {workers}: expected 1 or more")
    if engine == "ray":
        results = _run_ray(items, spec, workers, address, done)
    elif workers == 1:
        worker = spec.build()
        results = {}
        for item in items:
            results[item.id] = worker(item)
            done(results[item.id])
    else:
        results = _run_processes(items, spec, workers, done)
    return [results[item.id] for item in items]


_WORKER: ItemWorker | None = None


def _start_worker(spec: WorkerFactory) -> None:
    global _WORKER
    _WORKER = spec.build()


def _work(chunk: list[CorpusItem]) -> list[ItemResult]:
    assert _WORKER is not None  # the pool's initializer built it
    return [_WORKER(item) for item in chunk]


def chunks(items: Sequence[CorpusItem], workers: int) -> list[list[CorpusItem]]:
    """``items`` in runs of up to :data:`CHUNK` for one task each: a worker fed one short item at a time waits on the
    scheduler between items (embeddings take ~20 ms each); enough runs that no worker waits long for another's last.
    A run whose worker dies is redone an item per task: the items it finished have their records and come back "done"."""
    size = max(1, min(CHUNK, len(items) // (4 * workers)))
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _run_processes(items: Sequence[CorpusItem], spec: WorkerFactory, workers: int, done: Done) -> dict[str, ItemResult]:
    """The local engine with ``workers`` processes: a pool broken by a dead worker is replaced and the unfinished items
    resubmitted (each at most :data:`ATTEMPTS` times)."""
    results: dict[str, ItemResult] = {}
    tries = {item.id: 0 for item in items}
    pending, first = list(items), True
    while pending:
        # a retry sends one item per task: a run broken by one item's worker must not spend its run-mates' attempts
        runs = chunks(pending, workers) if first else [[item] for item in pending]
        first = False
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_start_worker,
                                 initargs=(spec,)) as pool:
            futures = {pool.submit(_work, run): run for run in runs}
            broken = _collect(futures, results, done)
        pending = []
        for item in broken:
            tries[item.id] += 1
            if tries[item.id] < ATTEMPTS:
                pending.append(item)
            else:
                results[item.id] = ItemResult.of(item, "failed", error=f"its worker died {ATTEMPTS} times")
                done(results[item.id])
    return results


def _collect(futures: dict[Future, list[CorpusItem]], results: dict[str, ItemResult], done: Done) -> list[CorpusItem]:
    """Results as they come; the items whose worker died (the pool broke under their chunk), to try again (those it
    finished have their records and come back "done"). ``as_completed`` waits on every future once; a
    ``wait(FIRST_COMPLETED)`` loop re-arms all that are left each time, quadratic in a corpus of short items."""
    broken: list[CorpusItem] = []
    for future in as_completed(futures):
        try:
            finished = future.result()
        except BrokenProcessPool:
            broken += futures[future]
            continue
        for result in finished:
            results[result.id] = result
            done(result)
    return broken


def _run_ray(items: Sequence[CorpusItem], spec: WorkerFactory, workers: int, address: str | None,
             done: Done) -> dict[str, ItemResult]:
    """The Ray engine: ``workers`` restartable actors, fed through an actor pool."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise VconvError("--engine ray needs Ray: pip install 'vconv[cluster]'") from None
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    actor = ray.remote(num_cpus=1, max_restarts=ATTEMPTS, max_task_retries=ATTEMPTS)(_RayWorker)
    pool = ActorPool([actor.remote(spec) for _ in range(workers)])
    results: dict[str, ItemResult] = {}
    for finished in pool.map_unordered(lambda a, chunk: a.run.remote(chunk), chunks(items, workers)):
        for result in finished:
            results[result.id] = result
            done(result)
    return results


class _RayWorker:
    """A Ray actor around one worker (the model loaded once per actor life)."""

    def __init__(self, spec: WorkerFactory) -> None:
        self.worker = spec.build()

    def run(self, chunk: list[CorpusItem]) -> list[ItemResult]:
        return [self.worker(item) for item in chunk]
