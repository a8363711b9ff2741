"""`vconv voice`: a target voice prepared once and saved (:mod:`vconv.inference.voice_file`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from vconv.cli.common import FIT_VOICE_HELP, conversion_settings, enhance_option, friendly_errors, load_converter, say, threads_option
from vconv.errors import VconvError, printable
from vconv.inference.threads import apply_threads


@friendly_errors
def voice(
    references: List[Path] = typer.Argument(..., readable=False, help="Target reference audio files (averaged, as --target takes them)."),
    out: Path = typer.Option(..., "--out", "-o", readable=False, help="The voice file to write (NAME.voice)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle name or folder; default: the shipped model. A voice file works with this model only."),
    fit_voice: int = typer.Option(30, "--fit-voice", metavar="STEPS", help=FIT_VOICE_HELP.replace("0 = off, the default", "0 = off; default 30")),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing voice file."),
    enhance: str = enhance_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Prepare a target voice once and save it: the speaker embedding (fitted to the references, 30 steps by default),
    the spectrum statistics and the references' tail, with their content hash and the model's digest. Give the file
    to --target of convert and stream, or upload it on the page, and no conversion pays the fit again."""
    from vconv.audio.io import audio_info
    from vconv.fileio import check_distinct_outputs, check_output_path
    from vconv.inference.target_match import noise_floor_note
    from vconv.inference.voice_file import VOICE_SUFFIX, save_voice

    apply_threads(threads)
    settings = conversion_settings(fit_steps=fit_voice, enhance=enhance)
    check_output_path(out, extensions=[VOICE_SUFFIX], what="voice file")
    check_distinct_outputs([(None, out)], [(r, "target reference") for r in references])
    if out.exists() and not force:
        raise VconvError(f"{out}: already exists; pass --force to overwrite")
    for ref in references:  # before the model loads
        audio_info(ref)
    converter = load_converter(model, settings, no_cache=True)
    started = time.perf_counter()
    prepared, source = converter.prepared_target([str(r) for r in references])
    save_voice(out, prepared, source, force=force)
    fitted = f", fitted in {fit_voice} steps (reconstruction L1 {prepared.fit_losses[0]:.3f} -> {prepared.fit_losses[-1]:.3f})" if fit_voice else ""
    say(f"voice of {len(references)} reference(s){fitted} in {time.perf_counter() - started:.2f} s -> {out}")
    noise = noise_floor_note(prepared.spectrum, converter.frontend.logmel.band_centres)
    if noise:
        typer.echo(f"note: {printable(noise)}", err=True)
