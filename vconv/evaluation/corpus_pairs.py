"""The pairs of a converted corpus, for ``vconv evaluate --corpus``: every output of ``vconv convert MANIFEST`` judged
against its source and the voice it was given, read from the corpus's output manifest alone.

Each line of ``OUT/manifest.jsonl`` (:mod:`vconv.corpus.jobs`) names the source, its speaker and text, and the files
its target voice was made from (``voice``: the references or voice file; a pseudo-voice's pool voices, heaviest
first). A pair's ``source_other`` is another utterance of the same source speaker in the corpus (seeded), so
similarity to the source is never judged on the file that was converted; its target is the voice's first file, so a
pseudo-voice is judged against the heaviest voice of its mix (and has no ground-truth row: the mix's other voices
are other speakers). The source speakers' own recordings are the
verifier's pool: :func:`~vconv.evaluation.scoring.linkability` says how often the converted set is still linked to
them (the anonymisation measure).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from vconv.errors import VconvError
from vconv.evaluation.pairs import EvalPair
from vconv.fileio import read_text

JUDGED = ("converted", "done")  # statuses whose output exists; `failed` lines are counted, not judged
NEEDED = ("id", "source", "status", "speaker", "voice")


def read_corpus_lines(path: str | Path) -> tuple[Path, list[dict]]:
    """``(the output folder, the lines of its manifest)``; ``path`` is the folder or its ``manifest.jsonl``."""
    path = Path(path)
    manifest = path / "manifest.jsonl" if path.is_dir() else path
    text = read_text(manifest, "corpus output manifest")
    try:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise VconvError(f"{manifest}: not valid JSON Lines ({exc.msg} at line {exc.lineno})") from None
    if not lines or not all(isinstance(line, dict) for line in lines):
        raise VconvError(f"{manifest}: not a corpus output manifest (JSON Lines of objects, as `vconv convert MANIFEST` writes)")
    old = next((line for line in lines if any(key not in line for key in NEEDED)), None)
    if old is not None:
        raise VconvError(f"{manifest}: line {old.get('id', '?')} lacks {', '.join(k for k in NEEDED if k not in old)}: "
                         "written by an older vconv or not by `vconv convert MANIFEST`; run the same convert command again "
                         "(it converts nothing already done and rewrites the manifest)")
    return manifest.parent, lines


def corpus_pairs(path: str | Path, seed: int = 0) -> tuple[list[EvalPair], list[str]]:
    """The judged pairs of the corpus at ``path`` and the report's notes about them (failures, pseudo-voices)."""
    folder, lines = read_corpus_lines(path)
    judged = [line for line in lines if line["status"] in JUDGED]
    if any(str(line.get("output", "")).endswith(".npy") for line in lines):
        raise VconvError(f"{folder}: embeddings written by `vconv embed`, not a converted corpus")
    if not judged:
        raise VconvError(f"{folder}: no converted output to evaluate ({len(lines)} line(s), none converted)")
    speaker_of = {str(Path(line["source"]).resolve()): line["speaker"] for line in lines}
    by_speaker: dict[str, list[str]] = {}
    for line in sorted(lines, key=lambda line: line["id"]):
        by_speaker.setdefault(line["speaker"], []).append(line["source"])
    pairs = [_pair(line, folder, by_speaker, speaker_of, seed) for line in judged]
    notes = [f"A converted corpus ({folder}): {len(pairs)} output(s) judged against their sources"
             + (f"; {len(lines) - len(judged)} failed conversion(s) not judged." if len(judged) < len(lines) else ".")]
    if any(line.get("anonymised") for line in judged):
        notes.append("Pseudo-voices (`--anonymise`): similarity to the target is to the heaviest pool voice of each mix.")
    return pairs, notes


def _pair(line: dict, folder: Path, by_speaker: dict[str, list[str]], speaker_of: dict[str, str], seed: int) -> EvalPair:
    """One output line as a pair; its output is ``<folder>/<id>.wav`` (the corpus layout, so a moved folder still works)."""
    converted = folder / f"{line['id']}.wav"
    if not converted.is_file():
        raise VconvError(f"{converted}: the output of {line['id']} is missing (moved or deleted since the run?)")
    voice = [str(v) for v in line["voice"]] if isinstance(line["voice"], list) else []
    if not voice:
        raise VconvError(f"{folder}: line {line['id']} names no voice")
    others = [s for s in by_speaker[line["speaker"]] if s != line["source"]]
    # the voice's speaker: the corpus's label when the voice is one of its sources, else its folder's name
    target_speaker = speaker_of.get(str(Path(voice[0]).resolve()), Path(voice[0]).resolve().parent.name)
    if line.get("anonymised"):  # a mix of other speakers: only its heaviest voice is a target to judge against
        voice = voice[:1]
    return EvalPair(source=line["source"], target_refs=voice, converted=str(converted),
                    source_other=random.Random(f"{seed}|{line['id']}").choice(others) if others else None,
                    text=line.get("text"), source_speaker=line["speaker"], target_speaker=target_speaker, id=line["id"])
