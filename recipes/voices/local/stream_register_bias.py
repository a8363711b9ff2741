#!/usr/bin/env python3
"""How far a stream's running pitch register stands from the whole utterance's after n voiced frames.

A stream that is not told its speaker's register learns it from the voiced frames it has heard so far. Early in an
utterance that estimate is biased, not only noisy: speech declines in pitch (the first syllables stand above the
utterance's mean), and a spread measured over a few syllables is smaller than the whole utterance's. This prints,
for training utterances, the mean of ``running mean - whole mean`` (nats) and of ``running spread / whole spread``
after n voiced frames: the tables a correction of the running estimate was measured with (docs/STREAMING.md,
"The stream's early register"; not kept, revivable from commit b051068).

    python recipes/voices/local/stream_register_bias.py --manifest EXP/data/train.jsonl [--utterances 1500]

Read from the training split only (the held-out voices judge the correction). The pitch is the model's own pitch
part (the shipped bundle's YIN), as the stream tracks it.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

import vconv

COUNTS = (8, 16, 24, 32, 48, 64, 96, 128, 192)
LEAST_VOICED = 64  # utterances with fewer voiced frames say little about a register's drift


def running_bias(manifest: Path, utterances: int, seed: int = 0) -> dict[int, tuple[float, float, int]]:
    """``{n: (mean level bias in nats, mean spread ratio, utterances)}`` over up to ``utterances`` of ``manifest``."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    converter = vconv.load()
    level: dict[int, list[float]] = {n: [] for n in COUNTS}
    spread: dict[int, list[float]] = {n: [] for n in COUNTS}
    for row in rows[:utterances]:
        wav = converter.prepare_audio(str((manifest.parent / row["path"]).resolve()), None)
        pitch = converter.frontend.pitch_input(wav)[0]  # [3, F]: log-F0, voiced, periodicity
        voiced = pitch[0][pitch[1] > 0.5].double().numpy()
        if voiced.size < LEAST_VOICED:
            continue
        mean, std = voiced.mean(), voiced.std()
        for n in COUNTS:
            if n < voiced.size:
                level[n].append(voiced[:n].mean() - mean)
                spread[n].append(voiced[:n].std() / std)
    return {n: (float(np.mean(level[n])), float(np.mean(spread[n])), len(level[n])) for n in COUNTS if level[n]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True, help="the training split (EXP/data/train.jsonl)")
    parser.add_argument("--utterances", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = running_bias(args.manifest, args.utterances)
    print("| voiced frames | level bias (nats) | spread ratio | utterances |\n|---|---|---|---|")
    for n, (bias, ratio, count) in table.items():
        print(f"| {n} | {bias:+.3f} | {ratio:.3f} | {count} |")


if __name__ == "__main__":
    main()
