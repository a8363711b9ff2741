// vconv serve: pick or record a source and target references, POST them to /api/convert, show the result.
// No library and nothing fetched from elsewhere: the page must work offline (the server's CSP enforces it).
"use strict";

const $ = (id) => document.getElementById(id);
let limits = null; // from /api/info
const BUSY_RETRIES = 3;

// ------------------------------------------------------------------------------------------- status

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function fmt(value, digits = 2) {
  return value === null || value === undefined ? "n/a" : Number(value).toFixed(digits);
}

// ---------------------------------------------------------------------------------------- file lists

// Put `files` into a file input (so picked and recorded audio travel the same way) and list them.
function setFiles(input, files) {
  const transfer = new DataTransfer();
  files.forEach((f) => transfer.items.add(f));
  input.files = transfer.files;
  input.dispatchEvent(new Event("change"));
}

function listFiles(input, list) {
  list.replaceChildren();
  for (const file of input.files) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = `${file.name} (${(file.size / 1024).toFixed(0)} KB)`; // textContent: names are never HTML
    const player = document.createElement("audio");
    player.controls = true;
    player.src = URL.createObjectURL(file);
    item.append(name, player);
    list.append(item);
  }
}

// ------------------------------------------------------------------------------------------ recording

// Browsers record compressed webm/ogg, which the server's audio reader may not decode; the browser can,
// so the recording is decoded here and uploaded as 16-bit PCM WAV.
function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, x)) * 0x7fff, true));
  return new Blob([buffer], { type: "audio/wav" });
}

async function recordingToWav(blob) {
  const context = new AudioContext();
  try {
    const audio = await context.decodeAudioData(await blob.arrayBuffer());
    const mono = new Float32Array(audio.length);
    for (let c = 0; c < audio.numberOfChannels; c++) {
      audio.getChannelData(c).forEach((x, i) => { mono[i] += x / audio.numberOfChannels; });
    }
    return encodeWav(mono, audio.sampleRate);
  } finally {
    context.close();
  }
}

function setupRecorder(button, input, append) {
  let recorder = null;
  let timer = null;
  let count = 0;
  button.addEventListener("click", async () => {
    if (recorder) { recorder.stop(); return; }
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      setStatus("Recording needs microphone access, which browsers give only to pages on localhost or https.", true);
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      setStatus(`No microphone: ${err.message}`, true);
      return;
    }
    const chunks = [];
    const started = Date.now();
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
    recorder.onstop = async () => {
      clearInterval(timer);
      stream.getTracks().forEach((t) => t.stop());
      button.classList.remove("on");
      button.textContent = "● Record";
      const type = recorder.mimeType;
      recorder = null;
      try {
        const wav = await recordingToWav(new Blob(chunks, { type }));
        count += 1;
        const file = new File([wav], `recording-${count}.wav`, { type: "audio/wav" });
        setFiles(input, append ? [...input.files, file] : [file]);
        setStatus("");
      } catch (err) {
        setStatus(`Could not decode the recording: ${err.message}`, true);
      }
    };
    recorder.start();
    button.classList.add("on");
    const maxSeconds = limits ? limits.max_seconds : 60;
    timer = setInterval(() => {
      const seconds = (Date.now() - started) / 1000;
      button.textContent = `■ Stop (${seconds.toFixed(0)} s)`;
      if (seconds >= maxSeconds) recorder.stop(); // the server would refuse a longer file
    }, 250);
    button.textContent = "■ Stop (0 s)";
  });
}

// ------------------------------------------------------------------------------------ spectrograms

// A dark-to-bright colour ramp (5 anchors, linearly interpolated into 256 colours).
const RAMP = [[12, 7, 30], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]];
const LUT = Array.from({ length: 256 }, (_, v) => {
  const x = (v / 255) * (RAMP.length - 1);
  const i = Math.min(Math.floor(x), RAMP.length - 2);
  const t = x - i;
  return RAMP[i].map((a, k) => Math.round(a + (RAMP[i + 1][k] - a) * t));
});

