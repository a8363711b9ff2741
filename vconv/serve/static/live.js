// vconv serve, live mode: the microphone goes over a WebSocket (/api/live) to the server's streaming converter and
// the converted audio plays as it arrives. Capture and playback run in an AudioWorklet (live-worklet.js); this
// file moves samples between them and the socket and shows the latency. Protocol: vconv/serve/live.py.
"use strict";

const LIVE_MESSAGE_SECONDS = 0.02; // how much microphone audio one message carries
const LIVE_KEEP_SECONDS = 120; // what the page keeps of a session's input and output (window.vconvLive)
let live = null; // the open session: {mic, context, capture, playback, socket, pending, pendingLength, stopping}
const LIVE_RETRIES = 3; // reconnections after a busy server or a lost connection before the page gives up
const LIVE_RETRY_SECONDS = 3;
let liveRetries = 0; // reconnections tried since the user pressed Start

// What each close code of the server (vconv/serve/live.py) means for the user, and whether to reconnect.
function explainClose(code, reason) {
  switch (code) {
    case 1000: case 1005: return { text: "Stopped.", retry: false, error: false };
    case 1013: return { text: "The server is busy (another live session or a conversion holds its worker).", retry: true, error: true };
    case 1006: return { text: "The connection to the server was lost.", retry: true, error: true };
    case 4001: return { text: `Live session closed: ${reason || "no audio"} reached the server (is the microphone muted or the tab asleep?). Press Start live to go on.`, retry: false, error: true };
    case 4002: return { text: `Live session ended: ${reason}. Press Start live for a new one.`, retry: false, error: true };
    case 1008: return { text: `Refused: ${reason || "cross-site or unknown target"}.`, retry: false, error: true };
    default: return { text: `Live session ended: ${reason || `code ${code}`}`, retry: false, error: true };
  }
}

// The session's figures and the audio it sent and got (the last LIVE_KEEP_SECONDS), for the page and for tests.
window.vconvLive = { rate: 0, sent: 0, received: 0, captured: [], output: [], latencyMs: null, closed: null, ownVoice: false };

function liveStatus(text, isError = false) {
  $("live-status").textContent = text;
  $("live-status").classList.toggle("error", isError);
}

function keep(list, samples, rate) {
  list.push(samples);
  let total = list.reduce((n, s) => n + s.length, 0);
  while (list.length > 1 && total - list[0].length > LIVE_KEEP_SECONDS * rate) total -= list.shift().length;
}

// Upload the target voice (step 2), or, with `own`, the speaker's own voice (the source of step 1, with "the source
// above is my own voice" ticked): /api/target prepares either and gives its id.
async function uploadTarget(own = false) {
  const targets = own ? [...$("source-file").files].slice(0, 1) : [...$("target-file").files];
  if (!targets.length) {
    throw new Error(own ? "Choose or record your own voice as the source first (step 1), or untick \"my own voice\"."
      : "Choose or record the target voice first (step 2).");
  }
  const tooBig = checkSizes(targets);
  if (tooBig) throw new Error(tooBig);
  const form = new FormData();
  targets.forEach((t) => form.append("target", t));
  const answer = await fetch("/api/target", { method: "POST", body: form });
  const body = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
  if (!answer.ok) throw new Error(body.error || `HTTP ${answer.status}`);
  return body.target;
}

