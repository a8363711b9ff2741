"""Content consistency (vconv.training.content_consistency): the map from vconv's mel to Whisper's input, the loss's
meaning and gradient, and the trainer's use of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vconv
from vconv.audio.io import load
from vconv.audio.pretrained import prepare_frontends
from vconv.audio.whisper import WhisperLogMel
from vconv.training.content_consistency import ContentConsistency, WhisperFeatures
from vconv.training.vc_trainer import ModelTrainer

from .test_train import tiny

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VALID_SPEAKERS = 1


@pytest.fixture(scope="module")
def shipped():
    return vconv.load()


@pytest.fixture(scope="module")
def mels(shipped) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("source", "target"):
        wav = load(EXAMPLES / f"{name}.wav", 16000)[0]
        out[name] = shipped.frontend.log_mel(wav[None])
        out[f"{name}_wav"] = torch.from_numpy(wav)
    return out


def test_a_real_mel_lands_where_whispers_own_analysis_of_the_audio_does(shipped, mels):
    ours = WhisperFeatures(shipped.features)(mels["source"])
    theirs = WhisperLogMel()(mels["source_wav"][None])
    n = min(ours.shape[-1], theirs.shape[-1])
    assert abs(ours.shape[-1] - theirs.shape[-1]) <= 1
    assert float((ours[..., :n] - theirs[..., :n]).abs().mean()) < 0.1  # Whisper's input spans about 2 units
    assert np.corrcoef(ours[..., :n].flatten(), theirs[..., :n].flatten())[0, 1] > 0.97


def test_the_loss_tells_other_words_apart_and_its_gradient_lowers_it(shipped, mels):
    critic = ContentConsistency(shipped.features, shipped.frontend.content.encoder, 4)
    n = min(mels["source"].shape[-1], mels["target"].shape[-1], 160)
    source, other = mels["source"][..., :n], mels["target"][..., :n]
    assert float(critic(source, source)) == 0.0
    assert float(critic(other, source)) > 0.5
    moving = other.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([moving], lr=0.05)
    losses = []
    for _ in range(15):
        loss = critic(moving, source)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.9 * losses[0] and losses == sorted(losses, reverse=True), losses


def test_the_trainer_decodes_in_a_neighbours_voice_and_logs_the_distance(manifests, tmp_path_factory, tmp_path):
    frontends = prepare_frontends(tmp_path_factory.mktemp("frontends"))
    trainer = ModelTrainer(*tiny(manifests, tmp_path / "run", **{"critics.content_consistency.weight": 1.0,
                                 "critics.content_consistency.items": 4}, frontends_dir=str(frontends)), progress=False)
    assert [critic.name for critic in trainer.critics] == ["content_consistency"]
    metrics = trainer.train_step(trainer.batches[0])
    assert 0.0 < metrics["content_l1"] < 2.0
