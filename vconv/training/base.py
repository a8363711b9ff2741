"""The trainer base: what every vconv trainer does the same way, so each trainer is only its model and step.

:class:`BaseTrainer` owns the process (DDP under ``torchrun``, device, threads), the run folder
(:class:`~vconv.training.runs.RunFolder`: ``config.yaml``, ``log.jsonl``, atomic rotating checkpoints),
bf16 autocast, the warm-up + cosine learning-rate schedule and the loop of :meth:`BaseTrainer.fit`:
draw the step's batch, train, log, validate, checkpoint on schedule, export when the last step is done.

A subclass (:class:`~vconv.training.vc_trainer.ModelTrainer`, :class:`~vconv.training.vocoder_trainer.VocoderTrainer`)
supplies:

* ``sections()`` - the resolved config sections (written to ``config.yaml`` and each checkpoint);
* ``batches`` - a map-style dataset whose item ``step`` is that step's batch (a pure function of the
  seed, the rank and the step, so a resumed run draws what an uninterrupted one would have);
* ``train_step(batch)`` - one update, returning float metrics (it increments ``self.step``);
* ``validate()`` - float metrics on held-out data, called when ``has_validation`` is true;
* ``state()`` / ``load_state(state)`` - what a checkpoint holds beyond the step and RNG states;
* ``export()`` - the final artefact (a model bundle, a vocoder folder), written once at the last step.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Mapping

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vconv.config import LoopConfig
from vconv.fileio import check_output_path
from vconv.training.distributed import cpu_has_native_bf16, start_process
from vconv.training.runs import RunFolder, restore_rng, rng_state


def lr_lambda(warmup: int, total: int):
    """Linear warm-up to 1, then cosine decay to 0.1 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class BaseTrainer:
    """Process, run folder, autocast, schedule and loop shared by the trainers (see the module docstring).

    ``train`` is the trainer's config section, a :class:`~vconv.config.LoopConfig` (run folder, steps,
    schedule, logging and checkpoint cadence, threads, bf16).
    """

    #: the progress bar's label
    name = "train"

    def __init__(self, train: LoopConfig, *, resume: bool, progress: bool):
        self.tcfg = train
        self.resume = resume
        self.run_dir = check_output_path(train.run_dir, expect="folder", what="train.run_dir")  # before any work
        self.dist, self.device, self.progress = start_process(train.threads, progress)
        self.run = RunFolder(self.run_dir, resume=resume, is_main=self.dist.is_main, keep_checkpoints=train.keep_checkpoints)
        self.step = 0
        self._fit_start: float | None = None
        self.train_seconds = 0.0  # wall time spent in fit() so far, summed over resumes (logged as train_s)
        self.batches: torch.utils.data.Dataset | None = None
        if train.bf16 and self.device.type == "cpu" and cpu_has_native_bf16() is False and self.dist.is_main:
            print("warning: train.bf16 on a CPU without native bf16 (avx512_bf16/amx_bf16) is emulated and runs "
                  "tens of times slower than fp32; set train.bf16=false", file=sys.stderr)

    # ------------------------------------------------------------------------------- for subclasses

    def sections(self) -> dict[str, Any]:
        raise NotImplementedError

    def train_step(self, batch: Any) -> dict[str, float]:
        raise NotImplementedError

    @property
    def has_validation(self) -> bool:
        return False

    def validate(self) -> dict[str, float]:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def export(self) -> None:
        raise NotImplementedError

    def postfix(self, metrics: Mapping[str, float]) -> dict[str, str]:
        """What the progress bar shows after a logged step."""
        return {"loss": f"{metrics['loss']:.3f}"}

    # ------------------------------------------------------------------------------------- helpers

    def distributed(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` wrapped for DDP when this is one of several processes, else itself."""
        if self.dist.world_size <= 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def autocast(self):
        """bf16 autocast when ``train.bf16`` (CPU bf16, or CUDA bf16 mixed precision), else a no-op context."""
        if not self.tcfg.bf16:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def make_scheduler(self, optimizer: torch.optim.Optimizer, total: int | None = None) -> torch.optim.lr_scheduler.LambdaLR:
        """Warm-up + cosine schedule over ``total`` steps (default ``train.steps``)."""
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.tcfg.warmup_steps, total or self.tcfg.steps))

    def update(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
               module: torch.nn.Module) -> float:
        """Backward ``loss``, clip ``module``'s gradients to ``train.grad_clip``, step the optimiser and its
        schedule; returns the gradient norm before clipping."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), self.tcfg.grad_clip))
        optimizer.step()
        scheduler.step()
        return norm

    def latest_state(self) -> dict[str, Any] | None:
        """The latest checkpoint when resuming (None on a fresh run or when there is none)."""
        return self.run.load_latest() if self.resume else None

    def restore(self, state: Mapping[str, Any]) -> None:
        """Undo :meth:`checkpoint`: the subclass's state, then the step and the random generators."""
        self.load_state(state)
        self.step = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))  # absent in checkpoints older than the field
        restore_rng(state)

    def checkpoint(self) -> dict[str, Any]:
        """Everything a resume needs: the subclass's state, the step, the RNG states and the configs."""
        return {**self.state(), "step": self.step, "train_seconds": self.elapsed(), **rng_state(), "configs": self.sections()}

    def elapsed(self) -> float:
        """Training wall seconds up to now: the resumed total plus this fit()'s time so far."""
        return self.train_seconds + (time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0)

    # ---------------------------------------------------------------------------------------- loop

    def fit(self, until: int | None = None, checkpoint_at_stop: bool = False) -> list[dict[str, Any]]:
        """Train until ``train.steps``; log, validate and checkpoint on schedule; export at the end.

        ``until`` stops early at that step without exporting (what a kill looks like, for tests); with
        ``checkpoint_at_stop`` it also checkpoints that step, so training in slices (``vconv train
        --until``) can resume and judge exactly there.
        """
        t = self.tcfg
        assert self.batches is not None, "a trainer sets self.batches in its constructor"
        last = t.steps if until is None else min(until, t.steps)
        self.run.write_config(self.sections())
        loader = torch.utils.data.DataLoader(self.batches, batch_size=None, sampler=range(self.step, last),
                                             num_workers=t.num_workers, persistent_workers=False)
        bar = tqdm(total=t.steps, initial=self.step, disable=not self.progress, desc=self.name, unit="step", dynamic_ncols=True)
        start, start_step = time.perf_counter(), self.step
        self._fit_start = start
        for batch in loader:
            metrics = self.train_step(batch)
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.steps:
                metrics["steps_per_s"] = (self.step - start_step) / (time.perf_counter() - start)
                metrics["train_s"] = round(self.elapsed(), 3)  # ms: a tiny CPU run makes several steps in 0.1 s
                self.run.log(self.step, "train", metrics)
                bar.set_postfix(self.postfix(metrics))
            if self.has_validation and (self.step % t.valid_every == 0 or self.step == t.steps):
                self.run.log(self.step, "valid", self.validate())
            if self.step % t.save_every == 0 or self.step == t.steps:
                self.run.save(self.step, self.checkpoint())
        bar.close()
        if checkpoint_at_stop and self.step == last < t.steps and self.step % t.save_every:
            self.run.save(self.step, self.checkpoint())
        self.train_seconds, self._fit_start = self.elapsed(), None
        if self.dist.is_main and self.step == t.steps:
            self.export()
        return self.run.history
