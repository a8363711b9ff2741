"""The neural (Vocos-style) vocoder: shapes, training, resume, bundles, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import vconv
from tests.conftest import invoke, voiced_signal
from vconv.audio.frontend import FeatureStats, FrontEnd
from vconv.audio.logmel import LogMel
from vconv.bundles import attach_vocoder, load_bundle_vocoder, save_bundle
from vconv.config import FeatureConfig, load_run_config, load_vocoder_run_config
from vconv.errors import VconvError
from vconv.models import build_model
from vconv.training.base import lr_lambda
from vconv.training.vocoder_trainer import VocoderTrainer, export_checkpoint
from vconv.vocoders import VocoderConfig, VocosVocoder, get_vocoder, load_vocoder
from vconv.vocoders.losses import MultiResolutionSTFTLoss, PhaseLoss
from vconv.vocoders.vocos import save_vocoder

TINY = VocoderConfig(dim=32, intermediate=64, blocks=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine they lose a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


VALID_SPEAKERS = 2  # the shared manifests fixture (conftest) sends two speakers to validation


def tiny(manifests, run_dir, **train):
    overrides = [f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={run_dir}"]
    return load_vocoder_run_config("vocoder_debug", overrides + [f"train.{k}={v}" for k, v in train.items()])


@pytest.fixture
def bundle(tmp_path):
    features, model_cfg, _ = load_run_config("debug", ["train.train_manifest=x", "train.run_dir=y"])
    torch.manual_seed(0)
    stats = FeatureStats(torch.full((features.n_mels,), -4.0), torch.full((features.n_mels,), 2.0), 1)
    return save_bundle(tmp_path / "tiny", build_model(model_cfg), FrontEnd(features, stats))


@pytest.fixture
def vocoder_dir(tmp_path):
    torch.manual_seed(0)
    return save_vocoder(tmp_path / "vocoder", VocosVocoder(FeatureConfig(), TINY))


def test_shapes_and_length_contract():
    cfg = FeatureConfig()
    voc = VocosVocoder(cfg, TINY).eval()
    wav = torch.from_numpy(voiced_signal(0.5))[: 20 * cfg.hop_length]
    mel = LogMel(cfg)(wav[None])
    assert mel.shape == (1, 80, 21)
    out = voc(torch.cat([mel, mel]))
    assert out.shape == (2, wav.numel()) and out.dtype == torch.float32 and torch.isfinite(out).all()
    single = voc.vocode(mel[0].numpy())
    assert isinstance(single, np.ndarray) and single.shape == (wav.numel(),)
    np.testing.assert_allclose(single, voc(mel)[0].detach().numpy(), atol=1e-6)
    # batched FFTs round differently, and 16 momentum-0.99 consistency passes + 16 envelope passes
    # carry that along: batch and single item agree to ~3e-4 of a ~0.2 signal
    np.testing.assert_allclose(single, out[0].detach().numpy(), atol=2e-3)
    with pytest.raises(VconvError, match="expected a log-mel"):
        voc(torch.zeros(1, 40, 10))
    built = get_vocoder("vocos", cfg, dim=16, intermediate=32, blocks=1)
    assert isinstance(built, VocosVocoder) and built.config.blocks == 1


def test_float16_copy_loads_and_vocodes_like_the_original(tmp_path):
    torch.manual_seed(0)
    voc = VocosVocoder(FeatureConfig(), TINY).eval()
    half = load_vocoder(save_vocoder(tmp_path / "half", voc, dtype=torch.float16))
    full = load_vocoder(save_vocoder(tmp_path / "full", voc))
    assert (tmp_path / "half" / "vocoder.safetensors").stat().st_size < 0.6 * (tmp_path / "full" / "vocoder.safetensors").stat().st_size
    mel = torch.randn(1, 80, 12) - 5
    torch.testing.assert_close(half(mel), full(mel), atol=2e-3, rtol=0)


def test_training_steps_reduce_the_spectral_loss(manifests, tmp_path):
    trainer = VocoderTrainer(*tiny(manifests, tmp_path / "run", segment_samples=2048), progress=False)
    batch = trainer.batches[0]
    stft_loss = MultiResolutionSTFTLoss()
    with torch.no_grad():
        before = stft_loss(trainer.generator(trainer.frontend.log_mel(batch)), batch).item()
    for _ in range(20):
        trainer.train_step(batch)
    with torch.no_grad():
        after = stft_loss(trainer.generator(trainer.frontend.log_mel(batch)), batch).item()
    assert after < 0.8 * before, (before, after)


def test_phase_loss_ignores_whole_turns_and_training_on_it_lowers_it(manifests, tmp_path):
    phase = torch.rand(2, 9, 11) * 6
    assert PhaseLoss()(phase, phase + 2 * torch.pi).item() < 1e-5  # a full turn is no error
    assert PhaseLoss()(phase, torch.rand(2, 9, 11) * 6).item() > 2.0  # unrelated phases: ~3 x pi/2 on average
    trainer = VocoderTrainer(*tiny(manifests, tmp_path / "run", segment_samples=2048,
                                   phase_weight=1.0, lr=0.003), progress=False)
    batch = trainer.batches[0]
    losses = [trainer.train_step(batch)["phase"] for _ in range(30)]
    assert losses[-1] < losses[0] - 0.1, losses[::5]
    wav = voiced_signal(0.5)[None]
    spec_frames = trainer.generator.analysis_phase(torch.from_numpy(wav)).shape[-1]
    assert spec_frames == trainer.frontend.log_mel(torch.from_numpy(wav)).shape[-1]  # framed like the vocoder's own spectrum


def test_resume_after_kill_matches_uninterrupted_run(manifests, tmp_path):
    settings = dict(steps=4, save_every=2, log_every=1, batch_size=2, segment_samples=2048)
    full = VocoderTrainer(*tiny(manifests, tmp_path / "full", **settings), progress=False)
    history = full.fit()
    assert len(history) >= 4 and all(np.isfinite(r["loss"]) for r in history if r["split"] == "train")
    assert (tmp_path / "full" / "vocoder" / "vocoder.safetensors").is_file()
    first = VocoderTrainer(*tiny(manifests, tmp_path / "killed", **settings), progress=False)
    first.fit(until=3)  # killed after step 3; the last checkpoint is step 2
    del first
    with pytest.raises(VconvError, match="--resume"):
        VocoderTrainer(*tiny(manifests, tmp_path / "killed", **settings), progress=False)
    resumed = VocoderTrainer(*tiny(manifests, tmp_path / "killed", **settings), resume=True, progress=False)
    assert resumed.step == 2
    resumed.fit()
    sa, sb = full.generator.state_dict(), resumed.generator.state_dict()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-6, msg=key)
    loaded = load_vocoder(tmp_path / "killed" / "vocoder")
    x = torch.randn(1, 80, 8) - 5
    torch.testing.assert_close(loaded(x), resumed.generator.eval()(x))
    # a checkpoint exports to the same vocoder the finished run wrote
    exported = load_vocoder(export_checkpoint(tmp_path / "killed" / "checkpoints" / "latest.pt", tmp_path / "exported"))
    torch.testing.assert_close(exported(x), loaded(x))


def test_speed_perturbation_moves_the_pitch_within_its_range_and_is_off_by_default(tmp_path):
    from vconv.data.audio_segments import AudioSegments
    from vconv.data.manifest import Utterance

    sr, tone = 16000, 250.0
    path = tmp_path / "tone.wav"
    sf.write(path, (0.5 * np.sin(2 * np.pi * tone * np.arange(3 * sr) / sr)).astype(np.float32), sr)
    utts = [Utterance("tone", str(path), "s", 3.0)]

    def pitches(**kw):
        batch = AudioSegments(utts, FeatureConfig(), batch_size=12, segment_samples=8192, steps=1, **kw)[0]
        assert batch.shape == (12, 8192) and batch.abs().amax(dim=1).min() > 0.4  # no padding, no silence
        spectrum = torch.fft.rfft(batch * torch.hann_window(8192), n=8 * 8192).abs()
        return spectrum.argmax(dim=1).float() * sr / (8 * 8192)

    torch.testing.assert_close(pitches(), torch.full((12,), tone), atol=1.0, rtol=0)
    moved = pitches(speed_perturb=0.2, speed_probability=1.0)
    assert moved.min() >= tone / 1.2 - 1 and moved.max() <= tone * 1.2 + 1
    assert ((moved - tone).abs() > 2).sum() >= 9 and moved.std() > 5  # rows moved, by different factors
    with pytest.raises(VconvError, match="speed_perturb"):
        tiny(tmp_path, tmp_path / "run", speed_perturb=1.5)


def test_resume_with_a_new_learning_rate_uses_it(manifests, tmp_path):
    settings = dict(steps=4, save_every=2, log_every=1, batch_size=2, segment_samples=2048, warmup_steps=1)
    VocoderTrainer(*tiny(manifests, tmp_path / "run", **settings), progress=False).fit(until=2)
    resumed = VocoderTrainer(*tiny(manifests, tmp_path / "run", **settings, lr=1e-5), resume=True, progress=False)
    resumed.fit(until=3)
    expected = 1e-5 * lr_lambda(1, 4)(3)
    assert resumed.sched_g.get_last_lr()[0] == pytest.approx(expected)


def test_attached_vocoder_is_the_default_and_griffinlim_overrides_it(bundle, vocoder_dir, corpus_dir, tmp_path):
    assert load_bundle_vocoder(bundle, FeatureConfig()) is None
    assert vconv.load(bundle).vocoder.name == "griffinlim"
    attach_vocoder(bundle, vocoder_dir)
    config = json.loads((bundle / "config.json").read_text())
    assert config["vocoder"] == "vocos" and {"vocoder.safetensors", "vocoder.json", "model.safetensors"} <= config["sha256"].keys()
    vc = vconv.load(bundle)
    assert vc.vocoder.name == "vocos" and vc.vocoder.config == TINY
    assert vconv.load(bundle, vocoder="griffinlim").vocoder.name == "griffinlim"
    src, ref = sorted((corpus_dir / "flite_awb").glob("*.wav"))[0], sorted((corpus_dir / "flite_slt").glob("*.wav"))[0]
    for extra in ([], ["--vocoder", "griffinlim"]):
        out = tmp_path / f"out{len(extra)}.wav"
        result = invoke("convert", src, "--target", ref, "-o", out, "-m", bundle, *extra)
        assert result.exit_code == 0, result.output
        data, sr = sf.read(str(out))
        assert sr == 16000 and data.size == sf.info(str(src)).frames and np.isfinite(data).all()


def test_tampered_or_mismatched_vocoder_is_refused(bundle, vocoder_dir, corpus_dir, tmp_path):
    attach_vocoder(bundle, vocoder_dir)
    weights = bundle / "vocoder.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(VconvError, match="sha256"):
        vconv.load(bundle)
    src = sorted((corpus_dir / "flite_awb").glob("*.wav"))[0]
    result = invoke("convert", src, "--target", src, "-o", tmp_path / "x.wav", "-m", bundle)
    assert result.exit_code == 1 and "sha256" in result.output
    other = save_vocoder(tmp_path / "hop128", VocosVocoder(FeatureConfig(hop_length=128), TINY))
    with pytest.raises(VconvError, match="hop_length"):
        attach_vocoder(bundle, other)


def test_cli_train_vocoder_with_validation_and_attach(manifests, bundle, tmp_path):
    run = tmp_path / "run"
    result = invoke(
        "train-vocoder", "-c", "vocoder_debug", "--no-progress", f"train.train_manifest={manifests / 'train.jsonl'}",
        f"train.valid_manifest={manifests / 'valid.jsonl'}", f"train.run_dir={run}", "train.steps=2", "train.log_every=1",
        "train.valid_every=2", "train.save_every=2", "--attach", bundle,
    )
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    valid = [r for r in log if r["split"] == "valid"]
    assert [r["step"] for r in log if r["split"] == "train"] == [1, 2] and {"mel_l1", "gl_mel_l1"} <= valid[0].keys()
    assert vconv.load(bundle).vocoder.name == "vocos"
    bad = invoke("train-vocoder", "-c", "vocoder_debug", "train.steps=2")
    assert bad.exit_code == 1 and "train_manifest" in bad.output


def test_init_from_starts_a_fresh_run_from_trained_weights(manifests, vocoder_dir, tmp_path):
    trained = load_vocoder(vocoder_dir)  # TINY-sized
    features, _, train_cfg = tiny(manifests, tmp_path / "ft", init_from=str(vocoder_dir))
    trainer = VocoderTrainer(features, TINY, train_cfg, progress=False)
    assert trainer.step == 0 and trainer.opt_g.state == {}  # fresh optimiser and schedule
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(trainer.generator.state_dict()[key], value)
    # the envelope settings act at inference only: another value still takes the weights
    VocoderTrainer(features, VocoderConfig.from_dict({**TINY.to_dict(), "envelope_passes": 3}), train_cfg, progress=False)
    with pytest.raises(VconvError, match="init_from .*blocks: 2 vs 3"):
        VocoderTrainer(features, VocoderConfig.from_dict({**TINY.to_dict(), "blocks": 3}), train_cfg, progress=False)


def test_vocoder_run_config_inherits_with_base(tmp_path):
    """Like the model's run config, a vocoder YAML can start from another with ``base:`` (before: an error)."""
    from vconv.config import load_vocoder_run_config

    (tmp_path / "parent.yaml").write_text("base: vocoder_debug\nvocoder: {dim: 48}\ntrain: {steps: 7}\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: parent.yaml\ntrain: {steps: 9}\n")
    _, vocoder, train = load_vocoder_run_config(child, ["train.train_manifest=m.jsonl", "train.run_dir=r"])
    _, preset, _ = load_vocoder_run_config("vocoder_debug", ["train.train_manifest=m.jsonl", "train.run_dir=r"])
    assert vocoder.dim == 48 and train.steps == 9
    assert vocoder.blocks == preset.blocks  # the rest comes from the packaged preset


