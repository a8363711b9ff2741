"""`vconv serve` in a real browser: headless Chromium uploads the shipped examples, converts, and the audio it got is checked.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when it runs as root) and
selenium (the ``dev`` extra); skips with the reason otherwise. The screenshot goes to ``tmp_path``, or to
``docs/img/serve.png`` (the README's) when ``VCONV_UPDATE_SCREENSHOT=1``.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCREENSHOT = ROOT / "docs" / "img" / "serve.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
RMS_FLOOR = 0.005  # -46 dBFS: speech converted by the shipped model sits near -30 dBFS; silence far below


def _missing() -> str | None:
    for module, what in (("selenium", "selenium (pip install -e '.[dev]')"), ("fastapi", "the serve extra (pip install -e '.[serve]')")):
        if importlib.util.find_spec(module) is None:
            return f"needs {what}"
    if not CHROMIUM or not CHROMEDRIVER:
        return "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


@contextmanager
def _served(limits=None, converter=None):
    """A model served by uvicorn in a thread on a free loopback port, as `vconv serve` runs it: its URL."""
    import vconv
    from vconv.serve.app import create_app
    from vconv.serve.limits import ServeLimits
    from vconv.serve.server import bind, make_server

    listener = bind("127.0.0.1", 0)
    app = create_app(converter or vconv.load(), limits or ServeLimits(), allowed_hosts=listener.allowed_hosts())
    server = make_server(app, listener)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener.sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield listener.url
    server.should_exit = True
    thread.join(timeout=15)
    listener.sock.close()
    assert not app.state.upload_root.exists(), "the upload folder outlived the server"


@pytest.fixture(scope="module")
def server_url():
    """The shipped model, with the default limits."""
    with _served() as url:
        yield url


def _chromium(*extra: str):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
                "--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1",
                # a fake microphone (a beeping tone, or a wav with --use-file-for-fake-audio-capture), granted
                # without a prompt
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", *extra):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, e.g. a CSP violation
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser():
    driver = _chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def speaking_browser():
    """Chromium whose microphone speaks the shipped source (looped)."""
    driver = _chromium(f"--use-file-for-fake-audio-capture={EXAMPLES / 'source.wav'}")
    try:
        yield driver
    finally:
        driver.quit()


def test_page_converts_the_examples_and_plays_the_result(server_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server_url)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "model").text not in ("", "…"))  # /api/info answered
    assert "vconv-voices-small" in browser.find_element(By.ID, "model").text

    browser.find_element(By.ID, "source-file").send_keys(str(EXAMPLES / "source.wav"))
    browser.find_element(By.ID, "target-file").send_keys(str(EXAMPLES / "target.wav"))
    browser.find_element(By.ID, "convert").click()
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", browser.find_element(By.ID, "status").text

    player = browser.find_element(By.ID, "player")
    src = player.get_attribute("src")
    assert src.startswith(server_url + "api/result/") and src.endswith(".wav")
    # the browser itself decoded the file's header (readyState >= HAVE_METADATA)
    wait.until(lambda d: d.execute_script("return arguments[0].readyState", player) >= 1)
    source_seconds = sf.info(str(EXAMPLES / "source.wav")).duration
    assert browser.execute_script("return arguments[0].duration", player) == pytest.approx(source_seconds, rel=0.02)

    with urllib.request.urlopen(src, timeout=30) as answer:  # loopback only
        wav, sr = sf.read(io.BytesIO(answer.read()), dtype="float32")
    assert wav.ndim == 1 and wav.size / sr == pytest.approx(source_seconds, rel=0.02)
    assert float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) > RMS_FLOOR, "the converted audio is (nearly) silent"

    # the three mel spectrograms were drawn (not blank), and the similarities are shown as numbers
    for name in ("source", "target", "converted"):
        mean = browser.execute_script(
            "const c = arguments[0]; const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2]; return s / (d.length / 4) / 3;",
            browser.find_element(By.ID, f"mel-{name}"))
        assert mean > 20, f"the {name} spectrogram is blank"
    assert float(browser.find_element(By.ID, "sim-target").text) <= 1.0
    assert browser.find_element(By.ID, "download").get_attribute("href") == src

    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe  # no script error, no blocked (external) resource

    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    # the whole page in one image: make the viewport as tall as the page (the window size includes no chrome headless)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": min(height, 2000), "deviceScaleFactor": 1, "mobile": False})
    shot = tmp_path / "serve.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("VCONV_UPDATE_SCREENSHOT") == "1":
        _save_small_png(shot, SCREENSHOT)


def test_recording_in_the_browser_uploads_a_wav(server_url, browser):
    """Record -> stop: the browser's webm is decoded in the page and uploaded as WAV, which the server converts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server_url)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "model").text not in ("", "…"))
    record = browser.find_element(By.ID, "source-record")
    record.click()
    wait.until(lambda d: "Stop" in record.text)
    time.sleep(1.5)
    record.click()
    wait.until(lambda d: d.execute_script("return document.getElementById('source-file').files.length") == 1)
    name, kind, size = browser.execute_script("const f = document.getElementById('source-file').files[0]; return [f.name, f.type, f.size];")
    assert name == "recording-1.wav" and kind == "audio/wav" and size > 44 + 2 * 8000  # header + over 0.5 s at 8 kHz or more
    browser.find_element(By.ID, "target-file").send_keys(str(EXAMPLES / "target.wav"))
    browser.find_element(By.ID, "convert").click()
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", browser.find_element(By.ID, "status").text
    wait.until(lambda d: d.execute_script("return document.getElementById('player').readyState") >= 1)
    seconds = browser.execute_script("return document.getElementById('player').duration")
    assert 1.0 < seconds < 3.0  # about the 1.5 s recorded


