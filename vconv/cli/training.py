"""`vconv train` and `vconv train-vocoder`: the two trainers, each over its run config."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vconv.cli.common import (
    echo_out,
    friendly_errors,
    say,
    threads_option,
)
from vconv.errors import VconvError


@friendly_errors
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.steps=500 model.decoder.channels=128 train.train_manifest=m/train.jsonl."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML with features/model/train sections, or a packaged config name (debug, base)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in train.run_dir from its latest checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (loss, steps/s, ETA)."),
    until: Optional[int] = typer.Option(None, "--until", min=1, help="Stop at this step with a checkpoint (no export); --resume continues. For training in slices."),
    threads: Optional[int] = threads_option(),
) -> None:
    """Train the voice-conversion model. Multi-GPU: torchrun --nproc_per_node=N -m vconv train ..."""
    from vconv.config import load_run_config
    from vconv.training.vc_trainer import ModelTrainer

    # the run's own setting (train.threads), so a resumed run or a DDP rank uses it too
    features, model, train_cfg = load_run_config(config, (overrides or []) + ([f"train.threads={threads}"] if threads else []))
    trainer = ModelTrainer(features, model, train_cfg, resume=resume, progress=progress)
    if until is not None and until <= trainer.step:
        raise VconvError(f"--until {until}: the run in {train_cfg.run_dir} is already at step {trainer.step}")
    history = trainer.fit(until=until, checkpoint_at_stop=True)
    if not trainer.dist.is_main:  # under torchrun only rank 0 reports
        return
    if trainer.step < train_cfg.steps:
        say(f"stopped at step {trainer.step} of {train_cfg.steps}: checkpoint {trainer.run.latest}; continue with --resume")
        return
    last = [r for r in history if r["split"] == "valid"][-1:] or history[-1:]
    if last:
        echo_out("final " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last[0].items()))
    say(f"model bundle: {trainer.run_dir / 'model'}")



@friendly_errors
def train_vocoder(
    overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.train_manifest=m/train.jsonl train.run_dir=runs/voc train.steps=1000 vocoder.dim=384."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML with features/vocoder/train sections, or a packaged config name (vocoder_debug)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in train.run_dir from its latest checkpoint."),
    attach: Optional[Path] = typer.Option(None, "--attach", readable=False, help="After training, copy the vocoder into this VC bundle folder (convert then uses it by default)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (losses, steps/s, ETA)."),
    threads: Optional[int] = threads_option(),
) -> None:
    """Train the neural (Vocos-style) vocoder on a manifest's audio; writes RUN_DIR/vocoder. Multi-GPU: torchrun."""
    from vconv.bundles import attach_vocoder
    from vconv.config import load_vocoder_run_config
    from vconv.training.vocoder_trainer import VocoderTrainer

    extra = [f"train.threads={threads}"] if threads else []
    features, vocoder_cfg, train_cfg = load_vocoder_run_config(config, (overrides or []) + extra)
    trainer = VocoderTrainer(features, vocoder_cfg, train_cfg, resume=resume, progress=progress)
    history = trainer.fit()
    last = [r for r in history if r["split"] == "valid"][-1:] or history[-1:]
    if last:
        echo_out("final " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last[0].items()))
    out = trainer.run_dir / "vocoder"
    say(f"vocoder: {out}")
    if attach is not None and trainer.dist.is_main:
        attach_vocoder(attach, out)
        say(f"attached to bundle: {attach}")