async function startLive() {
  const button = $("live-toggle");
  button.disabled = true;
  try {
    if (!navigator.mediaDevices || !window.AudioWorkletNode) {
      throw new Error("Live mode needs microphone access and AudioWorklet, which browsers give only to pages on localhost or https.");
    }
    liveStatus("Preparing the target voice…");
    const target = await uploadTarget();
    const own = $("live-own-voice").checked ? `&source=${await uploadTarget(true)}` : "";
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
    const context = new AudioContext({ latencyHint: "interactive" });
    await context.audioWorklet.addModule("/static/live-worklet.js");
    const capture = new AudioWorkletNode(context, "vconv-capture");
    const playback = new AudioWorkletNode(context, "vconv-playback");
    const silent = context.createGain(); // the capture node must be connected to render; it is heard through nothing
    silent.gain.value = 0;
    context.createMediaStreamSource(mic).connect(capture).connect(silent).connect(context.destination);
    playback.connect(context.destination);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/live?target=${target}&rate=${context.sampleRate}${own}`);
    socket.binaryType = "arraybuffer";
    live = { mic, context, capture, playback, socket, pending: [], pendingLength: 0 };
    Object.assign(window.vconvLive, { rate: context.sampleRate, sent: 0, received: 0, captured: [], output: [], latencyMs: null, closed: null,
      ownVoice: own !== "" });
    socket.onmessage = (event) => onLiveMessage(event.data);
    socket.onclose = (event) => endLive(event.code, event.reason);
    socket.onopen = () => {
      liveRetries = 0;
      capture.port.onmessage = (event) => sendCaptured(event.data);
      button.textContent = "■ Stop live";
      button.classList.add("on");
      button.disabled = false;
      document.body.dataset.live = "on";
      liveStatus("Live: speak.");
    };
  } catch (err) {
    liveStatus(err.message, true);
    teardownLive();
    button.disabled = false;
  }
}

function sendCaptured(samples) {
  const state = window.vconvLive;
  keep(state.captured, samples, state.rate);
  live.pending.push(samples);
  live.pendingLength += samples.length;
  if (live.pendingLength < LIVE_MESSAGE_SECONDS * state.rate) return;
  const message = new Float32Array(live.pendingLength);
  let offset = 0;
  for (const piece of live.pending) { message.set(piece, offset); offset += piece.length; }
  live.pending = [];
  live.pendingLength = 0;
  if (live.socket.readyState === WebSocket.OPEN) {
    live.socket.send(message.buffer);
    state.sent += message.length;
  }
}

function onLiveMessage(data) {
  const state = window.vconvLive;
  if (typeof data === "string") {
    const info = JSON.parse(data);
    if ("latency_ms" in info) {
      $("live-latency").textContent = `${info.latency_ms.toFixed(0)} ms`;
    } else {
      $("live-compute").textContent = `${info.p50_ms.toFixed(0)} / ${info.p99_ms.toFixed(0)} ms`;
      $("live-seconds").textContent = `${info.seconds_in.toFixed(1)} s` + (info.missed ? `, ${info.missed} late` : "");
      if ("now_latency_ms" in info) $("live-latency").textContent = `${info.now_latency_ms.toFixed(0)} ms`; // the block grew
    }
    return;
  }
  const samples = new Float32Array(data);
  live.playback.port.postMessage(samples);
  state.received += samples.length;
  keep(state.output, samples, state.rate);
  state.latencyMs = (1000 * (state.sent - state.received)) / state.rate; // how far the output trails what was sent
  $("live-measured").textContent = `${state.latencyMs.toFixed(0)} ms`;
}

function stopLive() {
  if (!live) return;
  $("live-toggle").disabled = true;
  live.capture.port.onmessage = null;
  live.stopping = true;
  if (live.socket.readyState === WebSocket.OPEN) live.socket.send("end"); // the server flushes the tail, then closes
  else teardownLive();
}

function endLive(code, reason) {
  window.vconvLive.closed = { code, reason };
  const close = explainClose(code, reason);
  const stoppedByUser = Boolean(live && live.stopping); // stopLive() sent "end"
  if (close.retry && !stoppedByUser && liveRetries < LIVE_RETRIES) {
    liveRetries += 1;
    liveStatus(`${close.text} Reconnecting in ${LIVE_RETRY_SECONDS} s (try ${liveRetries} of ${LIVE_RETRIES})…`, true);
    teardownLive();
    setTimeout(() => { if (!live) startLive(); }, LIVE_RETRY_SECONDS * 1000);
    return;
  }
  const gaveUp = close.retry && !stoppedByUser ? ` Gave up after ${LIVE_RETRIES} reconnections; press Start live to try again.` : "";
  liveRetries = 0;
  liveStatus(close.text + gaveUp, close.error);
  setTimeout(teardownLive, 500); // let the flushed tail play
}

function teardownLive() {
  if (live) {
    live.mic.getTracks().forEach((t) => t.stop());
    live.context.close();
    live = null;
  }
  const button = $("live-toggle");
  button.textContent = "● Start live";
  button.classList.remove("on");
  button.disabled = false;
  document.body.dataset.live = "off";
}

document.addEventListener("DOMContentLoaded", () => {
  $("live-toggle").addEventListener("click", () => { liveRetries = 0; return live ? stopLive() : startLive(); });
});
