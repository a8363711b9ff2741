"""The pitch critic: a training term that asks the model's output to carry the F0 its decoder was given.

The decoder reads the source's contour (:mod:`vconv.models.contour`), but nothing in the loss asks it to follow it:
the L1 on an 80-band log-mel barely sees the harmonics' spacing, so a decoder fine-tuned from one that invented its
melody learned to follow the contour's voicing more than its F0 (a 12-semitone shift moved its output by 2;
recipes/voices/MODEL_HISTORY.md, "The pitch path"). Here a small convolutional network (:class:`MelPitchReader`)
learns, on every step, to read log-F0 and voicing from *real* normalised mels (the batch's own YIN rows are its
labels; it never learns from the model's output, so it is a fixed ruler, not an adversary). From
``start_step`` on, it reads the model's output, and the term is its L1 to the F0 the decoder was asked for (voiced
frames) plus the voicing's cross-entropy:

* the reconstruction, which must carry the source's own contour;
* the first ``items`` items decoded again with their register moved by a random shift within
  ±``shift_semitones`` (a model with the explicit register), which must carry the moved F0: what ``--pitch-shift``
  and a target of another register ask at inference.

Config: ``train.critics.pitch`` (:class:`~vconv.config.critics.PitchSection`); it is training-only, like every critic.
With rooms (``train.room_probability``) an item heard in its room was given, and is asked for, the F0 tracked there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from vconv.config.critics import PitchSection
from vconv.models.contour import LOG_F0_CENTER, LOG_F0_SCALE, SEMITONE, Register, decoder_contour, voiced_register
from vconv.training.critics import Critic, register_critic

if TYPE_CHECKING:
    from vconv.data.segments import Batch
    from vconv.models import ReconstructionOutput
    from vconv.training.vc_trainer import ModelTrainer

__all__ = ["MelPitchReader", "PitchCritic"]


class MelPitchReader(nn.Module):
    """Normalised log-mel ``[B, n_mels, T]`` -> ``(log-F0 [B, T] in nats of Hz, voicing logit [B, T])``.

    Three 5-frame convolutions of ``channels`` (the last two residual) and a 1x1 output: ~0.2 M parameters at 128.
    """

    def __init__(self, n_mels: int, channels: int = 128) -> None:
        super().__init__()
        self.first = nn.Conv1d(n_mels, channels, 5, padding=2)
        self.hidden = nn.ModuleList([nn.Conv1d(channels, channels, 5, padding=2) for _ in range(2)])
        self.out = nn.Conv1d(channels, 2, 1)

    def forward(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.leaky_relu(self.first(log_mel.float()), 0.1)
        for conv in self.hidden:
            x = x + F.leaky_relu(conv(x), 0.1)
        rows = self.out(x)
        return LOG_F0_CENTER + LOG_F0_SCALE * rows[:, 0], rows[:, 1]


def pitch_distance(reader: nn.Module, log_mel: torch.Tensor, log_f0: torch.Tensor, voiced: torch.Tensor,
                   voicing_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L1 of log-F0 over voiced frames, voicing cross-entropy)`` of ``reader`` (a :class:`MelPitchReader`, or it in DDP) on ``log_mel [B, n_mels, T]``
    against ``log_f0 [B, T]`` (nats) and ``voiced [B, T]`` (0/1); the second already weighted."""
    predicted, logit = reader(log_mel)
    mask = voiced > 0.5
    f0_l1 = (predicted - log_f0).abs()[mask].mean() if bool(mask.any()) else predicted.sum() * 0.0
    return f0_l1, voicing_weight * F.binary_cross_entropy_with_logits(logit, voiced.float())


