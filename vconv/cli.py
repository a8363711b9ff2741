"""The `vconv` command line: each command is a thin wrapper over a library function.

Exit codes (defined once in :mod:`vconv.cli_common`, listed in ``vconv --help`` and the README):

* ``0`` success;
* ``1`` an error the user can act on (:class:`~vconv.errors.VconvError`: bad input file, config or path),
  printed as one line ``error: ...`` on stderr, never a traceback; also a batch where every file failed;
* ``2`` a usage error (unknown option, missing argument, a value of the wrong type), also one line;
* ``3`` some files of a batch failed (each listed on stderr as ``error: FILE: reason``), the rest were done.

Commands that load a model (convert, embed, evaluate) check their inputs, options and output paths
first, so a typo fails at once rather than after the model load.

Every path parameter (here, in :mod:`vconv.cli_artifacts` and :mod:`vconv.cli_stream`) says ``readable=False``:
Typer's default has Click refuse an unreadable path itself, as a usage error (exit 2, in Click's words), before
vconv's own checks can say it is an input they cannot read (exit 1, or one failure of a batch, exit 3).
"""

from __future__ import annotations

import errno
import gc
import math
import signal
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from vconv.cli_artifacts import bundle_app, frontend_app
from vconv.cli_common import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    FIT_VOICE_HELP,
    HARMONICS_HELP,
    PRECISION_HELP,
    TARGET_MATCH_HELP,
    OneLineErrorsGroup,
    check_pitch_settings,
    echo_out,
    finish_batch,
    friendly_errors,
    load_converter,
    no_cache_option,
    pitch_options,
    printable,
    say,
    say_report,
    split_list,
    threads_option,
)
from vconv.cli_serve import serve
from vconv.cli_stream import stream
from vconv.cli_voice import voice
from vconv.errors import VconvError
from vconv.fileio import discard_unwritten
from vconv.inference.threads import apply_threads, prepare_threads