def test_configs_naming_the_removed_gan_read_as_before_and_turning_it_on_is_refused(manifests, tmp_path):
    """The GAN and ``vc_model`` left vconv (vconv.config.legacy): their keys at "off" still load (the voices recipe's
    vocoder config said ``adversarial: false``); turning either on is a one-line error naming the commit that has them."""
    off = dict(adversarial="false", gan_start_step=10000, disc_lr=5e-4, mpd_channels=4, gan_loss="hinge", vc_model="null")
    _, _, train = tiny(manifests, tmp_path / "run", **off)
    assert not {"adversarial", "gan_start_step", "vc_model"} & train.to_dict().keys()
    for key, value in (("adversarial", "true"), ("vc_model", "some/bundle")):
        with pytest.raises(VconvError, match=rf"train\.{key}: this option left vconv.*commit 0993412"):
            tiny(manifests, tmp_path / "run", **{key: value})
    # tuning the GAN without saying adversarial: false meant it ran (its default was on)
    with pytest.raises(VconvError, match=r"train\.gan_start_step: the vocoder's GAN left vconv.*commit 0993412"):
        tiny(manifests, tmp_path / "run", gan_start_step=1)


def test_a_checkpoint_of_a_run_whose_gan_had_started_is_not_resumed_without_it():
    from vconv.training.vocoder_trainer import _gan_was_training

    started = {"discriminator": {}, "step": 12_000, "configs": {"train": {}}}  # the GAN on by default from 10,000
    assert _gan_was_training(started)
    assert not _gan_was_training({**started, "step": 9_999})
    assert not _gan_was_training({**started, "configs": {"train": {"adversarial": False}}})
    assert not _gan_was_training({**started, "configs": {"train": {"adversarial": "off"}}})  # as the config reader reads off
    assert not _gan_was_training({"step": 50_000, "configs": {"train": {}}})  # a checkpoint without a discriminator
