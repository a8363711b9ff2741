"""Neural (Vocos-style) vocoder speed: real-time factor on 10 s of 16 kHz audio (626 frames).

Usage: python benchmarks/bench_vocoder.py [--frames 626] [--threads 1 2] [--repeat 5] [--dim 256 --intermediate 768 --blocks 8]
                                          [--consistency-passes 16] [--envelope-passes 16]

An untrained vocoder of the given size (default: the shipped default VocoderConfig) vocodes a random
log-mel of ``--frames`` frames under ``inference_mode``, ``--repeat`` times after one warm-up, at each
thread count, twice: the network and its inverse STFT alone, and with the inference-time post-processing
(phase-consistency iterations and mel-envelope matching, by default the VocoderConfig's counts) that
``vconv convert`` runs. The best run is the figure to quote (RTF = wall seconds / audio seconds; the target is
<= 0.02, i.e. >= 50x real time): on a shared machine other processes inflate the rest, and the load
average is printed for context. Speed does not depend on the weights' values, so no training is needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from vconv.config import FeatureConfig, VocoderConfig
from vconv.vocoders.vocos import VocosVocoder


def main() -> None:
    default = VocoderConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=626, help="626 frames at hop 256 = 10.0 s at 16 kHz")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dim", type=int, default=default.dim)
    parser.add_argument("--intermediate", type=int, default=default.intermediate)
    parser.add_argument("--blocks", type=int, default=default.blocks)
    parser.add_argument("--consistency-passes", type=int, default=default.consistency_passes)
    parser.add_argument("--envelope-passes", type=int, default=default.envelope_passes)
    args = parser.parse_args()

    features = FeatureConfig()
    config = VocoderConfig(dim=args.dim, intermediate=args.intermediate, blocks=args.blocks)
    vocoder = VocosVocoder(features, config).eval()
    params = sum(p.numel() for p in vocoder.parameters())
    seconds = (args.frames - 1) * features.hop_length / features.sample_rate
    mel = torch.randn(1, features.n_mels, args.frames, generator=torch.Generator().manual_seed(0)) - 5.0
    print(f"vocos dim={config.dim} intermediate={config.intermediate} blocks={config.blocks}: {params / 1e6:.2f} M params; "
          f"{args.frames} frames = {seconds:.2f} s of audio; load average {os.getloadavg()[0]:.2f}")
    for label, consistency, envelope in (("network only", 0, 0), ("as shipped", args.consistency_passes, args.envelope_passes)):
        vocoder.config.consistency_passes, vocoder.config.envelope_passes = consistency, envelope
        for threads in args.threads:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                vocoder(mel)  # warm-up: allocator, FFT plans, oneDNN primitives
                times = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    vocoder(mel)
                    times.append(time.perf_counter() - start)
            best, median = min(times), statistics.median(times)
            print(f"{label} (consistency {consistency}, envelope {envelope}) threads={threads}: best {best * 1000:.1f} ms (RTF {best / seconds:.4f}, "
                  f"{seconds / best:.0f}x real time), median {median * 1000:.1f} ms (RTF {median / seconds:.4f})")

if __name__ == "__main__":
    main()
