"""Training throughput: optimiser steps per second at batch 16 x 128 frames, fp32 and bf16 autocast.

Usage: python benchmarks/bench_train.py [--channels 256] [--threads 2] [--steps 20]

Random normalised mels stand in for data (loading is not what is measured); the full training step is
timed: forward, L1 + VQ + adversary losses, backward, clipping, AdamW. The first 3 steps are warm-up.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from vconv.config import ModelConfig
from vconv.models import build_model


def steps_per_second(cfg: ModelConfig, bf16: bool, steps: int, batch: int, frames: int) -> float:
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    mel = torch.randn(batch, cfg.n_mels, frames)
    ref = torch.randn(batch, cfg.n_mels, frames)
    labels = torch.randint(cfg.n_speakers, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(mel, ref, adversary_weight=0.1)
            loss = F.l1_loss(out.mel.float(), mel) + out.quantizer.loss.float()
            loss = loss + F.cross_entropy(out.speaker_logits.float(), labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ModelConfig(content_encoder={"kind": "conv", "channels": args.channels}, decoder={"kind": "adain", "channels": args.channels},
                      speaker_encoder={"kind": "conv", "channels": args.channels}, n_speakers=20)
    n_params = sum(p.numel() for p in build_model(cfg).parameters())
    print(f"model: {args.channels} channels, {n_params / 1e6:.1f}M parameters; batch {args.batch} x {args.frames} frames; {args.threads} threads")
    results = {name: steps_per_second(cfg, bf16, args.steps, args.batch, args.frames) for name, bf16 in (("fp32", False), ("bf16", True))}
    for name, speed in results.items():
        print(f"{name}: {speed:.2f} steps/s")
    print(f"bf16 / fp32 = {results['bf16'] / results['fp32']:.2f}x")


if __name__ == "__main__":
    main()
