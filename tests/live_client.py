"""A blocking client of `vconv serve` for tests and benchmarks: raw HTTP over a socket, and WebSocket live sessions
through wsproto (the serve extra's own WebSocket library), so nothing beyond the serve extra is needed."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, RejectData, Request, TextMessage

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def http_get(port: int, path: str = "/api/info", timeout: float = 10.0) -> int:
    """The status code of one GET over a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(64)
    return int(head.split()[1])


def post_target(port: int) -> str:
    body, boundary = (EXAMPLES / "target.wav").read_bytes(), b"vconvtest"
    payload = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="target"; filename="t.wav"\r\n'
               b"Content-Type: audio/wav\r\n\r\n" + body + b"\r\n--" + boundary + b"--\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"POST /api/target HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: multipart/form-data; "
                     b"boundary=" + boundary + f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["target"]


class WebSocketClient:
    """A blocking WebSocket client over a raw socket with wsproto: the handshake, then messages."""

    def __init__(self, port: int, path: str, origin: str | None = None, timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        headers = [(b"origin", origin.encode())] if origin else []
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target=path, extra_headers=headers)))
        self.events: list = []

    def next_event(self):
        while not self.events:
            data = self.sock.recv(65536)
            self.events.extend(self.receive(data))
            if not self.events and not data:
                return None
        return self.events.pop(0)

    def receive(self, data: bytes) -> list:
        """Feed ``data`` (b"": the server closed) to the protocol and return its events. Pings are
        answered here, as a browser does (uvicorn closes a session whose pings go unanswered with 1011)."""
        self.ws.receive_data(data or None)
        events = []
        for event in self.ws.events():
            if isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            else:
                events.append(event)
        return events

    def handshake(self):
        """The first event: AcceptConnection or RejectConnection (a refused handshake's HTTP status)."""
        event = self.next_event()
        while isinstance(event, RejectData):
            event = self.next_event()
        return event

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def close(self) -> None:
        self.sock.close()


def stream_for(port: int, seconds: float) -> tuple[float, int, int, int]:
    """Speak into a live session at real time for ``seconds``, then "end" and the flush: (seconds the session
    lasted, samples sent, samples received, the close code: 1000 when the session ended as asked, -1 when the
    connection dropped without a close)."""
    wav = np.tile(sf.read(EXAMPLES / "source.wav", dtype="float32")[0], 60)
    client = WebSocketClient(port, f"/api/live?target={post_target(port)}&rate=16000")
    assert isinstance(client.handshake(), AcceptConnection)
    client.sock.settimeout(0.0)
    sent = received = 0
    started = time.monotonic()
    closed = None
    message = 1600  # 100 ms at 16 kHz
    while closed is None and time.monotonic() - started < seconds:
        client.send_bytes(wav[sent % (wav.size - message):][:message].astype("<f4").tobytes())
        sent += message
        time.sleep(max(0.0, started + sent / 16000 - time.monotonic()))
        received, closed = _drain(client, received)
    client.sock.settimeout(30.0)
    if closed is None:
        client.send_text("end")
        while closed is None:
            event = client.next_event()
            if event is None:
                closed = -1
            elif isinstance(event, BytesMessage):
                received += len(event.data) // 4
            elif isinstance(event, CloseConnection):
                closed = event.code
    lasted = time.monotonic() - started
    client.close()
    return lasted, sent, received, closed


def _drain(client: WebSocketClient, received: int) -> tuple[int, int | None]:
    try:
        data = client.sock.recv(1 << 20)
    except BlockingIOError:
        return received, None
    for event in client.receive(data):
        if isinstance(event, BytesMessage):
            received += len(event.data) // 4
        elif isinstance(event, CloseConnection):
            return received, event.code
    return received, (-1 if not data else None)
