"""What a conversion or embedding run will read and write, checked before the model is loaded.

:func:`plan_conversions` turns ``vconv convert``'s arguments into ``(source, output)`` jobs and checks
all of it in a second or less, so a typo fails at once instead of after the 2-3 s model load: the
sample rate, every target reference (it exists and its header reads), every source header, the output
paths (:mod:`vconv.fileio`: writable, right kind, never a source or a reference, never two sources onto
one output, never the source folder or inside it) and existing outputs without ``force``.
:func:`plan_embeddings` does the same for ``vconv embed``.

Two inputs with the same stem (``g.wav``, ``g.flac``) would both become ``g.wav``: the run is refused
naming both, rather than renaming one, so output names always follow one rule (``<stem>.wav``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vconv.audio.io import AUDIO_EXTENSIONS, audio_info, check_sample_rate
from vconv.data.manifest import BadFile, walk_audio_files
from vconv.errors import VconvError
from vconv.fileio import check_distinct_outputs, check_not_inside, check_output_path
from vconv.inference.voice_file import check_target_files

EMBEDDING_EXTENSIONS = (".json", ".npy", ".npz")


def audio_files(path: Path, unreadable: list[BadFile] | None = None) -> list[Path]:
    """``path`` itself if it is a file, else every entry with an audio extension below it (sorted).

    Entries that are not regular files (a FIFO named ``x.wav``) are listed too: the header check refuses
    them with their reason, rather than leaving them out unsaid. A subfolder that cannot be read is added to
    ``unreadable`` when given (a batch goes on and reports it), else it is an error. Links to folders are
    not followed (as before, with pathlib's rglob: a link cycle cannot loop).
    """
    if path.is_dir():
        bad: list[BadFile] = []
        files = walk_audio_files(path, bad)  # the one walk `vconv prepare` makes too
        if bad and unreadable is None:
            raise VconvError(f"{bad[0].path}: {bad[0].reason}")
        if unreadable is not None:
            unreadable += bad
        if not files and not bad:
            raise VconvError(f"{path}: no audio files (.wav, .flac, .ogg) in this folder")
        return files
    if not path.exists():
        raise VconvError(f"{path}: file not found")
    return [path]


def header_failure(path: Path) -> BadFile | None:
    """None when ``path``'s audio header reads (and a WAV is complete), else why not."""
    try:
        audio_info(path)
    except VconvError as exc:
        return BadFile.from_error(path, exc)
    return None


def output_failure(dest: Path, force: bool) -> BadFile | None:
    """None when ``dest`` can be written, else why not (a folder in its place, a name too long, an earlier
    output without ``force``): one file of a batch, reported, not the end of the batch."""
    try:
        check_output_path(dest, extensions=AUDIO_EXTENSIONS)
    except VconvError as exc:
        return BadFile(str(dest), str(exc).split(": ", 1)[-1])
    if dest.exists() and not force:
        return BadFile(str(dest), "already exists; pass --force to overwrite")
    return None


@dataclass
class ConversionPlan:
    """The checked jobs of one conversion run; ``failed`` are sources refused before any model work."""

    jobs: list[tuple[Path, Path]]
    refs: list[Path]
    failed: list[BadFile] = field(default_factory=list)
    sample_rate: int | None = None
    single: bool = False  # one source file: its failure is the run's error, not a line in a report


def plan_conversions(
    source: str | Path, targets: Sequence[str | Path], out: str | Path, *, force: bool = False,
    sample_rate: int | None = None,
) -> ConversionPlan:
    """Check everything ``convert_paths`` will read and write (see the module docstring); raises VconvError."""
    source, out = Path(source), Path(out)
    if sample_rate is not None:
        sample_rate = check_sample_rate(sample_rate, "--sample-rate")
    refs = [f for t in targets for f in audio_files(Path(t))]
    if not refs:
        raise VconvError("no target reference given; pass --target FILE or --target FOLDER")
    check_target_files(refs, audio_info)  # a bad reference leaves nothing to convert to: an error, not a skipped file
    if source.is_dir():
        if out.suffix.lower() in AUDIO_EXTENSIONS and not out.is_dir():
            raise VconvError(f"{out}: a folder source is converted into an output folder, not the file {out.name}")
        check_output_path(out, expect="folder", what="output folder")
        check_not_inside(out, source)
        unreadable: list[BadFile] = []
        jobs = [(f, out / f.relative_to(source).with_suffix(".wav")) for f in audio_files(source, unreadable)]
        single = False
    else:
        audio_files(source)
        audio_info(source)
        dest = out / f"{source.stem}.wav" if out.is_dir() else out
        check_output_path(dest, extensions=AUDIO_EXTENSIONS)
        jobs, single = [(source, dest)], True
    check_distinct_outputs(jobs, [(r, "target reference") for r in refs])
    plan = ConversionPlan([], refs, sample_rate=sample_rate, single=single, failed=[] if single else unreadable)
    for src, dest in jobs:
        bad = header_failure(src) or output_failure(dest, force)
        if bad is not None and single:
            raise VconvError(f"{bad.path}: {bad.reason}")
        if bad is not None:
            plan.failed.append(bad)
        else:
            plan.jobs.append((src, dest))
    return plan


@dataclass
class EmbeddingPlan:
    """Speakers (name → their files) whose headers read, and the files refused before any model work."""

    groups: dict[str, list[Path]]
    failed: list[BadFile] = field(default_factory=list)


def plan_embeddings(paths: Sequence[str | Path], out: str | Path | None = None, *, force: bool = False) -> EmbeddingPlan:
    """Each folder argument is one speaker (all its audio), each file argument a speaker of its own; the
    output (when given) is checked like every other: kind, extension, never an input, ``--force``."""
    plan = EmbeddingPlan({})
    files: list[Path] = []
    for arg in map(Path, paths):
        if arg.suffix == ".jsonl":  # a manifest (`vconv prepare`): its speakers, each with its utterances
            files += _manifest_groups(arg, plan)
            continue
        name = arg.name if arg.is_dir() else arg.stem
        while name in plan.groups:
            name += "'"
        group = audio_files(arg, plan.failed)  # an unreadable folder is one listed failure, as in `convert`
        files += group
        plan.groups[name] = [f for f in group if not _record(header_failure(f), plan.failed)]
    plan.groups = {name: group for name, group in plan.groups.items() if group}
    if out is not None:
        out = check_output_path(out, extensions=EMBEDDING_EXTENSIONS, what="embeddings output")
        check_distinct_outputs([(files[0], out)] if files else [], [(f, "input") for f in files])
        if out.exists() and not force:
            raise VconvError(f"{out}: already exists; pass --force to overwrite")
    return plan


def _manifest_groups(manifest: Path, plan: EmbeddingPlan) -> list[Path]:
    """A manifest's utterances into ``plan.groups`` by their speaker (those whose headers read); all of its files."""
    from vconv.data.manifest import read_manifest

    files = []
    for utt in read_manifest(manifest, nonempty=True):
        files.append(Path(utt.path))
        if not _record(header_failure(Path(utt.path)), plan.failed):
            plan.groups.setdefault(utt.speaker, []).append(Path(utt.path))
    return files


def _record(bad: BadFile | None, failed: list[BadFile]) -> bool:
    if bad is not None:
        failed.append(bad)
    return bad is not None
