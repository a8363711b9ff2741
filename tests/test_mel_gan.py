"""The adversarial loss on the output mel (vconv.training.mel_gan), a registered critic: shapes, when it starts, that
it trains both sides, that a checkpoint resumes it exactly, that a run forked from one without it starts it, that the
bundle never carries it, and that the critics' sections are checked and older flat keys still read."""

from __future__ import annotations

import pytest
import torch

from vconv.bundles import load_bundle
from vconv.training.mel_gan import MelDiscriminator, MelGanCritic
from vconv.training.vc_trainer import ModelTrainer

from .test_train import params, tiny

GAN = {"critics.mel_gan.weight": 0.1, "critics.mel_gan.fm_weight": 1.0, "critics.mel_gan.start_step": 2}


def discriminator(trainer: ModelTrainer) -> torch.nn.Module | None:
    """The mel_gan critic's discriminator, or None when the run has no such critic."""
    return next((critic.discriminator for critic in trainer.critics if isinstance(critic, MelGanCritic)), None)


def test_discriminator_scores_patches_and_returns_its_activations():
    disc = MelDiscriminator(channels=8)
    score, features = disc(torch.randn(3, 80, 64))
    assert score.shape == (3, 1, 10, 16)
    assert len(features) == 5 and features[-1] is score  # four convolutions and the score map
    assert features[1].shape == (3, 16, 40, 32)
    with pytest.raises(ValueError, match=r"\[B, n_mels, T\]"):
        disc(torch.randn(80, 64))


def test_the_gan_starts_at_its_step_and_updates_the_discriminator(manifests, tmp_path):
    trainer = ModelTrainer(*tiny(manifests, tmp_path / "run", **GAN), progress=False)
    assert discriminator(trainer) is not None
    before = params(discriminator(trainer))
    early = [trainer.train_step(trainer.batches[step]) for step in range(2)]
    assert all("mel_d_loss" not in m for m in early)
    assert all(torch.equal(before[k], v) for k, v in params(discriminator(trainer)).items())  # not trained yet
    late = trainer.train_step(trainer.batches[2])
    assert {"mel_d_loss", "mel_g_adv", "mel_fm"} <= late.keys() and late["mel_fm"] > 0
    assert any(not torch.equal(before[k], v) for k, v in params(discriminator(trainer)).items())


def test_no_discriminator_without_a_weight(manifests, tmp_path):
    trainer = ModelTrainer(*tiny(manifests, tmp_path / "run"), progress=False)
    assert discriminator(trainer) is None and not trainer.critics and "mel_discriminator" not in trainer.state()
    assert "mel_d_loss" not in trainer.train_step(trainer.batches[0])


def test_resume_restores_the_discriminator_and_the_bundle_leaves_it_out(manifests, tmp_path):
    settings = dict(steps=6, save_every=3, log_every=1, valid_every=1000, **GAN)
    full = ModelTrainer(*tiny(manifests, tmp_path / "full", **settings), progress=False)
    full.fit()
    first = ModelTrainer(*tiny(manifests, tmp_path / "killed", **settings), progress=False)
    first.fit(until=4)
    resumed = ModelTrainer(*tiny(manifests, tmp_path / "killed", **settings), resume=True, progress=False)
    assert resumed.step == 3
    resumed.fit()
    for whole, again in ((full.model, resumed.model), (discriminator(full), discriminator(resumed))):
        a, b = params(whole), params(again)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    model, _, _ = load_bundle(tmp_path / "full" / "model")
    assert params(model).keys() == params(full.model).keys()  # the model's weights, no discriminator


def test_a_run_forked_from_one_without_the_gan_starts_it(manifests, tmp_path, capsys):
    plain = ModelTrainer(*tiny(manifests, tmp_path / "run", steps=4, save_every=2, valid_every=1000), progress=False)
    plain.fit(until=2)
    forked = ModelTrainer(*tiny(manifests, tmp_path / "run", steps=4, save_every=2, valid_every=1000, **GAN), resume=True,
                          progress=False)
    assert forked.step == 2 and "has no mel discriminator; it starts now, at step 2" in capsys.readouterr().err
    assert "mel_d_loss" in forked.train_step(forked.batches[2])


def test_a_run_starts_from_a_bundle_with_its_weights_and_statistics(manifests, tmp_path):
    """train.init_from: a fine-tuning run begins at step 0 with the bundle's weights and normalisation statistics;
    a bundle of another model config is refused with the differing key named."""
    from vconv.errors import VconvError

    first = ModelTrainer(*tiny(manifests, tmp_path / "first", steps=2, valid_every=1000), progress=False)
    first.fit()
    bundle = tmp_path / "first" / "model"
    tuned = ModelTrainer(*tiny(manifests, tmp_path / "tuned", steps=2, init_from=bundle, **GAN), progress=False)
    assert tuned.step == 0
    for key, value in params(first.model).items():
        torch.testing.assert_close(params(tuned.model)[key], value, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(tuned.frontend.stats().mean, first.frontend.stats().mean)
    features, model, train = tiny(manifests, tmp_path / "other", init_from=bundle)
    import dataclasses

    wider = dataclasses.replace(model, decoder={**model.decoder, "channels": model.decoder["channels"] * 2})
    with pytest.raises(VconvError, match=r"model config differs from this run's \(model\.decoder: "):
        ModelTrainer(features, wider, train, progress=False)


def test_older_flat_keys_read_as_the_critics_sections_and_bad_sections_are_one_line_errors(manifests, tmp_path):
    from vconv.config import TrainConfig
    from vconv.errors import VconvError

    features, model, train = tiny(manifests, tmp_path / "run", mel_gan_weight=0.1, mel_fm_weight=0.2,
                                  content_consistency_weight=0)
    assert train.critics == {"mel_gan": {"weight": 0.1, "fm_weight": 0.2, "start_step": 0, "lr": 2e-4, "channels": 16}}
    assert train.critic("mel_gan").fm_weight == 0.2 and train.critic("content_consistency") is None
    assert TrainConfig.from_dict(train.to_dict()) == train  # what a run's config.yaml holds reads back the same
    base = {"train_manifest": "x", "run_dir": "y"}
    for critics, message in (({"mel_gun": {}}, r"unknown critic\(s\) mel_gun; known: content_consistency, mel_gan"),
                             ({"mel_gan": {"wieght": 1}}, r"train\.critics\.mel_gan: unknown key\(s\) wieght"),
                             ({"content_consistency": {"items": 0}}, r"train\.critics\.content_consistency\.items")):
        with pytest.raises(VconvError, match=message):
            TrainConfig.from_dict({**base, "critics": critics})
    with pytest.raises(VconvError, match=r"train\.critics\.mel_gan: expected a mapping"):
        TrainConfig.from_dict({**base, "critics": {"mel_gan": 3}})
    # what the flat keys meant, beside a section too: a flat weight at 0 is the critic off, a flat key adjusts a section
    off = ({"mel_gan_weight": 0, "mel_fm_weight": 0.2}, {"mel_fm_weight": 0.5}, {"critics": {"mel_gan": False}},
           {"critics": {"mel_gan": {"weight": 0.1}}, "mel_gan_weight": 0}, {"critics": {"content_consistency": {"weight": 0}}})
    assert all(TrainConfig.from_dict({**base, **data}).critics == {} for data in off)
    adjusted = TrainConfig.from_dict({**base, "critics": {"mel_gan": {"weight": 0.1}}, "mel_fm_weight": 0.5})
    assert adjusted.critic("mel_gan").fm_weight == 0.5 and adjusted.critic("mel_gan").weight == 0.1
