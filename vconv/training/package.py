"""Ship a finished training run: an fp16 copy of its bundle plus a ``MODEL_CARD.md`` (``vconv bundle package``).

Reads ``RUN_DIR/model`` (the bundle the trainer exports), ``RUN_DIR/config.yaml`` (the resolved run
config) and ``RUN_DIR/log.jsonl`` (the curves). Weights are stored as float16: half the size, and the
conversion output differs from fp32 by far less than the model's own error. Optionally it attaches a
neural vocoder (also as float16), copies the ``summary.md`` of ``vconv evaluate`` into the card and
appends markdown notes (history, measurements).

The card is rendered from a markdown template (:data:`DEFAULT_CARD`, or a recipe's own file) with
``str.format`` fields; a literal brace is written ``{{`` / ``}}``. The fields:

* ``{name}`` the bundle's name; ``{summary}`` the bullet list (parameters, features, vocoder, training);
* ``{n_speakers}``, ``{speakers}`` the training speakers; ``{held_out}`` the held-out ones (``held_out=``);
* ``{curves}`` the training-curve table with its legend; ``{evaluation}`` the evaluation summary;
* ``{vocoder_limit}`` one sentence on what the vocoder cannot do.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vconv.errors import VconvError
from vconv.fileio import read_text, write_text_atomic
from vconv.training.runs import logged_wall_minutes, read_log
from vconv.vocoders.vocos import read_vocoder_meta

CARD_FILE = "MODEL_CARD.md"

DEFAULT_CARD = """# {name}

One-shot any-to-any voice conversion model of vconv (IN + VQ content encoder, speaker encoder with
AdaIN decoder, adversarial speaker classifier).

{summary}

## Data

Training speakers ({n_speakers}): {speakers}.

**Held out (never trained on)**: {held_out}.

## Training curves (from `log.jsonl`)

{curves}

## Evaluation on held-out voices (independent judges)

{evaluation}

## Limits

- {vocoder_limit}
"""

CARD_FIELDS = ("name", "summary", "n_speakers", "speakers", "held_out", "curves", "evaluation", "vocoder_limit")
TARGET_MATCH_LINE = ("the converted log-mel takes the target references' spectral shape (at its own level) and the spread "
                     "of each band's slow contour from their speech frames "
                     "(target-spectrum matching, `--target-match meanstd`, the default; `off` gives the model's output as is).")


GRIFFIN_LIM_LINE = "Griffin-Lim (32 momentum iterations); no neural vocoder attached."
GRIFFIN_LIM_LIMIT = "Griffin-Lim phase reconstruction adds a metallic, phasey quality."
NEURAL_LIMIT = ("The neural vocoder was trained without a GAN on the same small corpus; on converted mels it "
                "cannot restore intonation the model did not produce (F0 correlation with the source stays low).")

CURVE_COLUMNS = [  # (header, split, metric key, format)
    ("train L1", "train", "recon", ".3f"), ("VQ loss", "train", "vq", ".4f"), ("perplexity", "train", "perplexity", ".0f"),
    ("adversary acc (train batch)", "train", "adv_acc", ".3f"), ("valid L1", "valid", "recon", ".3f"),
    ("valid perplexity", "valid", "perplexity", ".3f"), ("valid adv acc", "valid", "adv_acc", ".3f"),
    ("valid adv balanced acc", "valid", "adv_bal_acc", ".3f"), ("speaker separation", "valid", "spk_separation", ".3f"),
]


@dataclass
class PackageReport:
    path: Path
    model_mb: float
    total_mb: float

    def summary(self) -> str:
        return f"wrote {self.path} (model {self.model_mb:.1f} MB; all weights {self.total_mb:.1f} MB) + {CARD_FILE}"


def read_speaker_file(path: str | Path) -> list[str]:
    """Speaker names of a list file: whitespace-separated, ``#`` starts a comment."""
    return [w for line in read_text(path, "speaker list").splitlines() for w in line.split("#", 1)[0].split()]


