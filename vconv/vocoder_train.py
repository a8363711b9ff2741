"""Training the neural vocoder (:class:`~vconv.vocoders.vocos.VocosVocoder`): ``vconv train-vocoder``.

Same machinery as :mod:`vconv.train` (DDP under ``torchrun``, device choice, warm-up + cosine schedule,
atomic resumable checkpoints, JSONL log, tqdm), but the data are *audio* segments: each step draws
``batch_size`` random windows of ``segment_samples`` samples from the manifest's audio (loaded at the
FeatureConfig's rate, kept in an LRU cache), and the input log-mel is computed on the fly with the
same :class:`~vconv.features.LogMel` as everywhere else. Batches are a pure function of
``(seed, rank, step)``, so a resumed run draws what an uninterrupted one would have.

Losses: ``stft_weight`` x multi-resolution STFT (spectral convergence + log magnitude) +
``mel_weight`` x mel L1 (+ ``phase_weight`` x anti-wrapping phase losses against the real STFT
phase); from ``gan_start_step`` on (when ``adversarial``), also hinge losses against a
multi-period + multi-resolution discriminator and feature matching. The warm-up without the GAN gives
the discriminator a sensible generator to start against (a GAN from scratch is slow and unstable).

Fine-tuning on the VC model's own output (``vc_model``: a VC bundle): the vocoder's input becomes the
mel that the VC model *reconstructs* from the segment (denormalised), while the targets stay the real
audio and its real mel, so the vocoder learns to turn the model's slightly smoothed mels into clean audio.
``init_from`` (a trained vocoder folder) starts such a run from trained weights with a fresh optimiser
and schedule, so a fine-tune is its own short run rather than a resume that stretches the old schedule.

Run folder::

    config.yaml              resolved configs (features, vocoder, train)
    log.jsonl                one JSON line per logged / validated step
    checkpoints/latest.pt    atomic, resumable (generator, discriminator, optimisers, schedulers, step, RNG)
    vocoder/                 vocoder.safetensors + vocoder.json (see :func:`vconv.vocoders.vocos.save_vocoder`)

``attach_vocoder(bundle, RUN_DIR/vocoder)`` copies the vocoder into a VC bundle, where ``vconv convert``
picks it up by default.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vconv.audio import resample
from vconv.checkpoint import CONFIG_FILE, read_bundle_config, sha256_of
from vconv.config import ConfigSection, FeatureConfig, apply_overrides, load_yaml, resolve_config_path
from vconv.data import Utterance, read_manifest
from vconv.errors import VconvError
from vconv.fileio import write_text_atomic
from vconv.features import FeatureStats, LogMel
from vconv.runs import RunFolder, restore_rng, rng_state
from vconv.train import lr_lambda, start_process
from vconv.vocoders.discriminators import CombinedDiscriminator
from vconv.vocoders.losses import MelL1Loss, MultiResolutionSTFTLoss, PhaseLoss, discriminator_loss, feature_matching_loss, generator_loss
from vconv.vocoders.vocos import VOCODER_CONFIG, VOCODER_WEIGHTS, VocoderConfig, VocosVocoder, load_vocoder, read_vocoder_meta, save_vocoder

__all__ = ["VocoderTrainConfig", "VocoderTrainer", "AudioSegments", "attach_vocoder", "export_checkpoint", "load_vocoder_run_config"]


@dataclass
class VocoderTrainConfig(ConfigSection):
    """What the vocoder trainer needs. ``train_manifest`` and ``run_dir`` are required."""

    train_manifest: str
    run_dir: str
    valid_manifest: str | None = None
    vc_model: str | None = None  # a VC bundle: fine-tune on its reconstructed mels (targets stay real audio)
    init_from: str | None = None  # a vocoder folder (vocoder.json + weights) to start from: a fine-tuning run
    steps: int = 200_000
    batch_size: int = 16
    segment_samples: int = 8192  # a multiple of hop_length (32 frames at hop 256)
    lr: float = 5e-4
    disc_lr: float = 5e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 1000
    grad_clip: float = 100.0  # GAN gradients spike; clip only the pathological ones
    stft_weight: float = 2.5
    mel_weight: float = 15.0
    phase_weight: float = 0.0  # > 0: anti-wrapping phase losses against the real STFT phase (APNet)
    adversarial: bool = True
    gan_start_step: int = 10_000  # reconstruction-only warm-up before the discriminators join
    gan_loss: str = "hinge"  # or "lsgan"
    adv_weight: float = 1.0
    fm_weight: float = 2.0
    mpd_channels: int = 16
    mrd_channels: int = 32
    bf16: bool = False
    seed: int = 0
    log_every: int = 50
    valid_every: int = 2000
    valid_utterances: int = 16
    save_every: int = 1000
    keep_checkpoints: int = 2
    num_workers: int = 0
    threads: int | None = None
    cache_size: int = 2048  # decoded utterances kept in memory (per process)
    # speed perturbation of the training audio (Ko et al. 2015): with this probability a segment is
    # played back faster or slower by a factor drawn log-uniformly from [1/(1+r), 1+r] (r = speed_perturb),
    # which moves pitch and formants together - more voices (and F0 ranges) than the corpus has speakers
    speed_perturb: float = 0.0
    speed_perturb_probability: float = 0.5

    def __post_init__(self) -> None:
        if self.gan_loss not in ("hinge", "lsgan"):
            raise VconvError(f"train.gan_loss must be hinge or lsgan, got {self.gan_loss!r}")
        if not 0 <= self.speed_perturb < 1:
            raise VconvError(f"train.speed_perturb must be in [0, 1), got {self.speed_perturb}")
        if not 0 <= self.speed_perturb_probability <= 1:
            raise VconvError(f"train.speed_perturb_probability must be in [0, 1], got {self.speed_perturb_probability}")


def load_vocoder_run_config(name_or_path: str | Path | None, overrides: Sequence[str] = ()) -> tuple[FeatureConfig, VocoderConfig, VocoderTrainConfig]:
    """Read ``features`` / ``vocoder`` / ``train`` sections (YAML path or packaged name), apply dotted overrides."""
    data = load_yaml(resolve_config_path(name_or_path)) if name_or_path else {}
    data = apply_overrides(data, list(overrides))
    unknown = sorted(set(data) - {"features", "vocoder", "train"})
    if unknown:
        raise VconvError(f"unknown config section(s): {', '.join(unknown)}; expected features, vocoder, train")
    return (FeatureConfig.from_dict(data.get("features") or {}), VocoderConfig.from_dict(data.get("vocoder") or {}),
            VocoderTrainConfig.from_dict(data.get("train") or {}))


# ----------------------------------------------------------------------------------------------- data


class AudioSegments(torch.utils.data.Dataset):
    """Map-style dataset whose item ``step`` is that step's batch of waveforms ``[B, segment_samples]``.

    Utterances shorter than a segment are zero-padded at the end. With ``speed_perturb = r > 0``, each
    segment is, with probability ``speed_probability``, cut ``speed`` times longer from its utterance and
    resampled (soxr) to ``segment_samples``: played ``speed`` times faster, ``speed`` log-uniform in
    ``[1/(1+r), 1+r]``.
    """

    def __init__(self, utterances: Sequence[Utterance], cfg: FeatureConfig, *, batch_size: int, segment_samples: int,
                 seed: int = 0, rank: int = 0, steps: int = 0, cache_size: int = 2048,
                 speed_perturb: float = 0.0, speed_probability: float = 0.5):
        if segment_samples % cfg.hop_length:
            raise VconvError(f"train.segment_samples {segment_samples} must be a multiple of hop_length {cfg.hop_length}")
        self.utterances = list(utterances)
        self.cfg = cfg
        self.batch_size, self.segment_samples = batch_size, segment_samples
        self.seed, self.rank, self.steps = seed, rank, steps
        self.speed_perturb, self.speed_probability = speed_perturb, speed_probability
        self.wave = lru_cache(maxsize=cache_size)(self._load)

    def _load(self, index: int) -> torch.Tensor:
        from vconv.audio import load

        wav, _ = load(self.utterances[index].path, self.cfg.sample_rate, allow_silent=True)
        return torch.from_numpy(wav)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(hash((self.seed, self.rank, int(step))) & 0x7FFF_FFFF_FFFF)
        picks = torch.randint(len(self.utterances), (self.batch_size,), generator=gen).tolist()
        n = self.segment_samples
        out = torch.zeros(self.batch_size, n)
        for row, index in enumerate(picks):
            wav = self.wave(index)
            speed = self._draw_speed(gen)
            span = math.ceil(n * speed)  # source samples that become n samples at this speed
            start = int(torch.randint(wav.numel() - span + 1, (1,), generator=gen)) if wav.numel() > span else 0
            piece = wav[start : start + span]
            if speed != 1.0:
                piece = torch.from_numpy(resample(piece.numpy(), self.cfg.sample_rate * speed, self.cfg.sample_rate))[:n]
            out[row, : piece.numel()] = piece
        return out

    def _draw_speed(self, gen: torch.Generator) -> float:
        """1.0, or a log-uniform factor in [1/(1+r), 1+r] with probability ``speed_probability``.

        Nothing is drawn when perturbation is off, so such runs keep their exact batches."""
        if self.speed_perturb <= 0:
            return 1.0
        coin, u = torch.rand(2, generator=gen).tolist()
        if coin >= self.speed_probability:
            return 1.0
        return math.exp((2 * u - 1) * math.log1p(self.speed_perturb))


# -------------------------------------------------------------------------------------------- trainer


class VocoderTrainer:
    """Builds data, generator, discriminators and optimisers from the configs; ``fit()`` trains and exports."""

    def __init__(self, features: FeatureConfig, vocoder: VocoderConfig, train: VocoderTrainConfig, *,
                 resume: bool = False, progress: bool = True):
        self.fcfg, self.vcfg, self.tcfg = features, vocoder, train
        self.dist, self.device, self.progress = start_process(train.threads, progress)
        self.run_dir = Path(train.run_dir)
        self.run = RunFolder(self.run_dir, resume=resume, is_main=self.dist.is_main, keep_checkpoints=train.keep_checkpoints)
        utts = read_manifest(train.train_manifest, nonempty=True)
        self.valid_utts = read_manifest(train.valid_manifest)[: train.valid_utterances] if train.valid_manifest else []

        torch.manual_seed(train.seed)
        self.generator = VocosVocoder(features, vocoder).to(self.device)
        self.discriminator = CombinedDiscriminator(mpd_channels=train.mpd_channels, mrd_channels=train.mrd_channels).to(self.device)
        self.gen_net: torch.nn.Module = self.generator
        self.disc_net: torch.nn.Module = self.discriminator
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.gen_net = DistributedDataParallel(self.generator, device_ids=ids)
            self.disc_net = DistributedDataParallel(self.discriminator, device_ids=ids)
        betas = (0.8, 0.9)  # HiFi-GAN / Vocos: a short momentum memory suits the moving GAN target
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), lr=train.lr, betas=betas, weight_decay=train.weight_decay)
        self.opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=train.disc_lr, betas=betas, weight_decay=train.weight_decay)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, lr_lambda(train.warmup_steps, train.steps))
        # the discriminator's schedule starts when it does
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lr_lambda(train.warmup_steps, max(1, train.steps - train.gan_start_step)))
        self.logmel = LogMel(features).to(self.device)
        self.stft_loss = MultiResolutionSTFTLoss().to(self.device)
        self.mel_loss = MelL1Loss(features).to(self.device)
        self.phase_loss = PhaseLoss()
        self.vc_model, self.vc_stats = self._load_vc_model(train.vc_model)
        self.step = 0
        self._gl_reference: dict[str, float] | None = None
        state = self.run.load_latest() if resume else None
        if state is not None:
            self._restore(state)
        elif train.init_from:
            self._start_from(train.init_from)
        self.batches = AudioSegments(utts, features, batch_size=train.batch_size, segment_samples=train.segment_samples,
                                     seed=train.seed, rank=self.dist.rank, steps=train.steps, cache_size=train.cache_size,
                                     speed_perturb=train.speed_perturb, speed_probability=train.speed_perturb_probability)

    def _load_vc_model(self, bundle: str | None):
        if not bundle:
            return None, None
        from vconv.checkpoint import load_bundle

        model, info = load_bundle(bundle, self.device)
        diffs = info.feature_config.differences(self.fcfg)
        if diffs:
            raise VconvError(f"{bundle}: the VC model was trained on other features (model vs vocoder: {'; '.join(diffs)})")
        for p in model.parameters():
            p.requires_grad_(False)
        stats = FeatureStats(info.feature_stats.mean.to(self.device), info.feature_stats.std.to(self.device), info.feature_stats.frames)
        return model, stats

    def _autocast(self):
        if not self.tcfg.bf16:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def gan_active(self, step: int | None = None) -> bool:
        return self.tcfg.adversarial and (self.step if step is None else step) >= self.tcfg.gan_start_step

    @torch.no_grad()
    def vocoder_input(self, mel: torch.Tensor) -> torch.Tensor:
        """The log-mel the vocoder sees: the real one, or the VC model's reconstruction of it (denormalised)."""
        if self.vc_model is None:
            return mel
        norm = self.vc_stats.normalize(mel)
        return self.vc_stats.denormalize(self.vc_model.reconstruct(norm, norm).mel.float())

    # ------------------------------------------------------------------------------------------ step

    def train_step(self, wav: torch.Tensor) -> dict[str, float]:
        """One generator (and, once the GAN is on, discriminator) update on ``wav [B, segment_samples]``."""
        t = self.tcfg
        self.gen_net.train()
        self.disc_net.train()
        wav = wav.to(self.device)
        with torch.no_grad():
            mel = self.logmel(wav)
        with self._autocast():
            if t.phase_weight > 0:
                pred, phase = self.gen_net(self.vocoder_input(mel), return_phase=True)
            else:
                pred = self.gen_net(self.vocoder_input(mel))
        metrics: dict[str, float] = {}
        gan = self.gan_active()
        n = wav.shape[0]
        if gan:
            with self._autocast():
                real, fake = self.disc_net(torch.cat([wav, pred.detach()])).split(n)
            d_loss = discriminator_loss(real.scores, fake.scores, t.gan_loss)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), t.grad_clip)
            self.opt_d.step()
            self.sched_d.step()
            metrics["d_loss"] = d_loss.item()
        stft = self.stft_loss(pred, wav)
        mel_l1 = self.mel_loss(pred, mel)
        loss = t.stft_weight * stft + t.mel_weight * mel_l1
        metrics.update(stft=stft.item(), mel_l1=mel_l1.item())
        if t.phase_weight > 0:
            phase_loss = self.phase_loss(phase.float(), self.generator.analysis_phase(wav))
            loss = loss + t.phase_weight * phase_loss
            metrics["phase"] = phase_loss.item()
        if gan:
            with self._autocast():
                real, fake = self.disc_net(torch.cat([wav, pred])).split(n)
            adv = generator_loss(fake.scores, t.gan_loss)
            fm = feature_matching_loss(real.features, fake.features)
            loss = loss + t.adv_weight * adv + t.fm_weight * fm
            metrics.update(g_adv=adv.item(), fm=fm.item())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.generator.parameters(), t.grad_clip))
        self.opt_g.step()
        self.sched_g.step()
        self.step += 1
        metrics["loss"] = loss.item()
        metrics["lr"] = self.sched_g.get_last_lr()[0]
        return metrics

    def fit(self, until: int | None = None) -> list[dict[str, Any]]:
        """Train until ``steps`` (``until`` stops early without exporting, like a kill); export ``RUN_DIR/vocoder``."""
        t = self.tcfg
        last = t.steps if until is None else min(until, t.steps)
        self.run.write_config({"features": self.fcfg.to_dict(), "vocoder": self.vcfg.to_dict(), "train": t.to_dict()})
        loader = torch.utils.data.DataLoader(self.batches, batch_size=None, sampler=range(self.step, last),
                                             num_workers=t.num_workers, persistent_workers=False)
        bar = tqdm(total=t.steps, initial=self.step, disable=not self.progress, desc="train-vocoder", unit="step", dynamic_ncols=True)
        start, start_step = time.perf_counter(), self.step
        for wav in loader:
            metrics = self.train_step(wav)
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.steps:
                metrics["steps_per_s"] = (self.step - start_step) / (time.perf_counter() - start)
                self.run.log(self.step, "train", metrics)
                bar.set_postfix(mel=f"{metrics['mel_l1']:.3f}", stft=f"{metrics['stft']:.3f}")
            if self.valid_utts and (self.step % t.valid_every == 0 or self.step == t.steps):
                self.run.log(self.step, "valid", self.validate())
            if self.step % t.save_every == 0 or self.step == t.steps:
                self.run.save(self.step, self.state())
        bar.close()
        if self.dist.is_main and self.step == t.steps:
            save_vocoder(self.run_dir / "vocoder", self.generator, extra={"trained_steps": self.step})
        return self.run.history

    @torch.no_grad()
    def validate(self, max_seconds: float = 4.0) -> dict[str, float]:
        """Mel L1 and MR-STFT loss of the vocoder on held-out utterances (first ``max_seconds``), next to
        Griffin-Lim's on the same audio (computed once) as the baseline to beat."""
        from vconv.audio import load
        from vconv.vocoders.griffinlim import GriffinLim

        self.generator.eval()
        wavs = []
        for utt in self.valid_utts:
            wav, _ = load(utt.path, self.fcfg.sample_rate, allow_silent=True)
            keep = min(wav.size, int(max_seconds * self.fcfg.sample_rate)) // self.fcfg.hop_length * self.fcfg.hop_length
            wavs.append(torch.from_numpy(wav[:keep]).to(self.device))

        def score(vocode) -> dict[str, float]:
            mel_l1 = stft = 0.0
            for wav in wavs:
                mel = self.logmel(wav[None])
                pred = vocode(mel)
                mel_l1 += self.mel_loss(pred, mel).item()
                stft += self.stft_loss(pred, wav[None]).item()
            return {"mel_l1": mel_l1 / len(wavs), "stft": stft / len(wavs)}

        # as at inference (post-processing on), and the network's own output (what the losses train)
        result = score(lambda mel: self.generator(self.vocoder_input(mel)))
        raw = score(lambda mel: self.generator(self.vocoder_input(mel), post_process=False))
        result.update({f"{k}_raw": v for k, v in raw.items()})
        if self._gl_reference is None:
            self._gl_reference = score(GriffinLim(self.fcfg).to(self.device))
        result.update({f"gl_{k}": v for k, v in self._gl_reference.items()})
        return result

    # ----------------------------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            **rng_state(),
            "configs": {"features": self.fcfg.to_dict(), "vocoder": self.vcfg.to_dict(), "train": self.tcfg.to_dict()},
        }

    def _start_from(self, folder: str) -> None:
        """Generator weights from a trained vocoder folder; optimisers and schedule start fresh (step 0)."""
        trained = load_vocoder(folder)  # sha256-checked
        theirs, ours = trained.config.network(), self.vcfg.network()
        if theirs != ours:
            diffs = [f"{k}: {v} vs {ours[k]}" for k, v in theirs.items() if ours[k] != v]
            raise VconvError(f"train.init_from {folder}: vocoder size differs from this run's ({'; '.join(diffs)})")
        if trained.feature_config != self.fcfg:
            raise VconvError(f"train.init_from {folder}: built for other features ({'; '.join(trained.feature_config.differences(self.fcfg))})")
        self.generator.load_state_dict(trained.state_dict(), strict=True)

    def _restore(self, state: dict[str, Any]) -> None:
        where = self.run.latest
        # the envelope_* / consistency_* settings act at inference only: changing them must not block a resume
        if VocoderConfig.from_dict(state["configs"]["vocoder"]).network() != self.vcfg.network():
            raise VconvError(f"{where}: vocoder config differs from the checkpoint's; resume with the same config")
        if FeatureConfig.from_dict(state["configs"]["features"]) != self.fcfg:
            raise VconvError(f"{where}: feature config differs from the checkpoint's; resume with the same config")
        self.generator.load_state_dict(state["generator"], strict=True)
        self.discriminator.load_state_dict(state["discriminator"], strict=True)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        # a scheduler's state carries the run's old base lr; a resume with a new train.lr / disc_lr means the new one
        self.sched_g.base_lrs = [self.tcfg.lr for _ in self.sched_g.base_lrs]
        self.sched_d.base_lrs = [self.tcfg.disc_lr for _ in self.sched_d.base_lrs]
        self.step = int(state["step"])
        restore_rng(state)


