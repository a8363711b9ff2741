"""`vconv serve`: the local web page to try conversions (:mod:`vconv.serve`), mounted on the main CLI.

Its order is the point: the serve extra is checked, then the limits, then the address is bound, and
only then is the model loaded (2-3 s), so every mistake is a one-line error at once.
"""

from __future__ import annotations

import os
from typing import Optional

import typer

from vconv.cli.common import (
    FIT_VOICE_HELP,
    PRECISION_HELP,
    SERVE_NO_CACHE_HELP,
    TARGET_MATCH_HELP,
    conversion_settings,
    enhance_option,
    friendly_errors,
    load_converter,
    no_cache_option,
    pitch_options,
    threads_option,
)
from vconv.errors import VconvError
from vconv.inference.threads import apply_threads

MISSING_EXTRA = "vconv serve needs the serve extra: pip install 'vconv[serve]'"


def _require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
        import wsproto  # noqa: F401  # the live mode's WebSocket protocol
    except ImportError:
        raise VconvError(MISSING_EXTRA) from None


@friendly_errors
def serve(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle name (see `vconv models`) or bundle folder; default: the shipped model."),
    vocoder: Optional[str] = typer.Option(None, "--vocoder", help="Vocoder: griffinlim, or the bundle's own (default)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. The default answers this machine only; 0.0.0.0 opens the server to the network."),
    port: int = typer.Option(7860, "--port", help="Port to listen on (0: any free port)."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest upload per file, in MB (counted while reading)."),
    max_seconds: float = typer.Option(60.0, "--max-seconds", help="Longest audio per file, in seconds (checked before converting)."),
    workers: int = typer.Option(1, "--workers", help="Conversions running at once: 1 or 2."),
    queue: int = typer.Option(4, "--queue", help="Requests waiting for a worker; past that the server answers 'busy, retry' (HTTP 503)."),
    target_match: str = typer.Option("meanstd", "--target-match", help=TARGET_MATCH_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    fit_voice: int = typer.Option(0, "--fit-voice", metavar="STEPS", help=FIT_VOICE_HELP),
    pitch_shift: float = pitch_options()[0],
    pitch_register: str = pitch_options()[1],
    enhance: str = enhance_option(),
    no_cache: bool = no_cache_option(SERVE_NO_CACHE_HELP),
    threads: Optional[int] = threads_option(),
) -> None:
    """Start a local web page to try conversions: upload or record a source and target references, convert, listen, download.

    The page shows the source, target and converted mel spectrograms, the similarity of the result to the target and to the source (by vconv's own speaker encoder) and the conversion time. Nothing leaves this machine; uploads go to a temporary folder that is removed.

    Needs the serve extra: pip install 'vconv[serve]'.
    """
    from vconv.serve.limits import ServeLimits

    settings = conversion_settings(vocoder=vocoder, target_match=target_match, precision=precision, fit_steps=fit_voice,
                                   pitch_shift=pitch_shift, pitch_register=pitch_register, enhance=enhance)
    _require_serve_extra()
    limits = ServeLimits(max_upload_mb=max_upload_mb, max_seconds=max_seconds, workers=workers, queue_depth=queue).check()

    from vconv.serve.server import bind
    from vconv.serve.server import serve as run_server

    listener = bind(host, port)
    try:
        from vconv.serve.app import create_app

        # each conversion gets an equal share of the cores; more threads than cores only adds contention
        apply_threads(threads or max(1, (os.cpu_count() or 1) // limits.workers))
        typer.echo(f"loading model {model or '(shipped default)'} ...", err=True)
        converter = load_converter(model, settings, no_cache=no_cache, fitted_only=True)  # uploads: fitted ones only
        app = create_app(converter, limits, allowed_hosts=listener.allowed_hosts())
    except BaseException:
        listener.sock.close()
        raise
    if not listener.loopback:
        typer.echo(f"warning: listening on {listener.host}: anyone who can reach this machine can use the server", err=True)
    typer.echo(f"vconv serve: {listener.url}  (model {converter.info.path.name}; Ctrl-C stops)")
    run_server(app, listener)
    typer.echo("vconv serve: stopped")
