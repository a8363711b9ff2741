"""The work itself, the same whichever engine schedules it: one worker loads the model once and does items.

:class:`ItemWorker` owns the record protocol every corpus output follows: the item's key, "done" when an earlier run
wrote the same key, a record saying which key is being written before the output is (atomically), then the record
completed with the output's digest. An item interrupted at any point is redone from scratch by the next attempt; one
that completed is never done again. :class:`CorpusWorker` converts (``vconv convert MANIFEST``); the embedding worker
(:mod:`vconv.corpus.embedding`) embeds. Both are built from a picklable spec's ``build()`` (so a process or a Ray
actor can build its own).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vconv.corpus.jobs import CorpusItem, ItemResult, is_done, item_key, record_path, write_record
from vconv.corpus.voices import TargetPolicy, pseudo_voice
from vconv.errors import VconvError
from vconv.fileio import read_json_object
from vconv.inference.threads import apply_threads


class ItemWorker(ABC):
    """One model load, many items: ``worker(item) -> ItemResult``, never raising for a bad item."""

    force: bool = False  # replace outputs that earlier runs made with other keys
    made = "converted"  # the status of an item done now

    def __call__(self, item: CorpusItem) -> ItemResult:
        result = ItemResult.of(item, "failed")
        try:
            self.describe(item, result)
            if is_done(item, result.key):
                result.status = "done"
                return result
            if any(is_done(item, key) for key in self.earlier_keys(item)):  # the same output, keyed by an older vconv
                write_record(item, result.key)
                result.status = "done"
                return result
            self._claim(item, result.key)
            Path(item.output).parent.mkdir(parents=True, exist_ok=True)
            result.seconds = self.produce(item)
            write_record(item, result.key)
        except VconvError as exc:
            result.error = str(exc).splitlines()[0]
            return result
        result.status = self.made
        return result

    @abstractmethod
    def describe(self, item: CorpusItem, result: ItemResult) -> None:
        """Fill in ``result.key`` (what the output depends on) and what the output manifest says of the item."""

    def earlier_keys(self, item: CorpusItem) -> list[str]:
        """Keys an earlier vconv gave this item's output for the same inputs and settings (its record is then updated)."""
        return []

    @abstractmethod
    def produce(self, item: CorpusItem) -> float:
        """Write ``item.output`` atomically; the seconds of source audio it took in."""

    def _claim(self, item: CorpusItem, key: str) -> None:
        """Record that ``key`` is being written to the item's output; an output that is not this run's to replace (no
        record, or another key's, without ``force``) is an error: nothing the user owns is overwritten."""
        record = record_path(item)
        if Path(item.output).exists() and not self.force:
            if not record.is_file():
                raise VconvError(f"{item.output}: already exists and was not made by this corpus's vconv runs; "
                                 "pass --force to replace it")
            if read_json_object(record, "corpus record").get("key") != key:
                raise VconvError(f"{item.output}: already exists, made with other settings, inputs or conversion rules "
                                 "(a vconv upgrade can change the rules); pass --force to make it again")
        write_record(item, key, pending=True)


@dataclass(frozen=True)
class WorkerSpec:
    """What a conversion worker builds itself from: the ``bundle`` folder, the conversion ``settings``, the target
    ``policy``, ``threads`` per worker, and ``force`` (replace outputs that earlier runs made with other keys)."""

    bundle: str
    settings: Any  # vconv.inference.settings.ConversionSettings
    policy: TargetPolicy
    threads: int | None = None
    force: bool = False

    def build(self) -> "CorpusWorker":
        return CorpusWorker(self)


class CorpusWorker(ItemWorker):
    """Converts items with one model load; the target voice prepared once per voice (a pseudo-voice once per speaker)."""

    def __init__(self, spec: WorkerSpec) -> None:
        from vconv.inference.converter import load

        apply_threads(spec.threads)  # each worker's own (the engine runs several side by side)
        self.spec, self.force = spec, spec.force
        self.converter = load(spec.bundle, spec.settings)
        # what an output depends on besides its source and target files: the bundle's weights and the settings
        rules = self.rules()
        self.settings_key = f"{self.converter.info.digest}|{spec.settings.key()}|{spec.policy.describe()}{rules}"
        # the releases before ConversionSettings.key() keyed outputs by the settings' repr; with a rule of today's
        # (pitch rules, the comb depth, the spread rule) their outputs were made otherwise and are not taken as done
        self._repr_key = None if rules else f"{self.converter.info.digest}|{spec.settings!r}|{spec.policy.describe()}"
        self._targets: dict[tuple[str, ...], tuple[Any, list[str]]] = {}  # voice key -> (TargetVoice, its files)

    def describe(self, item: CorpusItem, result: ItemResult) -> None:
        files = self.spec.policy.files(item.speaker, item.target)
        result.key = item_key(item, files, self.settings_key)
        result.anonymised = self._anonymous(item)
        # a pseudo-voice's files are known once it is mixed; any other voice's are the files themselves (a done item
        # prepares no voice for them)
        result.voice = self._target(item, files)[1] if result.anonymised else list(files)

    def rules(self) -> str:
        """The conversion's rules that its outputs depend on besides the bundle and the settings (``|``-prefixed;
        empty when none apply): a pitch model's pitch rules, the harmonic excitation's comb depth, the meanstd
        matching's spread rule."""
        from vconv.inference import target_match
        from vconv.models.contour import PITCH_RULES
        from vconv.vocoders.harmonics import COMB_DEPTH

        rules = f"|{PITCH_RULES}" if self.converter.model.reads_pitch else ""
        if self.converter.harmonics:  # outputs of the depth before 2026-11-29 (1.5) were keyed without it
            rules += f"|comb depth {COMB_DEPTH:g}"
        if self.converter.target_match == "meanstd":
            rules += f"|{target_match.spread_rules(self.converter.enhance)}"
        return rules

    def earlier_keys(self, item: CorpusItem) -> list[str]:
        if self._repr_key is None:
            return []
        return [item_key(item, self.spec.policy.files(item.speaker, item.target), self._repr_key)]

    def produce(self, item: CorpusItem) -> float:
        from vconv.inference.batch import convert_one

        target, _ = self._target(item, self.spec.policy.files(item.speaker, item.target))
        return convert_one(self.converter, Path(item.source), target, Path(item.output),
                           rate=self.converter.sample_rate, force=True)

    def _anonymous(self, item: CorpusItem) -> bool:
        """Whether the item gets its speaker's pseudo-voice (no target of its own, no default, ``--anonymise``)."""
        policy = self.spec.policy
        return policy.anonymise and not item.target and not policy.default

    def _target(self, item: CorpusItem, files: tuple[str, ...]) -> tuple[Any, list[str]]:
        """The item's target voice and the files it was made from (a pseudo-voice's pool voices, heaviest first),
        prepared once per distinct voice (per speaker when anonymised)."""
        policy, anonymous = self.spec.policy, self._anonymous(item)
        cache_key = ("speaker:" + item.speaker,) if anonymous else files
        if cache_key not in self._targets:
            if anonymous:
                pool = [self._targets.setdefault((voice,), (self.converter.target_voice([voice]), [voice]))[0]
                        for voice in policy.pool]
                own = self.converter.speaker_embedding([policy.first_utterance[item.speaker]])
                voice, chosen = pseudo_voice(self.converter, pool, own, policy.seed, item.speaker)
                self._targets[cache_key] = (voice, [policy.pool[i] for i in chosen])
            else:
                self._targets[cache_key] = (self.converter.target_voice(list(files)), list(files))
        return self._targets[cache_key]
