"""Safety middleware of `vconv serve`, applied to every response.

- **Host check.** A server on 127.0.0.1 is still reachable from a web page the user visits, through DNS
  rebinding (a hostile name re-pointed at 127.0.0.1). When the server listens on loopback, a request
  whose ``Host`` is not a loopback name is refused, so only pages served from this address can use it.
- **Cross-site requests.** Any page the user opens can make the browser post to 127.0.0.1 (the Host is
  then a loopback name). Browsers say where such a request comes from: a request that changes state
  (anything but GET, HEAD, OPTIONS) whose ``Origin`` (or, without one, ``Referer``) is not this server's own
  address is refused with 403. Programs that send neither (curl, scripts) are local already and pass.
- **Endings.** A client that disconnects mid-request, and a request cut short by the server's shutdown, are
  one line in the log, not a traceback.
- **Content-Security-Policy.** The page may load scripts, styles, images and media from this server
  only (plus ``data:``/``blob:`` for recorded audio): it cannot fetch anything from the internet, which
  also guarantees it works offline. Framing by other sites is refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable, Optional
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("vconv.serve")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def host_name(host_header: str) -> str:
    """``"127.0.0.1:7860"`` -> ``"127.0.0.1"``, ``"[::1]:7860"`` -> ``"::1"``, lower-cased ("" if unparsable)."""
    try:
        return (urlsplit("//" + host_header).hostname or "").lower()
    except ValueError:
        return ""


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def same_origin(scope: Scope) -> bool:
    """Whether a request may change state: a safe method, or an ``Origin`` (else ``Referer``) naming the
    host and port the request was sent to; a request that names neither is not from a web page. A WebSocket
    handshake is a GET, but what follows changes state (it converts): it always needs the check."""
    if scope["type"] == "http" and scope.get("method", "GET") in SAFE_METHODS:
        return True
    headers = dict(scope.get("headers") or [])
    origin = headers.get(b"origin", b"").decode("latin-1") or headers.get(b"referer", b"").decode("latin-1")
    if not origin:
        return True
    if origin == "null":  # a sandboxed frame or a file: page
        return False
    try:
        sent_from = urlsplit(origin).netloc.lower()
    except ValueError:
        return False
    return sent_from == headers.get(b"host", b"").decode("latin-1").lower()


class GuardMiddleware:
    """Pure ASGI middleware: refuse requests for other hosts (when ``allowed_hosts`` is given), add
    :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp, allowed_hosts: Optional[Iterable[str]] = None):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}

    def _host_allowed(self, scope: Scope) -> bool:
        if self.allowed is None:
            return True
        return host_name(dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")) in self.allowed

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The same host and origin checks for a WebSocket handshake; a refused one is closed before it opens
        (the client sees HTTP 403)."""
        if not self._host_allowed(scope) or not same_origin(scope):
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 1008, "reason": "cross-site or wrong host"})
            return
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            log.warning("live session cut short by the server's shutdown")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        if not self._host_allowed(scope):
            response = JSONResponse({"error": "host not allowed: open the page at the address `vconv serve` printed"}, status_code=400)
            await response(scope, receive, send_with_headers)
            return
        if not same_origin(scope):
            response = JSONResponse({"error": "cross-site request refused: use the page `vconv serve` serves"}, status_code=403)
            await response(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:  # nobody is left to answer: one line in the log, not a traceback
            log.warning("%s %s: the client disconnected before the request was complete", scope.get("method"), scope.get("path"))
        except asyncio.CancelledError:  # the server is stopping and this request did not finish in time
            log.warning("%s %s: cut short by the server's shutdown", scope.get("method"), scope.get("path"))
