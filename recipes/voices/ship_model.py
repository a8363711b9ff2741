"""Turn a finished training run into the shipped bundle: fp16 weights, config, MODEL_CARD.md.

Usage::

    python recipes/voices/ship_model.py RUN_DIR [--name vconv-voices-small] [--out pretrained] \
        [--eval EVAL_DIR] [--vocoder VOCODER_DIR] [--notes NOTES.md] [--wall-minutes M] [--force]

Reads ``RUN_DIR/model`` (the bundle the trainer exports), ``RUN_DIR/log.jsonl`` (the curves) and
``RUN_DIR/config.yaml``; with ``--eval`` it copies the evaluation summary (``summary.md`` written by
``vconv evaluate``) into the card, with ``--vocoder`` it attaches a neural vocoder (``RUN/vocoder`` of
``vconv train-vocoder``), with ``--notes`` it appends a markdown file (history, measurements). Weights
are stored as float16: half the size, and conversion output differs from fp32 by far less than the
model's own error.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from vconv.inference.bundle import load_bundle, save_bundle  # noqa: E402
from vconv.config import load_yaml  # noqa: E402
from vconv.inference.bundle import attach_vocoder  # noqa: E402
from vconv.vocoders.vocos import load_vocoder, read_vocoder_meta, save_vocoder  # noqa: E402


def curves_table(log_path: Path, every: int) -> str:
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    valid = {r["step"]: r for r in rows if r["split"] == "valid"}
    train = [r for r in rows if r["split"] == "train" and (r["step"] % every == 0 or r["step"] in valid)]
    lines = [
        "| step | train L1 | VQ loss | perplexity | adversary acc (train batch) | valid L1 | valid perplexity | valid adv acc | valid adv balanced acc | speaker separation |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in train:
        v = valid.get(r["step"], {})
        fmt = lambda d, k: f"{d[k]:.3f}" if k in d else ""  # noqa: E731
        lines.append(
            f"| {r['step']} | {r['recon']:.3f} | {r['vq']:.4f} | {r['perplexity']:.0f} | {fmt(r, 'adv_acc')} | "
            f"{fmt(v, 'recon')} | {fmt(v, 'perplexity')} | {fmt(v, 'adv_acc')} | {fmt(v, 'adv_bal_acc')} | {fmt(v, 'spk_separation')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", default="vconv-voices-small")
    parser.add_argument("--out", type=Path, default=ROOT / "pretrained")
    parser.add_argument("--eval", type=Path, help="folder written by `vconv evaluate` (summary.md)")
    parser.add_argument("--vocoder", type=Path, help="neural vocoder folder to attach (vocoder.safetensors + vocoder.json)")
    parser.add_argument("--notes", type=Path, help="markdown appended to the card (history, measurements)")
    parser.add_argument("--wall-minutes", type=float, help="wall time of the training run")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    if args.eval and not (args.eval / "summary.md").is_file():
        parser.error(f"--eval: no summary.md from `vconv evaluate` in {args.eval}")
    if args.notes and not args.notes.is_file():
        parser.error(f"--notes: no such file {args.notes}")
    if args.vocoder and not (args.vocoder / "vocoder.json").is_file():
        parser.error(f"--vocoder: no vocoder.json in {args.vocoder}")

    model, info = load_bundle(args.run_dir / "model")
    config = load_yaml(args.run_dir / "config.yaml")
    steps = info.extra.get("trained_steps")
    dest = save_bundle(
        args.out / args.name, model, info.model_config, info.feature_config, info.feature_stats,
        speakers=info.speakers, dtype=torch.float16, extra={"trained_steps": steps, "name": args.name}, force=args.force,
    )
    vocoder_line = "Griffin-Lim (32 momentum iterations); no neural vocoder attached."
    vocoder_limit = "Griffin-Lim phase reconstruction adds a metallic, phasey quality."
    if args.vocoder:
        vocoder = load_vocoder(args.vocoder)
        trained = {k: v for k, v in read_vocoder_meta(args.vocoder).items() if k == "trained_steps"}
        with tempfile.TemporaryDirectory() as tmp:  # a float16 copy is what ships
            attach_vocoder(dest, save_vocoder(tmp, vocoder, extra=trained, dtype=torch.float16))
        vocoder_mb = (dest / "vocoder.safetensors").stat().st_size / 1e6
        vocoder_limit = ("The neural vocoder was trained without a GAN on the same small corpus; on converted mels it "
                         "cannot restore intonation the model did not produce (F0 correlation with the source stays low).")
        vocoder_line = (f"Vocos-style neural vocoder ({sum(p.numel() for p in vocoder.parameters()) / 1e6:.2f} M parameters, "
                        f"float16, {vocoder_mb:.1f} MB; at inference {vocoder.config.consistency_passes} phase-consistency "
                        f"passes and {vocoder.config.envelope_passes} passes of mel-envelope matching), used by default; "
                        f"`--vocoder griffinlim` is the fallback.")
    n_params = sum(p.numel() for p in model.parameters())
    size_mb = (dest / "model.safetensors").stat().st_size / 1e6
    evaluation = (args.eval / "summary.md").read_text() if args.eval else "Not evaluated yet: run `vconv evaluate` (see recipes/voices/README.md)."
    held_out = (ROOT / "recipes/voices/held_out.txt").read_text().split()
    card = f"""# {args.name}

