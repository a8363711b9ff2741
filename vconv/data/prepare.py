"""`vconv prepare`: scan a corpus, write the manifest and its speaker-disjoint splits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vconv.data.manifest import BadFile, Split, Utterance, scan_speaker_folders, split_by_speaker, write_manifest
from vconv.errors import VconvError, printable
from vconv.fileio import write_text_atomic

SPLIT_NAMES = ("train", "valid", "test")


@dataclass
class PrepareReport:
    out_dir: Path
    utterances: int
    speakers: int
    hours: float
    split: Split
    bad: list[BadFile]

    @classmethod
    def from_scan(cls, out_dir: str | Path, utterances: Sequence[Utterance], split: Split, bad: list[BadFile], **extra):
        """The report of a corpus scan and its split (``extra``: fields of a subclass)."""
        return cls(
            out_dir=Path(out_dir),
            utterances=len(utterances),
            speakers=len({u.speaker for u in utterances}),
            hours=sum(u.duration for u in utterances) / 3600,
            split=split,
            bad=bad,
            **extra,
        )

    @property
    def failures(self) -> list[BadFile]:
        """What could not be read (files, folders): a partial result, unlike files left out as asked."""
        return [b for b in self.bad if b.failure]

    def summary(self) -> str:
        """Counts, then every file or folder left out; names are escaped (:func:`~vconv.errors.printable`), so
        each stays on its line whatever bytes it holds."""
        lines = [
            f"{self.utterances} utterances, {self.speakers} speakers, {self.hours:.2f} h -> {printable(str(self.out_dir))}",
        ]
        for name in SPLIT_NAMES:
            utts = getattr(self.split, name)
            hours = sum(u.duration for u in utts) / 3600
            lines.append(f"  {name:5s}: {len(utts):6d} utterances, {len(self.split.speakers(name)):4d} speakers, {hours:.2f} h")
        if self.bad:
            lines.append(f"skipped {len(self.bad)} file(s) or folder(s):")
            lines += [f"  {printable(b.path)}: {printable(b.reason)}" for b in self.bad]
        return "\n".join(lines)


def write_splits(
    out_dir: str | Path, utterances: Sequence[Utterance], split: Split, bad: list[BadFile], *, force: bool = False
) -> Path:
    """Write ``all/train/valid/test.jsonl`` and ``split.json`` (speaker lists, bad files) into ``out_dir``."""
    out_dir = Path(out_dir)
    targets = [out_dir / f"{name}.jsonl" for name in ("all", *SPLIT_NAMES)]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise VconvError(f"{existing[0]}: already exists; pass --force to overwrite the manifests")
    write_manifest(out_dir / "all.jsonl", utterances)
    for name in SPLIT_NAMES:
        write_manifest(out_dir / f"{name}.jsonl", getattr(split, name))
    info: dict[str, Any] = {name: split.speakers(name) for name in SPLIT_NAMES}
    info["bad_files"] = [{"path": b.path, "reason": b.reason} for b in bad]
    write_text_atomic(out_dir / "split.json", json.dumps(info, indent=2) + "\n")
    return out_dir


def prepare_corpus(
    root: str | Path,
    out_dir: str | Path,
    *,
    test_speakers: Sequence[str] | None = None,
    num_test_speakers: int = 0,
    valid_speakers: Sequence[str] | None = None,
    num_valid_speakers: int = 0,
    seed: int = 0,
    min_seconds: float = 0.0,
    force: bool = False,
) -> PrepareReport:
    """Generic layout ``ROOT/<speaker>/**/*.{wav,flac,ogg}`` → manifests in ``out_dir``."""
    scan = scan_speaker_folders(root, min_seconds=min_seconds)
    if not scan.utterances:
        raise VconvError(f"{root}: no usable audio ({len(scan.bad)} bad file(s), first: {scan.bad[0].path}: {scan.bad[0].reason})")
    split = split_by_speaker(
        scan.utterances,
        test_speakers=test_speakers,
        num_test_speakers=num_test_speakers,
        valid_speakers=valid_speakers,
        num_valid_speakers=num_valid_speakers,
        seed=seed,
    )
    write_splits(out_dir, scan.utterances, split, scan.bad, force=force)
    return PrepareReport.from_scan(out_dir, scan.utterances, split, scan.bad)