def _start_live(browser, url: str, own_voice: bool = False):
    """Open the page, give the example target and press Start live: the page's WebDriverWait (30 s). ``own_voice``:
    the example source given as step 1 and "the source above is my own voice" ticked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "model").text not in ("", "…"))
    browser.find_element(By.ID, "target-file").send_keys(str(EXAMPLES / "target.wav"))
    if own_voice:
        browser.find_element(By.ID, "source-file").send_keys(str(EXAMPLES / "source.wav"))
        browser.find_element(By.ID, "live-own-voice").click()
    browser.find_element(By.ID, "live-toggle").click()
    return wait


def test_live_mode_streams_the_microphone_in_the_target_voice(server_url, speaking_browser):
    """Start live with the fake microphone speaking the source: converted speech arrives and plays, the latency
    is shown, and a second session (one worker) and an oversized target upload are refused."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = speaking_browser
    wait = _start_live(browser, server_url)
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return window.vconvLive.received / Math.max(1, window.vconvLive.rate)") > 3.0,
                                     "no converted audio arrived: " + browser.find_element(By.ID, "live-status").text)
    # 96 + 48 ms; 192 + 48 once the block grew, on a machine too busy for 96 ms blocks (vconv.inference.stream_pace)
    assert browser.find_element(By.ID, "live-latency").text in ("144 ms", "240 ms")
    measured = browser.execute_script("return window.vconvLive.latencyMs")
    assert 100 < measured < 2000, measured

    # the server's limits hold while the session is open: its one worker is taken, uploads are still bounded
    second = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const ws = new WebSocket(`ws://${location.host}/api/live?target=${'0'.repeat(32)}&rate=48000`);"
        "ws.onclose = (e) => done([e.code, e.reason]);")
    assert second[0] == 1008  # an unknown target is refused before the queue is asked
    target = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; const f = new FormData();"
        "f.append('target', new Blob([new Uint8Array(25 * 1024 * 1024)]), 't.wav');"
        "fetch('/api/target', {method: 'POST', body: f}).then((r) => done(r.status));")
    assert target == 413
    busy = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; const f = new FormData();"
        "f.append('target', document.getElementById('target-file').files[0]);"
        "fetch('/api/target', {method: 'POST', body: f}).then((r) => r.json()).then((b) => {"
        "  const ws = new WebSocket(`ws://${location.host}/api/live?target=${b.target}&rate=48000`);"
        "  ws.onclose = (e) => done([e.code, e.reason, b]); });")
    assert busy[:2] == [1013, "busy, retry"], busy

    browser.find_element(By.ID, "live-toggle").click()  # stop: the server flushes and closes
    wait.until(lambda d: d.execute_script("return window.vconvLive.closed") is not None)
    assert browser.execute_script("return window.vconvLive.closed.code") == 1000
    rate, captured, output = browser.execute_script(
        "const s = window.vconvLive; const flat = (l) => Array.from(l.reduce((a, b) => { const c = new Float32Array(a.length + b.length);"
        " c.set(a); c.set(b, a.length); return c; }, new Float32Array(0))); return [s.rate, flat(s.captured), flat(s.output)];")
    captured, output = np.asarray(captured, np.float32), np.asarray(output, np.float32)
    assert output.size > 3 * rate and float(np.sqrt(np.mean(output ** 2))) > RMS_FLOOR, "the converted audio is (nearly) silent"
    # not the microphone passed through: at no lag up to a second does the output follow the input
    n = min(captured.size, output.size) - rate
    best = max(abs(float(np.corrcoef(captured[:n], output[lag : lag + n])[0, 1])) for lag in range(0, rate, rate // 400))
    assert best < 0.5, best
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE" and "api/target" not in e["message"]]
    assert not severe, severe


def test_the_page_explains_why_a_session_ended_and_reconnects_when_the_server_was_busy(speaking_browser):
    """A live session that finds the one worker taken (close 1013) is retried by the page and starts once the
    worker is free; one that reaches the server's session limit (close 4002) is ended with the reason shown. The page
    is given the speaker's own voice (step 1's source, "my own voice" ticked): the session opens with it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import vconv
    from tests.live_client import WebSocketClient, post_target
    from vconv.serve.limits import ServeLimits

    with _served(ServeLimits(max_live_seconds=6), vconv.load()) as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        holder = WebSocketClient(port, f"/api/live?target={post_target(port)}&rate=16000")  # takes the one worker
        holder.handshake()
        browser = speaking_browser
        wait = _start_live(browser, url, own_voice=True)
        wait.until(lambda d: "Reconnecting" in d.find_element(By.ID, "live-status").text)
        assert "busy" in browser.find_element(By.ID, "live-status").text
        holder.close()  # the worker is free: the page's next try gets it
        WebDriverWait(browser, 60).until(lambda d: d.execute_script("return window.vconvLive.received") > 0)
        assert browser.execute_script("return window.vconvLive.ownVoice") is True  # the socket was opened with source=ID
        WebDriverWait(browser, 60).until(lambda d: d.execute_script("return window.vconvLive.closed") is not None)
        closed = browser.execute_script("return window.vconvLive.closed")
        status = browser.find_element(By.ID, "live-status").text
    assert closed["code"] == 4002, closed
    assert "at most 6 s" in status and "Start live" in status, status


def _save_small_png(shot: Path, out: Path) -> None:
    """Copy the screenshot for the README, reduced to a 256-colour palette when Pillow is there (~4x smaller)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:
        shutil.copyfile(shot, out)
        return
    with Image.open(shot) as image:
        image.convert("RGB").quantize(colors=256).save(out, optimize=True)
