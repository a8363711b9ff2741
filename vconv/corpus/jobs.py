"""A corpus conversion's items: manifest in, manifest out, each output written once and known by its key.

An item is one source utterance of the input manifest (the format ``vconv prepare`` writes; a line may name its own
``target``: a reference, a list of them, or a voice file, relative to the manifest), its target voice, and its output
``OUT/<id>.wav``. Its *key* is the sha256 of the source's bytes, the target files' bytes and the conversion's settings
(the bundle's digest, and each setting not at its default: :meth:`ConversionSettings.key`): a rerun with the same key finds the output done (its digest checked against the
record) and converts nothing; another key converts again only with ``force``.

Every output is written atomically, then its record (``.records/<name>.json`` beside it) (key, the output's sha256): an item
interrupted anywhere (a killed worker, a lost machine) has either both or no complete output, never half a file; the
output manifest ``OUT/manifest.jsonl`` lists every item with its status and error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vconv.data.manifest import read_manifest
from vconv.errors import VconvError
from vconv.fileio import check_output_path, read_json_object, sha256_of, write_text_atomic

RECORDS = ".records"  # per-item records below the output folder
OUTPUT_MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class CorpusItem:
    """One utterance to convert: ``source`` (absolute path), its ``speaker``, ``target`` (reference paths or one voice
    file; empty: the run's target policy decides), ``output`` (absolute path), and the source's ``text`` when the
    manifest gives it (carried into the output manifest for ``vconv evaluate --corpus``)."""

    id: str
    source: str
    speaker: str
    target: tuple[str, ...]
    output: str
    text: str | None = None


@dataclass
class ItemResult:
    """What became of one item: ``status`` ``converted`` (now), ``done`` (by an earlier run with the same key) or
    ``failed`` (with ``error``); ``seconds`` of audio converted now. ``speaker`` and ``text`` are the source's;
    ``voice`` the files its target voice was made from (the references or voice file; a pseudo-voice's pool voices,
    heaviest first, with ``anonymised`` set), so the output manifest alone says what to judge each output against."""

    id: str
    source: str
    output: str
    status: str
    key: str = ""
    error: str = ""
    seconds: float = 0.0
    speaker: str = ""
    text: str | None = None
    voice: list[str] = field(default_factory=list)
    anonymised: bool = False

    @classmethod
    def of(cls, item: CorpusItem, status: str, error: str = "") -> "ItemResult":
        """A result for ``item`` with its identity (id, source, output, speaker, text) filled in."""
        return cls(item.id, item.source, item.output, status, error=error, speaker=item.speaker, text=item.text)


def plan_items(manifest: str | Path, out_dir: str | Path, suffix: str = ".wav") -> list[CorpusItem]:
    """The items of ``manifest`` with their outputs ``out_dir/<id><suffix>`` (checked before any model loads)."""
    out = check_output_path(out_dir, expect="folder", what="output folder")
    items = []
    for utt in read_manifest(manifest, nonempty=True):
        target = utt.extra.get("target", ())
        listed = [target] if isinstance(target, str) else list(target)
        if not all(isinstance(t, str) for t in listed):
            raise VconvError(f"{manifest}: {utt.id}: target must be a path or a list of paths, got {target!r}")
        base = Path(manifest).parent
        refs = tuple(str(p if Path(p).is_absolute() else (base / p).resolve()) for p in listed)
        # ids are safe relative names (read_manifest checks them): the output stays below the folder
        items.append(CorpusItem(utt.id, utt.path, utt.speaker, refs, str(out / f"{utt.id}{suffix}"), utt.text))
    return items


def item_key(item: CorpusItem, target_files: Sequence[str], settings: str) -> str:
    """The sha256 of the source's and the target files' contents and of ``settings`` (what the output depends on)."""
    digest = hashlib.sha256(settings.encode())
    for path in (item.source, *target_files):
        digest.update(sha256_of(path).encode())
    return digest.hexdigest()


def record_path(item: CorpusItem) -> Path:
    """Where the item's record lives: ``.records/<output name>.json`` beside its output."""
    out = Path(item.output)
    return out.parent / RECORDS / (out.name + ".json")


def is_done(item: CorpusItem, key: str) -> bool:
    """Whether an earlier run wrote this item's output with ``key`` and the output is still what it wrote."""
    record = record_path(item)
    if not record.is_file() or not Path(item.output).is_file():
        return False
    try:
        written = read_json_object(record, "corpus record")
    except VconvError:
        return False
    return written.get("key") == key and written.get("sha256") == sha256_of(item.output)


def write_record(item: CorpusItem, key: str, *, pending: bool = False) -> None:
    """The item's record: its key, and the output's digest once it is in place (``pending``: before it is written, so
    an interrupted attempt is known as this key's and redone)."""
    record = record_path(item)
    record.parent.mkdir(parents=True, exist_ok=True)
    digest = None if pending else sha256_of(item.output)
    write_text_atomic(record, json.dumps({"id": item.id, "key": key, "sha256": digest}) + "\n")


def write_output_manifest(out_dir: str | Path, results: Sequence[ItemResult]) -> Path:
    """``OUT/manifest.jsonl``: one line per item, in the input's order (atomically)."""
    path = Path(out_dir) / OUTPUT_MANIFEST
    write_text_atomic(path, "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in results))
    return path


def load_json_lines(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file (the output manifest), for callers and tests."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
