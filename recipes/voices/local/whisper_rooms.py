#!/usr/bin/env python3
"""Teach the content front-end (Whisper tiny.en's encoder, carried in the bundle) to hear rooms.

The words a conversion loses in a room are lost on the content path: the content encoder reading the Whisper states
of the clean recording keeps them (docs/ROOMS.md, "What a room costs, part by part"). Teaching the content encoder
alone did not bring them back (its input had already lost them); this teaches the encoder in front of it. The
student is a copy of the bundle's Whisper encoder; for a training utterance in a simulated room (RT60 0.2-0.8 s, SNR
10-30 dB, a room per utterance, seeded) and cleaned as inference cleans it (``--enhance auto``), it learns to give
the states from which the bundle's frozen content encoder computes what it computes for the clean recording from the
frozen original's; on the clean recording, the same (so clean speech keeps its codes). Everything after the
front-end (content encoder, quantiser, decoder, vocoder) is the bundle's, unchanged.

    python recipes/voices/local/whisper_rooms.py --exp EXP --out OUT [--from BUNDLE] [--steps 1000]

Stages, each skipped when its output exists (so a rerun continues): the room versions of ``--utterances`` training
utterances of ``EXP/data/train.jsonl`` (``EXP/whisper_rooms/audio``, ~8 min on two cores; remove the folder before a
run with another ``--seed`` or ``--utterances``), the training (``EXP/whisper_rooms/student.pt`` every 250 steps,
resumed from there with the same ``--steps``; 1.2 s a step on two cores), then OUT: the
bundle with the student's weights (float16) and its sha256. Measured with the defaults on the held-out voices and not
shipped: the words it brought back lie within the judge's spread (recipes/voices/MODEL_HISTORY.md, "The content
front-end taught the room"); a content encoder retrained on the student's states is the step it leaves open.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import vconv
from vconv.audio import enhance
from vconv.audio.io import load
from vconv.audio.pretrained import WHISPER_FILE, save_whisper_encoder
from vconv.audio.rooms import draw_room, in_room, parse_room
from vconv.fileio import atomic_path, write_text_atomic
from vconv.frontends.whisper import align_to_mel_frames

SAMPLE_RATE = 16000
CROP = 2 * SAMPLE_RATE  # two-second crops: the attention sees a phrase, a step stays about a second
BATCH = 12
VALID_FILES = 80  # the first files of the shuffled list: the distance printed every 250 steps
WARMUP_STEPS = 100


def room_versions(exp: Path, out: Path, count: int, seed: int) -> None:
    """``count`` training utterances (at least 1 s) and each one in its room, cleaned as inference cleans it,
    as ``out/<id>.npz`` (clean, room: float16 [T])."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [json.loads(line) for line in (exp / "data" / "train.jsonl").read_text().splitlines() if line.strip()]
    rt60, snr = parse_room("mixed")
    for i in np.random.default_rng(seed).permutation(len(lines))[:count]:
        item = lines[i]
        dest = out / (item["id"].replace("/", "__") + ".npz")
        if dest.exists():
            continue
        clean, _ = load(str((exp / "data" / item["path"]).resolve()), SAMPLE_RATE)
        if clean.size < SAMPLE_RATE:
            continue
        room = in_room(clean, SAMPLE_RATE, draw_room(seed, item["id"], rt60, snr))
        cleaned = enhance.enhance(room, SAMPLE_RATE, only_in_a_room=True)
        with atomic_path(dest) as tmp, open(tmp, "wb") as f:  # a killed run leaves no half file to skip as done
            np.savez(f, clean=clean.astype(np.float16), room=cleaned.astype(np.float16))


class Distillation:
    """The frozen bundle (teacher encoder, content encoder) and the student encoder, with the distances between them."""

    def __init__(self, bundle: str) -> None:
        self.converter = vconv.load(bundle)
        part = self.converter.frontend.content
        self.log_mel = part.log_mel
        self.layer = part.layer
        self.model = self.converter.model.eval().requires_grad_(False)
        self.teacher = part.encoder.float().eval().requires_grad_(False)
        self.student = copy.deepcopy(self.teacher).train().requires_grad_(True)
        self.hop = self.converter.features.hop_length
        self.mel_rate = self.converter.features.sample_rate / self.hop

    def content(self, encoder: torch.nn.Module, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, T]`` -> the content encoder's states ``[B, code_dim, F]`` (before the quantiser) of ``encoder``'s
        Whisper states, aligned to the mel frames as the front-end aligns them."""
        states = encoder(self.log_mel(wav), self.layer).transpose(1, 2)
        return self.model._content_states(align_to_mel_frames(states, 1 + wav.shape[-1] // self.hop, self.mel_rate))

    def loss(self, clean: torch.Tensor, room: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared distance of the student's content states of ``room`` and of ``clean`` ``[B, T]`` from the
        teacher's of ``clean``: (room, clean)."""
        with torch.no_grad():
            target = self.content(self.teacher, clean)
        both = self.content(self.student, torch.cat([room, clean]))
        n = clean.shape[0]
        return ((both[:n] - target) ** 2).mean(), ((both[n:] - target) ** 2).mean()


