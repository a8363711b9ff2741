"""`vconv extract`: log-mel features for every utterance of a manifest, in parallel and resumably.

Each utterance becomes ``OUT/<id>.safetensors`` (see :mod:`vconv.data.feature_files`). Files are written
atomically, so after a kill every file present is complete; a rerun skips the ones whose stored
FeatureConfig matches and recomputes the rest. A bad audio file is skipped and reported at the end
with its reason (`vconv extract` then exits 3 unless ``--allow-skips``). Manifest ids are safe relative
names (:func:`vconv.data.manifest.read_manifest`), so no feature file is ever written outside ``OUT``. When done, per-bin statistics over the manifest's features
(or over those of the ``stats_from`` manifest, e.g. the training split) are written to
``OUT/stats.json``, and the FeatureConfig to ``OUT/features.yaml``.

With front-end parts (:mod:`vconv.frontends`; their weights from a front-end folder, :mod:`vconv.audio.pretrained`),
the files also hold what the parts give under each part's feature key (e.g. ``whisper4``: Whisper states of
block 4 aligned to the mel frames; ``pitch_yin``), so training never runs them per step. A file
lacking a requested tensor gets it added: only the missing parts run (adding a pitch tracker to a corpus whose
Whisper states are extracted costs the tracker alone).
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from vconv.audio.frontend import FrontEnd, compute_stats
from vconv.config import FeatureConfig, load_yaml, save_yaml
from vconv.data.feature_files import checked_metadata, load_feature_tensors, load_features, save_features, stale_keys, stored_versions
from vconv.data.manifest import BadFile, Utterance, feature_path, read_manifest
from vconv.errors import VconvError, printable
from vconv.fileio import check_output_path, write_text_atomic
from vconv.frontends import FrontEndPart, build_frontend_part, load_parts

STATS_FILE = "stats.json"
ROOM_SUFFIX = "_room"  # the feature key of a tensor computed on the recording in its simulated room
CONFIG_FILE = "features.yaml"


FrontEndSection = tuple[str, dict[str, Any]]  # (role, part section), e.g. ("content", {"kind": "whisper", "layer": 4})


@dataclass(frozen=True)
class ExtractSpec:
    """What to compute per utterance: the log-mel of ``features``, plus the outputs of front-end parts
    (:mod:`vconv.frontends`) whose weights come from ``frontends_dir`` (``vconv frontend prepare``).

    The log-mel parts need nothing beyond the mel, so they add no tensor.
    """

    features: dict
    frontends_dir: str | None = None
    frontends: tuple[FrontEndSection, ...] = ()
    # (seed, rt60 range, snr range): also every tensor of the recording in its simulated room (vconv.audio.rooms),
    # under the key + ROOM_SUFFIX: the degraded inputs that training rebuilds the clean mel from
    rooms: tuple[int, tuple[float, float], tuple[float, float]] | None = None

    def parts(self) -> list[FrontEndPart]:
        """The extra parts (no weights loaded), each with its own feature key."""
        built = [build_frontend_part(role, section) for role, section in self.frontends]
        return [part for part in built if not part.is_log_mel]

    @property
    def keys(self) -> tuple[str, ...]:
        clean = ("mel", *dict.fromkeys(part.feature_key for part in self.parts()))
        return clean + tuple(key + ROOM_SUFFIX for key in clean) if self.rooms else clean

    @property
    def versions(self) -> dict[str, int]:
        """The output version of each part's tensor, by feature key (with :attr:`rooms`, its room's key too)."""
        clean = {part.feature_key: part.output_version for part in self.parts()}
        return {**clean, **{key + ROOM_SUFFIX: version for key, version in clean.items()}} if self.rooms else clean

    def extractor(self) -> "Extractor":
        """What computes every requested tensor (the parts' weights loaded and checked)."""
        cfg = FeatureConfig.from_dict(self.features)
        parts = self.parts()
        if parts:
            from vconv.audio.pretrained import read_frontends_index

            index = read_frontends_index(self.frontends_dir) if self.frontends_dir else {}
            load_parts(tuple(parts), self.frontends_dir, index)
        return Extractor(FrontEnd(cfg), parts, self.rooms)


@dataclass
class Extractor:
    """The log-mel front-end and the loaded extra parts of an :class:`ExtractSpec`."""

    frontend: FrontEnd
    parts: list[FrontEndPart]
    rooms: tuple[int, tuple[float, float], tuple[float, float]] | None = None

    def compute(self, audio: str, have: dict[str, torch.Tensor] | None = None,
                key: str = "") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(mel [n_mels, F], {feature key: tensor})`` of one audio file (with :attr:`rooms`, also each in the room
        of recording ``key``); what ``have`` already holds (a feature file's tensors, the mel among them) is kept."""
        from vconv.audio.io import load

        have = have or {}
        wav, _ = load(audio, self.frontend.sample_rate)
        extra = {name: value for name, value in have.items() if name != "mel"}
        self._add_parts(wav, extra, "")
        mel = have["mel"] if "mel" in have else self.frontend.log_mel(wav)
        if self.rooms and not all(name + ROOM_SUFFIX in extra for name in ("mel", *(p.feature_key for p in self.parts))):
            from vconv.audio.rooms import draw_room, in_room

            seed, rt60, snr = self.rooms
            wet = in_room(wav, self.frontend.sample_rate, draw_room(seed, key, rt60, snr))
            extra.setdefault("mel" + ROOM_SUFFIX, self.frontend.log_mel(wet))
            self._add_parts(wet, extra, ROOM_SUFFIX)
        return mel, extra

    def _add_parts(self, wav: np.ndarray, extra: dict[str, torch.Tensor], suffix: str) -> None:
        """Each part's output of ``wav`` under its feature key + ``suffix``, unless ``extra`` holds it already."""
        for part in self.parts:
            if part.feature_key + suffix not in extra:
                extra[part.feature_key + suffix] = part.compute(wav, self.frontend).to(part.storage_dtype)


@dataclass
class ExtractReport:
    """Counts of one `extract` run; ``bad`` lists skipped files with the reason."""

    written: int = 0
    already_done: int = 0
    bad: list[BadFile] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def summary(self) -> str:
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        text = (
            f"{self.written} written, {self.already_done} already done, {len(self.bad)} skipped; "
            f"{self.audio_seconds / 3600:.3f} h of audio in {self.wall_seconds:.1f} s ({speed:.0f}x real time)"
        )
        if self.bad:
            # a manifest may name a file whose name holds a line break or a control character: escaped, one line each
            text += "\nskipped files:\n" + "\n".join(f"  {printable(b.path)}: {printable(b.reason)}" for b in self.bad)
        return text


_WORKER_EXTRACTOR: Extractor | None = None


def _init_worker(spec: ExtractSpec, parent: int) -> None:
    global _WORKER_EXTRACTOR
    _die_with_parent(parent)
    torch.set_num_threads(1)  # one process per core; intra-op threads would only fight each other
    _WORKER_EXTRACTOR = spec.extractor()


def _die_with_parent(parent: int) -> None:
    """Make this worker end when the process that started it does, however that one ends (a killed
    ``vconv extract -j N`` must not leave N workers extracting into its folder). Linux only: the kernel
    sends the worker SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``)."""
    # a forked worker inherits the CLI's SIGTERM handler, which raises SystemExit; the pool's worker loop
    # catches that as a task's failure and goes on: the default action (end the process) is what is meant here
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # no prctl in this libc: the pool's own shutdown is all there is
            pass
    if os.getppid() != parent:  # the parent died before the request above was made
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _extract_one(job: tuple[str, str, str, ExtractSpec]) -> tuple[str, float, str | None]:
    """Worker: ``(audio path, out path, id, spec)`` → ``(id, seconds of audio, error or None)``."""
    audio, out, utt_id, spec = job
    cfg = FeatureConfig.from_dict(spec.features)
    extractor = _WORKER_EXTRACTOR or spec.extractor()
    kept, versions = _tensors_to_keep(Path(out), cfg, spec.versions)
    try:
        mel, extra = extractor.compute(audio, kept, utt_id)
    except VconvError as exc:
        return utt_id, 0.0, str(exc).split(": ", 1)[-1]
    except Exception as exc:  # noqa: BLE001 - one bad file must not end a corpus run; reported at the end
        return utt_id, 0.0, f"{type(exc).__name__}: {exc}"
    save_features(out, mel, cfg, extra, {**versions, **spec.versions}, id=utt_id, source=audio)
    return utt_id, (mel.shape[1] - 1) * cfg.hop_length / cfg.sample_rate, None


def _tensors_to_keep(path: Path, cfg: FeatureConfig, versions: dict[str, int]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The tensors of an existing feature file made with ``cfg``, with their stored output versions (a file that lacks a
    part's output keeps the rest; a tensor an older version of its part made, by ``versions``, is left out to be made
    again); nothing for a missing, unreadable or differently made one."""
    if not path.is_file():
        return {}, {}
    try:
        meta = checked_metadata(path, cfg)  # the format and settings checks, from the header alone
        from safetensors.torch import load_file

        stale = set(stale_keys(meta, versions))
        return {k: v for k, v in load_file(str(path)).items() if k not in stale}, stored_versions(meta)
    except (VconvError, OSError, ValueError):
        return {}, {}


def is_done(path: Path, cfg: FeatureConfig, keys: tuple[str, ...] = ("mel",), versions: dict[str, int] | None = None) -> bool:
    """True when ``path`` holds complete features made with ``cfg``, with every tensor in ``keys`` (made by the
    parts' output ``versions``, by key)."""
    if not path.is_file():
        return False
    try:
        load_feature_tensors(path, cfg, keys, versions)
    except VconvError:
        return False
    return True


def extract_features(
    manifest: str | Path,
    out_dir: str | Path,
    cfg: FeatureConfig | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
    write_stats: bool = True,
    stats_from: str | Path | None = None,
    frontends_dir: str | Path | None = None,
    frontends: Sequence[FrontEndSection] = (),
    force: bool = False,
    rooms: tuple[int, tuple[float, float], tuple[float, float]] | None = None,
) -> ExtractReport:
    """Compute features for every utterance of ``manifest`` into ``out_dir``; see the module docstring.

    ``stats_from``: a manifest (e.g. the training split) whose utterances' features give ``stats.json``,
    so normalisation never sees evaluation speakers; each of them must be in ``manifest`` or already
    extracted in ``out_dir`` (checked before any work). ``frontends``: ``(role, section)`` of front-end
    parts whose outputs to store too, their weights from ``frontends_dir`` (see the module docstring).
    A folder already made with other feature settings is refused unless ``force`` (its files are then
    replaced as they are reached): features of two settings never mix silently. ``rooms``: also every tensor of each
    recording in its simulated room (:attr:`ExtractSpec.rooms`), for training that reads them.
    """
    cfg = cfg or FeatureConfig()
    check_output_path(out_dir, expect="folder", what="feature folder")
    spec = ExtractSpec(cfg.to_dict(), str(frontends_dir) if frontends_dir else None, tuple(frontends), rooms)
    spec.extractor()  # an unknown part, or a missing or altered front-end file, fails here, before any work
    out_dir = Path(out_dir)
    utterances = read_manifest(manifest, nonempty=True)
    stats_utterances = read_manifest(stats_from, nonempty=True) if stats_from else utterances
    if stats_from:  # fail before hours of extraction, not after
        _check_stats_covered(stats_from, stats_utterances, manifest, utterances, out_dir)
    check_same_settings(out_dir, cfg, force=force)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg.to_dict(), out_dir / CONFIG_FILE)
    report = ExtractReport()
    start = time.perf_counter()
    todo: list[Utterance] = []
    for utt in utterances:
        if is_done(feature_path(out_dir, utt), cfg, spec.keys, spec.versions):
            report.already_done += 1
        else:
            todo.append(utt)
    by_id = {u.id: u for u in todo}
    jobs = [(u.path, str(feature_path(out_dir, u)), u.id, spec) for u in todo]
    bar = tqdm(total=len(jobs), unit="file", disable=not progress, desc="extract", dynamic_ncols=True)
    for utt_id, seconds, error in _run(jobs, workers, spec):
        if error is None:
            report.written += 1
            report.audio_seconds += seconds
        else:
            report.bad.append(BadFile(by_id[utt_id].path, error))
        bar.update(1)
        bar.set_postfix(audio=f"{report.audio_seconds / 3600:.3f}h", bad=len(report.bad))
    bar.close()
    report.wall_seconds = time.perf_counter() - start
    if write_stats:
        _write_stats(out_dir, cfg, stats_utterances)
    return report


def _write_stats(out_dir: Path, cfg: FeatureConfig, utterances: list[Utterance]) -> None:
    """``stats.json`` from the features of ``utterances`` (files that failed, listed in the report, do not count)."""
    done = [feature_path(out_dir, u) for u in utterances]
    stats = compute_stats(load_features(p) for p in done if p.is_file())
    payload = {"feature_config": cfg.to_dict(), **stats.to_dict()}
    write_text_atomic(out_dir / STATS_FILE, json.dumps(payload) + "\n")


def check_same_settings(out_dir: Path, cfg: FeatureConfig, *, force: bool = False) -> None:
    """Refuse to extract into ``out_dir`` when its ``features.yaml`` records other settings than ``cfg``
    (a one-line VconvError naming them), unless ``force``."""
    recorded = Path(out_dir) / CONFIG_FILE
    if force or not recorded.is_file():
        return
    try:
        before = FeatureConfig.from_dict(load_yaml(recorded)).to_dict()
    except VconvError as exc:
        raise VconvError(f"{recorded}: not a feature config ({exc}); pass --force to extract into this folder again") from None
    now = cfg.to_dict()
    changed = [f"{key} {before[key]!r} there, {now[key]!r} now" for key in now if before.get(key) != now[key]]
    if changed:
        raise VconvError(f"{out_dir}: holds features made with other settings ({'; '.join(changed)}); "
                         "use another folder, or pass --force to replace them")


def _check_stats_covered(stats_from: str | Path, stats_utterances: list[Utterance], manifest: str | Path,
                         utterances: list[Utterance], out_dir: Path) -> None:
    """Refuse ``--stats-from`` utterances that will be neither extracted now nor found already extracted."""
    being_extracted = {u.id for u in utterances}
    uncovered = [u for u in stats_utterances if u.id not in being_extracted and not feature_path(out_dir, u).is_file()]
    if uncovered:
        raise VconvError(f"--stats-from {stats_from}: {len(uncovered)} of its utterances are neither in {manifest} nor "
                         f"extracted in {out_dir} (e.g. {uncovered[0].id}); extract that manifest first")


def _run(jobs: list[tuple[str, str, str, ExtractSpec]], workers: int, spec: ExtractSpec) -> Iterator[tuple[str, float, str | None]]:
    if workers <= 1 or len(jobs) <= 1:
        global _WORKER_EXTRACTOR
        previous, _WORKER_EXTRACTOR = _WORKER_EXTRACTOR, spec.extractor()
        try:
            for job in jobs:
                yield _extract_one(job)
        finally:
            _WORKER_EXTRACTOR = previous
        return
    # fork where the OS has it (as torch's DataLoader does): workers start in milliseconds instead of
    # re-importing torch and librosa; each worker then uses a single intra-op thread.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(spec, os.getpid())) as pool:
        yield from pool.map(_extract_one, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8) or 1)))
