"""The model trainer (``vconv train``): one code path from a single CPU process to many GPUs under ``torchrun``.

No argparse and no paths of its own: everything comes from :class:`~vconv.config.TrainConfig`,
:class:`~vconv.config.ModelConfig` and :class:`~vconv.config.FeatureConfig`. The loop, DDP, bf16, the
schedule, logging and checkpoints are :class:`~vconv.training.base.BaseTrainer`'s.

Per step: reconstruction L1 + ``vq_weight`` × VQ loss, plus (with the adversary) the speaker
classifier's cross-entropy on the content code. The classifier sits behind a gradient-reversal layer
whose weight ramps linearly from 0 to ``adversary_weight`` over ``adversary_ramp_steps``: the classifier
always learns at full rate, while the encoder is pushed to *remove* speaker information only gradually,
because a strong adversary early destroys content (Chou et al. 2018). The critics the config names
(``train.critics``: the output mel's discriminator, content consistency; :mod:`vconv.training.critics`) add their
terms; they are training-only, like the optimiser, and never part of the bundle.

Run folder::

    config.yaml               resolved configs (features, model, train); see vconv.training.runs
    log.jsonl                 one JSON line per logged / validated step (TensorBoard too, if installed)
    checkpoints/latest.pt     atomic, resumable (model, optimiser, scheduler, step, RNG, configs)
    checkpoints/step_N.pt     the last ``keep_checkpoints`` of them
    model/                    the final model as a safe bundle (see vconv.bundles)
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from vconv.audio.frontend import FeatureStats, FrontEnd, compute_stats
from vconv.bundles import load_bundle, save_bundle
from vconv.config import FeatureConfig, ModelConfig, TrainConfig
from vconv.data.extract import ExtractSpec
from vconv.data.manifest import read_manifest, speakers_of
from vconv.data.segments import Batch, FeatureStore, SegmentBatches
from vconv.errors import VconvError
from vconv.fileio import read_json_object
from vconv.frontends import load_model_parts, model_parts, pitch_part
from vconv.models import VoiceConversionModel, build_model
from vconv.models.contour import decoder_contour
from vconv.training.base import BaseTrainer
from vconv.training.content_consistency import ContentConsistencyCritic
from vconv.training.critics import Critic, build_critics
from vconv.training.mel_gan import MelGanCritic
from vconv.training.runs import load_training_state
from vconv.training.vc_validation import ModelValidation

SHIPPED_CRITICS = (MelGanCritic, ContentConsistencyCritic)  # registered on import: what train.critics can name


class ModelTrainer(ModelValidation, BaseTrainer):
    """Builds data, model and optimiser from the configs; ``fit()`` trains, validates, checkpoints, exports."""

    tcfg: TrainConfig
    batches: SegmentBatches
    valid_store: FeatureStore | None

    def __init__(
        self,
        features: FeatureConfig,
        model: ModelConfig,
        train: TrainConfig,
        *,
        resume: bool = False,
        progress: bool = True,
    ):
        super().__init__(train, resume=resume, progress=progress)
        train_utts = read_manifest(train.train_manifest, nonempty=True)
        self.speakers = speakers_of(train_utts)
        if model.has_adversary and model.n_speakers == 0:  # a new config, not a change to the validated one
            model = dataclasses.replace(model, n_speakers=len(self.speakers))
        self.fcfg, self.mcfg = features, model
        # what the two paths read: front-end parts (vconv.frontends) whose outputs are precomputed by
        # `vconv extract`, or computed here from the audio when there is no features_dir
        self.spec = model_frontend_spec(features, model, train.frontends_dir, train.rooms())
        self.content_part, self.speaker_part = model_parts(model)
        self.pitch_part = pitch_part(model)
        self.store = FeatureStore(train_utts, self.spec, train.features_dir)
        self.valid_store = None
        if train.valid_manifest:
            valid_utts = read_manifest(train.valid_manifest)
            self.valid_store = FeatureStore(valid_utts, self.spec, train.features_dir) if valid_utts else None

        torch.manual_seed(train.seed)
        self.model: VoiceConversionModel = build_model(model).to(self.device)
        self.net = self.distributed(self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        self.scheduler = self.make_scheduler(self.optimizer)
        self.critics: list[Critic] = build_critics(train.critic_sections(), self)
        state = self.latest_state()
        if state is not None:
            self.restore(state)  # brings the run's own normalisation statistics
        elif train.init_from:
            self.frontend = self._start_from(train.init_from)
        else:
            self.frontend = self._frontend(self._load_or_compute_stats())  # on the CPU, where batches are made
        self.batches = SegmentBatches(
            self.store, self.speakers, self.frontend, batch_size=train.batch_size, segment_frames=train.segment_frames,
            seed=train.seed, rank=self.dist.rank, steps=train.steps, perturb=train.perturb_content,
            speaker_sampling_power=train.speaker_sampling_power, content=self.content_part, speaker=self.speaker_part,
            pitch=self.pitch_part, room_probability=train.room_probability,
        )

    # ----------------------------------------------------------------------------------------- setup

    def _frontend(self, stats: FeatureStats) -> FrontEnd:
        return bundle_frontend(self.fcfg, self.mcfg, stats, self.spec)

    def _start_from(self, bundle: str) -> FrontEnd:
        """Load a trained bundle's weights into the model (a fine-tuning run) and return the front-end with *its*
        normalisation statistics: the weights were trained on those, whatever this run's features_dir holds."""
        trained, _, info = load_bundle(bundle)  # sha256-checked
        grows = _adds_pitch_path(info.model_config, self.mcfg)
        theirs_model = info.model_config
        if grows:
            theirs_model = dataclasses.replace(theirs_model, pitch_frontend=self.mcfg.pitch_frontend,
                                               pitch_register=self.mcfg.pitch_register)
        elif pitch_part(theirs_model) is not None and pitch_part(self.mcfg) is not None:
            # another tracker for the same contour rows ([3, F]): the decoder fine-tunes on what it now reads
            theirs_model = dataclasses.replace(theirs_model, pitch_frontend=self.mcfg.pitch_frontend)
        for what, theirs, ours in (("model", theirs_model, self.mcfg), ("feature", info.feature_config, self.fcfg)):
            if theirs != ours:  # "model.decoder: the bundle's vs this run's"
                diffs = "; ".join(f"{what}.{d}" for d in theirs.differences(ours))
                raise VconvError(f"train.init_from {bundle}: its {what} config differs from this run's ({diffs})")
        if grows:  # the bundle's weights, and the new pitch projections at zero: the run starts as the bundle's model
            missing = self.model.load_state_dict(trained.state_dict(), strict=False).missing_keys
            assert all(key.startswith("decoder.pitch_in.") for key in missing), missing
            assert self.model.decoder.pitch_in is not None  # grows: this run's model reads pitch
            for weight in self.model.decoder.pitch_in.parameters():
                torch.nn.init.zeros_(weight)  # each projection's weight and bias
            if self.dist.is_main:
                print(f"note: {bundle} has no pitch path; it starts at zero (the bundle's model exactly)", file=sys.stderr)
        else:
            self.model.load_state_dict(trained.state_dict(), strict=True)
        return self._frontend(info.feature_stats)

    def _load_or_compute_stats(self) -> FeatureStats:
        if self.tcfg.features_dir:
            path = Path(self.tcfg.features_dir) / "stats.json"
            if path.is_file():
                try:
                    return FeatureStats.from_dict(read_json_object(path, "feature statistics"), self.fcfg.n_mels)
                except VconvError as exc:
                    raise VconvError(exc if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
        return compute_stats(self.store.get(i) for i in range(len(self.store.utterances)))

    def sections(self) -> dict[str, Any]:
        return {"features": self.fcfg.to_dict(), "model": self.mcfg.to_dict(), "train": self.tcfg.to_dict()}

    def adversary_weight(self, step: int) -> float:
        ramp = max(1, self.tcfg.adversary_ramp_steps)
        return self.tcfg.adversary_weight * min(1.0, step / ramp)

    def postfix(self, metrics: Mapping[str, float]) -> dict[str, str]:
        return {"loss": f"{metrics['loss']:.3f}", "ppl": f"{metrics['perplexity']:.0f}"}

    # -------------------------------------------------------------------------------------- training

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the losses and diagnostics as floats."""
        self.net.train()
        batch = batch.to(self.device)
        with self.autocast():
            out = self.net(batch.source, batch.ref, adversary_weight=self.adversary_weight(self.step),
                           pitch=self._contour(batch.pitch))
            recon = F.l1_loss(out.mel.float(), batch.mel)
            loss = self.tcfg.recon_weight * recon + self.tcfg.vq_weight * out.quantizer.loss.float()
            metrics = {"recon": recon.item(), "vq": out.quantizer.loss.item(), "perplexity": out.quantizer.perplexity.item()}
            if out.speaker_logits is not None:
                adv = F.cross_entropy(out.speaker_logits.float(), batch.speaker)
                loss = loss + adv  # the reversal layer scales what reaches the encoder
                metrics["adv_loss"] = adv.item()
                metrics["adv_acc"] = (out.speaker_logits.argmax(-1) == batch.speaker).float().mean().item()
        for critic in self.critics:
            term = critic.term(batch, out, metrics)
            loss = loss if term is None else loss + term
        metrics["grad_norm"] = self.update(loss, self.optimizer, self.scheduler, self.model)
        self.step += 1
        metrics["loss"] = loss.item()
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        return metrics

    def _contour(self, pitch: torch.Tensor | None) -> torch.Tensor | None:
        """The decoder's contour of a batch's pitch rows ``[B, 3, T]`` (each item its own register: reconstruction),
        or None for a model without the pitch path."""
        return decoder_contour(pitch, self.mcfg.pitch_register) if pitch is not None and self.model.reads_pitch else None

    # ----------------------------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "speakers": self.speakers,
            "feature_stats": self.frontend.stats().to_dict(),
            **{key: value for critic in self.critics for key, value in critic.state().items()},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        saved = ModelConfig.from_dict(state["configs"]["model"])
        if saved != self.mcfg:
            raise VconvError(f"{self.run.latest}: model config differs from the checkpoint's; resume with the same config")
        self.model.load_state_dict(state["model"], strict=True)
        if len(state["optimizer"]["param_groups"]) != len(self.optimizer.param_groups):  # train.grown_lr_scale's two
            raise VconvError(f"{self.run.latest}: this run trained grown parts at their own learning rate "
                             "(train.grown_lr_scale, which left vconv); resume it with vconv at commit 1d69df6")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.frontend = self._frontend(FeatureStats.from_dict(state["feature_stats"]))
        for critic in self.critics:
            critic.load_state(state)

    def export(self) -> None:
        # the run's own bundle keeps the adversary and the speakers (the card and `bundle package` read them)
        save_bundle(self.run_dir / "model", self.model, self.frontend, speakers=self.speakers,
                    extra={"trained_steps": self.step}, training_parts=True, force=True)


def _adds_pitch_path(before: ModelConfig, now: ModelConfig) -> bool:
    """Whether ``now`` is ``before`` with a pitch path added (a fine-tuning run may grow one onto a trained model)."""
    return pitch_part(before) is None and pitch_part(now) is not None


def model_frontend_spec(features: FeatureConfig, model: ModelConfig, frontends_dir: str | None,
                        rooms: tuple[int, tuple[float, float], tuple[float, float]] | None = None) -> ExtractSpec:
    """What the model's paths read: the log-mel, plus the outputs of the front-end parts its config names (the pitch
    tracker's among them, when the model has the pitch path); with ``rooms`` (:meth:`TrainConfig.rooms`), each also in
    the recording's simulated room."""
    sections = [("content", model.content_frontend), ("speaker", model.speaker_frontend)]
    if pitch_part(model) is not None:
        sections.append(("pitch", model.pitch_frontend))
    return ExtractSpec(features.to_dict(), frontends_dir, tuple(sections), rooms)


def bundle_frontend(features: FeatureConfig, model: ModelConfig, stats: FeatureStats, spec: ExtractSpec) -> FrontEnd:
    """The front-end a bundle carries: the mel statistics and the model's parts (content, speaker, the pitch tracker
    when it has the pitch path), their weights loaded."""
    from vconv.audio.pretrained import read_frontends_index

    needs_weights = any(part.weight_files for part in (*model_parts(model), pitch_part(model)) if part is not None)
    index = read_frontends_index(spec.frontends_dir) if spec.frontends_dir and needs_weights else {}
    content, speaker, pitch = load_model_parts(model, spec.frontends_dir, index)
    return FrontEnd(features, stats, content=content, speaker=speaker, pitch=pitch)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, frontends_dir: str | Path | None = None,
                      force: bool = False) -> Path:
    """Write a loadable model bundle (like ``RUN_DIR/model``) from a training checkpoint.

    For judging a long run while it goes on (or an earlier step of one) with ``vconv evaluate``. The
    pretrained front-end weights come from ``frontends_dir`` (default: the run's ``train.frontends_dir``).
    """
    state = load_training_state(checkpoint)
    configs = state["configs"]
    features, model_cfg = FeatureConfig.from_dict(configs["features"]), ModelConfig.from_dict(configs["model"])
    model = build_model(model_cfg)
    model.load_state_dict(state["model"], strict=True)
    folder = str(frontends_dir) if frontends_dir else configs["train"].get("frontends_dir")
    frontend = bundle_frontend(features, model_cfg, FeatureStats.from_dict(state["feature_stats"]),
                               model_frontend_spec(features, model_cfg, folder))
    return save_bundle(out_dir, model, frontend, speakers=state["speakers"], force=force, training_parts=True,
                       extra={"trained_steps": int(state["step"]), "from_checkpoint": str(checkpoint)})
