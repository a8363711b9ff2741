"""The network side of `vconv serve`: bind the address (before the model loads), then run uvicorn on it.

Binding first makes a taken port or an unknown host a one-line error in a fraction of a second rather
than after the model load, and removes the window in which another process could take the port.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from vconv.errors import VconvError
from vconv.serve.connections import ConnectionBook
from vconv.serve.guard import LOOPBACK_NAMES

# uvicorn answers 503 itself past this many connections + tasks: a coarse flood guard in front of the
# app's own upload gate and queue (which are what normally answer "busy"); connections that send no request
# are closed after REQUEST_START_TIMEOUT, so idle ones cannot fill it for long
MAX_CONNECTIONS = 256
BACKLOG = 128
REQUEST_START_TIMEOUT = 10.0  # seconds a new connection has to send a whole request head, else it is closed
# one address's connections at once; at the cap a new one evicts the address's oldest idle connection and is
# refused only when all are working (vconv.serve.connections), so idle sockets cannot lock the user out
MAX_CONNECTIONS_PER_CLIENT = 100
MAX_LIVE_PER_CLIENT = 8  # one address's WebSockets at once (each live session also holds a conversion worker)


@dataclass
class Listener:
    """A bound (not yet listening) socket and what to tell the user about it."""

    sock: socket.socket
    host: str
    port: int
    loopback: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def allowed_hosts(self) -> list[str] | None:
        """The Host names to answer: loopback names when listening on loopback, any otherwise."""
        return [*LOOPBACK_NAMES, self.host] if self.loopback else None


def bind(host: str, port: int) -> Listener:
    """Bind ``host:port`` (port 0: a free one); a one-line :class:`VconvError` when that is impossible."""
    if not 0 <= port <= 65535:
        raise VconvError(f"--port {port}: expected 0 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise VconvError(f"--host {host}: not an address of this machine ({exc.strerror if hasattr(exc, 'strerror') else exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after Ctrl-C (TIME_WAIT)
        sock.bind(address)
        # listening from here on: the URL printed next is reachable at once (a client that connects while the
        # model loads waits in the backlog rather than being refused)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise VconvError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = sock.getsockname()[:2]
    return Listener(sock, bound_host, bound_port, ipaddress.ip_address(bound_host).is_loopback)


def make_server(app, listener: Listener, log_level: str = "warning"):
    """An uvicorn ``Server`` for ``app``; run it with ``server.run(sockets=[listener.sock])``."""
    import uvicorn

    book = ConnectionBook(MAX_CONNECTIONS_PER_CLIENT, MAX_LIVE_PER_CLIENT)
    http, ws = _booked_protocols(book)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, limit_concurrency=MAX_CONNECTIONS,
                            timeout_graceful_shutdown=5, http=http, ws=ws)
    server = uvicorn.Server(config)
    server.connection_book = book  # type: ignore[attr-defined]  # for tests and the benchmark
    return server


def _booked_protocols(book: ConnectionBook):
    """uvicorn's h11 HTTP protocol and wsproto WebSocket protocol, each booking its connections in ``book``
    (:mod:`vconv.serve.connections`), and a deadline from the moment a connection opens to its first request
    head (uvicorn times out idle keep-alive connections only after a response, so a client that connects and
    sends nothing, or trickles a header a byte at a time, would otherwise hold its connection for ever). The
    deadline is cancelled when the request head arrives or the connection becomes a WebSocket: a live session
    lasts as long as the user speaks."""
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

    class BookedHTTP(H11Protocol):
        _head_deadline = None  # the TimerHandle of the first request head's deadline, once booked

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if not book.open_http(transport, (self.client or ("?",))[0], self._idle):
                transport.close()  # every connection of this address is working: refused quickly, not queued
                return
            self._head_deadline = self.loop.call_later(REQUEST_START_TIMEOUT, self._close_if_no_request)

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _cancel_head_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None:  # a request head arrived
                self._cancel_head_deadline()

        def handle_websocket_upgrade(self, event) -> None:
            self._cancel_head_deadline()  # the connection is a live session now, which has its own idle rule
            super().handle_websocket_upgrade(event)

        def connection_lost(self, exc) -> None:
            book.close(self.transport)
            self._cancel_head_deadline()
            super().connection_lost(exc)

        def _close_if_no_request(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

    class BookedWebSocket(WSProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if not book.upgrade(transport):
                transport.close()  # past this address's live sessions; unbooked in connection_lost

        def connection_lost(self, exc) -> None:
            book.close(self.transport)
            super().connection_lost(exc)

    return BookedHTTP, BookedWebSocket


def serve(app, listener: Listener) -> None:
    """Run until Ctrl-C / SIGTERM: uvicorn shuts the app down (which removes its temporary folder), then
    re-raises the signal; Ctrl-C is the normal way to stop a server, so it ends here, not as an error."""
    server = make_server(app, listener)
    try:
        server.run(sockets=[listener.sock])
    except KeyboardInterrupt:
        pass
    finally:
        listener.sock.close()
