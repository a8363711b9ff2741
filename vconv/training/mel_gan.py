"""An adversarial loss on the conversion model's output mel: a training-only part of the model trainer.

Why: the decoder is a regression (L1 on the normalised log-mel), so where several spectra fit the content and
the voice it predicts their average: formants and harmonics come out smeared, and smeared spectra sound like
no one in particular. On training voices the model's own output reaches a Resemblyzer similarity of ~0.71 to
another utterance of the speaker, against 0.80 for the vocoder on the real mel (recipes/voices/MODEL_HISTORY.md),
so the regression itself caps how much of a voice the network can carry. A discriminator that tells real log-mel
segments from reconstructed ones, with feature matching on its activations (as HiFi-GAN and Vocos train their
vocoders), pushes the decoder toward spectra with the detail of real speech.

:class:`MelDiscriminator` judges ``[B, n_mels, T]`` log-mel segments as a one-channel image: 2-D convolutions over
(mel band, frame), so it sees the local spectral texture (formant sharpness, harmonic ridges, onsets) anywhere
in the segment, and returns a score map and its activations (for feature matching). The losses are LSGAN's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from vconv.config.critics import MelGanSection
from vconv.training.critics import Critic, register_critic

if TYPE_CHECKING:
    from vconv.data.segments import Batch
    from vconv.models import ReconstructionOutput
    from vconv.training.vc_trainer import ModelTrainer

__all__ = ["MelDiscriminator", "MelGanCritic"]


class MelDiscriminator(nn.Module):
    """``log-mel [B, n_mels, T] -> (score [B, 1, ~n_mels/8, ~T/4], every layer's activation)``.

    Four weight-normalised 2-D convolutions (the middle two stride 2 in both axes, the last 2 in frequency) of
    ``channels``, ``2·channels``, ``4·channels``, ``4·channels`` and a 3x3 output convolution; ~0.1 M parameters
    at ``channels=16``.
    """

    def __init__(self, channels: int = 16):
        super().__init__()
        c = channels
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, c, 5, 1, padding=2)),
            weight_norm(nn.Conv2d(c, 2 * c, 5, 2, padding=2)),
            weight_norm(nn.Conv2d(2 * c, 4 * c, 5, 2, padding=2)),
            weight_norm(nn.Conv2d(4 * c, 4 * c, 3, (2, 1), padding=1)),
        ])
        self.out = weight_norm(nn.Conv2d(4 * c, 1, 3, padding=1))

    def forward(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if log_mel.dim() != 3:
            raise ValueError(f"expected a log-mel batch [B, n_mels, T], got {tuple(log_mel.shape)}")
        x, features = log_mel.unsqueeze(1), []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        x = self.out(x)
        return x, [*features, x]


@register_critic
class MelGanCritic(Critic):
    """``train.critics.mel_gan`` (:class:`~vconv.config.critics.MelGanSection`): from ``start_step`` on, one update of
    the discriminator on real and reconstructed segments, then the model's LSGAN and feature-matching terms."""

    name = "mel_gan"
    section_class = MelGanSection
    section: MelGanSection

    def __init__(self, section: MelGanSection, trainer: "ModelTrainer") -> None:
        super().__init__(section, trainer)
        self.discriminator = MelDiscriminator(section.channels).to(trainer.device)
        self.net = trainer.distributed(self.discriminator)
        self.optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=section.lr, betas=(0.8, 0.9),
                                           weight_decay=trainer.tcfg.weight_decay)  # HiFi-GAN's short momentum
        self.scheduler = trainer.make_scheduler(self.optimizer, max(1, trainer.tcfg.steps - section.start_step))

    def term(self, batch: "Batch", out: "ReconstructionOutput", metrics: dict[str, float]) -> torch.Tensor | None:
        if self.trainer.step < self.section.start_step:
            return None
        real, fake, n = batch.mel, out.mel.float(), batch.mel.shape[0]
        with self.trainer.autocast():  # the first n items real, the rest reconstructed
            score, _ = self.net(torch.cat([real, fake.detach()]))
        d_loss = (1 - score[:n].float()).pow(2).mean() + score[n:].float().pow(2).mean()
        self.trainer.update(d_loss, self.optimizer, self.scheduler, self.discriminator)
        with self.trainer.autocast():  # the gradient reaches the model through `fake`
            score, features = self.net(torch.cat([real, fake]))
        adversarial = (1 - score[n:].float()).pow(2).mean()
        matching = torch.stack([F.l1_loss(f[n:].float(), f[:n].detach().float()) for f in features]).sum()
        metrics.update(mel_d_loss=d_loss.item(), mel_g_adv=adversarial.item(), mel_fm=matching.item())
        return self.section.weight * adversarial + self.section.fm_weight * matching

    def state(self) -> dict[str, Any]:
        return {"mel_discriminator": self.discriminator.state_dict(), "opt_d": self.optimizer.state_dict(),
                "sched_d": self.scheduler.state_dict()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if not self.holds(state, "mel_discriminator", "mel discriminator"):
            return
        self.discriminator.load_state_dict(state["mel_discriminator"], strict=True)
        self.optimizer.load_state_dict(state["opt_d"])
        self.scheduler.load_state_dict(state["sched_d"])
        self.scheduler.base_lrs = [self.section.lr for _ in self.scheduler.base_lrs]  # a resume may set a new one
