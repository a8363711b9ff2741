"""The Trainer: one code path from a single CPU process to many GPUs under ``torchrun`` (PyTorch DDP).

No argparse and no paths of its own: everything comes from :class:`~vconv.config.TrainConfig`,
:class:`~vconv.config.ModelConfig` and :class:`~vconv.config.FeatureConfig`.

Per step: reconstruction L1 + ``vq_weight`` × VQ loss, plus (with the adversary) the speaker
classifier's cross-entropy on the content code. The classifier sits behind a gradient-reversal layer
whose weight ramps linearly from 0 to ``adversary_weight`` over ``adversary_ramp_steps``: the classifier
always learns at full rate, while the encoder is pushed to *remove* speaker information only gradually,
because a strong adversary early destroys content (Chou et al. 2018).

Run folder::

    config.yaml               resolved configs (features, model, train)  — the folder is a vconv.runs.RunFolder
    log.jsonl                 one JSON line per logged / validated step (TensorBoard too, if installed)
    checkpoints/latest.pt     atomic, resumable (model, optimiser, scheduler, step, RNG, configs)
    checkpoints/step_N.pt     the last ``keep_checkpoints`` of them
    model/                    the final model as a safe bundle (see vconv.checkpoint)
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vconv.checkpoint import save_bundle
from vconv.config import FeatureConfig, ModelConfig, TrainConfig
from vconv.data import read_manifest, speakers_of
from vconv.errors import VconvError
from vconv.features import FeatureStats, compute_stats
from vconv.models import VoiceConverter, build_model
from vconv.runs import RunFolder, restore_rng, rng_state
from vconv.segments import Batch, FeatureStore, SegmentBatches


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (a no-op when single-process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(local_rank: int = 0) -> torch.device:
    """CUDA if present (one GPU per local rank), else Apple MPS, else CPU; never assumed."""
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def start_process(threads: int | None, progress: bool) -> tuple[DistInfo, torch.device, bool]:
    """What every trainer does first: join DDP if launched by torchrun, pick the device, cap the
    threads; returns ``(dist, device, show_progress)`` (only the main rank shows a progress bar)."""
    info = setup_distributed()
    if threads:
        torch.set_num_threads(threads)
    return info, pick_device(info.local_rank), progress and info.is_main


def lr_lambda(warmup: int, total: int):
    """Linear warm-up to 1, then cosine decay to 0.1 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def adversary_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Plain and balanced accuracy of the speaker adversary on ``[N]`` predicted / true speaker indices.

    Plain accuracy rewards always naming the most frequent speaker (with per-utterance sampling that
    is Joe, half of a batch); balanced accuracy, the mean per-speaker recall, does not: chance is
    ``1 / speakers`` whatever the mix.
    """
    recalls = [(predicted[labels == s] == s).float().mean() for s in labels.unique()]
    return {"adv_acc": (predicted == labels).float().mean().item(), "adv_bal_acc": torch.stack(recalls).mean().item()}


class Trainer:
    """Builds data, model and optimiser from the configs; ``fit()`` trains, validates, checkpoints."""

    def __init__(
        self,
        features: FeatureConfig,
        model: ModelConfig,
        train: TrainConfig,
        *,
        resume: bool = False,
        progress: bool = True,
    ):
        self.fcfg, self.mcfg, self.tcfg = features, model, train
        self.dist, self.device, self.progress = start_process(train.threads, progress)
        self.run_dir = Path(train.run_dir)
        self.run = RunFolder(self.run_dir, resume=resume, is_main=self.dist.is_main, keep_checkpoints=train.keep_checkpoints)

        train_utts = read_manifest(train.train_manifest, nonempty=True)
        self.speakers = speakers_of(train_utts)
        if model.adversary and model.n_speakers == 0:
            model.n_speakers = len(self.speakers)
        self.store = FeatureStore(train_utts, features, train.features_dir)
        self.stats = self._load_or_compute_stats()
        self.valid_store = None
        if train.valid_manifest:
            valid_utts = read_manifest(train.valid_manifest)
            self.valid_store = FeatureStore(valid_utts, features, train.features_dir) if valid_utts else None

        torch.manual_seed(train.seed)
        self.model: VoiceConverter = build_model(model).to(self.device)
        self.net: torch.nn.Module = self.model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(train.warmup_steps, train.steps))
        self.step = 0
        state = self.run.load_latest() if resume else None
        if state is not None:
            self._restore(state)
        self.batches = SegmentBatches(
            self.store, self.speakers, self.stats, batch_size=train.batch_size, segment_frames=train.segment_frames,
            seed=train.seed, rank=self.dist.rank, steps=train.steps, perturb=train.perturb_content,
            speaker_sampling_power=train.speaker_sampling_power,
        )

    # ----------------------------------------------------------------------------------------- setup

    def _load_or_compute_stats(self) -> FeatureStats:
        if self.tcfg.features_dir:
            path = Path(self.tcfg.features_dir) / "stats.json"
            if path.is_file():
                data = json.loads(path.read_text())
                return FeatureStats.from_dict(data)
        return compute_stats(self.store.get(i) for i in range(len(self.store.utterances)))

    def _autocast(self):
        if not self.tcfg.bf16:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def adversary_weight(self, step: int) -> float:
        ramp = max(1, self.tcfg.adversary_ramp_steps)
        return self.tcfg.adversary_weight * min(1.0, step / ramp)

    # -------------------------------------------------------------------------------------- training

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the losses and diagnostics as floats."""
        self.net.train()
        batch = batch.to(self.device)
        with self._autocast():
            out = self.net(batch.source, batch.ref, adversary_weight=self.adversary_weight(self.step))
            recon = F.l1_loss(out.mel.float(), batch.mel)
            loss = self.tcfg.recon_weight * recon + self.tcfg.vq_weight * out.quantizer.loss.float()
            metrics = {"recon": recon.item(), "vq": out.quantizer.loss.item(), "perplexity": out.quantizer.perplexity.item()}
            if out.speaker_logits is not None:
                adv = F.cross_entropy(out.speaker_logits.float(), batch.speaker)
                loss = loss + adv  # the reversal layer scales what reaches the encoder
                metrics["adv_loss"] = adv.item()
                metrics["adv_acc"] = (out.speaker_logits.argmax(-1) == batch.speaker).float().mean().item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        metrics["loss"] = loss.item()
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        return metrics

    def fit(self, until: int | None = None) -> list[dict[str, Any]]:
        """Train until ``steps``; log, validate and checkpoint on schedule; export the final bundle.

        ``until`` stops early at that step without exporting (what a kill looks like, for tests and for
        training in slices).
        """
        t = self.tcfg
        last = t.steps if until is None else min(until, t.steps)
        self.run.write_config({"features": self.fcfg.to_dict(), "model": self.mcfg.to_dict(), "train": t.to_dict()})
        loader = torch.utils.data.DataLoader(
            self.batches, batch_size=None, sampler=range(self.step, last), num_workers=t.num_workers,
            persistent_workers=False,
        )
        bar = tqdm(total=t.steps, initial=self.step, disable=not self.progress, desc="train", unit="step", dynamic_ncols=True)
        start, start_step = time.perf_counter(), self.step
        for batch in loader:
            metrics = self.train_step(batch)
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.steps:
                metrics["steps_per_s"] = (self.step - start_step) / (time.perf_counter() - start)
                self.run.log(self.step, "train", metrics)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", ppl=f"{metrics['perplexity']:.0f}")
            if self.valid_store is not None and (self.step % t.valid_every == 0 or self.step == t.steps):
                self.run.log(self.step, "valid", self.validate())
            if self.step % t.save_every == 0 or self.step == t.steps:
                self.run.save(self.step, self.state())
        bar.close()
        if self.dist.is_main and self.step == t.steps:
            save_bundle(self.run_dir / "model", self.model, self.mcfg, self.fcfg, self.stats, speakers=self.speakers,
                        extra={"trained_steps": self.step}, force=True)
        return self.run.history

    # ------------------------------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self, max_utterances: int = 64) -> dict[str, float]:
        """Reconstruction L1 and perplexity on held-out utterances (own reference = another utterance of
        the same speaker when there is one); adversary accuracy, plain and balanced, on content codes of
        four fixed training batches (the classifier only knows training speakers); speaker-encoder separation: mean cosine of
        same-speaker minus different-speaker pairs of held-out embeddings."""
        assert self.valid_store is not None
        self.model.eval()
        store = self.valid_store
        total = len(store.utterances)
        n = min(total, max_utterances)
        # spread the picks over the whole manifest: it is sorted by speaker, and the first n utterances
        # would often be one speaker only, leaving nothing to measure speaker separation on
        picks = sorted({round(k * (total - 1) / max(1, n - 1)) for k in range(n)})
        n = len(picks)
        recon, ppl, embeddings, speakers = [], [], [], []
        for i in picks:
            mel = self.stats.normalize(store.get(i))[None].to(self.device)
            with self._autocast():
                out = self.model.reconstruct(mel, mel)
            recon.append(F.l1_loss(out.mel.float(), mel).item())
            ppl.append(out.quantizer.perplexity.item())
            embeddings.append(F.normalize(out.speaker_embedding.float(), dim=-1)[0])
            speakers.append(store.utterances[i].speaker)
        result = {"recon": sum(recon) / n, "perplexity": sum(ppl) / n}
        emb = torch.stack(embeddings)
        cos = emb @ emb.T
        same = torch.tensor([[a == b for b in speakers] for a in speakers], device=cos.device)
        off_diag = ~torch.eye(n, dtype=torch.bool, device=cos.device)
        if (same & off_diag).any() and (~same).any():
            result["spk_same_cos"] = cos[same & off_diag].mean().item()
            result["spk_diff_cos"] = cos[~same].mean().item()
            result["spk_separation"] = result["spk_same_cos"] - result["spk_diff_cos"]
        if self.model.adversary is not None:
            predicted, labels = [], []
            for k in range(4):  # fixed batches, never drawn in training
                probe = self.batches[10**9 + k].to(self.device)
                predicted.append(self.model.adversary(self.model.encode_content(probe.mel).quantized).argmax(-1))
                labels.append(probe.speaker)
            result.update(adversary_accuracy(torch.cat(predicted), torch.cat(labels)))
            result["adv_chance"] = 1.0 / len(self.speakers)
        return result

    # ----------------------------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **rng_state(),
            "configs": {"features": self.fcfg.to_dict(), "model": self.mcfg.to_dict(), "train": self.tcfg.to_dict()},
            "speakers": self.speakers,
            "feature_stats": self.stats.to_dict(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        saved = ModelConfig.from_dict(state["configs"]["model"])
        if saved != self.mcfg:
            raise VconvError(f"{self.run.latest}: model config differs from the checkpoint's; resume with the same config")
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        restore_rng(state)
        self.stats = FeatureStats.from_dict(state["feature_stats"])
