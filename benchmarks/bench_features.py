"""Feature-extraction throughput: `vconv extract` (1 and 2 workers) vs librosa's melspectrogram.

Usage: python benchmarks/bench_features.py [--repeat N]

The fixture corpus is copied N times (default 8, ~7 min of audio) so process start-up is amortised.
Prints seconds of audio per wall-clock second for each and the ratio vconv / librosa, all measured in
the same run on the same files (librosa runs single-process; its numba/FFT warm-up is excluded).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from vconv.config import FeatureConfig
from vconv.data.extract import extract_features
from vconv.data.manifest import read_manifest
from vconv.data.prepare import prepare_corpus

ROOT = Path(__file__).resolve().parents[1]  # the repository: tests/data/corpus


def librosa_throughput(paths: list[str], cfg: FeatureConfig) -> float:
    def one(path: str) -> float:
        wav, sr = sf.read(path, dtype="float32")
        if sr != cfg.sample_rate:
            wav = librosa.resample(wav, orig_sr=sr, target_sr=cfg.sample_rate, res_type="soxr_hq")
        mel = librosa.feature.melspectrogram(
            y=wav, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
            n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, power=1.0, pad_mode="constant",
        )
        np.log(np.maximum(mel, cfg.log_floor))
        return wav.size / cfg.sample_rate

    one(paths[0])  # warm-up (FFT plans, numba caches)
    start = time.perf_counter()
    seconds = sum(one(p) for p in paths)
    return seconds / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=8, help="copies of the fixture corpus")
    args = parser.parse_args()
    cfg = FeatureConfig()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        for i in range(args.repeat):
            for spk in sorted((ROOT / "tests/data/corpus").iterdir()):
                if spk.is_dir():
                    shutil.copytree(spk, corpus / f"{spk.name}_{i}")
        prepare_corpus(corpus, Path(tmp) / "m")
        manifest = Path(tmp) / "m" / "all.jsonl"
        paths = [u.path for u in read_manifest(manifest)]
        audio_seconds = sum(u.duration for u in read_manifest(manifest))
        print(f"{len(paths)} files, {audio_seconds / 60:.1f} min of audio")
        results = {"librosa (1 process)": librosa_throughput(paths, cfg)}
        for workers in (1, 2):
            out = Path(tmp) / f"feats{workers}"
            start = time.perf_counter()
            report = extract_features(manifest, out, cfg, workers=workers, progress=False, write_stats=False)
            wall = time.perf_counter() - start
            assert report.written == len(paths)
            results[f"vconv extract -j {workers}"] = audio_seconds / wall
    base = results["librosa (1 process)"]
    print(f"{'method':24s} {'audio s / wall s':>16s} {'vs librosa':>10s}")
    for name, speed in results.items():
        print(f"{name:24s} {speed:16.0f} {speed / base:9.2f}x")


if __name__ == "__main__":
    main()
