"""The `vconv` command line: each command is a thin wrapper over a library function.

Errors the user can act on (:class:`~vconv.errors.VconvError`) print one line ``error: ...`` on stderr
and exit with code 1; no traceback. Partial failure of a batch (some files skipped) exits with code 2
where the command says so.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import typer

from vconv.errors import VconvError

app = typer.Typer(
    name="vconv",
    help="One-shot voice conversion: prepare corpora, extract features, train, convert, embed, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., object])


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn VconvError (and Ctrl-C) into a one-line message and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except VconvError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except MemoryError:
            fail("out of memory; use shorter inputs or fewer workers")

    return wrapper  # type: ignore[return-value]


def _split_list(value: Optional[str]) -> Optional[list[str]]:
    if not value:
        return None
    return [s.strip() for s in value.split(",") if s.strip()]


@app.command()
@friendly_errors
def prepare(
    root: Path = typer.Argument(..., help="Corpus root laid out as ROOT/<speaker>/**/*.{wav,flac,ogg} (+ optional same-stem .txt transcripts)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for all/train/valid/test.jsonl and split.json."),
    test_speakers: Optional[str] = typer.Option(None, help="Comma-separated speakers held out for testing (unseen speakers)."),
    num_test_speakers: int = typer.Option(0, help="Hold out this many randomly chosen speakers for testing (when --test-speakers is not given)."),
    valid_speakers: Optional[str] = typer.Option(None, help="Comma-separated speakers for validation."),
    num_valid_speakers: int = typer.Option(0, help="Validate on this many randomly chosen speakers (when --valid-speakers is not given)."),
    seed: int = typer.Option(0, help="Seed of the random speaker choice; the same seed gives the same split."),
    min_seconds: float = typer.Option(0.0, help="Skip (and report) files shorter than this."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing manifests in --out."),
) -> None:
    """Scan a corpus and write a JSONL manifest with speaker-disjoint train/valid/test splits."""
    from vconv.prepare import prepare_corpus

    report = prepare_corpus(
        root,
        out_dir,
        test_speakers=_split_list(test_speakers),
        num_test_speakers=num_test_speakers,
        valid_speakers=_split_list(valid_speakers),
        num_valid_speakers=num_valid_speakers,
        seed=seed,
        min_seconds=min_seconds,
        force=force,
    )
    typer.echo(report.summary())


@app.command()
@friendly_errors
def extract(
    manifest: Path = typer.Argument(..., help="JSONL manifest written by `vconv prepare`."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Feature folder: <id>.safetensors per utterance, stats.json, features.yaml."),
    config: Optional[Path] = typer.Option(None, help="YAML FeatureConfig (sample_rate, n_fft, hop_length, win_length, n_mels, fmin, fmax, log_floor); default: the shipped model's."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (files, audio hours, ETA)."),
) -> None:
    """Compute log-mel features for a manifest. Rerunnable: finished files are skipped, bad files reported."""
    from vconv.config import FeatureConfig, load_yaml
    from vconv.extract import extract_features

    cfg = FeatureConfig.from_dict(load_yaml(config)) if config else FeatureConfig()
    report = extract_features(manifest, out_dir, cfg, workers=workers, progress=progress)
    typer.echo(report.summary())


@app.command()
@friendly_errors
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.steps=500 model.channels=128 train.train_manifest=m/train.jsonl."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML with features/model/train sections, or a packaged config name (debug, base)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in train.run_dir from its latest checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (loss, steps/s, ETA)."),
) -> None:
    """Train the voice-conversion model. Multi-GPU: torchrun --nproc_per_node=N -m vconv train ..."""
    from vconv.config import load_run_config
    from vconv.train import Trainer

    features, model, train_cfg = load_run_config(config, overrides or [])
    trainer = Trainer(features, model, train_cfg, resume=resume, progress=progress)
    history = trainer.fit()
    last = [r for r in history if r["split"] == "valid"][-1:] or history[-1:]
    if last:
        typer.echo("final " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last[0].items()))
    typer.echo(f"model bundle: {trainer.run_dir / 'model'}")


@app.command()
@friendly_errors
def convert(
    source: Path = typer.Argument(..., help="Source audio file, or a folder converted file by file (tree mirrored under --out)."),
    target: List[Path] = typer.Option(..., "--target", "-t", help="Target speaker reference: a file or a folder; repeat to average several."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .wav/.flac/.ogg file (or folder for a folder source)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle name (see `vconv models`) or bundle folder; default: the shipped model."),
    vocoder: Optional[str] = typer.Option(None, "--vocoder", help="Vocoder: griffinlim, or the bundle's own (default)."),
    sample_rate: Optional[int] = typer.Option(None, "--sample-rate", help="Resample the output to this rate (default: the model's)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar in folder mode."),
) -> None:
    """Convert SOURCE to the voice of --target (one-shot, any-to-any). Exit code 2: some files failed."""
    from vconv.api import load
    from vconv.convert import convert_paths

    converter = load(model, vocoder=vocoder)
    report = convert_paths(converter, source, target, out, force=force, sample_rate=sample_rate, progress=progress)
    typer.echo(report.summary())
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command()
@friendly_errors
def embed(
    paths: List[Path] = typer.Argument(..., help="Audio files and/or folders; each folder is one speaker, each file its own."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write embeddings: .json (all, by name), .npy (speaker matrix) or .npz."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle name or folder; default: the shipped model."),
    similarity: bool = typer.Option(False, "--similarity", help="Print the cosine similarity matrix."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Speaker embeddings (L2-normalised) per utterance and per speaker, from vconv's speaker encoder."""
    from vconv.api import load
    from vconv.convert import embed_paths

    if out is None and not similarity:
        raise VconvError("nothing to do: pass --out FILE and/or --similarity")
    result = embed_paths(load(model), paths, progress=progress)
    if out is not None:
        result.save(out, force=force)
        typer.echo(f"{len(result.utterances)} utterance(s), {len(result.speakers)} speaker(s) -> {out}")
    if similarity:
        typer.echo(result.similarity_table())


