"""Speaker consistency (vconv.training.speaker_consistency): the torch port of the d-vector, the mel it reads, the
loss's gradient, and the trainer's use of it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vconv.audio.dvector import DVectorEmbedder, dvector_log_mel, packaged_embedder_path, windows_of
from vconv.audio.io import load
from vconv.audio.logmel import LogMel
from vconv.config import FeatureConfig
from vconv.errors import VconvError
from vconv.training.speaker_consistency import DVectorFeatures, SpeakerConsistency, window_starts
from vconv.training.vc_trainer import ModelTrainer

from .test_train import tiny

pytest.importorskip("onnx")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def consistency() -> SpeakerConsistency:
    return SpeakerConsistency(FeatureConfig())


@pytest.fixture(scope="module")
def voices() -> dict[str, np.ndarray]:
    return {name: load(EXAMPLES / f"{name}.wav", 16000)[0] for name in ("source", "target")}


def test_the_torch_port_gives_onnxruntimes_embeddings(consistency, voices):
    windows = windows_of(dvector_log_mel(voices["target"]))  # [N, 80, 40]
    onnx_out = DVectorEmbedder(packaged_embedder_path()).session.run(None, {"mel_window": windows})[0]
    with torch.no_grad():
        ours = consistency.net(torch.from_numpy(windows)).numpy()
    cosine = np.sum(onnx_out * ours, 1) / np.linalg.norm(onnx_out, axis=1) / np.linalg.norm(ours, axis=1)
    assert cosine.min() > 0.995  # int8 weights de-quantised exactly; onnxruntime also rounds the activations
    assert not any(p.requires_grad for p in consistency.net.parameters())


def test_a_real_mel_lands_where_the_embedders_own_analysis_of_the_audio_does(consistency, voices):
    logmel = LogMel(FeatureConfig())
    embedder = DVectorEmbedder(packaged_embedder_path())
    with torch.no_grad():
        ours = {k: consistency.embed(logmel(torch.from_numpy(v)[None]))[0].numpy() for k, v in voices.items()}
    theirs = {k: embedder(v) for k, v in voices.items()}
    for name in voices:  # the same voice through the mel is the same voice to the embedder
        assert float(ours[name] @ theirs[name]) > 0.8
    # and the two voices stay apart: each is nearer its own embedding than the other voice's
    assert float(ours["source"] @ theirs["source"]) > float(ours["source"] @ theirs["target"]) + 0.05
    assert float(ours["target"] @ theirs["target"]) > float(ours["target"] @ theirs["source"]) + 0.05


def test_features_are_on_the_embedders_frames():
    features = DVectorFeatures(FeatureConfig())
    frames = 125  # 2 s at hop 256: vconv frames centred on samples 0 .. 31,744
    out = features(torch.zeros(2, 80, frames) - 5)
    assert out.shape == (2, (124 * 256 - 256) // 160 + 1, 40)
    assert window_starts(out.shape[1]) == [0, 80] and window_starts(30) == [0]
    with pytest.raises(VconvError, match="16 kHz"):
        DVectorFeatures(FeatureConfig(sample_rate=22050))


def test_the_loss_falls_when_its_gradient_moves_a_mel_toward_a_voice(consistency, voices):
    logmel = LogMel(FeatureConfig())
    target = logmel(torch.from_numpy(voices["target"])[None])[..., :160]
    converted = logmel(torch.from_numpy(voices["source"])[None])[..., :160].clone().requires_grad_(True)
    optimiser = torch.optim.Adam([converted], lr=0.05)
    cosines = []
    for _ in range(15):
        cosine = consistency(converted, target)  # [1]
        optimiser.zero_grad()
        (1 - cosine).mean().backward()
        optimiser.step()
        cosines.append(cosine.item())
    assert converted.grad is not None and converted.grad.abs().sum() > 0
    assert cosines[-1] > cosines[0] + 0.1, cosines


def test_the_trainer_converts_to_a_neighbours_voice_and_logs_the_cosine(manifests, tmp_path):
    trainer = ModelTrainer(*tiny(manifests, tmp_path / "run", speaker_consistency_weight=1.0, speaker_consistency_items=4),
                           progress=False)
    assert trainer.speaker_consistency is not None
    metrics = trainer.train_step(trainer.batches[0])
    assert -1.0 <= metrics["spk_cos"] <= 1.0
    plain = ModelTrainer(*tiny(manifests, tmp_path / "plain"), progress=False)
    assert plain.speaker_consistency is None and "spk_cos" not in plain.train_step(plain.batches[0])
