"""`vconv prepare`, `vconv extract` and `vconv info`: corpora into manifests and features, audio files checked."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, List, Optional

import typer

from vconv.cli.common import (
    finish_batch,
    friendly_errors,
    printable,
    say,
    say_report,
    split_list,
    threads_option,
)
from vconv.errors import VconvError
from vconv.inference.threads import apply_threads


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
    from vconv.fileio import check_output_path

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
    """``(FeatureConfig, {role: [front-end part sections]}, rooms)`` of ``--config``: a plain FeatureConfig YAML, or
    a run config (its ``features`` section, the front-end parts its ``model`` section's encoders read, and the simulated
    rooms its ``train`` section reads: :meth:`~vconv.config.TrainConfig.rooms`)."""
    from vconv.config import FeatureConfig, ModelConfig, TrainConfig, load_yaml, resolve_config_path
    from vconv.config.loaders import load_run_sections
    from vconv.frontends import pitch_part

    if not config:
        return FeatureConfig(), {"content": [], "speaker": []}, None
    path = resolve_config_path(config)  # a file, or a packaged preset name
    data = load_yaml(path)
    if not data.keys() & RUN_CONFIG_KEYS:
        return FeatureConfig.from_dict(data), {"content": [], "speaker": []}, None
    sections = load_run_sections(path, [], ("features", "model", "vocoder", "train"))  # base: chains followed
    model = ModelConfig.from_dict(sections["model"])
    train = TrainConfig.from_dict({"train_manifest": "", "run_dir": "", **sections["train"]})  # for its rooms only
    parts = {"content": [model.content_frontend], "speaker": [model.speaker_frontend],
             "pitch": [model.pitch_frontend] if pitch_part(model) else []}
    return FeatureConfig.from_dict(sections["features"]), parts, train.rooms()


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
    cfg, parts, rooms = _extract_settings(config)
    if whisper_layers is not None:  # instead of what --config's content path reads
        parts["content"] = _whisper_sections(whisper_layers)
    sections = [(role, section) for role, listed in parts.items() for section in listed]
    report = extract_features(manifest, out_dir, cfg, workers=workers, progress=progress, stats_from=stats_from,
                              frontends_dir=frontends, frontends=sections, force=force, write_stats=stats, rooms=rooms)
    say_report(report.summary())
    finish_batch(report.written + report.already_done, report.bad, allow_failures=allow_skips)



@friendly_errors
def info(
    paths: List[Path] = typer.Argument(..., readable=False, help="Audio files to check (any length: read in blocks)."),
    min_seconds: float = typer.Option(0.0, help="Report files shorter than this as bad."),
) -> None:
    """Check audio files and print duration, sample rate, channels, peak level and estimates of the SNR and of the
    late reverberation (a warning for a noisy or reverberant one). Bad files are listed on stderr with the reason; exit
    code 3 when some were bad, 1 when all were."""
    from vconv.audio.enhance import REVERBERANT_DB
    from vconv.audio.io import inspect_audio
    from vconv.audio.rooms import NOISY_SNR_DB
    from vconv.data.manifest import BadFile

    failed: list[BadFile] = []
    for path in paths:
        try:
            found = inspect_audio(path, min_seconds=min_seconds)
        except VconvError as exc:
            failed.append(BadFile.from_error(path, exc))
            continue
        meta, peak_db = found.info, 20 * math.log10(max(found.peak, 1e-9))
        snr, late = _room_estimates(path)
        say(f"{path}: {found.seconds:.2f} s, {meta.samplerate} Hz, {meta.channels} ch, {meta.subtype}, peak {peak_db:.1f} dBFS"
            + (f", SNR about {snr:.0f} dB" if math.isfinite(snr) else "")
            + (f", late reverberation about {late:.0f} dB" if math.isfinite(late) else ""))
        said = [f"noisy (SNR about {snr:.0f} dB)"] if snr < NOISY_SNR_DB else []
        said += [f"reverberant (late reverberation about {late:.0f} dB)"] if late > REVERBERANT_DB else []
        if said:
            typer.echo(f"warning: {printable(str(path))}: {' and '.join(said)}: as a source or a target reference it costs "
                       "words and similarity; --enhance takes the room out first (docs/ROOMS.md measures both)", err=True)
    finish_batch(len(paths) - len(failed), failed)


def _room_estimates(path: Path) -> tuple[float, float]:
    """``(SNR dB, late reverberation dB)`` of the file's first minute at 16 kHz: the blind estimates of
    :func:`vconv.audio.rooms.estimate_snr` and :func:`vconv.audio.enhance.late_reverberation_db`."""
    from vconv.audio.enhance import late_reverberation_db
    from vconv.audio.io import load
    from vconv.audio.rooms import estimate_snr

    wav, sr = load(path, 16000, max_seconds=None, first_seconds=60.0, allow_silent=True)
    return estimate_snr(wav, sr), late_reverberation_db(wav, sr)