@app.command()
@friendly_errors
def models() -> None:
    """List the model bundles vconv can find, and where."""
    from vconv.checkpoint import read_bundle_config
    from vconv.pretrained import DEFAULT_BUNDLE, list_bundles, search_roots

    bundles = list_bundles()
    for bundle in bundles:
        try:
            cfg = read_bundle_config(bundle.path)
            detail = f"vconv {cfg.get('vconv_version')}, {cfg['feature_config']['sample_rate']} Hz"
        except VconvError as exc:
            detail = f"unusable: {exc}"
        mark = " (default)" if bundle.name == DEFAULT_BUNDLE else ""
        typer.echo(f"{bundle.name}{mark}  [{bundle.source}]  {bundle.path}  {detail}")
    if not bundles:
        typer.echo("no bundles found in: " + ", ".join(str(r) for r, _ in search_roots()))


@app.command()
@friendly_errors
def info(
    paths: List[Path] = typer.Argument(..., help="Audio files to check."),
    min_seconds: float = typer.Option(0.0, help="Report files shorter than this as bad."),
) -> None:
    """Check audio files and print duration, sample rate, channels and peak level; a bad file is an error."""
    from vconv.audio import audio_info, load

    for path in paths:
        meta = audio_info(path)
        wav, sr = load(path, min_seconds=min_seconds)
        peak_db = 20 * math.log10(max(float(abs(wav).max()), 1e-9))
        typer.echo(f"{path}: {wav.size / sr:.2f} s, {meta.samplerate} Hz, {meta.channels} ch, {meta.subtype}, peak {peak_db:.1f} dBFS")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # `vconv ... | head` must not print a traceback
        sys.exit(1)


if __name__ == "__main__":
    main()
