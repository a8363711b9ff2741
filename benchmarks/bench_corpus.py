"""Corpus throughput: audio hours converted (or embedded) per wall hour with 1 and 2 local workers and 2 Ray actors.

Usage: .venv/bin/python benchmarks/bench_corpus.py [--items 360] [--engines local1 local2 ray2] [--model NAME] [--hogs N]
       [--task convert|embed]

A manifest of ``--items`` utterances (the example source, each a distinct file so no output is reused) is converted
into a fresh folder by each engine in turn (one thread per worker), timed whole (model loads included, as a user
waits for them). Prints hours of audio per wall hour, the 2-worker scaling ratio against one worker (target >= 1.7 on
two idle cores) and Ray's overhead against local at the same worker count (target <= 10 %). Run it on an idle machine:
every worker needs a core of its own. ``--hogs N`` runs every engine beside N competing CPU-bound processes
(``loadgen.py``), the corpus on a busy machine. ``--task embed`` times ``vconv embed MANIFEST -o OUT/`` instead (the
speaker encoder alone: many more hours per wall hour, so give it more ``--items``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from vconv.corpus import convert_corpus, embed_corpus
from vconv.inference.registry import resolve_bundle
from vconv.inference.settings import ConversionSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import hogs, load_name  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_manifest(folder: Path, items: int) -> Path:
    """``items`` distinct files (the example source with a little seeded noise each) in a manifest of 6 speakers."""
    source, sr = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(items):
        path = folder / "wav" / f"s{i % 6}" / f"u{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, source + 1e-4 * rng.standard_normal(source.size).astype(np.float32), sr)
        lines.append({"id": f"s{i % 6}/u{i}", "path": str(path), "speaker": f"s{i % 6}", "duration": source.size / sr})
    manifest = folder / "in.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def run(engine: str, manifest: Path, out: Path, bundle: Path, task: str) -> tuple[float, float]:
    """``(wall seconds, audio hours)`` of one engine ("local1", "local2", "ray2") doing ``task``."""
    kind, workers = engine.rstrip("0123456789"), int(engine[len(engine.rstrip("0123456789")):])
    started = time.perf_counter()
    if task == "embed":
        report = embed_corpus(manifest, out, bundle=bundle, engine=kind, workers=workers, threads=1, progress=False)
    else:
        report = convert_corpus(manifest, out, bundle=bundle, settings=ConversionSettings(),
                                target=[str(EXAMPLES / "target.wav")], engine=kind, workers=workers, threads=1, progress=False)
    wall = time.perf_counter() - started
    assert report.count("failed") == 0, [r.error for r in report.results if r.error][:3]
    return wall, report.audio_hours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=360)
    parser.add_argument("--engines", nargs="+", default=["local1", "local2", "ray2"])
    parser.add_argument("--model", default=None)
    parser.add_argument("--hogs", type=int, default=0, help="competing CPU-bound processes while the engines run")
    parser.add_argument("--task", choices=("convert", "embed"), default="convert")
    args = parser.parse_args()
    bundle = resolve_bundle(args.model)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_manifest(Path(tmp), args.items)
        print(f"{args.task}: {args.items} utterances; load average {os.getloadavg()[0]:.2f}; {load_name(args.hogs)}")
        print("| engine | wall s | audio h | audio h per wall h |\n|---|---|---|---|")
        with hogs(args.hogs):
            for engine in args.engines:
                if engine.startswith("ray"):  # started only now: its idle processes would slow the local engines
                    import ray

                    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
                wall, hours = run(engine, manifest, Path(tmp) / f"out_{engine}", bundle, args.task)
                rates[engine] = hours * 3600 / wall
                print(f"| {engine} | {wall:.1f} | {hours:.3f} | {rates[engine]:.1f} |", flush=True)
    if "local1" in rates and "local2" in rates:
        print(f"2 local workers / 1: {rates['local2'] / rates['local1']:.2f}x (target >= 1.7)")
    if "local2" in rates and "ray2" in rates:
        print(f"Ray overhead at 2 workers: {100 * (1 - rates['ray2'] / rates['local2']):.1f} % (target <= 10 %)")


if __name__ == "__main__":
    main()
