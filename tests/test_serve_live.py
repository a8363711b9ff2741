"""The page's live mode at the API level (vconv.serve.live): target upload, the WebSocket protocol, its limits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (the dev extra)")

from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

import vconv  # noqa: E402
from vconv.serve.app import create_app  # noqa: E402
from vconv.serve.limits import ServeLimits  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LIMITS = ServeLimits(max_upload_mb=1, max_seconds=10, max_references=2, workers=1, queue_depth=1, max_live_seconds=30)


@pytest.fixture(scope="module")
def client():
    app = create_app(vconv.load(), LIMITS)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def target_id(client):
    answer = client.post("/api/target", files=[("target", ("t.wav", (EXAMPLES / "target.wav").read_bytes(), "audio/wav"))])
    assert answer.status_code == 200, answer.text
    return answer.json()["target"]


def _audio(rate: int = 16000) -> np.ndarray:
    wav, sr = sf.read(EXAMPLES / "source.wav", dtype="float32")
    assert sr == rate
    return wav


def test_a_live_session_converts_what_is_sent_and_flushes_the_tail(client, target_id):
    wav = _audio()
    received, stats = [], []
    with client.websocket_connect(f"/api/live?target={target_id}&rate=16000") as ws:
        hello = json.loads(ws.receive_text())
        assert hello["latency_ms"] == pytest.approx(144, abs=1) and hello["sample_rate"] == 16000
        for start in range(0, wav.size, 320):  # 20 ms messages, as the page sends them
            ws.send_bytes(wav[start : start + 320].astype("<f4").tobytes())
        ws.send_text("end")
        while True:
            try:
                message = ws.receive()
            except WebSocketDisconnect:
                break
            if message["type"] == "websocket.close":
                break
            if message.get("bytes"):
                received.append(np.frombuffer(message["bytes"], "<f4"))
            elif message.get("text"):
                stats.append(json.loads(message["text"]))
    out = np.concatenate(received)
    assert out.size == wav.size  # every sample came back, the tail with the flush
    assert np.sqrt(np.mean(out ** 2)) > 0.01
    assert abs(np.corrcoef(out, wav)[0, 1]) < 0.5  # converted, not echoed
    assert stats and {"p50_ms", "p99_ms", "missed", "seconds_in", "now_latency_ms"} <= set(stats[0])
    assert stats[-1]["now_latency_ms"] in (144.0, 240.0)  # grown on a machine too busy for 96 ms blocks


def _close_reason(client, url: str, **kwargs) -> tuple[int, str]:
    with client.websocket_connect(url, **kwargs) as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    return closed.value.code, closed.value.reason


def test_unknown_target_and_bad_rate_are_refused_with_a_reason(client, target_id):
    assert _close_reason(client, "/api/live?target=" + "0" * 32 + "&rate=16000") == (
        1008, "unknown target: upload the target voice first (POST /api/target)")
    code, reason = _close_reason(client, f"/api/live?target={target_id}&rate=5")
    assert code == 1008 and "rate 5" in reason


def test_a_session_given_the_speaker_s_own_voice_starts_in_its_register(client, target_id):
    answer = client.post("/api/target", files=[("target", ("me.wav", (EXAMPLES / "source.wav").read_bytes(), "audio/wav"))])
    own = answer.json()["target"]
    with client.websocket_connect(f"/api/live?target={target_id}&rate=16000&source={own}") as ws:
        assert "latency_ms" in json.loads(ws.receive_text())
        ws.send_bytes(_audio()[:16000].astype("<f4").tobytes())
        assert np.frombuffer(ws.receive_bytes(), "<f4").size > 0
    assert _close_reason(client, f"/api/live?target={target_id}&rate=16000&source=" + "0" * 32) == (
        1008, "unknown source voice: upload a recording of your own voice first (POST /api/target)")


def test_a_second_session_is_busy_while_the_one_worker_is_live(client, target_id):
    with client.websocket_connect(f"/api/live?target={target_id}&rate=16000") as first:
        first.receive_text()
        assert client.get("/api/info").json()["queue"]["converting"] == 1
        assert _close_reason(client, f"/api/live?target={target_id}&rate=16000") == (1013, "busy, retry")
    # the first session's worker is given back when it ends
    with client.websocket_connect(f"/api/live?target={target_id}&rate=16000") as again:
        assert "latency_ms" in json.loads(again.receive_text())


def test_cross_site_sessions_are_refused(client, target_id):
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(f"/api/live?target={target_id}&rate=16000", headers={"origin": "http://evil.example"}):
            pass
    assert refused.value.code == 1008


def test_an_oversized_or_malformed_message_closes_with_a_reason(client, target_id):
    with client.websocket_connect(f"/api/live?target={target_id}&rate=16000") as ws:
        ws.receive_text()
        ws.send_bytes(b"\x00" * (4 * 16000 * 2))  # 2 s in one message
        code, reason = _closed(ws)
    assert code == 1007 and "at most 1 s" in reason
    with client.websocket_connect(f"/api/live?target={target_id}&rate=16000") as ws:
        ws.receive_text()
        ws.send_bytes(b"\x00\x00\x00")
        code, reason = _closed(ws)
    assert code == 1007 and "multiple of 4 bytes" in reason


def _closed(ws) -> tuple[int, str]:
    """The code and reason of the close that ends ``ws``'s messages (audio and text before it are skipped)."""
    while True:
        message = ws.receive()
        if message["type"] == "websocket.close":
            return message["code"], message.get("reason", "")


def test_target_upload_keeps_the_upload_limits(client):
    big = np.zeros(16000 * 40, np.int16).tobytes()  # over the 1 MB limit
    answer = client.post("/api/target", files=[("target", ("t.wav", big, "audio/wav"))])
    assert answer.status_code == 413 and "limit" in answer.json()["error"]
    assert client.post("/api/target", files=[("other", ("x.wav", b"RIFF", "audio/wav"))]).json()["error"].startswith("no target reference")
    cross = client.post("/api/target", files=[("target", ("t.wav", (EXAMPLES / "target.wav").read_bytes(), "audio/wav"))],
                        headers={"origin": "http://evil.example"})
    assert cross.status_code == 403
