"""`vconv serve` at the API level: the command's checks, bad uploads, a real conversion, the bounded queue, a burst on loopback."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import voiced_signal

pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (the dev extra)")

from fastapi.testclient import TestClient  # noqa: E402

import vconv  # noqa: E402
from tests.conftest import invoke, one_line_error
from vconv.serve import app as serve_app  # noqa: E402
from vconv.serve.app import create_app  # noqa: E402
from vconv.serve.limits import ServeLimits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
STATIC = ROOT / "vconv" / "serve" / "static"
TEST_LIMITS = ServeLimits(max_upload_mb=1, max_seconds=5, max_references=2)


def wav_bytes(seconds: float, sr: int = 16000, silent: bool = False) -> bytes:
    buffer = io.BytesIO()
    wav = np.zeros(int(seconds * sr), np.float32) if silent or seconds == 0 else voiced_signal(seconds, sr)
    sf.write(buffer, wav, sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def files(source: bytes | None, *targets: bytes) -> list:
    parts = [] if source is None else [("source", ("source.wav", source, "audio/wav"))]
    return parts + [("target", (f"t{i}.wav", t, "audio/wav")) for i, t in enumerate(targets)]


# ------------------------------------------------------------------------------------------------ the command


def test_help_says_how_to_install_the_extra():
    result = invoke("serve", "--help")
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    assert "pip install 'vconv[serve]'" in flat
    for option in ("--model", "--host", "--port", "--max-upload-mb", "--max-seconds", "--workers", "--queue"):
        assert option in flat


def test_without_the_extra_the_command_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # `import fastapi` now raises ImportError
    one_line_error(invoke("serve"), "vconv serve needs the serve extra: pip install 'vconv[serve]'")


def test_bad_options_and_addresses_fail_before_the_model_loads(monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("the model must not load before the options and the address are checked")

    monkeypatch.setattr("vconv.inference.converter.load", no_load)
    one_line_error(invoke("serve", "--workers", 3), "--workers 3")
    one_line_error(invoke("serve", "--target-match", "loud"), "--target-match 'loud': unknown")
    one_line_error(invoke("serve", "--queue", -1), "--queue -1")
    one_line_error(invoke("serve", "--fit-voice", -1), "--fit-voice -1")
    one_line_error(invoke("serve", "--max-seconds", 0), "--max-seconds 0")
    one_line_error(invoke("serve", "--max-upload-mb", -5), "--max-upload-mb -5")
    one_line_error(invoke("serve", "--port", 70000), "--port 70000")
    one_line_error(invoke("serve", "--host", "no-such-host.invalid"), "--host no-such-host.invalid")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line_error(invoke("serve", "--port", port), f"cannot listen on 127.0.0.1:{port}")


def test_the_page_needs_nothing_from_the_internet():
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"{path.name} refers to another site"
        assert "@import" not in text and "@font-face" not in text


# ------------------------------------------------------------------------------------------------ the app


@pytest.fixture(scope="module")
def tiny_converter(tiny_bundle):
    return vconv.load(tiny_bundle)


@pytest.fixture
def conversions(monkeypatch):
    """Counts the conversions the app starts (bad uploads must start none)."""
    calls = []
    real = serve_app.run_conversion

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(serve_app, "run_conversion", counting)
    return calls


@pytest.fixture
def client(tiny_converter):
    app = create_app(tiny_converter, TEST_LIMITS)
    with TestClient(app) as test_client:
        yield test_client
    assert not app.state.upload_root.exists(), "the upload folder outlived the app"


@pytest.mark.parametrize("case, status, message", [
    ("not audio", 422, "source: not a readable audio file"),
    ("empty", 422, "source: empty upload (0 bytes)"),
    ("no samples", 422, "source: empty audio (0 samples)"),
    ("silent", 422, "source: audio is silent"),
    ("too short", 422, "source: too short"),
    ("too long", 422, "source: 6.0 s is longer than the 5 s limit of this server"),
    ("too big", 413, "source: larger than the 1 MB upload limit"),
    ("bad target", 422, "target 2: not a readable audio file"),
    ("no target", 400, "no target reference"),
    ("no source", 400, "no source file"),
    ("too many targets", 400, "at most 2 target references"),
])
def test_bad_uploads_get_a_clear_4xx_and_no_conversion(client, conversions, case, status, message):
    good = wav_bytes(1.0)
    source = {
        "not audio": b"<html>definitely not audio</html>", "empty": b"", "no samples": wav_bytes(0.0),
        "silent": wav_bytes(1.0, silent=True), "too short": wav_bytes(0.05), "too long": wav_bytes(6.0),
        "too big": b"RIFF" + bytes(2**20), "no source": None,  # over 1 MB: refused while streaming, before any decoding
    }.get(case, good)
    targets = {"bad target": (good, b"RIFF...."), "no target": (), "too many targets": (good, good, good)}.get(case, (good,))
    answer = client.post("/api/convert", files=files(source, *targets))
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert message in error and "\n" not in error
    assert str(client.app.state.upload_root) not in error and ".upload" not in error  # no server path leaks
    assert conversions == []
    assert list(client.app.state.upload_root.iterdir()) == []  # the request's files are gone
    assert client.app.state.queue.status()["admitted"] == 0  # its queue place was given back


def test_other_refusals(client):
    assert client.post("/api/convert", content=b"source=x", headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 400
    # a declared body over the request limit is refused before a byte of it is read
    big = client.post("/api/convert", content=b"x" * 16, headers={"content-type": "multipart/form-data; boundary=b",
                                                                  "content-length": str(10 * 2**20)})
    assert big.status_code == 413 and "larger than the server's limit" in big.json()["error"]
    malformed = client.post("/api/convert", content=b"--b\r\nnot a header line\r\n\r\n", headers={"content-type": "multipart/form-data; boundary=b"})
    assert 400 <= malformed.status_code < 500 and "error" in malformed.json()
    assert client.get("/api/result/0123456789abcdef0123456789abcdef.wav").status_code == 404
    assert client.get("/api/result/..%2f..%2fetc%2fpasswd.wav").status_code == 404
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_host_check_and_security_headers(tiny_converter):
    app = create_app(tiny_converter, TEST_LIMITS, allowed_hosts=["127.0.0.1", "localhost", "::1"])
    with TestClient(app) as test_client:
        rebound = test_client.get("/api/info", headers={"host": "attacker.example:7860"})
        assert rebound.status_code == 400 and "host not allowed" in rebound.json()["error"]
        for host in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860"):
            assert test_client.get("/api/info", headers={"host": host}).status_code == 200, host
        page = test_client.get("/", headers={"host": "127.0.0.1:7860"})
        assert page.status_code == 200 and 'id="convert"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"


@pytest.mark.slow
def test_converts_the_examples_with_the_shipped_model():
    app = create_app(vconv.load(), ServeLimits())
    source = (EXAMPLES / "source.wav").read_bytes()
    with TestClient(app) as test_client:
        answer = test_client.post("/api/convert", files=files(source, (EXAMPLES / "target.wav").read_bytes()))
        assert answer.status_code == 200, answer.text
        result = answer.json()
        audio = test_client.get(result["audio_url"])
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        assert list(app.state.upload_root.iterdir()) == []
    wav, sr = sf.read(io.BytesIO(audio.content), dtype="float32")
    info = sf.info(str(EXAMPLES / "source.wav"))
    assert sr == result["sample_rate"] == 16000 and wav.size == info.frames  # the source's length exactly
    assert result["duration"] == pytest.approx(info.duration, abs=1e-3) == result["source_duration"]
    assert float(np.sqrt(np.mean(wav**2))) > 0.005
    assert 0 < result["seconds"] < 30 and result["rtf"] > 0
    similarity = result["similarity"]
    assert "own speaker encoder" in similarity["encoder"]
    assert all(-1 <= similarity[k] <= 1 for k in ("to_target", "to_source", "source_to_target"))
    for name in ("source", "target", "converted"):
        mel = result["mels"][name]
        pixels = np.frombuffer(__import__("base64").b64decode(mel["data"]), np.uint8)
        assert mel["bins"] == 80 and pixels.size == mel["bins"] * mel["frames"] and pixels.max() > 128


def test_full_queue_answers_busy_and_recovers(tiny_converter, monkeypatch):
    """One worker, no waiting place: while a conversion runs, the next request is told to retry."""
    release, started = threading.Event(), threading.Event()
    real = serve_app.run_conversion

    def held(*args):
        started.set()
        assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(serve_app, "run_conversion", held)
    app = create_app(tiny_converter, ServeLimits(max_upload_mb=1, max_seconds=5, workers=1, queue_depth=0))
    upload = files(wav_bytes(1.0), wav_bytes(1.0, sr=22050))
    with TestClient(app) as test_client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(test_client.post, "/api/convert", files=upload)
        assert started.wait(30)
        busy = test_client.post("/api/convert", files=upload)
        assert busy.status_code == 503 and busy.json() == {"error": "busy, retry"} and busy.headers["retry-after"].isdigit()
        assert test_client.get("/api/info").json()["queue"] == {"admitted": 1, "converting": 1, "capacity": 1}
        release.set()
        assert first.result(timeout=60).status_code == 200
        again = test_client.post("/api/convert", files=upload)
        assert again.status_code == 200 and again.json()["duration"] == pytest.approx(1.0, abs=1e-3)


def test_a_failing_conversion_is_a_one_line_500_and_frees_its_place(client, monkeypatch):
    def broken(*args):
        raise RuntimeError("out of cheese\nTraceback (most recent call last): ...")

    monkeypatch.setattr(serve_app, "run_conversion", broken)
    answer = client.post("/api/convert", files=files(wav_bytes(1.0), wav_bytes(1.0)))
    assert answer.status_code == 500 and answer.json() == {"error": "conversion failed: out of cheese"}
    assert client.app.state.queue.status()["admitted"] == 0
    monkeypatch.undo()
    assert client.post("/api/convert", files=files(wav_bytes(1.0), wav_bytes(1.0))).status_code == 200


def test_result_store_keeps_the_most_recent():
    from vconv.serve.jobs import ResultStore

    store = ResultStore(2)
    a, b = store.put(b"a"), store.put(b"b")
    assert store.get(a) == b"a"  # a is now the most recently used
    c = store.put(b"c")
    assert store.get(b) is None and store.get(a) == b"a" and store.get(c) == b"c" and len(store) == 2


# ------------------------------------------------------------------------------------------------ a real server


def _memory_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


BURST = 20
MEMORY_GROWTH_MB = 150  # measured: ~30 MB; the queue admits 3 requests at once, each a few MB of audio


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc (Linux)")
def test_burst_of_concurrent_requests_on_loopback(tiny_bundle):
    """`vconv serve` as a user starts it; 20 clients at once get converted audio or "busy, retry", nothing else;
    the server's peak memory stays bounded and it still answers afterwards."""
    import httpx

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "vconv", "serve", "--model", str(tiny_bundle), "--port", "0", "--queue", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""  # "vconv serve: http://127.0.0.1:PORT/  (model ...)" once it listens
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        url = match.group(0)
        source, target = (EXAMPLES / "source.wav").read_bytes(), (EXAMPLES / "target.wav").read_bytes()
        with httpx.Client(base_url=url, timeout=120) as http:
            assert http.post("/api/convert", files=files(source, target)).status_code == 200  # warm-up: first-use allocations
            before = _memory_kb(proc.pid, "VmRSS")

            def one(_: int) -> httpx.Response:
                return http.post("/api/convert", files=files(source, target))

            with ThreadPoolExecutor(BURST) as pool:
                answers = list(pool.map(one, range(BURST)))
            statuses = [a.status_code for a in answers]
            assert set(statuses) <= {200, 503}, statuses
            assert statuses.count(200) >= 1
            for answer in answers:
                if answer.status_code == 503:
                    assert answer.json() == {"error": "busy, retry"} and "retry-after" in answer.headers
                else:
                    assert answer.json()["duration"] == pytest.approx(sf.info(str(EXAMPLES / "source.wav")).duration, abs=1e-3)
            growth_mb = (_memory_kb(proc.pid, "VmHWM") - before) / 1024
            assert growth_mb < MEMORY_GROWTH_MB, f"peak memory grew by {growth_mb:.0f} MB during the burst"
            info = http.get("/api/info")
            assert info.status_code == 200 and info.json()["queue"]["admitted"] == 0
            last = http.get(answers[statuses.index(200)].json()["audio_url"])
            assert last.status_code == 200 and sf.info(io.BytesIO(last.content)).frames > 0
        assert proc.poll() is None, "the server died"
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does: uvicorn shuts down cleanly
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, proc.stderr.read()