def curves_table(records: list[dict[str, Any]], every: int) -> str:
    """Markdown table of a training log's records: every ``every``-th train step and each validated step."""
    valid = {r["step"]: r for r in records if r.get("split") == "valid"}
    train = [r for r in records if r.get("split") == "train" and (r["step"] % every == 0 or r["step"] in valid)]
    lines = ["| step | " + " | ".join(c[0] for c in CURVE_COLUMNS) + " |", "|---:|" + "---:|" * len(CURVE_COLUMNS)]
    for r in train:
        split = {"train": r, "valid": valid.get(r["step"], {})}
        cells = [format(split[s][k], f) if k in split[s] else "" for _, s, k, f in CURVE_COLUMNS]
        lines.append(f"| {r['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def content_perturbation_line(model_config: Any, train: dict[str, Any]) -> str:
    """What the content path read in training besides the clean input, for the card's training line."""
    from vconv.frontends import model_parts

    content, _ = model_parts(model_config)
    if not content.is_log_mel:  # the mel perturber cannot touch a pretrained part's precomputed output
        return f"no timbre perturbation of the content path (its {content.kind} features come from the clean audio)"
    return f"timbre perturbation of the content path = {train.get('perturb_content')}"


def frontends_line(model_config: Any, bundle: Path) -> str:
    """One sentence on what the content and speaker paths read, with the shipped pretrained files' sizes."""
    from vconv.frontends import model_parts

    content, speaker = model_parts(model_config)
    return f"content encoder reads {content.describe(bundle)}; speaker path: {speaker.describe(bundle)}."


def render_card(template: str, fields: dict[str, Any], source: str = "card template") -> str:
    """``template.format(**fields)`` with one-line errors for unknown fields and stray braces."""
    try:
        return template.format_map(fields)
    except KeyError as exc:
        raise VconvError(f"{source}: unknown field {{{exc.args[0]}}}; known: {', '.join(sorted(fields))}") from None
    except (ValueError, IndexError) as exc:
        raise VconvError(f"{source}: {exc} (write a literal brace as {{{{ or }}}})") from None


def package_run(
    run_dir: str | Path,
    out_dir: str | Path,
    name: str,
    *,
    eval_dir: str | Path | None = None,
    vocoder_dir: str | Path | None = None,
    notes: str | Path | None = None,
    card_template: str | Path | None = None,
    held_out: list[str] | None = None,
    wall_minutes: float | None = None,
    vocoder_passes: dict[str, int] | None = None,
    force: bool = False,
) -> PackageReport:
    """Write ``out_dir/name``: the run's model as an fp16 bundle (+ fp16 vocoder) and its ``MODEL_CARD.md``.

    The bundle holds the inference weights only (no adversary, no speaker list: the card names the
    speakers). ``vocoder_passes`` (``consistency_passes`` / ``envelope_passes``) sets the post-processing
    the shipped vocoder runs by default (:func:`~vconv.bundles.attach_vocoder`).
    """
    from vconv.bundles import load_bundle, save_bundle
    from vconv.config import load_yaml

    run_dir = Path(run_dir)
    template, source = _check_package_inputs(run_dir, out_dir, name, eval_dir, notes, card_template)
    if vocoder_passes and vocoder_dir is None:
        raise VconvError("--consistency-passes / --envelope-passes set the vocoder's post-processing: they need --vocoder")
    model, frontend, info = load_bundle(run_dir / "model")
    train = load_yaml(run_dir / "config.yaml").get("train") or {}
    log = read_log(run_dir / "log.jsonl")  # before anything is written: a broken log stops the packaging
    vocoder, vocoder_meta = _read_vocoder(vocoder_dir, info.feature_config, vocoder_passes)
    steps = info.extra.get("trained_steps")
    dest = save_bundle(Path(out_dir) / name, model, frontend, dtype=torch.float16,
                       extra={"trained_steps": steps, "name": name}, force=force)
    vocoder_line, vocoder_limit = _ship_vocoder(dest, vocoder, vocoder_meta)
    model_mb = (dest / "model.safetensors").stat().st_size / 1e6
    logged_minutes, exact = logged_wall_minutes(log)
    # the card states a wall time only when the log counted it from the start (an estimate is not a figure)
    wall_minutes = wall_minutes or (logged_minutes if exact else None)
    summary = _summary(model, info, dest, train, steps, vocoder_line, model_mb, wall_minutes)
    fields = {  # keys: CARD_FIELDS
        "name": name, "summary": summary, "n_speakers": len(info.speakers), "speakers": ", ".join(info.speakers),
        "held_out": ", ".join(held_out) if held_out else "not recorded", "curves": _curves(log, len(info.speakers), steps),
        "evaluation": read_text(Path(eval_dir) / "summary.md", "evaluation summary") if eval_dir is not None
        else "Not evaluated yet: run `vconv evaluate` and package again with `--eval`.",
        "vocoder_limit": vocoder_limit,
    }
    card = render_card(template, fields, source)
    if notes is not None:
        card += "\n" + read_text(notes, "notes file")
    write_text_atomic(dest / CARD_FILE, card)
    total_mb = sum(f.stat().st_size for f in dest.glob("*.safetensors")) / 1e6
    return PackageReport(dest, model_mb, total_mb)


def _check_package_inputs(run_dir: Path, out_dir: str | Path, name: str, eval_dir: str | Path | None,
                          notes: str | Path | None, card_template: str | Path | None) -> tuple[str, str]:
    """Refuse a bad name, output, run, evaluation, notes or template before any work; ``(template, its source)``."""
    from vconv.fileio import check_output_path

    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise VconvError(f"--name {name!r}: a bundle name is one folder name (no / or ..), e.g. my-voices-v2")
    check_output_path(Path(out_dir) / name, expect="folder", what="bundle folder")
    for needed in ("model", "config.yaml", "log.jsonl"):
        if not (run_dir / needed).exists():
            raise VconvError(f"{run_dir}: not a finished training run (no {needed}; `vconv train` writes it)")
    if eval_dir is not None and not (Path(eval_dir) / "summary.md").is_file():
        raise VconvError(f"{eval_dir}: no summary.md from `vconv evaluate`")
    if notes is not None and not Path(notes).is_file():
        raise VconvError(f"{notes}: notes file not found")
    template, source = DEFAULT_CARD, "default card template"
    if card_template is not None:
        if not Path(card_template).is_file():
            raise VconvError(f"{card_template}: card template not found")
        template, source = read_text(card_template, "card template"), str(card_template)
    render_card(template, dict.fromkeys(CARD_FIELDS, ""), source)  # a bad template fails before anything is written
    return template, source


def _read_vocoder(vocoder_dir: str | Path | None, feature_config: Any,
                  passes: dict[str, int] | None) -> tuple[Any, dict[str, Any]]:
    """``(vocoder, its vocoder.json)`` to ship, checked before anything is written; ``(None, {})`` without one."""
    from vconv.bundles import with_vocoder_passes

    if vocoder_dir is None:
        return None, {}
    vocoder = _load_matching_vocoder(vocoder_dir, feature_config)
    # read before anything is written: --vocoder may name the very bundle this call replaces
    meta = read_vocoder_meta(vocoder_dir)
    if passes:
        vocoder.config = with_vocoder_passes(vocoder.config, passes)  # checked before writing; the card reads it
    return vocoder, meta


def _ship_vocoder(dest: Path, vocoder: Any, meta: dict[str, Any]) -> tuple[str, str]:
    """Attach a float16 copy of ``vocoder`` to the bundle ``dest``; the card's vocoder line and limit."""
    if vocoder is None:
        return GRIFFIN_LIM_LINE, GRIFFIN_LIM_LIMIT
    from vconv.bundles import attach_vocoder
    from vconv.vocoders.vocos import save_vocoder

    trained = {k: v for k, v in meta.items() if k == "trained_steps"}
    with tempfile.TemporaryDirectory() as tmp:  # a float16 copy is what ships
        attach_vocoder(dest, save_vocoder(tmp, vocoder, extra=trained, dtype=torch.float16))
    vocoder_mb = (dest / "vocoder.safetensors").stat().st_size / 1e6
    line = (f"Vocos-style neural vocoder ({sum(p.numel() for p in vocoder.parameters()) / 1e6:.2f} M parameters, "
            f"float16, {vocoder_mb:.1f} MB; at inference {vocoder.config.consistency_passes} phase-consistency "
            f"passes and {vocoder.config.envelope_passes} passes of mel-envelope matching), used by default; "
            f"`--vocoder griffinlim` is the fallback.")
    return line, NEURAL_LIMIT


def _summary(model: Any, info: Any, dest: Path, train: dict[str, Any], steps: Any, vocoder_line: str,
             model_mb: float, wall_minutes: float | None) -> str:
    """The card's bullet list: parameters, features, front-ends, vocoder, inference, training."""
    from vconv.bundles.format import TRAINING_ONLY_PREFIXES

    # what ships: the adversary stays with the run's checkpoints
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(TRAINING_ONLY_PREFIXES))
    fc = info.feature_config
    wall = f"; {max(wall_minutes, 1):.0f} min wall time" if wall_minutes else ""
    return f"""- **Parameters**: {n_params / 1e6:.1f} M; weights float16, {model_mb:.1f} MB (`model.safetensors`, sha256 in `config.json`).
- **Features**: {fc.sample_rate} Hz, n_fft {fc.n_fft}, hop {fc.hop_length}, {fc.n_mels} mels (fmax {fc.fmax}).
- **Front-ends**: {frontends_line(model.config, dest)}
- **Vocoder**: {vocoder_line}
- **Inference**: {TARGET_MATCH_LINE}
- **Training**: {steps} steps, batch {train.get('batch_size')} × {train.get('segment_frames')} frames, AdamW lr {train.get('lr')},
  bf16 autocast = {train.get('bf16')}, {content_perturbation_line(model.config, train)},
  adversary weight {train.get('adversary_weight')} ramped over {train.get('adversary_ramp_steps')} steps{wall}."""


def _curves(log: list[dict[str, Any]], n_speakers: int, steps: Any) -> str:
    """The card's training-curve table with its legend."""
    return f"""Adversary accuracy is measured on content codes of four fixed training batches; balanced accuracy
(mean per-speaker recall) is not fooled by always naming the biggest speaker (chance = 1/{n_speakers}
≈ {1 / max(1, n_speakers):.3f}); perplexity pools all code groups (one shared codebook); speaker separation = mean cosine of same-speaker minus
different-speaker pairs of validation utterances (vconv's own encoder, a training diagnostic only).

{curves_table(log, every=max(50, (steps or 1000) // 16))}"""


def _load_matching_vocoder(vocoder_dir: str | Path, feature_config):
    """The vocoder of ``vocoder_dir``, checked against the model's features before anything is written."""
    from vconv.vocoders.base import check_compatible
    from vconv.vocoders.vocos import load_vocoder

    vocoder = load_vocoder(vocoder_dir)
    check_compatible(feature_config, vocoder)
    return vocoder
