"""Which audio is compared with which: the evaluation pairs, read from a protocol file or made by converting.

A protocol is a list of :class:`EvalPair`: a source utterance, the target reference(s) given to the
converter, the converted output, and — for honest similarity — a *different* utterance of the target
(``target_other``) that the converter never saw. :func:`make_pairs` builds such a list from held-out
speakers and a conversion function; :func:`read_protocol` reads one from JSON. :func:`speaker_pool`
lists the real utterances the pairs mention (for the verifier in :mod:`~vconv.evaluation.scoring`).
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from vconv.audio.io import save as save_audio
from vconv.errors import VconvError
from vconv.evaluation import metrics as M
from vconv.fileio import check_distinct_outputs, read_text

# (source path, ref paths) -> (wav [T], sr), or (wav [T], sr, the model's own output [T] without matching)
ConvertFn = Callable[[str, list[str]], tuple]
PATH_FIELDS = ("source", "converted", "target_other", "target_parallel", "source_other", "unmatched")


@dataclass
class EvalPair:
    """One conversion to judge. Paths are strings; only ``source``, ``target_refs`` and ``converted`` are required.

    ``target_other`` should be an utterance of the target that is *not* among ``target_refs``: judging
    similarity against the very reference the converter copied from flatters it. Without one, the
    first reference is used and the row says so (``target_judged_on``).
    """

    source: str
    target_refs: list[str]
    converted: str
    target_other: str | None = None
    target_parallel: str | None = None  # target speaker saying the source's sentence (ground truth)
    source_other: str | None = None  # another utterance of the source speaker
    text: str | None = None  # transcript of the source
    source_speaker: str | None = None
    target_speaker: str | None = None
    convert_seconds: float | None = None  # wall time of the conversion, for RTF
    id: str = ""
    unmatched: str | None = None  # the model's own output (target-spectrum matching off), when there is one

    def __post_init__(self) -> None:
        if isinstance(self.target_refs, (str, Path)):
            self.target_refs = [self.target_refs]
        if not self.target_refs:
            raise VconvError(f"pair {self.id or self.source}: needs at least one target reference")
        for name in PATH_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, str(value))
        self.target_refs = [str(p) for p in self.target_refs]
        if not self.id:
            target = self.target_speaker or Path(self.target_refs[0]).stem
            self.id = f"{Path(self.source).stem}->{target}"

    @classmethod
    def from_dict(cls, record: dict[str, Any], base: Path | None = None) -> "EvalPair":
        """Build from a protocol record (``target_ref`` may stand for a one-item ``target_refs``);
        relative paths are resolved against ``base``."""
        rec = dict(record)
        if "target_ref" in rec:
            rec.setdefault("target_refs", [rec.pop("target_ref")])
        missing = [k for k in ("source", "target_refs", "converted") if not rec.get(k)]
        if missing:
            raise VconvError(f"protocol record {record!r}: missing {', '.join(missing)}")
        unknown = set(rec) - set(cls.__dataclass_fields__)
        if unknown:
            raise VconvError(f"protocol record {rec.get('id') or rec['source']}: unknown keys {sorted(unknown)}")

        if base is not None:
            resolve = lambda p: str(base / p)  # noqa: E731 — an absolute p stays as it is under "/"
            for k in PATH_FIELDS:
                if rec.get(k) is not None:
                    rec[k] = resolve(rec[k])
            refs = rec["target_refs"] if isinstance(rec["target_refs"], list) else [rec["target_refs"]]
            rec["target_refs"] = [resolve(p) for p in refs]
        return cls(**rec)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_protocol(path: str | Path) -> list[EvalPair]:
    """Read pairs from a JSON list or JSON Lines file of :class:`EvalPair` records (paths relative to the file)."""
    path = Path(path)
    text = read_text(path, "protocol file")
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise VconvError(f"{path}: not valid JSON/JSONL ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, RecursionError) as exc:
        raise VconvError(f"{path}: not valid JSON/JSONL ({type(exc).__name__})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise VconvError(f"{path}: a protocol is a JSON list (or JSON Lines) of objects")
    return [EvalPair.from_dict(r, path.parent) for r in records]


# ------------------------------------------------------------------------------------ making pairs


def safe_name(name: str) -> str:
    """``name`` made safe for a file name (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def make_pairs(
    utterances: Sequence[Any],
    convert_fn: ConvertFn,
    out_dir: str | Path,
    *,
    max_sources_per_speaker_pair: int | None = None,
    target_refs: int = 1,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> list[EvalPair]:
    """Convert every source utterance to every *other* held-out speaker and return the pairs.

    ``utterances``: :class:`vconv.data.manifest.Utterance`-like objects (``id``, ``path``, ``speaker``, ``text``).
    For each ordered speaker pair (A → B) and each chosen source utterance of A (all, or a seeded sample
    of ``max_sources_per_speaker_pair``): the target's utterance with the same sentence becomes the
    ground truth (``target_parallel``), and two *other* utterances of B are drawn as the conversion
    reference and the similarity reference, so neither the ground truth nor the judged reference is
    ever shown to the converter. ``target_refs > 1`` adds more conversion references (averaged by the
    converter's speaker path; fewer when B has too few) from a separate seeded draw, so the judged
    utterance, the first reference and the source's other utterance are the same for every N. Choices
    are seeded per (source, target) pair, so they do not depend on list order. A target with fewer than
    two utterances cannot be judged honestly and is skipped.

    Each output is written to ``out_dir/converted/<source id>__to__<target>.wav``, and the model's own output,
    when ``convert_fn`` gives it, to ``out_dir/unmatched/`` under the same name; only the ``convert_fn`` call
    is timed (``convert_seconds``), not the file writing.
    """
    if target_refs < 1:
        raise VconvError(f"target_refs {target_refs}: expected 1 or more")
    by_speaker: dict[str, list[Any]] = {}
    for u in sorted(utterances, key=lambda u: u.id):
        by_speaker.setdefault(u.speaker, []).append(u)
    plan = _plan(by_speaker, max_sources_per_speaker_pair, seed)
    out = Path(out_dir) / "converted"
    # ids and speaker names become file names: two that flatten to the same name, or a name that is one of
    # the inputs, would overwrite a file; refused before the first conversion
    check_distinct_outputs([(Path(s.path), out / f"{safe_name(s.id)}__to__{safe_name(b)}.wav") for s, b in plan],
                           [(Path(u.path), "held-out utterance") for u in utterances])
    pairs = []
    for src, b in tqdm(plan, desc="converting", unit="pair", disable=not progress):
        refs, judge_on, parallel, src_other = _references(src, b, by_speaker, target_refs, seed)
        started = time.perf_counter()
        wav, sr, *own = convert_fn(str(src.path), [str(r.path) for r in refs])
        elapsed = time.perf_counter() - started
        name = f"{safe_name(src.id)}__to__{safe_name(b)}.wav"
        path = save_audio(out / name, np.asarray(wav, dtype=np.float32), int(sr), force=force)
        unmatched = save_audio(out.parent / "unmatched" / name, np.asarray(own[0], dtype=np.float32), int(sr), force=force) \
            if own and own[0] is not None else None
        pairs.append(EvalPair(
            source=str(src.path), target_refs=[str(r.path) for r in refs], converted=str(path),
            target_other=str(judge_on.path), target_parallel=str(parallel.path) if parallel else None,
            source_other=str(src_other.path) if src_other else None, text=src.text, source_speaker=src.speaker,
            target_speaker=b, convert_seconds=elapsed, id=f"{src.id}->{b}",
            unmatched=str(unmatched) if unmatched else None,
        ))
    return pairs


def _plan(by_speaker: dict[str, list[Any]], max_sources: int | None, seed: int) -> list[tuple[Any, str]]:
    """``(source utterance, target speaker)`` for every ordered pair of different speakers whose target has
    two or more utterances; at most ``max_sources`` sources per speaker pair (a seeded sample)."""
    speakers = sorted(by_speaker)
    if len(speakers) < 2:
        raise VconvError(f"evaluation needs at least two held-out speakers, got {len(speakers)}: {speakers}")
    plan: list[tuple[Any, str]] = []
    for a in speakers:
        for b in speakers:
            if a == b or len(by_speaker[b]) < 2:
                continue
            sources = by_speaker[a]
            if max_sources is not None and len(sources) > max_sources:
                sources = random.Random(f"{seed}|{a}|{b}").sample(sources, max_sources)
                sources.sort(key=lambda u: u.id)
            plan.extend((s, b) for s in sources)
    if not plan:
        raise VconvError("no speaker has two or more utterances; each target needs a reference and a second utterance to judge against")
    return plan


def _references(src: Any, b: str, by_speaker: dict[str, list[Any]], target_refs: int,
                seed: int) -> tuple[list[Any], Any, Any, Any]:
    """``(conversion references, judged utterance, ground truth or None, source's other utterance or None)``
    for converting ``src`` to speaker ``b``, seeded per (source, target) (see :func:`make_pairs`)."""
    rng = random.Random(f"{seed}|{src.id}|{b}")
    targets = by_speaker[b]
    key = M.normalize_text(src.text) if src.text else None
    parallel = next((t for t in targets if key and t.text and M.normalize_text(t.text) == key), None)
    others = [t for t in targets if t is not parallel]
    if len(others) >= 2:
        ref, judge_on = rng.sample(others, 2)
        spare = [t for t in others if t is not ref and t is not judge_on]
        extra = random.Random(f"{seed}|{src.id}|{b}|refs").sample(spare, min(target_refs - 1, len(spare)))
        refs = [ref, *extra]
    else:  # only one non-parallel utterance: give up the ground truth rather than leak it
        refs, judge_on, parallel = [others[0]], parallel, None
    rest = [u for u in by_speaker[src.speaker] if u.id != src.id]
    src_other = rng.choice(rest) if rest else None
    return refs, judge_on, parallel, src_other


def speaker_pool(pairs: Iterable[EvalPair], utterances: Iterable[Any] | None = None) -> dict[str, str]:
    """Real (unconverted) utterances of the evaluation speakers: resolved path → speaker.

    From ``utterances`` (``path``/``speaker``) when given, plus every real file the pairs mention. A pair
    without speaker labels falls back to the file's folder name (the ``ROOT/<speaker>/...`` layout).
    """
    pool: dict[str, str] = {}

    def add(path: str | None, speaker: str | None) -> None:
        if path is not None:
            pool.setdefault(str(Path(path).resolve()), speaker or Path(path).resolve().parent.name)

    for u in utterances or ():
        add(str(u.path), u.speaker)
    for p in pairs:
        add(p.source, p.source_speaker)
        add(p.source_other, p.source_speaker)
        for r in p.target_refs:
            add(r, p.target_speaker)
        add(p.target_other, p.target_speaker)
        add(p.target_parallel, p.target_speaker)
    return pool
