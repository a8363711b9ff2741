"""Pretrained front-ends' speed: what Whisper costs per conversion, and what padding costs.

Usage: python benchmarks/bench_frontends.py [--seconds 10] [--threads 2] [--repeat 5] [--frontends DIR]

On ``--seconds`` of speech (the example source, repeated): the Whisper tiny.en encoder (our torch port)
fed the frames it has (what vconv does) and padded to Whisper's 30 s window (what Whisper itself does),
through block 2 and block 4. Prints the best of ``--repeat``
runs as seconds and real-time factor (wall / audio seconds), and what skipping the padding changes in
the states themselves: the cosine similarity, frame by frame, of the unpadded states with the padded
window's states over the same frames (1.0 = identical). ``--frontends`` is a folder made by
``vconv frontend prepare`` (default: one is made in a temporary folder from the installed packages).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from vconv.audio.pretrained import load_whisper_encoder, prepare_frontends, read_frontends_index
from vconv.audio.whisper import MAX_FRAMES, WhisperLogMel

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "source.wav"


def best_of(repeat: int, fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frontends", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = args.frontends or prepare_frontends(Path(tempfile.mkdtemp()) / "frontends")
    index = read_frontends_index(folder)
    encoder = load_whisper_encoder(folder, index)
    source, sr = sf.read(str(EXAMPLE), dtype="float32")
    wav = np.tile(source, int(np.ceil(args.seconds * sr / source.size)))[: int(args.seconds * sr)]
    log_mel = WhisperLogMel()(torch.from_numpy(wav)[None])
    padded = torch.nn.functional.pad(log_mel, (0, MAX_FRAMES - log_mel.shape[-1]), value=float(log_mel.min()))
    print(f"{args.seconds:.0f} s of speech, {args.threads} thread(s), best of {args.repeat}; load average {os.getloadavg()[0]:.2f}")
    print("| front-end | seconds | RTF |\n|---|---|---|")
    with torch.inference_mode():
        for layer in (2, 4):
            for name, x in (("unpadded (vconv)", log_mel), ("padded to 30 s (Whisper)", padded)):
                s = best_of(args.repeat, lambda x=x, layer=layer: encoder(x, layer))
                print(f"| Whisper tiny.en to block {layer}, {name} | {s:.3f} | {s / args.seconds:.4f} |")
    print("\n| states | cosine unpadded vs padded: mean | 5th percentile |\n|---|---|---|")
    with torch.inference_mode():
        for layer in (2, 4):
            short, full = encoder(log_mel, layer)[0], encoder(padded, layer)[0]  # [N/2, 384], [1500, 384]
            cos = torch.nn.functional.cosine_similarity(short, full[: short.shape[0]], dim=-1)
            print(f"| block {layer} | {cos.mean():.4f} | {cos.quantile(0.05):.4f} |")


if __name__ == "__main__":
    main()
