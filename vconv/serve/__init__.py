"""`vconv serve`: a local web page to try conversions by ear, a thin layer over the Python API.

The server never converts by itself: every request ends in the one inference path,
:meth:`vconv.VoiceConverter.convert_wav <vconv.inference.converter.VoiceConverter.convert_wav>`, on a
converter loaded once and shared. Modules, each owning one thing:

- ``limits``: the upload and queue limits (:class:`ServeLimits`), checked before the model loads;
- ``uploads``: from an HTTP body to validated waveforms (size counted while reading, audio checked before any work);
- ``jobs``: the bounded conversion queue (a full queue answers "busy, retry") and the bounded store of results;
- ``conversion``: what one request computes (converted audio, similarities, mel images, time);
- ``guard``: the safety middleware (Host check against DNS rebinding, a Content-Security-Policy that keeps the page offline);
- ``app``: the FastAPI app factory :func:`create_app(converter, limits) <vconv.serve.app.create_app>`;
- ``server``: binding the address and running uvicorn;
- ``static/``: the page (HTML, JS, CSS; no CDN, no external font or script).

Only ``limits`` imports without the ``serve`` extra (FastAPI, uvicorn, python-multipart).
"""

from vconv.serve.limits import ServeLimits

__all__ = ["ServeLimits"]
