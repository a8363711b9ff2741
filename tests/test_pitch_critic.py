"""The pitch critic (vconv.training.pitch_critic): its reader learns F0 from real mels, its term asks the output (and
the output with its register moved) for the F0 the decoder was given, and a checkpoint resumes it exactly."""

from __future__ import annotations

import math

import pytest
import torch

from vconv.config import load_run_config
from vconv.errors import VconvError
from vconv.training.pitch_critic import MelPitchReader, PitchCritic, pitch_distance
from vconv.training.vc_trainer import ModelTrainer

from .test_train import params

CRITIC = {"critics.pitch.start_step": 3, "critics.pitch.items": 2, "critics.pitch.shift_semitones": 6}


def pitch_trainer(manifests, run_dir, pitch: bool = True, resume: bool = False, **train):
    overrides = [f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={run_dir}",
                 *[f"train.{key}={value}" for key, value in {**CRITIC, **train}.items()]]
    features, model, config = load_run_config("debug", overrides + (["model.pitch_frontend.kind=yin"] if pitch else []))
    return ModelTrainer(features, model, config, resume=resume, progress=False)


def critic_of(trainer: ModelTrainer) -> PitchCritic:
    return next(critic for critic in trainer.critics if isinstance(critic, PitchCritic))


def test_the_reader_learns_log_f0_and_voicing_of_a_mel():
    torch.manual_seed(0)
    reader = MelPitchReader(n_mels=16, channels=32)
    # a toy "mel" whose brightest band is the F0: the reader must learn to read it
    log_f0 = math.log(100.0) + torch.rand(8, 1, 1).expand(8, 1, 40)[:, 0] * math.log(3.0)
    band = ((log_f0 - math.log(100.0)) / math.log(3.0) * 15).round().long()
    mel = torch.nn.functional.one_hot(band, 16).permute(0, 2, 1).float() * 3.0
    voiced = torch.ones(8, 40)
    optimiser = torch.optim.Adam(reader.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        f0_l1, voicing = pitch_distance(reader, mel, log_f0, voiced, 0.2)
        optimiser.zero_grad()
        (f0_l1 + voicing).backward()
        optimiser.step()
        losses.append(f0_l1.item())
    assert losses[-1] < 0.3 * losses[0] and losses[-1] < 0.1, losses[::30]


def test_the_term_joins_at_its_step_with_the_shifted_items_and_reaches_only_the_model(manifests, tmp_path):
    trainer = pitch_trainer(manifests, tmp_path / "run")
    critic = critic_of(trainer)
    early = [trainer.train_step(trainer.batches[step]) for step in range(3)]
    assert all("pitch_reader_l1" in m and "pitch_l1" not in m for m in early)
    before = params(critic.reader)
    late = trainer.train_step(trainer.batches[3])
    assert late["pitch_l1"] > 0 and late["pitch_shifted_l1"] > 0 and math.isfinite(late["loss"])
    after = params(critic.reader)
    # the reader learnt from the real batch only: one Adam step of its own, whatever the term asked of the model
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in critic.reader.parameters())


def test_the_terms_gradient_reaches_the_decoder_and_not_the_reader(manifests, tmp_path):
    trainer = pitch_trainer(manifests, tmp_path / "run", **{"critics.pitch.start_step": 0})
    critic = critic_of(trainer)
    batch = trainer.batches[0]
    out = trainer.model(batch.source, batch.ref, pitch=trainer._contour(batch.pitch))
    trainer.model.zero_grad(set_to_none=True)
    term = critic.term(batch, out, {})  # the reader takes its own step on the real mels first
    assert term is not None and term.requires_grad
    critic.reader.zero_grad(set_to_none=True)
    term.backward()
    assert all(p.grad is None for p in critic.reader.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.decoder.parameters())


def test_resume_restores_the_reader_and_the_shifts(manifests, tmp_path):
    settings = {"steps": 6, "save_every": 3, "log_every": 1, "valid_every": 1000}
    full = pitch_trainer(manifests, tmp_path / "full", **settings)
    full.fit()
    first = pitch_trainer(manifests, tmp_path / "killed", **settings)
    first.fit(until=4)
    resumed = pitch_trainer(manifests, tmp_path / "killed", resume=True, **settings)
    assert resumed.step == 3
    resumed.fit()
    for whole, again in ((full.model, resumed.model), (critic_of(full).reader, critic_of(resumed).reader)):
        a, b = params(whole), params(again)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)


def test_a_model_without_the_pitch_path_is_refused_in_one_line(manifests, tmp_path):
    with pytest.raises(VconvError, match="critics.pitch needs a model with the pitch path"):
        pitch_trainer(manifests, tmp_path / "run", pitch=False)