@register_critic
class PitchCritic(Critic):
    """``train.critics.pitch`` (module docstring)."""

    name = "pitch"
    section_class = PitchSection
    section: PitchSection

    def __init__(self, section: PitchSection, trainer: "ModelTrainer") -> None:
        super().__init__(section, trainer)
        if not trainer.model.reads_pitch:
            from vconv.errors import VconvError

            raise VconvError("train.critics.pitch needs a model with the pitch path (model.pitch_frontend)")
        self.reader = MelPitchReader(trainer.mcfg.n_mels, section.channels).to(trainer.device)
        self.net = trainer.distributed(self.reader)
        self.optimizer = torch.optim.AdamW(self.reader.parameters(), lr=section.lr, weight_decay=trainer.tcfg.weight_decay)
        self.scheduler = trainer.make_scheduler(self.optimizer)
        self.generator = torch.Generator().manual_seed(trainer.tcfg.seed + 7919)  # the shifts, resumable per step

    def term(self, batch: "Batch", out: "ReconstructionOutput", metrics: dict[str, float]) -> torch.Tensor | None:
        assert batch.pitch is not None  # a model with the pitch path reads batches with pitch rows
        log_f0, voiced = batch.pitch[:, 0].float(), batch.pitch[:, 1].float()
        f0_l1, voicing = pitch_distance(self.net, batch.mel, log_f0, voiced, self.section.voicing_weight)
        self.trainer.update(f0_l1 + voicing, self.optimizer, self.scheduler, self.reader)  # the ruler, on real mels
        metrics["pitch_reader_l1"] = f0_l1.item()
        if self.trainer.step < self.section.start_step:
            return None
        self.reader.requires_grad_(False)  # the term's gradient reaches the model only
        try:
            f0_l1, voicing = pitch_distance(self.reader, out.mel, log_f0, voiced, self.section.voicing_weight)
            total = f0_l1 + voicing
            metrics["pitch_l1"] = f0_l1.item()
            shifted = self._shifted_term(batch, out, metrics)
            if shifted is not None:
                total = 0.5 * (total + shifted)
        finally:
            self.reader.requires_grad_(True)
        return self.section.weight * total

    def _shifted_term(self, batch: "Batch", out: "ReconstructionOutput", metrics: dict[str, float]) -> torch.Tensor | None:
        """The first ``items`` items decoded with their register moved by random shifts, read against the moved F0."""
        trainer, k = self.trainer, min(self.section.items, batch.mel.shape[0])
        if k == 0 or self.section.shift_semitones == 0 or trainer.mcfg.pitch_register != "explicit":
            return None
        assert batch.pitch is not None
        pitch = batch.pitch[:k].float()
        semitones = (torch.rand(k, generator=self.generator) * 2 - 1) * self.section.shift_semitones
        own = [voiced_register(p) for p in pitch]
        moved = [Register(r.mean + float(s) * SEMITONE, r.spread, r.frames) for r, s in zip(own, semitones)]
        contour = decoder_contour(pitch, trainer.mcfg.pitch_register, source=own, output=moved)
        with trainer.autocast():
            converted = trainer.model.decode(out.quantizer.quantized[:k], out.speaker_embedding[:k], batch.mel.shape[-1],
                                             contour.to(batch.pitch.dtype))
        wanted = pitch[:, 0] + semitones.to(pitch.device)[:, None] * SEMITONE
        f0_l1, voicing = pitch_distance(self.reader, converted.float(), wanted, pitch[:, 1], self.section.voicing_weight)
        metrics["pitch_shifted_l1"] = f0_l1.item()
        return f0_l1 + voicing

    def state(self) -> dict[str, Any]:
        return {"pitch_reader": self.reader.state_dict(), "opt_pitch_reader": self.optimizer.state_dict(),
                "sched_pitch_reader": self.scheduler.state_dict(), "pitch_shift_rng": self.generator.get_state()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if not self.holds(state, "pitch_reader", "pitch critic"):
            return
        self.reader.load_state_dict(state["pitch_reader"], strict=True)
        self.optimizer.load_state_dict(state["opt_pitch_reader"])
        self.scheduler.load_state_dict(state["sched_pitch_reader"])
        self.scheduler.base_lrs = [self.section.lr for _ in self.scheduler.base_lrs]  # a resume may set a new one
        self.generator.set_state(state["pitch_shift_rng"])