def test_cross_site_posts_are_refused_and_same_site_ones_pass(client, conversions):
    good = wav_bytes(1.0)
    for origin in ({"origin": "https://attacker.example"}, {"origin": "null"},
                   {"referer": "http://attacker.example/page.html"}, {"origin": "http://127.0.0.1:9999"}):
        answer = client.post("/api/convert", files=files(good, good), headers={"host": "127.0.0.1:7860", **origin})
        assert answer.status_code == 403 and "cross-site request refused" in answer.json()["error"], origin
    assert conversions == []  # refused before the upload was read
    same = client.post("/api/convert", files=files(good, good),
                       headers={"host": "127.0.0.1:7860", "origin": "http://127.0.0.1:7860"})
    assert same.status_code == 200, same.text
    plain = client.post("/api/convert", files=files(good, good))  # no Origin, no Referer: not a web page
    assert plain.status_code == 200, plain.text
    assert client.get("/api/info", headers={"origin": "https://attacker.example"}).status_code == 200  # reading is not changing


def _start_server(model: Path) -> tuple[subprocess.Popen, str]:
    """`vconv serve --port 0` as a user starts it; its URL once it prints it (the port then listens)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "vconv", "serve", "--model", str(model), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    assert match, line
    return proc, match.group(0)


@pytest.mark.slow
def test_stalled_uploads_and_idle_connections_do_not_stop_a_normal_request(tiny_bundle):
    """5 clients that start an upload and stall, 64 then 104 that connect and send nothing: a normal conversion
    still gets its answer within 10 s of its upload, the stalled ones hold no conversion place, a request past
    the per-address cap is answered, and the silent connections are closed by the server."""
    import time

    import httpx

    proc, url = _start_server(tiny_bundle)
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    sockets: list[socket.socket] = []
    try:
        with socket.create_connection(("127.0.0.1", port)) as probe:  # the printed URL already listens
            probe.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert probe.recv(12) == b"HTTP/1.1 200"
        for _ in range(5):
            stalled = socket.create_connection(("127.0.0.1", port))
            stalled.sendall(b"POST /api/convert HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                            b"boundary=b\r\nContent-Length: 500000\r\n\r\n--b\r\nContent-Disposition: form-data; "
                            b'name="source"; filename="s.wav"\r\n\r\nRIFF')
            sockets.append(stalled)
        sockets += [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        time.sleep(1.0)
        source, target = (EXAMPLES / "source.wav").read_bytes(), (EXAMPLES / "target.wav").read_bytes()
        with httpx.Client(base_url=url, timeout=60) as http:
            started = time.perf_counter()
            answer = http.post("/api/convert", files=files(source, target))
            assert answer.status_code == 200, answer.text
            assert time.perf_counter() - started < 10.0
            assert http.get("/api/info").json()["queue"]["admitted"] == 0  # the stalled uploads hold no queue place
        # past 100 from one address: the oldest idle connections make room, so the user is never locked out
        sockets += [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/api/info").status_code == 200
        time.sleep(11.0)  # past the server's deadline for a connection's first request
        silent = sockets[5:]
        closed = 0
        for sock in silent:
            sock.settimeout(0.5)
            try:
                closed += sock.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                closed += isinstance(sys.exc_info()[1], ConnectionResetError)
        assert closed == len(silent), f"{len(silent) - closed} silent connections still open"
        assert proc.poll() is None, "the server died"
    finally:
        for sock in sockets:
            sock.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_a_client_that_leaves_and_a_shutdown_mid_request_are_one_line_each(tiny_bundle):
    import time

    proc, url = _start_server(tiny_bundle)
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    head = (b"POST /api/convert HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 500000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"source\"; filename=\"s.wav\"\r\n\r\nRIFF")
    with socket.create_connection(("127.0.0.1", port)) as leaving:
        leaving.sendall(head)
        time.sleep(0.5)
    time.sleep(0.5)
    staying = socket.create_connection(("127.0.0.1", port))
    staying.sendall(head.replace(b"Content-Length: 500000", b"Content-Length: 5000000"))

    def keep_sending() -> None:  # well above the upload pace, so it is mid-upload when the shutdown cuts it
        try:
            for _ in range(300):
                staying.sendall(b"\0" * 16384)
                time.sleep(0.1)
        except OSError:
            pass

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    staying.close()
    sender.join(timeout=5)
    assert "Traceback" not in err, err
    assert "the client disconnected before the request was complete" in err
    assert "cut short by the server's shutdown" in err


def test_a_refused_upload_is_read_to_its_budget_before_the_busy_answer():
    """/api/convert and /api/target alike: with no upload place left the body is drained (up to the request
    budget), so the client, still sending, gets the 503 and not a reset connection."""
    import anyio

    from vconv.serve.jobs import Busy, Gate
    from vconv.serve.uploads import admit_upload

    class Body:
        def __init__(self, chunks: int):
            self.chunks, self.read = chunks, 0

        async def stream(self):
            for _ in range(self.chunks):
                self.read += 1
                yield b"x" * 1000

    gate = Gate(1)
    held = gate.admit()
    small, huge = Body(5), Body(1000)
    limits = ServeLimits(max_upload_mb=2000 / 2**20, max_references=1)  # a request budget of 4,000 + 64 KiB bytes
    assert limits.max_request_bytes == 4000 + 64 * 1024
    for body in (small, huge):
        with pytest.raises(Busy):
            anyio.run(admit_upload, gate, body, limits)
    assert small.read == 5  # all of it
    assert huge.read == 70  # past the budget it stops reading: a refused client cannot hold the server
    held.release()
    with anyio.run(admit_upload, gate, Body(3), limits):
        assert gate.status()["admitted"] == 1


def test_a_refused_upload_is_not_read_for_longer_than_a_moment():
    """A refused client that keeps sending (fast enough for the upload pace) is answered busy within about
    DISCARD_SECONDS, not after its whole budget: a refused connection stays busy, and busy ones are never evicted."""
    import time

    import anyio

    from vconv.serve.jobs import Busy, Gate
    from vconv.serve.uploads import DISCARD_SECONDS, admit_upload

    class EndlessBody:
        async def stream(self):
            while True:
                await anyio.sleep(0.1)
                yield b"x" * 20_000  # 200 KB/s: above the pace, below any budget within seconds

    gate = Gate(1)
    held = gate.admit()
    started = time.monotonic()
    with pytest.raises(Busy):
        anyio.run(admit_upload, gate, EndlessBody(), ServeLimits())
    assert time.monotonic() - started < DISCARD_SECONDS + 1.0
    held.release()
