"""The bounded upload gate, the bounded conversion queue and the bounded store of converted results.

A request first takes an upload :class:`Ticket` from a :class:`Gate` (non-blocking; at most ``uploads``
uploads at once, one more is refused with :class:`Busy`, which the app answers "busy, retry", HTTP 503).
Only once its files have arrived and been checked does it take a conversion ticket from the
:class:`ConversionQueue` (at most ``workers + queue_depth``), so a client that opens an upload and stalls
holds an upload place until its read times out, never a conversion place. With a ticket, a request runs its
conversion through :meth:`ConversionQueue.run`: in a worker thread (the event loop keeps answering other
requests), at most ``workers`` at a time.

The primitives are threading ones on purpose: they do not belong to an event loop, so the same queue
works under uvicorn and under a test client that runs each request in its own loop.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from typing import Callable, Generic, Optional, TypeVar

import anyio.to_thread

T = TypeVar("T")
V = TypeVar("V")
RESULT_ID = re.compile(r"[0-9a-f]{32}")  # what ResultStore.put returns


class Busy(Exception):
    """Every conversion slot and queue place is taken: the client should retry later."""


class Ticket:
    """A place in the queue; release it with ``with`` (or :meth:`release`), exactly once."""

    def __init__(self, queue: "Gate"):
        self._queue = queue
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._queue._release()

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Gate:
    """At most ``capacity`` tickets out at once; :meth:`admit` past that raises :class:`Busy` at once."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._held = 0

    def admit(self) -> Ticket:
        """A ticket, or :class:`Busy` at once when ``capacity`` requests already hold one."""
        with self._lock:
            if self._held >= self.capacity:
                raise Busy()
            self._held += 1
        return Ticket(self)

    def _release(self) -> None:
        with self._lock:
            self._held -= 1

    def status(self) -> dict[str, int]:
        with self._lock:
            return {"admitted": self._held, "capacity": self.capacity}


class ConversionQueue(Gate):
    """``workers`` conversions at a time, ``queue_depth`` more requests waiting, the rest :class:`Busy`."""

    def __init__(self, workers: int, queue_depth: int):
        super().__init__(workers + queue_depth)
        self.workers = workers
        self._running = 0
        self._slots = threading.BoundedSemaphore(workers)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread once one of the ``workers`` slots is free; its return value."""
        return await anyio.to_thread.run_sync(self._run_in_slot, fn, args)

    def _run_in_slot(self, fn: Callable[..., T], args: tuple) -> T:
        self.hold_worker(wait=True)  # waiting threads number at most capacity - workers, so this wait is bounded too
        try:
            return fn(*args)
        finally:
            self.release_worker()

    def hold_worker(self, wait: bool = False) -> bool:
        """Take a worker slot (for a live stream: without waiting, False when none is free). The holder runs
        its work itself and gives the slot back with :meth:`release_worker`."""
        if not self._slots.acquire(blocking=wait):
            return False
        with self._lock:
            self._running += 1
        return True

    def release_worker(self) -> None:
        with self._lock:
            self._running -= 1
        self._slots.release()

    def status(self) -> dict[str, int]:
        """Requests admitted (``admitted``: waiting or converting), converting now, and the capacity."""
        with self._lock:
            return {"admitted": self._held, "converting": self._running, "capacity": self.capacity}


class ResultStore(Generic[V]):
    """The last ``size`` items (converted WAV files, prepared voices), by random id; the least recently used
    is dropped first."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, data: V) -> str:
        key = uuid.uuid4().hex  # unguessable: a result is only reachable by whoever asked for it
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> Optional[V]:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
