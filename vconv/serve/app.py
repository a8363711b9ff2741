"""The FastAPI app of `vconv serve`: the page, one conversion endpoint, the converted files.

Routes::

    GET  /                       the page (static/index.html; its JS and CSS under /static/)
    GET  /api/info               model name, sample rate, limits, queue status
    POST /api/convert            multipart: ``source`` (1 file) + ``target`` (1..max_references files)
                                 -> 200 JSON (see :func:`result_json`), 4xx {"error": ...}, 503 busy
    GET  /api/result/{id}.wav    a converted file from the in-memory store (16-bit PCM WAV)
    POST /api/target, WS /api/live   the live mode (:mod:`vconv.serve.live`)

Every error is JSON ``{"error": "<one line>"}``. FastAPI's interactive docs are switched off: they
load Swagger UI from a CDN, and the server must work offline.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Iterable, Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vconv.inference.converter import VoiceConverter
from vconv.serve.conversion import SIMILARITY_ENCODER, ConversionResult, run_conversion, wav_bytes
from vconv.serve.guard import GuardMiddleware
from vconv.serve.jobs import RESULT_ID, Busy, ConversionQueue, Gate, ResultStore
from vconv.serve.limits import ServeLimits
from vconv.serve.live import add_live_routes
from vconv.serve.uploads import UploadError, admit_upload, receive_audio

STATIC = Path(__file__).parent / "static"
RETRY_AFTER_SECONDS = 5
log = logging.getLogger("vconv.serve")


def create_app(converter: VoiceConverter, limits: ServeLimits | None = None, *, allowed_hosts: Optional[Iterable[str]] = None) -> FastAPI:
    """The app over one loaded ``converter`` (shared by every request).

    ``allowed_hosts``: the ``Host`` names answered (``None``: any; the CLI passes the loopback names when
    it listens on loopback). Uploads live in one temporary folder (``app.state.upload_root``), a
    sub-folder per request removed when the request ends; the folder itself goes at shutdown.
    """
    limits = (limits or ServeLimits()).check()
    upload_root = tempfile.TemporaryDirectory(prefix="vconv-serve-")
    queue = ConversionQueue(limits.workers, limits.queue_depth)
    results: ResultStore[bytes] = ResultStore(limits.results_kept)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            upload_root.cleanup()

    app = FastAPI(title="vconv serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(GuardMiddleware, allowed_hosts=allowed_hosts)
    app.state.upload_root = Path(upload_root.name)
    app.state.queue = queue
    app.state.results = results
    app.state.limits = limits
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_error_handlers(app)
    _add_pages(app, converter, limits, queue, results)
    uploads = _add_convert(app, converter, limits, queue, results, Path(upload_root.name))
    add_live_routes(app, converter, limits, queue, uploads, Path(upload_root.name))
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error the client sees is ``{"error": message}`` JSON with its status."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(UploadError)
    async def upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(Busy)
    async def busy(_: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"error": "busy, retry"}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _add_pages(app: FastAPI, converter: VoiceConverter, limits: ServeLimits, queue: ConversionQueue,
               results: ResultStore[bytes]) -> None:
    """The page, what it asks about the server, and the converted files it plays."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/info")
    async def info() -> dict:
        return {
            "model": converter.info.path.name,
            "sample_rate": converter.sample_rate,
            "mel_fmax": converter.features.fmax or converter.sample_rate / 2,
            "similarity_encoder": SIMILARITY_ENCODER,
            "limits": limits.to_dict(),
            "queue": queue.status(),
        }

    @app.get("/api/result/{key}.wav")
    async def result_file(key: str) -> Response:
        data = results.get(key) if RESULT_ID.fullmatch(key) else None
        if data is None:
            return JSONResponse({"error": "no such result (results are kept in memory for a while only): convert again"}, status_code=404)
        return Response(data, media_type="audio/wav", headers={
            "Content-Disposition": 'inline; filename="vconv-converted.wav"', "Cache-Control": "no-store"})


def _add_convert(app: FastAPI, converter: VoiceConverter, limits: ServeLimits, queue: ConversionQueue,
                 results: ResultStore[bytes], upload_root: Path) -> Gate:
    """``POST /api/convert``: an upload place, the streamed uploads and their checks, then a queue place and
    the conversion. Returns the upload gate (the live mode's target uploads share it)."""
    uploads = Gate(limits.uploads)
    app.state.uploads = uploads

    @app.post("/api/convert")
    async def convert(request: Request) -> JSONResponse:
        with await admit_upload(uploads, request, limits):  # an upload place while the files arrive: a stalled client holds no conversion place
            source, targets = await receive_audio(request, upload_root, limits, converter.sample_rate, open_voice=converter.open_voice)
        assert source is not None  # receive_audio requires one by default
        with queue.admit():  # only complete, checked requests wait for a conversion
            try:
                result = await queue.run(run_conversion, converter, source, targets)
            except Exception as exc:  # one line for the client and the log (the traceback at debug level only)
                message = f"conversion failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                log.error(message)
                log.debug("conversion failed", exc_info=True)
                return JSONResponse({"error": message}, status_code=500)
        key = results.put(wav_bytes(result.wav, result.sample_rate))
        return JSONResponse(result_json(result, key, source.size / converter.sample_rate))

    return uploads


def result_json(result: ConversionResult, key: str, source_seconds: float) -> dict:
    """The convert endpoint's answer: where to GET the WAV, durations, time, similarities, mel images."""
    return {
        "id": key,
        "audio_url": f"/api/result/{key}.wav",
        "sample_rate": result.sample_rate,
        "duration": round(result.duration, 4),
        "source_duration": round(source_seconds, 4),
        "seconds": round(result.seconds, 4),
        "rtf": round(result.seconds / max(result.duration, 1e-9), 4),
        "similarity": {"encoder": SIMILARITY_ENCODER, **result.similarity},
        "mels": result.mels,
    }