# ---------------------------------------------------------------------------------------------- attach


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write a loadable vocoder folder (like ``RUN_DIR/vocoder``) from a training checkpoint.

    For judging a run that is still going (or an earlier step of one) with the real judges.
    """
    from vconv.checkpoint import load_training_state

    state = load_training_state(checkpoint)
    configs = state["configs"]
    vocoder = VocosVocoder(FeatureConfig.from_dict(configs["features"]), VocoderConfig.from_dict(configs["vocoder"]))
    vocoder.load_state_dict(state["generator"])
    return save_vocoder(out_dir, vocoder, extra={"trained_steps": int(state["step"]), "from_checkpoint": str(checkpoint)})


def attach_vocoder(bundle_dir: str | Path, vocoder_dir: str | Path) -> Path:
    """Copy ``vocoder.safetensors`` + ``vocoder.json`` from ``vocoder_dir`` into the VC bundle ``bundle_dir``.

    The vocoder is loaded first (its own sha256 checked) and must match the bundle's FeatureConfig. The
    bundle's ``config.json`` then records both files' sha256 under ``"sha256"`` and ``"vocoder": "vocos"``;
    every file is written to a temporary name and renamed, config.json last.
    """
    from vconv.vocoders.base import check_compatible

    bundle_dir, vocoder_dir = Path(bundle_dir), Path(vocoder_dir)
    config = read_bundle_config(bundle_dir)
    meta = read_vocoder_meta(vocoder_dir)
    vocoder = load_vocoder(vocoder_dir)  # verifies the weights against vocoder.json
    check_compatible(FeatureConfig.from_dict(config["feature_config"]), vocoder)
    digests = {}
    for name in (VOCODER_WEIGHTS, VOCODER_CONFIG):
        tmp = bundle_dir / f".{name}.tmp"
        shutil.copyfile(vocoder_dir / name, tmp)
        digests[name] = sha256_of(tmp)
        os.replace(tmp, bundle_dir / name)
    config.setdefault("sha256", {}).update(digests)
    config["vocoder"] = meta["vocoder"]
    write_text_atomic(bundle_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return bundle_dir
