"""`vconv convert`, `vconv embed`, `vconv evaluate` and `vconv models`: what a model bundle does with audio.

The model and every input are checked before the model load (:mod:`vconv.inference.plan`), so a typo fails at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from vconv.cli.common import (
    EXIT_USAGE,
    FIT_VOICE_HELP,
    HARMONICS_HELP,
    PRECISION_HELP,
    TARGET_MATCH_HELP,
    conversion_settings,
    echo_out,
    enhance_option,
    fail,
    finish_batch,
    friendly_errors,
    load_converter,
    no_cache_option,
    pitch_options,
    printable,
    release_collection,
    say,
    say_report,
    threads_option,
)
from vconv.errors import VconvError
from vconv.inference.threads import apply_threads


def _check_model(model: Optional[str]) -> Path:
    """The bundle folder of ``--model`` with its config.json validated: cheap, so a typo fails before the model's
    weights are loaded."""
    from vconv.bundles import read_bundle_config
    from vconv.inference.registry import resolve_bundle

    bundle = resolve_bundle(model)
    read_bundle_config(bundle)
    return bundle


@friendly_errors
def convert(
    source: Path = typer.Argument(..., readable=False, help="Source audio file, a folder converted file by file (tree mirrored under --out), or a manifest (.jsonl, as `vconv prepare` writes) converted as a corpus into the folder --out: resumable, with OUT/manifest.jsonl."),
    target: Optional[List[Path]] = typer.Option(None, "--target", "-t", readable=False, help="Target speaker reference: a file or a folder; repeat to average several. Or a voice file (`vconv voice`), alone."),
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
    harmonics: Optional[bool] = typer.Option(None, "--harmonics/--no-harmonics", help=HARMONICS_HELP, show_default=False),
    enhance: str = enhance_option(),
    force: bool = typer.Option(False, "--force", help="Overwrite outputs of an earlier run (never a source or a reference)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar in folder mode."),
    no_cache: bool = no_cache_option(),
    threads: Optional[int] = threads_option(),
    engine: str = typer.Option("local", "--engine", help="Manifest source: local (worker processes on this machine) or ray (an existing Ray cluster, --address; pip install 'vconv[cluster]')."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Manifest source: worker processes (or Ray actors), each loading the model once."),
    address: Optional[str] = typer.Option(None, "--address", help="Manifest source with --engine ray: the cluster's address (default: a local Ray)."),
    targets: Optional[Path] = typer.Option(None, "--targets", readable=False, help="Manifest source: a file of voices (one reference or voice file per line); each source speaker gets one of them, the same every run."),
    anonymise: Optional[int] = typer.Option(None, "--anonymise", metavar="SEED", help="Manifest source: each source speaker gets a pseudo-voice, a seeded mix of --targets voices far from their own (the same speaker always the same voice)."),
) -> None:
    """Convert SOURCE to the voice of --target (one-shot, any-to-any); long files are converted in chunks.
    Failed files are listed on stderr; exit code 3 when some failed, 1 when all did."""
    from vconv.inference.batch import convert_paths
    from vconv.inference.plan import plan_conversions

    apply_threads(threads)
    settings = conversion_settings(vocoder=vocoder, fast=fast, target_match=target_match, precision=precision,
                                   fit_steps=fit_voice, pitch_shift=pitch_shift, pitch_register=pitch_register, harmonics=harmonics,
                                   enhance=enhance)
    bundle = _check_model(model)  # the model, inputs and outputs are checked before the model load
    if source.suffix == ".jsonl":
        corpus = {"engine": engine, "workers": workers, "address": address, "targets_file": targets, "anonymise": anonymise}
        release_collection()  # a corpus is a long run: the collector runs from its start
        return _convert_corpus(source, target or [], out, bundle, settings, corpus, threads, force, progress)
    if not target:  # optional only for a manifest, whose lines or --targets may give the voices
        fail("Missing option '--target' / '-t' (a file or a folder source needs one).", EXIT_USAGE)
    plan = plan_conversions(source, target, out, force=force, sample_rate=sample_rate)
    if not plan.jobs:
        finish_batch(0, plan.failed)
    converter = load_converter(bundle, settings, no_cache=no_cache)
    report = convert_paths(converter, source, target, out, force=force, progress=progress, plan=plan)
    echo_out(report.summary())
    for note in report.notes:
        typer.echo(f"note: {printable(note)}", err=True)
    finish_batch(len(report.converted), report.failed)


def _convert_corpus(manifest: Path, target: List[Path], out: Path, bundle: Path, settings: Any, corpus: dict,
                    threads: Optional[int], force: bool, progress: bool) -> None:
    """`vconv convert MANIFEST.jsonl -o OUT`: the corpus engines (:mod:`vconv.corpus`); failures listed, not fatal."""
    from vconv.corpus import convert_corpus

    report = convert_corpus(manifest, out, bundle=bundle, settings=settings, target=[str(t) for t in target],
                            threads=threads, force=force, progress=progress, **corpus)
    _finish_corpus(report)


@friendly_errors
def embed(
    paths: List[Path] = typer.Argument(..., readable=False, help="Audio files, folders and/or manifests (.jsonl, as `vconv prepare` writes); each folder is one speaker, each file its own, a manifest's lines by their speaker. One manifest with --out FOLDER embeds it as a corpus: OUT/<id>.npy, OUT/manifest.jsonl, OUT/embeddings.npz; resumable."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", readable=False, help="Write embeddings: .json (all, by name), .npy (speaker matrix) or .npz; or a folder for a corpus (one manifest; a name without an extension, or an existing folder)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle name or folder; default: the shipped model."),
    similarity: bool = typer.Option(False, "--similarity", help="Print the cosine similarity matrix."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    threads: Optional[int] = threads_option(),
    engine: str = typer.Option("local", "--engine", help="Corpus (a manifest, --out FOLDER): local (worker processes on this machine) or ray (an existing Ray cluster, --address; pip install 'vconv[cluster]')."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Corpus: worker processes (or Ray actors), each loading the model once."),
    address: Optional[str] = typer.Option(None, "--address", help="Corpus with --engine ray: the cluster's address (default: a local Ray)."),
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
    # a corpus writes a folder: `-o name.txt` is a typo for a file, not a folder to make (an existing folder is one)
    if len(paths) == 1 and paths[0].suffix == ".jsonl" and out is not None and (out.suffix == "" or out.is_dir()):
        if similarity:
            raise VconvError("--similarity: not with a corpus folder (OUT/embeddings.npz holds every vector)")
        return _embed_corpus(paths[0], out, bundle, {"engine": engine, "workers": workers, "address": address},
                             threads, force, progress)
    if engine != "local" or workers != 1 or address:
        raise VconvError("--engine, --workers and --address embed a corpus: one manifest (.jsonl) and --out FOLDER")
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


def _embed_corpus(manifest: Path, out: Path, bundle: Path, engines: dict, threads: Optional[int], force: bool,
                  progress: bool) -> None:
    """`vconv embed MANIFEST.jsonl -o OUT/`: the corpus engines (:mod:`vconv.corpus.embedding`)."""
    from vconv.corpus import embed_corpus

    report = embed_corpus(manifest, out, bundle=bundle, threads=threads, force=force, progress=progress, **engines)
    _finish_corpus(report)


def _finish_corpus(report: Any) -> None:
    """A corpus run's end (convert or embed): the totals on stdout, failures on stderr, the batch's exit code."""
    from vconv.data.manifest import BadFile

    echo_out(report.summary())
    finish_batch(report.count(report.made) + report.count("done"),
                 [BadFile(r.source, r.error) for r in report.results if r.status == "failed"])


@friendly_errors
def evaluate(
    out: Path = typer.Option(..., "--out", "-o", readable=False, help="Report folder: results.json, summary.md, plots/, converted/."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundle to evaluate (name or folder; default: the shipped model). Used with --manifest."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", readable=False, help="Held-out utterances (JSONL): all source→target pairs of different speakers are converted and scored."),
    protocol: Optional[Path] = typer.Option(None, "--protocol", readable=False, help="Score given triples instead: JSON/JSONL of {source, target_refs, converted, target_other, ...}."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", readable=False, help="Score a corpus converted by `vconv convert MANIFEST -o OUT` instead (OUT or OUT/manifest.jsonl): each output against its source and voice, with the source-speaker linkability (anonymisation)."),
    sources_per_pair: Optional[int] = typer.Option(None, "--sources-per-pair", help="At most this many source utterances per (source, target) speaker pair (seeded sample)."),
    target_refs: int = typer.Option(1, "--target-refs", help="Target utterances given to the converter per pair (averaged by its speaker path); never the judged one."),
    vocoder: Optional[str] = typer.Option(None, "--vocoder", help="Vocoder for conversion and the copy-synthesis row (default: the bundle's)."),
    target_match: str = typer.Option("meanstd", "--target-match", help=TARGET_MATCH_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    fit_voice: int = typer.Option(0, "--fit-voice", metavar="STEPS", help=FIT_VOICE_HELP),
    harmonics: Optional[bool] = typer.Option(None, "--harmonics/--no-harmonics", help=HARMONICS_HELP, show_default=False),
    enhance: str = enhance_option(),
    room: Optional[str] = typer.Option(None, "--room", metavar="RT60,SNR|mixed", help="Convert the held-out pairs as recorded in a simulated room: sources and target references reverberant (RT60 in s) and noisy (SNR in dB), e.g. 0.45,20; mixed draws each file's room from 0.2-0.8 s and 10-30 dB. Deterministic by --seed; the judges compare with the clean recordings."),
    seed: int = typer.Option(0, help="Seed of the pair sampling (and of the rooms with --room)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the similarity histogram and the embedding projection."),
    asr_model: str = typer.Option("base", "--asr-model", help="CER/WER judge: base (Whisper base, multilingual) or tiny.en; a judge that shares weights with the model is refused."),
    force: bool = typer.Option(False, "--force", help="Overwrite an earlier report in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    threads: Optional[int] = threads_option(),
) -> None:
    """Score conversions with independent judges (Resemblyzer, Whisper base, DNSMOS, MCD, F0), with reference rows.

    Needs the eval extra: pip install 'vconv[eval]'.
    """
    from vconv.evaluation.model_eval import EvaluationRequest, evaluate_model

    apply_threads(threads)
    settings = conversion_settings(vocoder=vocoder, target_match=target_match, precision=precision, fit_steps=fit_voice,
                                   harmonics=harmonics, enhance=enhance)
    bundle = _check_model(model) if manifest is not None or model is not None else None
    report = evaluate_model(EvaluationRequest(
        out, bundle=bundle, manifest=manifest, protocol=protocol, corpus=corpus, sources_per_pair=sources_per_pair,
        target_refs=target_refs, settings=settings, room=room, seed=seed, plots=plots, asr_model=asr_model, force=force,
        progress=progress))
    echo_out(report.summary_markdown)
    say(f"report: {out}")


@friendly_errors
def models() -> None:
    """List the model bundles vconv can find, and where; a broken one is marked `unusable: <reason>`."""
    from vconv.bundles import read_bundle_info
    from vconv.cli.common import one_line
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
