"""The work itself, the same whichever engine schedules it: one worker loads the model once and converts items.

:class:`CorpusWorker` is built from picklable :class:`WorkerSpec` (so a process or a Ray actor can build its own) and
converts one :class:`~vconv.corpus.jobs.CorpusItem` per call: the target prepared once per voice (a pseudo-voice once
per speaker), the output written atomically after a record saying which key it is being written for, then the record
completed with the output's digest. An item interrupted at any point is redone from scratch by the next attempt; one
that completed is never converted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vconv.corpus.jobs import CorpusItem, ItemResult, is_done, item_key, record_path, write_record
from vconv.corpus.voices import TargetPolicy, pseudo_voice
from vconv.errors import VconvError
from vconv.fileio import read_json_object


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker builds itself from: the ``bundle`` folder, the conversion ``settings``, the target ``policy``,
    ``threads`` per worker, and ``force`` (replace outputs that earlier runs made with other keys)."""

    bundle: str
    settings: Any  # vconv.inference.settings.ConversionSettings
    policy: TargetPolicy
    threads: int | None = None
    force: bool = False


class CorpusWorker:
    """Converts items with one model load; ``worker(item) -> ItemResult``."""

    def __init__(self, spec: WorkerSpec) -> None:
        from vconv.inference.converter import load

        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.converter = load(spec.bundle, spec.settings)
        # what an output depends on besides its source and target files: the bundle's weights and the settings
        self.settings_key = f"{self.converter.info.digest}|{spec.settings!r}|{spec.policy.describe()}"
        self._targets: dict[tuple[str, ...], tuple[Any, list[str]]] = {}  # voice key -> (TargetVoice, its files)

    def __call__(self, item: CorpusItem) -> ItemResult:
        result = ItemResult.of(item, "failed")
        try:
            files = self.spec.policy.files(item.speaker, item.target)
            result.key = item_key(item, files, self.settings_key)
            result.anonymised = self._anonymous(item)
            # a pseudo-voice's files are known once it is mixed; any other voice's are the files themselves (a done item
            # prepares no voice for them)
            result.voice = self._target(item, files)[1] if result.anonymised else list(files)
            if is_done(item, result.key):
                result.status = "done"
                return result
            self._claim(item, result.key)
            result.seconds = self._convert(item, files)
            write_record(item, result.key)
        except VconvError as exc:
            result.error = str(exc).splitlines()[0]
            return result
        result.status = "converted"
        return result

    def _claim(self, item: CorpusItem, key: str) -> None:
        """Record that ``key`` is being written to the item's output; an output that is not this run's to replace (no
        record, or another key's, without ``force``) is an error: nothing the user owns is overwritten."""
        record = record_path(item)
        if Path(item.output).exists() and not self.spec.force:
            earlier = read_json_object(record, "corpus record") if record.is_file() else {}
            if earlier.get("key") != key:
                raise VconvError(f"{item.output}: already exists (made with other settings or inputs, or not by vconv); "
                                 "pass --force to replace it")
        write_record(item, key, pending=True)

    def _convert(self, item: CorpusItem, files: tuple[str, ...]) -> float:
        from vconv.inference.batch import convert_one

        Path(item.output).parent.mkdir(parents=True, exist_ok=True)
        target, _ = self._target(item, files)
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
