"""Connection accounting and long-lived connections of `vconv serve`, on a real uvicorn server on loopback.

The failures these pin down (issue "Hardening III"): live sessions cut 10 s after they connected, WebSocket
handshakes (refused cross-site ones included) leaking a per-address place each until the server locked every
local client out, idle loopback sockets filling the per-address cap, and uploads trickling a byte at a time
holding every upload place. Clients here are raw sockets and wsproto (the serve extra's own WebSocket library).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("wsproto", reason="needs the serve extra: pip install -e '.[serve]'")

from wsproto.events import AcceptConnection, CloseConnection, RejectConnection  # noqa: E402

import vconv  # noqa: E402
from tests.live_client import WebSocketClient, http_get, post_target, stream_for  # noqa: E402
from vconv.serve import live as live_module  # noqa: E402
from vconv.serve import server as server_module  # noqa: E402
from vconv.serve.app import create_app  # noqa: E402
from vconv.serve.connections import ConnectionBook  # noqa: E402
from vconv.serve.limits import ServeLimits  # noqa: E402

# --- the book itself ---------------------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_book_gives_every_place_back_once_whichever_protocol_reports_the_end():
    book = ConnectionBook(per_client=3, live_per_client=1)
    transports = [FakeTransport() for _ in range(5000)]
    for t in transports:  # thousands opened, upgraded (refused past the live cap), closed twice
        assert book.open_http(t, "127.0.0.1", lambda: False)
        book.upgrade(t)
        book.close(t)
        book.close(t)
    assert book.count() == 0


def test_at_the_cap_the_oldest_idle_connection_makes_room_and_busy_ones_are_kept():
    book = ConnectionBook(per_client=3, live_per_client=1)
    busy, idle_old, idle_new = FakeTransport(), FakeTransport(), FakeTransport()
    book.open_http(busy, "a", lambda: False)
    book.open_http(idle_old, "a", lambda: True)
    book.open_http(idle_new, "a", lambda: True)
    newcomer = FakeTransport()
    assert book.open_http(newcomer, "a", lambda: False)
    assert idle_old.closed and not idle_new.closed and not busy.closed
    assert book.count("a") == 3
    assert book.open_http(FakeTransport(), "b", lambda: False)  # another address has its own places
    book.open_http(FakeTransport(), "a", lambda: False)  # evicts idle_new
    assert idle_new.closed
    assert not book.open_http(FakeTransport(), "a", lambda: True)  # every connection of "a" works: refused


def test_live_sessions_have_a_cap_of_their_own_and_are_never_evicted():
    book = ConnectionBook(per_client=2, live_per_client=1)
    first, second = FakeTransport(), FakeTransport()
    book.open_http(first, "a", lambda: True)
    assert book.upgrade(first)
    book.open_http(second, "a", lambda: True)
    assert not book.upgrade(second)  # past one live session for this address
    assert book.count("a", "live") == 1
    book.open_http(FakeTransport(), "a", lambda: False)  # evicts `second` (idle HTTP), never the live one
    assert second.closed and not first.closed


# --- a real server ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converter(tiny_bundle):
    return vconv.load(str(tiny_bundle))


@contextmanager
def running_server(converter, limits: ServeLimits | None = None) -> Iterator[tuple[int, object]]:
    """uvicorn with the app over ``converter`` in a thread on a free loopback port: (port, server)."""
    listener = server_module.bind("127.0.0.1", 0)
    app = create_app(converter, limits or ServeLimits(max_upload_mb=2, max_seconds=10), allowed_hosts=listener.allowed_hosts())
    server = server_module.make_server(app, listener)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener.sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield listener.port, server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.sock.close()


def test_refused_cross_site_handshakes_leave_no_trace(converter):
    """Thousands of refused handshakes: each answered 403, the page answers after them and the book is empty
    (before the fix about 100 of them locked every local client out until a restart)."""
    with running_server(converter) as (port, server):
        for _ in range(2000):
            client = WebSocketClient(port, "/api/live?target=x&rate=16000", origin="https://evil.example")
            event = client.handshake()
            assert isinstance(event, RejectConnection) and event.status_code == 403
            client.close()
        assert http_get(port) == 200
        deadline = time.monotonic() + 5
        while server.connection_book.count() and time.monotonic() < deadline:  # the last close may still be in flight
            time.sleep(0.05)
        assert server.connection_book.count() == 0


def test_idle_sockets_from_loopback_cannot_lock_the_user_out(converter):
    """100 idle connections from 127.0.0.1 (the per-address cap, which on loopback is every client's) renewed
    before the server's own deadline closes them: the user's request still gets its answer."""
    with running_server(converter) as (port, _):
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(server_module.MAX_CONNECTIONS_PER_CLIENT)]
        time.sleep(0.3)
        try:
            for _ in range(3):
                assert http_get(port) == 200
                idle += [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]  # the flood goes on
        finally:
            for sock in idle:
                sock.close()


def test_trickling_uploads_are_dropped_and_the_server_answers_again(converter):
    """Eight uploads (every upload place) that each send one byte every few seconds: each is dropped as too
    slow soon after the grace period, not after the per-chunk read timeout (which a byte every 15 s never hits)."""
    limits = ServeLimits(max_upload_mb=2, max_seconds=10, upload_grace=2.0, read_timeout=20.0)
    with running_server(converter, limits) as (port, _):
        slow = []
        for _ in range(limits.uploads):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"POST /api/convert HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         b"Content-Length: 100000\r\n\r\n-")
            slow.append(sock)
        started = time.monotonic()
        for _ in range(2):
            time.sleep(1.5)
            for sock in slow:
                sock.sendall(b"-")
        answers = [sock.recv(64) for sock in slow]
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
        assert time.monotonic() - started < 10.0
        assert http_get(port) == 200
        for sock in slow:
            sock.close()


def test_an_idle_live_session_is_closed_with_its_own_code(converter, monkeypatch):
    monkeypatch.setattr(live_module, "IDLE_SECONDS", 1.0)
    with running_server(converter) as (port, _):
        client = WebSocketClient(port, f"/api/live?target={post_target(port)}&rate=16000")
        assert isinstance(client.handshake(), AcceptConnection)
        event = client.next_event()  # the hello
        while not isinstance(event, CloseConnection):
            event = client.next_event()
        assert event.code == live_module.CLOSE_IDLE and "no audio for 1 s" in event.reason
        client.close()


@pytest.mark.slow
def test_a_live_session_with_audio_flowing_is_not_cut(converter):
    """Two minutes of audio at real time through a real server: well past the 10 s at which the HTTP side's
    "no request yet" timer used to close the socket; every sample comes back. (The 10-minute run:
    benchmarks/bench_serve_live.py.)"""
    with running_server(converter) as (port, _):
        lasted, sent, received, closed = stream_for(port, 120.0)
    assert closed == 1000, f"the session was closed with {closed} after {lasted:.1f} s"
    assert lasted >= 120.0 and received == sent
