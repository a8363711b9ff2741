"""A training run's folder, shared by the model trainer and the vocoder trainer.

Owns what every run writes the same way: the resolved ``config.yaml``, ``log.jsonl`` (one JSON line per
logged step, mirrored to TensorBoard when it is installed), and rotating, atomic, resumable checkpoints
(``checkpoints/step_N.pt`` + ``checkpoints/latest.pt``). Only the main DDP rank writes.

A training checkpoint holds everything to resume (weights, optimisers, schedulers, step, RNG states and
the resolved configs). It is written with ``torch.save`` to a temporary file and renamed, and read with
``torch.load(weights_only=True)``, which refuses any pickle that would run code.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from vconv.config import save_yaml
from vconv.errors import VconvError
from vconv.fileio import atomic_path, read_text


class RunFolder:
    """``path`` of one run; ``resume=False`` refuses a folder that already holds a run (nothing is lost)."""

    def __init__(self, path: str | Path, *, resume: bool, is_main: bool = True, keep_checkpoints: int = 2):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.is_main = is_main
        self.keep = keep_checkpoints
        self.history: list[dict[str, Any]] = []
        self._tensorboard: Any = None
        if not resume and self.latest.exists():
            raise VconvError(f"{self.path}: already holds a training run; pass --resume to continue it or choose another run_dir")

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.pt"

    def load_latest(self) -> dict[str, Any] | None:
        """The latest checkpoint's state (``torch.load(weights_only=True)``), or None when there is none."""
        return load_training_state(self.latest) if self.latest.exists() else None

    def write_config(self, sections: Mapping[str, Any]) -> None:
        if self.is_main:
            save_yaml(dict(sections), self.path / "config.yaml")

    def log(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        """Append ``{"step", "split", **metrics}`` to ``log.jsonl`` (and TensorBoard) and keep it in ``history``."""
        if not self.is_main:
            return
        record = {"step": step, "split": split, **{k: round(float(v), 6) for k, v in metrics.items()}}
        self.history.append(record)
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        writer = self._writer()
        if writer is not None:
            for key, value in metrics.items():
                writer.add_scalar(f"{split}/{key}", value, step)

    def save(self, step: int, state: Mapping[str, Any]) -> None:
        """Write ``step_N.pt`` and ``latest.pt`` atomically; keep only the newest ``keep_checkpoints`` step files."""
        if not self.is_main:
            return
        save_training_state(self.checkpoints / f"step_{step:08d}.pt", dict(state))
        save_training_state(self.latest, dict(state))
        for old in sorted(self.checkpoints.glob("step_*.pt"))[: -self.keep or None]:
            old.unlink()

    def _writer(self):
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # TensorBoard is optional
                self._tensorboard = False
            else:
                self._tensorboard = SummaryWriter(str(self.path / "tb"))
        return self._tensorboard or None


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``log.jsonl``, in order; a line that is not JSON is a one-line error naming it."""
    records = []
    for n, line in enumerate(read_text(path, "training log").splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise VconvError(f"{path}:{n}: not a JSON line") from None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise VconvError(f"{path}:{n}: not a log record (a JSON object with an integer step)")
            records.append(record)
    return records


def logged_wall_minutes(records: list[dict[str, Any]]) -> tuple[float | None, bool]:
    """``(minutes, exact)`` of training wall time from a run's log records.

    Exact when the first training record already has ``train_s`` (the trainer counts it across resumes):
    the last record's figure. A log begun before that field existed gives an estimate instead: steps/s
    (averaged since each process start) integrated back into time, plus the ``train_s`` a resume under
    newer code counted from that resume. ``(None, False)`` when there is nothing to go on.
    """
    train = [r for r in records if r.get("split") == "train"]
    if train and "train_s" in train[0]:
        return float(train[-1]["train_s"]) / 60, True
    minutes, previous = 0.0, 0
    for record in train:
        if "train_s" in record:
            minutes += float(record["train_s"]) / 60 if record is train[-1] else 0.0
            continue
        if record.get("steps_per_s"):
            minutes += (record["step"] - previous) / record["steps_per_s"] / 60
        previous = record["step"]
    return (minutes or None), False


def rng_state() -> dict[str, Any]:
    """The random generators' state, for a checkpoint (``**rng_state()`` into the state dict)."""
    return {
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    """Undo :func:`rng_state`: a resumed run draws the same random numbers as an uninterrupted one."""
    torch.set_rng_state(state["rng_cpu"])
    if torch.cuda.is_available() and state["rng_cuda"]:
        torch.cuda.set_rng_state_all(state["rng_cuda"])


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename (atomic on POSIX)."""
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise VconvError(f"{path}: refused: the checkpoint holds objects that would run code on load ({str(exc).splitlines()[0][:120]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise VconvError(f"{path}: corrupt checkpoint ({str(exc).splitlines()[0][:120]})") from None