def read_pairs(files: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for f in files:
        z = np.load(f)
        pairs.append((z["clean"].astype(np.float32), z["room"].astype(np.float32)))
    return pairs


def crops(pairs: list[tuple[np.ndarray, np.ndarray]], step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BATCH aligned crops of clean and room audio ``[BATCH, CROP]`` each, a pure function of ``step`` (utterances
    shorter than CROP are drawn and passed over, so the batches stay those of the measured run; at least one must be
    long enough, which :func:`train` checks once)."""
    rng = np.random.default_rng(1000 + step)
    clean, room = [], []
    while len(clean) < BATCH:
        c, r = pairs[rng.integers(len(pairs))]
        if c.size < CROP:
            continue
        start = rng.integers(0, c.size - CROP + 1)
        clean.append(c[start:start + CROP])
        room.append(r[start:start + CROP])
    return torch.from_numpy(np.stack(clean)), torch.from_numpy(np.stack(room))


@torch.no_grad()
def validate(d: Distillation, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Whole held-back utterances: the student's room and clean distances, and the teacher's room distance."""
    d.student.eval()
    rows = []
    for c, r in pairs:
        clean, room = torch.from_numpy(c)[None], torch.from_numpy(r)[None]
        target = d.content(d.teacher, clean)
        rows.append([((d.content(enc, x) - target) ** 2).mean().item()
                     for enc, x in ((d.student, room), (d.student, clean), (d.teacher, room))])
    d.student.train()
    room, clean, before = np.mean(rows, axis=0)
    return {"room": float(room), "clean": float(clean), "room_before": float(before)}


def train(d: Distillation, work: Path, steps: int, lr: float) -> None:
    """Adam with WARMUP_STEPS warm-up steps and a cosine decay; the student saved (and resumable) every 250 steps."""
    files = sorted((work / "audio").glob("*.npz"))
    if len(files) <= VALID_FILES:
        raise SystemExit(f"whisper_rooms: {len(files)} room recordings, need more than the {VALID_FILES} held back")
    np.random.default_rng(0).shuffle(files)
    valid, pairs = read_pairs(files[:VALID_FILES]), read_pairs(files[VALID_FILES:])
    if not any(c.size >= CROP for c, _ in pairs):
        raise SystemExit(f"whisper_rooms: no training utterance is {CROP / SAMPLE_RATE:g} s long")
    checkpoint, start = work / "student.pt", 0
    opt = torch.optim.Adam(d.student.parameters(), lr=lr)
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=True)
        d.student.load_state_dict(saved["student"])
        opt.load_state_dict(saved["opt"])
        start = int(saved["step"])
    log = (work / "log.jsonl").open("a")  # a resumed run repeats the rows after its last checkpoint
    began = time.time()
    for step in range(start + 1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = float(lr * min(1.0, step / WARMUP_STEPS) * 0.5 * (1 + np.cos(np.pi * step / steps)))
        room_loss, clean_loss = d.loss(*crops(pairs, step))
        opt.zero_grad()
        (room_loss + clean_loss).backward()
        torch.nn.utils.clip_grad_norm_(d.student.parameters(), 1.0)
        opt.step()
        row: dict[str, object] = {"step": step, "room": room_loss.item(), "clean": clean_loss.item(), "s": round(time.time() - began)}
        if step % 250 == 0 or step == steps:
            row["valid"] = validate(d, valid)
            with atomic_path(checkpoint) as tmp:
                torch.save({"student": d.student.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
        if step % 25 == 0 or "valid" in row:
            print(json.dumps(row), file=log, flush=True)
    log.close()


def write_bundle(source: Path, student: torch.nn.Module, out: Path) -> None:
    """OUT: a copy of the ``source`` bundle carrying the student's Whisper encoder (float16) and its sha256, named
    after OUT's folder and without the source's model card (it does not describe this bundle)."""
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("MODEL_CARD.md"))
    save_whisper_encoder(student, out / WHISPER_FILE, torch.float16)
    config = json.loads((out / "config.json").read_text())
    config["sha256"][WHISPER_FILE] = hashlib.sha256((out / WHISPER_FILE).read_bytes()).hexdigest()
    config["name"] = out.name
    write_text_atomic(out / "config.json", json.dumps(config, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", type=Path, required=True, help="the recipe's EXP (its data/train.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="the bundle to write (must not exist)")
    parser.add_argument("--from", dest="source", default="vconv-voices-small", help="the bundle to start from")
    parser.add_argument("--utterances", type=int, default=2400)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--seed", type=int, default=1, help="the rooms' seed (the held-out room set uses 0)")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    work = args.exp / "whisper_rooms"
    room_versions(args.exp, work / "audio", args.utterances, args.seed)
    d = Distillation(args.source)
    train(d, work, args.steps, args.lr)  # leaves d.student as its last checkpoint
    write_bundle(Path(d.converter.info.path), d.student, args.out)
    print(f"bundle: {args.out}")


if __name__ == "__main__":
    main()
