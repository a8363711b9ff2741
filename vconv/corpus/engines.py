"""Engines: who runs the :class:`~vconv.corpus.work.CorpusWorker` s. They only schedule; the work is the same code.

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
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Sequence

from vconv.corpus.jobs import CorpusItem, ItemResult
from vconv.corpus.work import CorpusWorker, WorkerSpec
from vconv.errors import VconvError

ENGINES = ("local", "ray")
ATTEMPTS = 3  # pools (or actor lives) an item may outlast before it is reported as failed

Done = Callable[[ItemResult], None]


def run_engine(engine: str, items: Sequence[CorpusItem], spec: WorkerSpec, *, workers: int, done: Done,
               address: str | None = None) -> list[ItemResult]:
    """Convert ``items`` with ``engine``; the results in the items' order."""
    if engine not in ENGINES:
        raise VconvError(f"--engine {engine!r}: one of {', '.join(ENGINES)}")
    if workers < 1:
        raise VconvError(f"--workers {workers}: expected 1 or more")
    if engine == "ray":
        results = _run_ray(items, spec, workers, address, done)
    elif workers == 1:
        worker = CorpusWorker(spec)
        results = {}
        for item in items:
            results[item.id] = worker(item)
            done(results[item.id])
    else:
        results = _run_processes(items, spec, workers, done)
    return [results[item.id] for item in items]


_WORKER: CorpusWorker | None = None


def _start_worker(spec: WorkerSpec) -> None:
    global _WORKER
    _WORKER = CorpusWorker(spec)


def _work(item: CorpusItem) -> ItemResult:
    assert _WORKER is not None  # the pool's initializer built it
    return _WORKER(item)


def _run_processes(items: Sequence[CorpusItem], spec: WorkerSpec, workers: int, done: Done) -> dict[str, ItemResult]:
    """The local engine with ``workers`` processes: a pool broken by a dead worker is replaced and the unfinished items
    resubmitted (each at most :data:`ATTEMPTS` times)."""
    results: dict[str, ItemResult] = {}
    tries = {item.id: 0 for item in items}
    pending = list(items)
    while pending:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_start_worker,
                                 initargs=(spec,)) as pool:
            futures: dict[Future, CorpusItem] = {pool.submit(_work, item): item for item in pending}
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


def _collect(futures: dict[Future, CorpusItem], results: dict[str, ItemResult], done: Done) -> list[CorpusItem]:
    """Results as they come; the items whose worker died (the pool broke under them), to try again."""
    broken: list[CorpusItem] = []
    left = set(futures)
    while left:
        finished, left = wait(left, return_when=FIRST_COMPLETED)
        for future in finished:
            try:
                result = future.result()
            except BrokenProcessPool:
                broken.append(futures[future])
                continue
            results[result.id] = result
            done(result)
    return broken


def _run_ray(items: Sequence[CorpusItem], spec: WorkerSpec, workers: int, address: str | None,
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
    for result in pool.map_unordered(lambda a, item: a.run.remote(item), list(items)):
        results[result.id] = result
        done(result)
    return results


class _RayWorker:
    """A Ray actor around one :class:`CorpusWorker` (the model loaded once per actor life)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.worker = CorpusWorker(spec)

    def run(self, item: CorpusItem) -> ItemResult:
        return self.worker(item)
