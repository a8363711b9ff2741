"""Griffin-Lim vocoder speed: real-time factor (wall seconds per second of audio) on a long utterance.

Usage: python benchmarks/bench_vocoder_gl.py [--seconds 10] [--n-iter 32] [--threads 2] [--repeat 7]

A synthetic voiced signal of ``--seconds`` is turned into a log-mel (default FeatureConfig: 16 kHz,
hop 256) and vocoded ``--repeat`` times after one warm-up; the best and the median run are printed with
the split between the mel -> linear inversion (NNLS) and the phase retrieval. RTF < 1 is faster than
real time. The best run is the figure to quote: on a shared 2-core machine other processes inflate the
median, and OpenMP threads that wait for a busy core inflate it a lot (see the load average printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from vconv.audio.logmel import LogMel
from vconv.config import FeatureConfig
from vconv.vocoders import GriffinLim


def voiced_signal(seconds: float, sr: int = 16000, f0: float = 140.0) -> np.ndarray:
    """A speech-like signal (the same as the tests' ``voiced_signal``): harmonics of a wobbling f0, syllable-rate envelope."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 * (1 - np.cos(2 * np.pi * 4 * t)) + 0.05)
    wav = wav + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return (0.5 * wav / np.max(np.abs(wav))).astype(np.float32)


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up: allocator, FFT plans
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--n-iter", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = FeatureConfig()
    vocoder = GriffinLim(cfg, n_iter=args.n_iter)
    log_mel = LogMel(cfg)(torch.from_numpy(voiced_signal(args.seconds))[None])
    magnitude = vocoder.logmel.to_linear(log_mel)

    rows = {
        "total (forward)": timed(lambda: vocoder(log_mel), args.repeat),
        "mel -> linear (NNLS)": timed(lambda: vocoder.logmel.to_linear(log_mel), args.repeat),
        f"phase retrieval ({args.n_iter} it)": timed(lambda: vocoder.from_magnitude(magnitude), args.repeat),
    }
    print(
        f"GriffinLim n_iter={args.n_iter} alpha={vocoder.alpha}, {args.seconds:g} s of audio "
        f"({log_mel.shape[-1]} frames), {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'part':28s} {'best s':>8s} {'median s':>9s} {'RTF best':>9s} {'RTF median':>11s}")
    for name, times in rows.items():
        best, median = min(times), statistics.median(times)
        print(f"{name:28s} {best:8.3f} {median:9.3f} {best / args.seconds:9.4f} {median / args.seconds:11.4f}")


if __name__ == "__main__":
    main()
