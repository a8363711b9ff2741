"""Content consistency: the frozen Whisper encoder (the content front-end's own) asks, in training, whether a
*converted* segment still says what its source said.

Reconstruction asks the decoder to rebuild a segment in its own voice; nothing in training says that a conversion to
another voice must keep the words. With ``train.critics.content_consistency`` the trainer decodes the first
``items`` items of each batch in the next item's voice (its embedding, and for a model with
the pitch path the next item's register) and adds the L1 distance between Whisper tiny.en's block-``L`` states of the
converted segment and of the real segment, each state layer-normalised (a few of Whisper's channels are hundreds of
times larger than the rest; normalised, every channel counts). Both go through the same differentiable map from
vconv's mel to Whisper's log-mel (:class:`WhisperFeatures`), so its approximation cancels; the gradient reaches the
model through the converted mel only. Whisper tiny.en then trains the model, so it may not judge it:
``vconv evaluate`` refuses it as the ASR judge of a model whose content front-end is Whisper (Whisper base judges).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from vconv.audio.whisper import HOP, N_FFT, N_MELS, SAMPLE_RATE, WhisperEncoder, WhisperLogMel
from vconv.config import FeatureConfig
from vconv.config.critics import ContentConsistencySection
from vconv.models.contour import decoder_contour, voiced_register
from vconv.training.critics import Critic, register_critic
from vconv.training.reanalysis import Reanalysis

if TYPE_CHECKING:
    from vconv.data.segments import Batch
    from vconv.models import ReconstructionOutput
    from vconv.training.vc_trainer import ModelTrainer

_DECADES = 8.0  # Whisper's log-mel keeps 8 decades below each item's loudest bin


def _whisper_log10_mel(wav: np.ndarray) -> np.ndarray:
    """Whisper's analysis of mono 16 kHz ``[T]`` before its normalisation: log10 power mel ``[T // 160, 80]``."""
    normalised = WhisperLogMel()(torch.from_numpy(wav)[None])[0]  # (log10 + 4) / 4, [80, N]
    return (4.0 * normalised - 4.0).T.numpy()


class WhisperFeatures(Reanalysis):
    """vconv's natural-log mel ``[B, n_mels, F]`` (16 kHz) -> Whisper's normalised log-mel ``[B, 80, F']`` (100 frames/s,
    centred frames), the encoder's input, differentiably (:class:`~vconv.training.reanalysis.Reanalysis`)."""

    def __init__(self, cfg: FeatureConfig, nnls_iterations: int = 8):
        super().__init__(cfg, sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP, bands=N_MELS, first_centre=0,
                         own_analysis=_whisper_log10_mel, nnls_iterations=nnls_iterations)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        bands = super().forward(log_mel)  # log10 power [B, 80, F']
        bands = torch.maximum(bands, bands.amax(dim=(-2, -1), keepdim=True).detach() - _DECADES)
        return (bands + 4.0) / 4.0


class ContentConsistency(torch.nn.Module):
    """L1 ``[]`` between layer-normalised Whisper states of converted and real segments (natural-log mels
    ``[B, n_mels, T]``, denormalised; module docstring). The real side takes no gradient."""

    def __init__(self, cfg: FeatureConfig, encoder: WhisperEncoder, layer: int):
        super().__init__()
        self.features = WhisperFeatures(cfg)
        self.encoder = encoder.truncated(layer).eval().requires_grad_(False)
        self.layer = layer

    def states(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, T]`` -> layer-normalised block-``layer`` states ``[B, N, 384]``."""
        hidden = self.encoder(self.features(log_mel.float()), self.layer)
        return F.layer_norm(hidden.float(), hidden.shape[-1:])

    def forward(self, converted: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self.states(real)
        return F.l1_loss(self.states(converted), wanted)


def load_content_critic(cfg: FeatureConfig, frontends_dir: str | Path | None, layer: int) -> ContentConsistency:
    """The critic with Whisper tiny.en's encoder from a front-end folder (``vconv frontend prepare``)."""
    from vconv.audio.pretrained import load_whisper_encoder, read_frontends_index
    from vconv.errors import VconvError

    if not frontends_dir:
        raise VconvError("train.critics.content_consistency needs Whisper's weights: set train.frontends_dir "
                         "(made by `vconv frontend prepare`)")
    return ContentConsistency(cfg, load_whisper_encoder(frontends_dir, read_frontends_index(frontends_dir)), layer)


@register_critic
class ContentConsistencyCritic(Critic):
    """``train.critics.content_consistency`` (:class:`~vconv.config.critics.ContentConsistencySection`): the first
    ``items`` items' codes decoded in the *next* item's voice (its embedding, and its register for a model with the
    pitch path), scored by the frozen Whisper encoder against the item's own real segment. Reuses the
    reconstruction's codes and embeddings."""

    name = "content_consistency"
    section_class = ContentConsistencySection
    section: ContentConsistencySection

    def __init__(self, section: ContentConsistencySection, trainer: "ModelTrainer") -> None:
        super().__init__(section, trainer)
        content = trainer.mcfg.content_frontend
        layer = int(content.get("layer", 4)) if content.get("kind") == "whisper" else 4
        self.critic = load_content_critic(trainer.fcfg, trainer.tcfg.frontends_dir, layer).to(trainer.device)

    def term(self, batch: "Batch", out: "ReconstructionOutput", metrics: dict[str, float]) -> torch.Tensor:
        trainer, n = self.trainer, batch.mel.shape[0]
        k = min(self.section.items, n)
        other = (torch.arange(k, device=batch.mel.device) + 1) % n  # item i takes item i+1's voice
        pitch = None
        if batch.pitch is not None and trainer.model.reads_pitch:
            pitch = decoder_contour(batch.pitch[:k], trainer.mcfg.pitch_register,
                                    output=[voiced_register(p) for p in batch.pitch[other].float()])
        with trainer.autocast():
            converted = trainer.model.decode(out.quantizer.quantized[:k], out.speaker_embedding[other],
                                             batch.mel.shape[-1], pitch)
        denorm = trainer.frontend.denormalize
        distance = self.critic(denorm(converted.float()), denorm(batch.mel[:k]))
        metrics["content_l1"] = distance.item()
        return self.section.weight * distance