// mel: {bins, frames, seconds, data: base64 of uint8 [bins, frames], row 0 = lowest band}
function drawMel(canvas, mel) {
  const pixels = Uint8Array.from(atob(mel.data), (c) => c.charCodeAt(0));
  canvas.width = mel.frames;
  canvas.height = mel.bins;
  const context = canvas.getContext("2d");
  const image = context.createImageData(mel.frames, mel.bins);
  for (let row = 0; row < mel.bins; row++) {
    const y = mel.bins - 1 - row; // low frequencies at the bottom
    for (let x = 0; x < mel.frames; x++) {
      const colour = LUT[pixels[row * mel.frames + x]];
      const o = (y * mel.frames + x) * 4;
      image.data[o] = colour[0]; image.data[o + 1] = colour[1]; image.data[o + 2] = colour[2]; image.data[o + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
}

// ---------------------------------------------------------------------------------------- conversion

function checkSizes(files) {
  const limit = limits ? limits.max_upload_mb * 1024 * 1024 : Infinity;
  const big = files.find((f) => f.size > limit);
  return big ? `${big.name} is larger than the ${limits.max_upload_mb} MB upload limit` : null;
}

async function convert(attempt = 0) {
  const source = $("source-file").files[0];
  const targets = [...$("target-file").files];
  if (!source) return setStatus("Choose or record a source first.", true);
  if (!targets.length) return setStatus("Choose or record at least one target reference.", true);
  if (limits && targets.length > limits.max_references) {
    return setStatus(`At most ${limits.max_references} target references.`, true);
  }
  const tooBig = checkSizes([source, ...targets]);
  if (tooBig) return setStatus(tooBig, true);

  const form = new FormData();
  form.append("source", source);
  targets.forEach((t) => form.append("target", t));
  $("convert").disabled = true;
  document.body.dataset.state = "converting";
  setStatus("Converting…");
  let answer;
  let body;
  try {
    answer = await fetch("/api/convert", { method: "POST", body: form });
    body = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
  } catch (err) {
    $("convert").disabled = false;
    document.body.dataset.state = "error";
    return setStatus(`The server did not answer (${err.message}). Is vconv serve still running?`, true);
  }
  if (answer.status === 503 && attempt < BUSY_RETRIES) {
    const wait = Number(answer.headers.get("Retry-After") || 5);
    setStatus(`Server busy with other conversions; retrying in ${wait} s…`);
    setTimeout(() => convert(attempt + 1), wait * 1000);
    return;
  }
  $("convert").disabled = false;
  if (!answer.ok) {
    document.body.dataset.state = "error";
    return setStatus(body.error || `HTTP ${answer.status}`, true);
  }
  showResult(body);
}

function showResult(result) {
  $("result").hidden = false;
  $("player").src = result.audio_url;
  $("download").href = result.audio_url;
  $("time").textContent = `${fmt(result.seconds)} s (${fmt(result.duration, 1)} s of audio)`;
  $("sim-target").textContent = fmt(result.similarity.to_target);
  $("sim-source").textContent = fmt(result.similarity.to_source);
  $("sim-before").textContent = fmt(result.similarity.source_to_target);
  for (const name of ["source", "target", "converted"]) {
    const mel = result.mels[name];
    drawMel($(`mel-${name}`), mel);
    $(`mel-${name}-info`).textContent = `${fmt(mel.seconds, 1)} s`;
  }
  setStatus(`Done in ${fmt(result.seconds)} s.`);
  document.body.dataset.state = "done";
}

// ---------------------------------------------------------------------------------------------- start

async function start() {
  $("source-file").addEventListener("change", () => listFiles($("source-file"), $("source-list")));
  $("target-file").addEventListener("change", () => listFiles($("target-file"), $("target-list")));
  setupRecorder($("source-record"), $("source-file"), false);
  setupRecorder($("target-record"), $("target-file"), true);
  $("convert").addEventListener("click", () => convert());
  try {
    const info = await (await fetch("/api/info")).json();
    limits = info.limits;
    $("model").textContent = `${info.model} (${info.sample_rate / 1000} kHz)`;
    $("mel-note").textContent = `Log-mel spectrograms, 0 to ${info.mel_fmax / 1000} kHz from bottom to top, on one shared scale (80 dB range).`;
    $("limits").textContent =
      `Limits: ${limits.max_upload_mb} MB and ${limits.max_seconds} s per file, up to ${limits.max_references} references; ` +
      `${limits.workers} conversion${limits.workers > 1 ? "s" : ""} at a time, ${limits.queue_depth} waiting. ` +
      "Uploads go to a temporary folder on this machine and are deleted after each conversion.";
  } catch (err) {
    setStatus("Could not reach the server.", true);
  }
}

document.addEventListener("DOMContentLoaded", start);