app = typer.Typer(
    name="vconv",
    help="One-shot voice conversion: prepare corpora, extract features, train, convert, embed, evaluate, serve.",
    epilog=EXIT_CODES_HELP,
    cls=OneLineErrorsGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

@app.command()
@friendly_errors
def prepare(
    root: Path = typer.Argument(..., readable=False, help="Corpus root: ROOT/<speaker>/**/*.{wav,flac,ogg} (+ optional same-stem .txt transcripts), or a VCTK root with --layout vctk."),
    out_dir: Path = typer.Option(..., "--out", "-o", readable=False, help="Folder for all/train/valid/test.jsonl and split.json."),
    layout: str = typer.Option("generic", "--layout", help="Corpus layout: generic (speaker folders) or vctk (VCTK 0.92 or 0.80, detected)."),
    test_speakers: Optional[str] = typer.Option(None, help="Comma-separated speakers held out for testing (unseen speakers). vctk: default the recipe's fixed 20."),
    num_test_speakers: int = typer.Option(0, help="Hold out this many randomly chosen speakers for testing (when --test-speakers is not given; generic only)."),
    valid_speakers: Optional[str] = typer.Option(None, help="Comma-separated speakers for validation (generic only)."),
    num_valid_speakers: int = typer.Option(0, help="Validate on this many randomly chosen speakers (when --valid-speakers is not given; generic only)."),
    mic: Optional[str] = typer.Option(None, "--mic", help="vctk 0.92 only: mic1 or mic2 (default mic2)."),
    valid_fraction: Optional[float] = typer.Option(None, "--valid-fraction", help="vctk only: fraction of the seen speakers' utterances used for validation (default 0.05)."),
    seed: int = typer.Option(0, help="Seed of the random split; the same seed gives the same split."),
    min_seconds: float = typer.Option(0.0, help="Leave out (and report) files shorter than this; they are not failures."),
    allow_skips: bool = typer.Option(False, "--allow-skips", help="Exit 0 even when some files or folders could not be read (they are still listed on stderr); default: exit 3."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing manifests in --out."),
) -> None:
    """Scan a corpus and write a JSONL manifest with train/valid/test splits (speaker-disjoint test).
    Files and folders that cannot be read (or are not usable audio) are left out, listed in the summary, in
    split.json and on stderr, and make the exit code 3 (unless --allow-skips); files shorter than --min-seconds
    are left out and listed too, with exit code 0."""
    from vconv.paths import check_output_path

    check_output_path(out_dir, expect="folder", what="output folder")  # before a long scan
    if layout == "vctk":
        # VCTK splits seen speakers by utterance; speaker-drawn validation does not apply
        if num_test_speakers or valid_speakers or num_valid_speakers:
            raise VconvError("--num-test-speakers/--valid-speakers/--num-valid-speakers are generic-only; vctk uses --test-speakers and --valid-fraction")
        report = _prepare_vctk(root, out_dir, mic, test_speakers, valid_fraction, seed=seed, min_seconds=min_seconds, force=force)
    elif layout == "generic":
        from vconv.data.prepare import prepare_corpus

        if mic is not None or valid_fraction is not None:
            raise VconvError("--mic and --valid-fraction apply to --layout vctk only")
        report = prepare_corpus(root, out_dir, test_speakers=split_list(test_speakers), num_test_speakers=num_test_speakers,
                                valid_speakers=split_list(valid_speakers), num_valid_speakers=num_valid_speakers,
                                seed=seed, min_seconds=min_seconds, force=force)
    else:
        raise VconvError(f"--layout {layout!r}: expected generic or vctk")
    say_report(report.summary())
    finish_batch(report.utterances, report.failures, allow_failures=allow_skips)


def _prepare_vctk(root: Path, out_dir: Path, mic: Optional[str], test_speakers: Optional[str], valid_fraction: Optional[float],
                  **common: Any) -> Any:
    """`vconv prepare --layout vctk`: a VctkPrepareReport (a PrepareReport that summarises the scan's counts too)."""
    from vconv.data.corpora.vctk import prepare_vctk

    return prepare_vctk(root, out_dir, mic=mic or "mic2", unseen=split_list(test_speakers),
                        valid_fraction=0.05 if valid_fraction is None else valid_fraction, **common)


RUN_CONFIG_KEYS = {"base", "features", "model", "vocoder", "train"}


def _extract_settings(config: Optional[str]) -> tuple:
    """``(FeatureConfig, {role: [front-end part sections]})`` of ``--config``: a plain FeatureConfig YAML, or
    a run config (its ``features`` section, and the front-end parts its ``model`` section's encoders read)."""
    from vconv.config import FeatureConfig, ModelConfig, load_sections, load_yaml, resolve_config_path
    from vconv.frontends import pitch_part

    if not config:
        return FeatureConfig(), {"content": [], "speaker": []}
    path = resolve_config_path(config)  # a file, or a packaged preset name
    data = load_yaml(path)
    if not data.keys() & RUN_CONFIG_KEYS:
        return FeatureConfig.from_dict(data), {"content": [], "speaker": []}
    sections = load_sections(path, [], ("features", "model", "vocoder", "train"))  # base: chains followed
    model = ModelConfig.from_dict(sections["model"])
    return FeatureConfig.from_dict(sections["features"]), {"content": [model.content_frontend], "speaker": [model.speaker_frontend],
                                                          "pitch": [model.pitch_frontend] if pitch_part(model) else []}


def _whisper_sections(option: str) -> list[dict]:
    """``--whisper-layers 2,4`` as Whisper content-part sections, each checked by the part."""
    from vconv.frontends import build_frontend_part

    try:
        sections = [{"kind": "whisper", "layer": int(x)} for x in split_list(option) or []]
    except ValueError:
        raise VconvError(f"--whisper-layers {option!r}: expected block numbers such as 2,4") from None
    for section in sections:
        try:
            build_frontend_part("content", section)
        except VconvError as exc:
            raise VconvError(f"--whisper-layers {option!r}: {str(exc).split(': ', 1)[-1]}") from None
    return sections


@app.command()
@friendly_errors
def extract(
    manifest: Path = typer.Argument(..., readable=False, help="JSONL manifest written by `vconv prepare`."),
    out_dir: Path = typer.Option(..., "--out", "-o", readable=False, help="Feature folder: <id>.safetensors per utterance, stats.json, features.yaml."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML FeatureConfig (sample_rate, n_fft, hop_length, win_length, n_mels, fmin, fmax, log_floor), or a run config whose features: section is used and whose model: section says which front-end outputs to store (a YAML of `vconv train`/`train-vocoder`, or a packaged name: debug, base); default: the shipped model's."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (files, audio hours, ETA)."),
    stats_from: Optional[Path] = typer.Option(None, "--stats-from", readable=False, help="Compute stats.json from this manifest's features (e.g. train.jsonl) instead of MANIFEST's."),
    frontends: Optional[Path] = typer.Option(None, "--frontends", readable=False, help="Front-end folder (`vconv frontend prepare`) for Whisper states."),
    whisper_layers: Optional[str] = typer.Option(None, "--whisper-layers", help="Also store Whisper encoder states of these blocks, e.g. 2,4 (default: what --config's model reads)."),
    allow_skips: bool = typer.Option(False, "--allow-skips", help="Exit 0 even when some files were skipped (they are still listed on stderr); default: exit 3."),
    stats: bool = typer.Option(True, "--stats/--no-stats", help="Write stats.json (normalisation statistics); --no-stats leaves the folder's as it is (adding features to part of a corpus)."),
    force: bool = typer.Option(False, "--force", help="Extract into a folder made with other feature settings, replacing its files."),
    threads: Optional[int] = threads_option(),
) -> None:
    """Compute log-mel features (and pretrained front-end outputs) for a manifest. Rerunnable: finished files
    are skipped; bad files are listed on stderr and make the exit code 3 (unless --allow-skips)."""
    from vconv.data.extract import extract_features

    apply_threads(threads)
    cfg, parts = _extract_settings(config)
    if whisper_layers is not None:  # instead of what --config's content path reads
        parts["content"] = _whisper_sections(whisper_layers)
    sections = [(role, section) for role, listed in parts.items() for section in listed]
    report = extract_features(manifest, out_dir, cfg, workers=workers, progress=progress, stats_from=stats_from,
                              frontends_dir=frontends, frontends=sections, force=force, write_stats=stats)
    say_report(report.summary())
    finish_batch(report.written + report.already_done, report.bad, allow_failures=allow_skips)


@app.command()
@friendly_errors
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.steps=500 model.channels=128 train.train_manifest=m/train.jsonl."),
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


def _check_model(model: Optional[str], vocoder: Optional[str] = None) -> Path:
    """The bundle folder of ``--model`` with its config.json validated, and ``--vocoder`` known: both cheap,
    so a typo fails before the model's weights are loaded."""
    from vconv.bundles import read_bundle_config
    from vconv.inference.registry import resolve_bundle
    from vconv.vocoders import VOCODERS

    bundle = resolve_bundle(model)
    read_bundle_config(bundle)
    if vocoder is not None and vocoder != "vocos" and vocoder not in VOCODERS:
        raise VconvError(f"--vocoder {vocoder!r}: unknown; known: {', '.join(sorted({'vocos', *VOCODERS}))}")
    return bundle


@app.command()
@friendly_errors
def convert(
    source: Path = typer.Argument(..., readable=False, help="Source audio file, or a folder converted file by file (tree mirrored under --out)."),
    target: List[Path] = typer.Option(..., "--target", "-t", readable=False, help="Target speaker reference: a file or a folder; repeat to average several. Or a voice file (`vconv voice`), alone."),
    out: Path = typer.Option(..., "--out", "-o", readable=False, help="Output .wav/.flac/.ogg file (or folder for a folder source)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle name (see `vconv models`) or bundle folder; default: the shipped model."),
    vocoder: Optional[str] = typer.Option(None, "--vocoder", help="Vocoder: griffinlim, or the bundle's own (default)."),
    sample_rate: Optional[int] = typer.Option(None, "--sample-rate", help="Resample the output to this rate, 1000..768000 Hz (default: the model's)."),
    fast: bool = typer.Option(False, "--fast", help="Skip the neural vocoder's post-processing passes: less time, lower quality (benchmarks/bench_convert.py measures the time, recipes/voices/MODEL_HISTORY.md the quality)."),
    target_match: str = typer.Option("meanstd", "--target-match", help=TARGET_MATCH_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    fit_voice: int = typer.Option(0, "--fit-voice", metavar="STEPS", help=FIT_VOICE_HELP),
    pitch_shift: float = pitch_options()[0],
    pitch_register: str = pitch_options()[1],
    harmonics: bool = typer.Option(False, "--harmonics", help=HARMONICS_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite outputs of an earlier run (never a source or a reference)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar in folder mode."),
    no_cache: bool = no_cache_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Convert SOURCE to the voice of --target (one-shot, any-to-any); long files are converted in chunks.
    Failed files are listed on stderr; exit code 3 when some failed, 1 when all did."""
    from vconv.inference.batch import convert_paths
    from vconv.inference.plan import plan_conversions
    from vconv.inference.precision import check_precision
    from vconv.inference.target_match import check_mode
    from vconv.inference.voice_fit import check_fit_steps

    apply_threads(threads)
    check_mode(target_match, "--target-match")
    check_precision(precision, "--precision")
    check_fit_steps(fit_voice)
    check_pitch_settings(pitch_shift, pitch_register)
    bundle = _check_model(model, vocoder)  # the model, inputs and outputs are checked before the model load
    plan = plan_conversions(source, target, out, force=force, sample_rate=sample_rate)
    if not plan.jobs:
        finish_batch(0, plan.failed)
    converter = load_converter(bundle, no_cache=no_cache, vocoder=vocoder, fast=fast, target_match=target_match,
                               precision=precision, fit_steps=fit_voice, pitch_shift=pitch_shift, pitch_register=pitch_register,
                               harmonics=harmonics)
    report = convert_paths(converter, source, target, out, force=force, progress=progress, plan=plan)
    echo_out(report.summary())
    for note in report.notes:
        typer.echo(f"note: {printable(note)}", err=True)
    finish_batch(len(report.converted), report.failed)


@app.command()
@friendly_errors
def embed(
    paths: List[Path] = typer.Argument(..., readable=False, help="Audio files and/or folders; each folder is one speaker, each file its own."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", readable=False, help="Write embeddings: .json (all, by name), .npy (speaker matrix) or .npz."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle name or folder; default: the shipped model."),
    similarity: bool = typer.Option(False, "--similarity", help="Print the cosine similarity matrix."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    threads: Optional[int] = threads_option(),
) -> None:
    """Speaker embeddings (L2-normalised) per utterance and per speaker, from vconv's speaker encoder.
    Bad files are listed on stderr and skipped; exit code 3 when some failed, 1 when all did."""
    from vconv.inference.batch import embed_paths, long_reference_notes
    from vconv.inference.converter import load
    from vconv.inference.plan import plan_embeddings

    apply_threads(threads)
    if out is None and not similarity:
        raise VconvError("nothing to do: pass --out FILE and/or --similarity")
    bundle = _check_model(model)  # the model, inputs and the output are checked before the model load
    plan = plan_embeddings(paths, out, force=force)
    if not plan.groups:
        finish_batch(0, plan.failed)
    result = embed_paths(load(bundle), paths, progress=progress, plan=plan, allow_empty=True)
    if not result.utterances:
        finish_batch(0, result.failed)
    if out is not None:
        result.save(out, force=force)
        say(f"{len(result.utterances)} utterance(s), {len(result.speakers)} speaker(s) -> {out}")
    if similarity:
        say_report(result.similarity_table())
    for note in long_reference_notes([f for files in plan.groups.values() for f in files]):
        typer.echo(f"note: {printable(note)}", err=True)
    finish_batch(len(result.utterances), result.failed)


@app.command()
@friendly_errors
def evaluate(
    out: Path = typer.Option(..., "--out", "-o", readable=False, help="Report folder: results.json, summary.md, plots/, converted/."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle to evaluate (name or folder; default: the shipped model). Used with --manifest."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", readable=False, help="Held-out utterances (JSONL): all source→target pairs of different speakers are converted and scored."),
    protocol: Optional[Path] = typer.Option(None, "--protocol", readable=False, help="Score given triples instead: JSON/JSONL of {source, target_refs, converted, target_other, ...}."),
    sources_per_pair: Optional[int] = typer.Option(None, "--sources-per-pair", help="At most this many source utterances per (source, target) speaker pair (seeded sample)."),
    target_refs: int = typer.Option(1, "--target-refs", help="Target utterances given to the converter per pair (averaged by its speaker path); never the judged one."),
    vocoder: Optional[str] = typer.Option(None, "--vocoder", help="Vocoder for conversion and the copy-synthesis row (default: the bundle's)."),
    target_match: str = typer.Option("meanstd", "--target-match", help=TARGET_MATCH_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    fit_voice: int = typer.Option(0, "--fit-voice", metavar="STEPS", help=FIT_VOICE_HELP),
    harmonics: bool = typer.Option(False, "--harmonics", help=HARMONICS_HELP),
    seed: int = typer.Option(0, help="Seed of the pair sampling."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the similarity histogram and the embedding projection."),
    asr_model: str = typer.Option("base", "--asr-model", help="CER/WER judge: base (Whisper base, multilingual) or tiny.en; a judge that shares weights with the model is refused."),
    force: bool = typer.Option(False, "--force", help="Overwrite an earlier report in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    threads: Optional[int] = threads_option(),
) -> None:
    """Score conversions with independent judges (Resemblyzer, Whisper base, DNSMOS, MCD, F0), with reference rows.

    Needs the eval extra: pip install 'vconv\\[eval]'.
    """
    from vconv.evaluation.model_eval import EvaluationRequest, evaluate_model

    apply_threads(threads)
    bundle = _check_model(model, vocoder) if manifest is not None or model is not None else None
    report = evaluate_model(EvaluationRequest(
        out, bundle=bundle, manifest=manifest, protocol=protocol, sources_per_pair=sources_per_pair,
        target_refs=target_refs, vocoder=vocoder, target_match=target_match, precision=precision, fit_steps=fit_voice,
        harmonics=harmonics, seed=seed, plots=plots, asr_model=asr_model, force=force, progress=progress))
    echo_out(report.summary_markdown)
    say(f"report: {out}")


@app.command()
@friendly_errors
def models() -> None:
    """List the model bundles vconv can find, and where; a broken one is marked `unusable: <reason>`."""
    from vconv.bundles import read_bundle_info
    from vconv.cli_common import one_line
    from vconv.inference.registry import DEFAULT_BUNDLE, list_bundles, search_roots

    bundles = list_bundles()
    for bundle in bundles:
        try:
            info = read_bundle_info(bundle.path)
            detail = f"vconv {info.vconv_version or '?'}, {info.feature_config.sample_rate} Hz"
        except VconvError as exc:
            detail = f"unusable: {one_line(exc)}"
        mark = " (default)" if bundle.name == DEFAULT_BUNDLE else ""
        say(f"{bundle.name}{mark}  [{bundle.source}]  {bundle.path}  {detail}")
    if not bundles:
        say("no bundles found in: " + ", ".join(str(r) for r, _ in search_roots()))


@app.command("train-vocoder")
@friendly_errors
def train_vocoder(
    overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.train_manifest=m/train.jsonl train.run_dir=runs/voc train.steps=1000 vocoder.dim=384."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML with features/vocoder/train sections, or a packaged config name (vocoder_debug)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in train.run_dir from its latest checkpoint."),
    vc_model: Optional[str] = typer.Option(None, "--vc-model", help="Fine-tune on this VC bundle's reconstructed mels (same as train.vc_model=...)."),
    attach: Optional[Path] = typer.Option(None, "--attach", readable=False, help="After training, copy the vocoder into this VC bundle folder (convert then uses it by default)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (losses, steps/s, ETA)."),
    threads: Optional[int] = threads_option(),
) -> None:
    """Train the neural (Vocos-style) vocoder on a manifest's audio; writes RUN_DIR/vocoder. Multi-GPU: torchrun."""
    from vconv.bundles import attach_vocoder
    from vconv.config import load_vocoder_run_config
    from vconv.training.vocoder_trainer import VocoderTrainer

    extra = ([f"train.vc_model={vc_model}"] if vc_model else []) + ([f"train.threads={threads}"] if threads else [])
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


@app.command()
@friendly_errors
def info(
    paths: List[Path] = typer.Argument(..., readable=False, help="Audio files to check (any length: read in blocks)."),
    min_seconds: float = typer.Option(0.0, help="Report files shorter than this as bad."),
) -> None:
    """Check audio files and print duration, sample rate, channels and peak level. Bad files are listed on
    stderr with the reason; exit code 3 when some were bad, 1 when all were."""
    from vconv.audio.io import inspect_audio
    from vconv.data.manifest import BadFile

    failed: list[BadFile] = []
    for path in paths:
        try:
            found = inspect_audio(path, min_seconds=min_seconds)
        except VconvError as exc:
            failed.append(BadFile.from_error(path, exc))
            continue
        meta, peak_db = found.info, 20 * math.log10(max(found.peak, 1e-9))
        say(f"{path}: {found.seconds:.2f} s, {meta.samplerate} Hz, {meta.channels} ch, {meta.subtype}, peak {peak_db:.1f} dBFS")
    finish_batch(len(paths) - len(failed), failed)


app.command("serve")(serve)  # vconv/cli_serve.py: the local web page
app.command("stream")(stream)  # vconv/cli_stream.py: live conversion from a file or a pipe
app.command("voice")(voice)  # vconv/cli_voice.py: a target voice prepared once, saved as a voice file
app.add_typer(bundle_app, name="bundle")
app.add_typer(frontend_app, name="frontend")


def main() -> None:
    """Console-script entry point."""
    prepare_threads()  # before anything imports torch: idle OpenMP threads sleep instead of spinning (inference/threads.py)
    signal.signal(signal.SIGTERM, _terminate)  # so temporary files are removed on SIGTERM as on Ctrl-C
    try:
        app()
    except BrokenPipeError:  # `vconv ... | head` must not print a traceback
        sys.exit(1)
    except OSError as exc:
        # what Click and Rich print themselves, outside any command (`--help > /dev/full`): a failed write to a
        # stream has no file name, every file vconv opens is checked where it is opened
        if exc.filename is not None or exc.errno not in (errno.ENOSPC, errno.EIO):
            raise
        discard_unwritten(sys.stdout)
        typer.echo(f"error: standard output: {'no space left on the device' if exc.errno == errno.ENOSPC else exc.strerror}", err=True)
        sys.exit(EXIT_ERROR)
    finally:
        # Exit without a last garbage collection over everything torch created: the interpreter still
        # runs atexit handlers, closes files and tears modules down, but a process that imported torch
        # spends ~0.2 s (here) walking its objects first; `vconv convert` of a short file then takes a
        # sixth less time (benchmarks/bench_convert.py, start-up).
        gc.freeze()


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends the command through the same unwinding as Ctrl-C: every ``finally`` runs (temporary
    files are removed), then the exit code the shell expects for a terminated process."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