One-shot any-to-any voice conversion model of vconv (IN + VQ content encoder, speaker encoder with
AdaIN decoder, adversarial speaker classifier), trained on CPU with `recipes/voices`.

- **Parameters**: {n_params / 1e6:.1f} M; weights float16, {size_mb:.1f} MB (`model.safetensors`, sha256 in `config.json`).
- **Features**: {info.feature_config.sample_rate} Hz, n_fft {info.feature_config.n_fft}, hop {info.feature_config.hop_length}, {info.feature_config.n_mels} mels (fmax {info.feature_config.fmax}).
- **Vocoder**: {vocoder_line}
- **Training**: {steps} steps, batch {config['train']['batch_size']} × {config['train']['segment_frames']} frames, AdamW lr {config['train']['lr']},
  bf16 autocast = {config['train']['bf16']}, timbre perturbation of the content path = {config['train'].get('perturb_content')},
  adversary weight {config['train']['adversary_weight']} ramped over {config['train']['adversary_ramp_steps']} steps;
  {f"{args.wall_minutes:.0f} min wall time on 2 shared CPU cores" if args.wall_minutes else ""}.
  Config: `recipes/voices/conf/small.yaml`.

## Data

`recipes/voices` (its README has the counts per speaker and source): real voice acting from
*Flight of the Amazon Queen* (English; Joe King and his conversation partners, band-limited to
5.5 kHz) and *Fish Fillets NG* (Czech and Dutch), synthetic voices (flite, festival in five languages,
espeak-ng) and neural ones (Piper, Kokoro). Training speakers ({len(info.speakers)}):
{", ".join(info.speakers)}.

**Held out (never trained on)**: {", ".join(held_out)}; validation speakers are also excluded from training.

## Training curves (from `log.jsonl`)

Adversary accuracy is measured on content codes of four fixed training batches; balanced accuracy
(mean per-speaker recall) is not fooled by always naming the biggest speaker (chance = 1/{len(info.speakers)}
≈ {1 / max(1, len(info.speakers)):.3f}); perplexity pools all code groups (one shared codebook); speaker separation = mean cosine of same-speaker minus
different-speaker pairs of validation utterances (vconv's own encoder, a training diagnostic only).

{curves_table(args.run_dir / "log.jsonl", every=max(50, (steps or 1000) // 16))}

## Evaluation on held-out voices (independent judges)

{evaluation}

## Limits

- Trained for minutes on a small, partly synthetic corpus: expect audible artefacts, imperfect
  speaker similarity and some loss of intelligibility, worst on voices far from the training set.
- {vocoder_limit}
- The FOTAQ speech is band-limited to 5.5 kHz, the synthetic voices are not; the real speech it has
  seen is English, Czech and Dutch voice acting.
"""
    if args.notes:
        card += "\n" + args.notes.read_text(encoding="utf-8")
    (dest / "MODEL_CARD.md").write_text(card)
    total_mb = sum(f.stat().st_size for f in dest.glob("*.safetensors")) / 1e6
    print(f"wrote {dest} (model {size_mb:.1f} MB; all weights {total_mb:.1f} MB)")


if __name__ == "__main__":
    main()
