"""The page's live mode: the microphone over a WebSocket to a streaming converter, the converted audio back.

Routes (added to the app by :func:`add_live_routes`)::

    POST /api/target             multipart: 1..max_references ``target`` files (the upload gate, limits and
                                 checks of /api/convert) -> {"target": id, "seconds": ...}: the voice,
                                 prepared once and kept in memory (the last ``results_kept``)
    WS   /api/live?target=ID&rate=HZ[&source=ID]   source: the speaker's own voice, prepared by POST /api/target
                                 from a recording of them: the stream starts in its pitch register (a model
                                 with the pitch path; VoiceConverter.stream's source_voice)

The WebSocket session:

1. Refused before it opens (HTTP 403, by :class:`~vconv.serve.guard.GuardMiddleware`) from another site or
   for another host; closed at once with code 1008 and a reason for an unknown target or a bad rate, and
   1013 ("busy, retry") when no conversion worker is free: a live session *holds one worker* for as long as
   it lasts (and one place of the queue's capacity), so the queue's limits hold with live sessions open.
2. The server sends one text message: ``{"latency_ms", "block_ms", "sample_rate"}``.
3. The client sends binary messages of little-endian float32 mono PCM at ``rate``; the server answers each
   with the converted samples that are ready (binary, same format and rate; possibly empty, then not sent),
   and about once a second a text message ``{"p50_ms", "p99_ms", "missed", "seconds_in", "now_latency_ms"}``
   (missed: blocks whose compute took longer than they last; the latency now, as the block may grow on a busy
   machine).
4. The text message ``"end"`` flushes: the tail comes back and the server closes (1000). A message of more
   than :data:`MAX_MESSAGE_SECONDS` of audio closes with 1007, :data:`IDLE_SECONDS` without a message with
   :data:`CLOSE_IDLE`, a session past ``limits.max_live_seconds`` of audio with :data:`CLOSE_TOO_LONG`, each
   with a reason; the page explains each code (static/live.js) and reconnects after 1013 and a lost connection.

No timer of the HTTP side applies once the connection is a WebSocket (vconv.serve.server): a session lasts
as long as audio flows, up to ``limits.max_live_seconds``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from vconv.errors import VconvError
from vconv.inference.converter import VoiceConverter
from vconv.inference.streaming import StreamConverter
from vconv.inference.target import TargetVoice
from vconv.serve.conversion import as_target_voice
from vconv.serve.jobs import RESULT_ID, Busy, ConversionQueue, Gate, ResultStore
from vconv.serve.limits import ServeLimits
from vconv.serve.uploads import admit_upload, receive_audio

log = logging.getLogger("vconv.serve")
MAX_MESSAGE_SECONDS = 1.0  # one message of audio: browsers send a few ms at a time
IDLE_SECONDS = 20.0
CLOSE_IDLE = 4001  # no audio for IDLE_SECONDS (application close codes are 4000-4999)
CLOSE_TOO_LONG = 4002  # the session reached limits.max_live_seconds of audio
STATS_EVERY_SECONDS = 1.0
RATES = (8000, 96000)


def add_live_routes(app: FastAPI, converter: VoiceConverter, limits: ServeLimits, queue: ConversionQueue,
                    uploads: Gate, upload_root: Path) -> None:
    """``POST /api/target`` and the ``/api/live`` WebSocket (see the module's docstring)."""
    voices: ResultStore[TargetVoice] = ResultStore(limits.results_kept)  # prepared voices, by random id
    app.state.voices = voices

    @app.post("/api/target")
    async def prepare_target(request: Request) -> JSONResponse:
        with await admit_upload(uploads, request, limits):  # Busy -> 503 by the app's handler
            _, refs = await receive_audio(request, upload_root, limits, converter.sample_rate, need_source=False,
                                          open_voice=converter.open_voice)
            # a speaker embedding and spectrum statistics: cheap, so not queued behind conversions (a live
            # session holds a worker for minutes); the upload place bounds how many run at once
            voice = await anyio.to_thread.run_sync(as_target_voice, converter, refs)
        seconds = sum(r.size for r in refs if isinstance(r, np.ndarray)) / converter.sample_rate
        return JSONResponse({"target": voices.put(voice), "seconds": round(seconds, 3)})

    @app.websocket("/api/live")
    async def live(ws: WebSocket, target: str = "", rate: int = 0, source: str = "") -> None:
        voice = voices.get(target) if RESULT_ID.fullmatch(target) else None
        if voice is None:
            await _refuse(ws, 1008, "unknown target: upload the target voice first (POST /api/target)")
            return
        own = voices.get(source) if RESULT_ID.fullmatch(source) else None
        if source and (own is None or own.register is None or not own.register.trusted):
            await _refuse(ws, 1008, "unknown source voice: upload a recording of your own voice first (POST /api/target)"
                          if own is None else "the source voice has no pitch register (too little voiced speech, or a "
                          "model without the pitch path)")
            return
        if not RATES[0] <= rate <= RATES[1]:
            await _refuse(ws, 1008, f"rate {rate}: expected the audio's sample rate, {RATES[0]} to {RATES[1]} Hz")
            return
        try:
            ticket = queue.admit()
        except Busy:
            await _refuse(ws, 1013, "busy, retry")
            return
        with ticket:
            if not queue.hold_worker():
                await _refuse(ws, 1013, "busy, retry")
                return
            try:
                # made in a worker thread: a live stream's warm-up runs the networks (~0.1 s), which would stall the loop
                stream = await anyio.to_thread.run_sync(
                    lambda: converter.stream(voice, sample_rate=rate, source_voice=own.register if own else None))
                await LiveSession(ws, stream, rate, limits).run()
            finally:
                queue.release_worker()


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    await ws.accept()
    await ws.close(code=code, reason=reason)


class LiveSession:
    """One open WebSocket and its :class:`~vconv.inference.streaming.StreamConverter`."""

    def __init__(self, ws: WebSocket, stream: StreamConverter, rate: int, limits: ServeLimits) -> None:
        self.ws, self.stream, self.rate, self.limits = ws, stream, rate, limits
        self.seconds_in = 0.0

    async def run(self) -> None:
        await self.ws.accept()
        block_ms = 1000 * self.stream.block / self.stream.model_rate
        await self.ws.send_text(json.dumps({"latency_ms": round(self.stream.latency_ms, 1), "block_ms": round(block_ms, 1),
                                            "sample_rate": self.rate}))
        last_stats = time.monotonic()
        try:
            while True:
                with anyio.fail_after(IDLE_SECONDS):
                    message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    if message["text"] == "end":
                        await self._send_audio(await anyio.to_thread.run_sync(self.stream.flush))
                        await self.ws.close(code=1000, reason="flushed")
                        return
                    continue
                await self._convert(message.get("bytes") or b"")
                if self.seconds_in > self.limits.max_live_seconds:
                    await self.ws.close(code=CLOSE_TOO_LONG, reason=f"live sessions last at most {self.limits.max_live_seconds:g} s on this server")
                    return
                if time.monotonic() - last_stats >= STATS_EVERY_SECONDS:
                    await self.ws.send_text(json.dumps(self._stats()))
                    last_stats = time.monotonic()
        except TimeoutError:
            await self.ws.close(code=CLOSE_IDLE, reason=f"no audio for {IDLE_SECONDS:g} s")
        except WebSocketDisconnect:
            return
        except VconvError as exc:  # a bad message: its one line is the close reason
            await self.ws.close(code=1007, reason=str(exc)[:120])

    async def _convert(self, data: bytes) -> None:
        if len(data) % 4:
            raise VconvError("audio messages are float32 samples (a multiple of 4 bytes)")
        if len(data) // 4 > MAX_MESSAGE_SECONDS * self.rate:
            raise VconvError(f"an audio message holds at most {MAX_MESSAGE_SECONDS:g} s")
        samples = np.frombuffer(data, dtype="<f4")
        converted = await anyio.to_thread.run_sync(self.stream.push, samples)
        self.seconds_in += samples.size / self.rate
        await self._send_audio(converted)

    async def _send_audio(self, converted: np.ndarray) -> None:
        if converted.size:
            await self.ws.send_bytes(converted.astype("<f4").tobytes())

    def _stats(self) -> dict[str, float | int]:
        times = self.stream.times
        return {"p50_ms": round(1000 * times.percentile(50), 1), "p99_ms": round(1000 * times.percentile(99), 1),
                "missed": times.late, "seconds_in": round(self.seconds_in, 2),
                "now_latency_ms": round(self.stream.latency_ms, 1)}
