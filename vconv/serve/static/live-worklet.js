// vconv serve, live mode: the two audio-thread halves. "vconv-capture" hands each 128-sample render quantum of
// the microphone to the page; "vconv-playback" plays the converted samples the page hands it, in order, and
// silence when none have arrived (it never stretches or repeats audio).
"use strict";

class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.port.onmessage = (event) => this.queue.push(event.data);
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let filled = 0;
    while (filled < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(out.length - filled, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), filled);
      filled += n;
      this.offset += n;
      if (this.offset >= head.length) { this.queue.shift(); this.offset = 0; }
    }
    out.fill(0, filled);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor("vconv-capture", Capture);
registerProcessor("vconv-playback", Playback);
