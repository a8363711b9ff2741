"""Connection accounting of `vconv serve`: how many connections each client address holds, by kind.

A connection is booked by its *transport* (the socket), not by the protocol object that reads it: when an
HTTP connection becomes a WebSocket, uvicorn hands the same transport to a new protocol object and the old
one never hears of it again, so a count kept by the HTTP protocol leaked one place per handshake (about 100
handshakes, even refused cross-site ones, locked every local client out). Here both protocols book and
unbook the same transport, and unbooking is idempotent, so whichever protocol sees the connection end, the
place comes back exactly once.

On loopback every client, the user's browser included, has the same address, so a per-address cap alone
would let idle connections lock the user out. A new connection that finds its address at the cap therefore
*evicts* that address's oldest idle HTTP connection (no request in progress: connected but silent, or
kept alive after its answer); it is refused only when every connection of the address is working.
WebSockets (live sessions) are never evicted, but have a small cap of their own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Protocol

HTTP = "http"
LIVE = "live"


class Closable(Protocol):
    """What the book needs of a transport: to close it (``asyncio.Transport`` is one)."""

    def close(self) -> None: ...


@dataclass
class _Entry:
    address: str
    kind: str
    order: int  # opening order: the lowest idle one is evicted first
    is_idle: Callable[[], bool] = field(default=lambda: False)


class ConnectionBook:
    """Open connections per client address; ``per_client`` of any kind, of which at most ``live_per_client``
    WebSockets. Single-threaded (the event loop's), so no lock."""

    def __init__(self, per_client: int, live_per_client: int):
        self.per_client = per_client
        self.live_per_client = live_per_client
        self._entries: dict[Closable, _Entry] = {}
        self._counter = itertools.count()

    def open_http(self, transport: Closable, address: str, is_idle: Callable[[], bool]) -> bool:
        """Book a new HTTP connection; at the address's cap, evict its oldest idle connection first. False (and
        nothing booked) when every connection of the address is busy: the caller closes ``transport``."""
        if self.count(address) >= self.per_client and not self._evict_oldest_idle(address):
            return False
        self._entries[transport] = _Entry(address, HTTP, next(self._counter), is_idle)
        return True

    def upgrade(self, transport: Closable) -> bool:
        """Mark a booked connection a WebSocket (never idle from now on). False when its address already holds
        ``live_per_client`` WebSockets: the caller closes ``transport`` (it stays booked until it is lost)."""
        entry = self._entries.get(transport)
        if entry is None:
            return False
        if self.count(entry.address, LIVE) >= self.live_per_client:
            return False
        entry.kind, entry.is_idle = LIVE, lambda: False
        return True

    def close(self, transport: Closable) -> None:
        """Unbook ``transport``: called whenever a connection is lost, by whichever protocol holds it; a second
        call for the same transport does nothing."""
        self._entries.pop(transport, None)

    def count(self, address: str | None = None, kind: str | None = None) -> int:
        """Connections booked (of ``address``, of ``kind``, when given)."""
        return sum(1 for e in self._entries.values() if (address is None or e.address == address) and (kind is None or e.kind == kind))

    def _evict_oldest_idle(self, address: str) -> bool:
        idle = [(e.order, t) for t, e in self._entries.items() if e.address == address and e.kind == HTTP and e.is_idle()]
        if not idle:
            return False
        _, transport = min(idle, key=lambda pair: pair[0])
        self.close(transport)
        transport.close()
        return True
