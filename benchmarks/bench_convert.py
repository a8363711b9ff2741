"""Conversion speed and memory: end-to-end real-time factor per vocoder, model load time, bundle size, peak RSS.

Usage: python benchmarks/bench_convert.py [--model NAME_OR_DIR] [--threads 2] [--long-minutes 10] [--json OUT]

End to end = load the wav → log-mel → model → vocoder → write the wav, timed over 10 s of audio (best
of 3 after a warm-up), per vocoder and for ``vconv convert --fast`` (the neural vocoder without its
post-processing passes). Without --model it uses the shipped bundle, or, if none is installed, a randomly
initialised model of the default (shipped) size: speed does not depend on the weights' values.
Load time is the best of 3 ``vconv.load`` calls (bundle read, sha256 checks, front-ends built); bundle
size sums the files in the bundle folder. Peak memory is measured in a fresh process (ru_maxrss)
converting a --long-minutes source. The pretrained front-ends issue set the bars RTF <= 0.03, load <= 3 s
and bundle <= 60 MB (decimal). ``--json`` also writes the figures (``rtf`` per vocoder, ``default_vocoder``:
the one ``vconv convert`` uses for this bundle, ``load_s``, ``bundle_mb``, ``peak_rss_mb``, ``threads``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vconv.audio import io as audio
from vconv.inference.converter import load
from vconv.inference.batch import convert_paths
from vconv.errors import VconvError
from vconv.vocoders import VOCODERS

ROOT = Path(__file__).resolve().parents[1]  # the repository: tests/data/corpus


def model_path(name: str | None, tmp: Path) -> str:
    if name:
        return name
    try:
        from vconv.inference.registry import resolve_bundle

        return str(resolve_bundle(None))
    except VconvError:
        from vconv.bundles import save_bundle
        from vconv.config import FeatureConfig, ModelConfig
        from vconv.audio.frontend import FeatureStats
        from vconv.models import build_model

        cfg = ModelConfig()
        stats = FeatureStats(torch.full((80,), -4.0), torch.full((80,), 2.0), 1)
        return str(save_bundle(tmp / "random-default", build_model(cfg), cfg, FeatureConfig(), stats))


def source_audio(seconds: float, sr: int = 16000) -> np.ndarray:
    """Fixture speech tiled to ``seconds``."""
    clips = [audio.load(p, sr)[0] for p in sorted((ROOT / "tests/data/corpus").glob("*/*.wav"))]
    joined = np.concatenate(clips)
    return np.tile(joined, int(np.ceil(seconds * sr / joined.size)))[: int(seconds * sr)]


def peak_rss_child(model: str, minutes: float, tmp: Path) -> None:
    """Run in a fresh process: convert a long file, print peak RSS in MB."""
    src = tmp / "long.wav"
    audio.save(src, source_audio(minutes * 60), 16000, force=True)
    ref = sorted((ROOT / "tests/data/corpus/flite_slt").glob("*.wav"))[0]
    convert_paths(load(model), src, [ref], tmp / "long_out.wav", force=True, progress=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    parser.add_argument("--child-peak", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_peak:
        peak_rss_child(args.child_peak[0], args.long_minutes, Path(args.child_peak[1]))
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        model = model_path(args.model, tmp)
        src = tmp / "src10.wav"
        audio.save(src, source_audio(10.0), 16000)
        ref = sorted((ROOT / "tests/data/corpus/flite_slt").glob("*.wav"))[0]
        print(f"model: {model}; {args.threads} threads")
        from vconv.inference.registry import resolve_bundle

        bundle = resolve_bundle(model)
        size = sum(f.stat().st_size for f in bundle.iterdir() if f.is_file() and f.suffix != ".md")
        print(f"bundle size (weights and configs): {size / 1e6:.1f} MB")
        loads = []
        for _ in range(3):
            start = time.perf_counter()
            load(model)
            loads.append(time.perf_counter() - start)
        print(f"model load: {min(loads):.2f} s (best of 3)")
        figures = {"model": str(bundle), "threads": args.threads, "bundle_mb": round(size / 1e6, 1),
                   "load_s": round(min(loads), 3), "default_vocoder": load(model).vocoder.name, "rtf": {}}
        for name in (*VOCODERS, "vocos --fast"):
            try:
                converter = load(model, vocoder=name.split()[0], fast=name.endswith("--fast"))
            except VconvError as exc:
                print(f"{name}: skipped ({exc})")
                continue
            convert_paths(converter, src, [ref], tmp / "warm.wav", force=True, progress=False)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                convert_paths(converter, src, [ref], tmp / "out.wav", force=True, progress=False)
                times.append(time.perf_counter() - start)
            figures["rtf"][name] = round(min(times) / 10, 5)
            print(f"vocoder {name:12s}: 10 s of audio in {min(times):.3f} s -> RTF {min(times) / 10:.4f} ({10 / min(times):.0f}x real time)")
        proc = subprocess.run(
            [sys.executable, __file__, "--threads", str(args.threads), "--long-minutes", str(args.long_minutes), "--child-peak", model, str(tmp)],
            capture_output=True, text=True, check=True,
        )
        peak = float(proc.stdout.strip().splitlines()[-1])
        print(f"peak RSS converting a {args.long_minutes:g}-minute source: {peak:.0f} MB")
        figures.update(peak_rss_mb=round(peak), long_minutes=args.long_minutes)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
