"""Vocoder quality on held-out voices: original vs Griffin-Lim vs the neural vocoder, by independent judges.

Usage: python benchmarks/bench_vocoder_quality.py --manifest TEST.jsonl --vocoder-dir RUN/vocoder [--n 40]
       python benchmarks/bench_vocoder_quality.py --manifest TEST.jsonl --checkpoint RUN/checkpoints/latest.pt

Each utterance's log-mel (the model's FeatureConfig) is vocoded by Griffin-Lim and by the neural vocoder,
the latter twice: as inference runs it (with its phase-consistency and mel-envelope matching passes) and
as the network alone (``neural, network only``: no post-processing, the ablation). The table gives
Whisper CER (against the transcript, or the original's own ASR output when there is none), Resemblyzer
cosine to the *original* recording, and DNSMOS overall, per system. Needs the eval extra. The
utterances are a seeded sample spread over the manifest's speakers.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from vconv.audio.io import load
from vconv.audio.logmel import LogMel
from vconv.config import FeatureConfig
from vconv.data.manifest import read_manifest
from vconv.evaluation import metrics as M
from vconv.evaluation.judges import AsrJudge, QualityJudge, SpeakerJudge
from vconv.training.vocoder_trainer import export_checkpoint
from vconv.vocoders import get_vocoder
from vconv.vocoders.vocos import load_vocoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--vocoder-dir", type=Path, help="folder with vocoder.safetensors + vocoder.json")
    source.add_argument("--checkpoint", type=Path, help="a train-vocoder checkpoint (judge a run in progress)")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--envelope-passes", type=int, help="override the vocoder's envelope_passes (default: its config's)")
    parser.add_argument("--consistency-passes", type=int, help="override the vocoder's consistency_passes (default: its config's)")
    args = parser.parse_args()
    cfg = FeatureConfig()
    utts = read_manifest(args.manifest)
    random.Random(args.seed).shuffle(utts)
    by_speaker: dict[str, list] = {}
    for u in utts:
        by_speaker.setdefault(u.speaker, []).append(u)
    per = max(1, args.n // len(by_speaker))
    chosen = [u for group in by_speaker.values() for u in group[:per]]
    if args.checkpoint:
        tmp = tempfile.TemporaryDirectory()
        args.vocoder_dir = export_checkpoint(args.checkpoint, tmp.name)
    network_only, neural = load_vocoder(args.vocoder_dir), load_vocoder(args.vocoder_dir)
    network_only.config = network_only.config.without_post_processing()
    if args.envelope_passes is not None:
        neural.config.envelope_passes = args.envelope_passes
    if args.consistency_passes is not None:
        neural.config.consistency_passes = args.consistency_passes
    c = neural.config
    print(f"neural: consistency_passes {c.consistency_passes} (momentum {c.consistency_momentum}), "
          f"envelope_passes {c.envelope_passes} (momentum {c.envelope_momentum})")
    systems = {"griffin-lim": get_vocoder("griffinlim", cfg), "neural, network only": network_only, "neural": neural}
    extractor = LogMel(cfg)
    spk, asr, mos = SpeakerJudge(), AsrJudge(), QualityJudge()
    scores = {name: {"edits": 0, "chars": 0, "sim": [], "mos": []} for name in ("original", *systems)}
    for u in chosen:
        wav, sr = load(u.path, cfg.sample_rate)
        reference = u.text or asr.transcribe_wav(wav, sr)
        with torch.no_grad():
            mel = extractor(torch.from_numpy(wav))[None]
        outputs = {"original": wav}
        for name, vocoder in systems.items():
            outputs[name] = vocoder(mel)[0].numpy()
        original_embedding = spk.embed_wav(wav, sr)
        for name, out in outputs.items():
            rates = M.error_rates(reference, asr.transcribe_wav(out, sr))
            scores[name]["edits"] += rates.char_errors
            scores[name]["chars"] += rates.chars
            scores[name]["sim"].append(float(np.dot(original_embedding, spk.embed_wav(out, sr))))
            scores[name]["mos"].append(mos.score_wav(np.clip(out, -1, 1), sr).ovrl)
    print(f"{len(chosen)} utterances of {len(by_speaker)} held-out speakers ({', '.join(sorted(by_speaker))})")
    print("| system | CER | Resemblyzer cos to original | DNSMOS OVRL |")
    print("|---|---|---|---|")
    for name, s in scores.items():
        print(f"| {name} | {s['edits'] / max(1, s['chars']):.3f} | {np.mean(s['sim']):.3f} | {np.mean(s['mos']):.2f} |")
    # the same utterances go through both vocoders, so the paired difference is the fair comparison
    for name in ("neural, network only", "neural"):
        for key, label in (("sim", "Resemblyzer"), ("mos", "DNSMOS")):
            diff = np.array(scores[name][key]) - np.array(scores["griffin-lim"][key])
            half = 1.96 * diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else float("nan")
            print(f"{name} - griffin-lim, {label}: {diff.mean():+.3f} ± {half:.3f} (95 % CI, paired over {diff.size} utterances)")


if __name__ == "__main__":
    main()
