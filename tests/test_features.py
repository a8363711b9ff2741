from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from tests.conftest import voiced_signal
from vconv.audio.frontend import FrontEnd, compute_stats
from vconv.audio.logmel import LogMel
from vconv.config import FeatureConfig
from vconv.data.feature_files import load_features, save_features
from vconv.errors import VconvError


@pytest.fixture(scope="module")
def cfg():
    return FeatureConfig()


def test_logmel_matches_librosa(cfg):
    wav = voiced_signal(1.3, seed=1)
    ours = LogMel(cfg).mel(torch.from_numpy(wav)[None])[0].numpy()
    ref = librosa.feature.melspectrogram(
        y=wav, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, power=1.0, center=True, pad_mode="constant",
    )
    assert ours.shape == ref.shape
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    assert rel < 1e-5


def test_logmel_batched_equals_single_and_frame_count(cfg):
    extractor = LogMel(cfg)
    a, b = voiced_signal(1.0, seed=2), voiced_signal(1.0, seed=3)
    batch = extractor(torch.from_numpy(np.stack([a, b])))
    single = extractor(torch.from_numpy(b))
    assert batch.shape == (2, cfg.n_mels, extractor.num_frames(a.size))
    torch.testing.assert_close(batch[1], single, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(extractor(torch.zeros(4000))).all()  # silence stays finite thanks to the floor


@pytest.mark.parametrize("n_fft, win, hop", [(1024, 1024, 256), (512, 400, 128), (1024, 800, 200), (400, 400, 160)])
@pytest.mark.parametrize("samples, extra", [(16000, 0), (16001, -7), (5000, 300)])
def test_inverse_stft_equals_torch_istft(n_fft, win, hop, samples, extra):
    # the overlap-add by shifted sums (hop divides n_fft) and torch's general path (it does not: 1024/200)
    cfg = FeatureConfig(n_fft=n_fft, win_length=win, hop_length=hop)
    extractor = LogMel(cfg)
    spec = extractor.stft(torch.randn(2, samples, generator=torch.Generator().manual_seed(samples)))
    length = samples + extra
    ours = extractor.istft(spec, length)
    kept = min(length, samples)  # past the signal torch may refuse (its window envelope nears 0 there)
    theirs = torch.istft(spec, n_fft=n_fft, hop_length=hop, win_length=win, window=extractor.window, center=True,
                         length=kept)
    assert ours.shape == (2, length)
    torch.testing.assert_close(ours[:, :kept], theirs, rtol=0, atol=1e-5)
    round_trip = extractor.istft(spec, samples)  # and it inverts the analysis
    torch.testing.assert_close(round_trip, torch.randn(2, samples, generator=torch.Generator().manual_seed(samples)),
                               rtol=0, atol=1e-5)


def test_mel_inverse_recovers_the_spectrum_shape(cfg):
    extractor = LogMel(cfg)
    wav = torch.from_numpy(voiced_signal(1.0, seed=4))[None]
    linear = extractor.magnitude(wav)
    approx = extractor.to_linear(extractor(wav))
    assert approx.shape == linear.shape and (approx >= 0).all()
    # re-projecting the approximation onto the mel basis gives back the mel spectrum
    mel = extractor.mel(wav)
    error = (extractor.mel_basis @ approx - mel).norm() / mel.norm()
    assert error < 0.03
    crude = (extractor.mel_basis @ extractor.to_linear(extractor(wav), iterations=0) - mel).norm() / mel.norm()
    assert error < crude / 3  # the NNLS updates are what makes it accurate


def test_feature_file_round_trip_and_config_check(tmp_path, cfg):
    mel = torch.randn(cfg.n_mels, 37)
    path = tmp_path / "a.safetensors"
    save_features(path, mel, cfg, id="a")
    torch.testing.assert_close(load_features(path, cfg), mel)
    other = FeatureConfig(hop_length=200, n_mels=64)
    with pytest.raises(VconvError) as info:
        load_features(path, other)
    assert "hop_length: 256 vs 200" in str(info.value) and "n_mels: 80 vs 64" in str(info.value)


def test_feature_file_version_and_garbage_are_refused(tmp_path, cfg, monkeypatch):
    import vconv.data.feature_files as features

    path = tmp_path / "a.safetensors"
    monkeypatch.setattr(features, "FEATURE_FORMAT_VERSION", 0)
    save_features(path, torch.zeros(cfg.n_mels, 3), cfg)
    monkeypatch.undo()
    with pytest.raises(VconvError, match="format version 0"):
        load_features(path, cfg)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 50)
    with pytest.raises(VconvError, match="not a vconv feature file"):
        load_features(junk, cfg)


def test_stats_match_numpy():
    rng = np.random.default_rng(0)
    mels = [torch.from_numpy(rng.normal(3.0, 2.0, size=(8, n)).astype(np.float32)) for n in (50, 70, 30)]
    stats = compute_stats(mels)
    joined = np.concatenate([m.numpy() for m in mels], axis=1)
    np.testing.assert_allclose(stats.mean.numpy(), joined.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(stats.std.numpy(), joined.std(axis=1), rtol=1e-4)
    frontend = FrontEnd(FeatureConfig(n_mels=8), stats)
    normed = frontend.normalize(torch.from_numpy(joined))
    assert abs(float(normed.mean())) < 1e-4 and abs(float(normed.std()) - 1) < 1e-2
    torch.testing.assert_close(frontend.denormalize(normed), torch.from_numpy(joined), rtol=1e-4, atol=1e-4)


def test_inverse_stft_keeps_no_stale_window_envelope_across_lengths():
    # istft keeps the window envelope of the last few frame counts: one extractor asked for many counts, in turns
    # and past the number it keeps, must give what a fresh extractor gives for each
    cfg = FeatureConfig()
    shared = LogMel(cfg)
    lengths = [2560 * k + 7 * k for k in range(1, 12)] * 2
    for length in lengths:
        spec = shared.stft(torch.randn(1, length, generator=torch.Generator().manual_seed(length)))
        torch.testing.assert_close(shared.istft(spec, length), LogMel(cfg).istft(spec, length), rtol=0, atol=0)
    assert len(shared._envelopes) <= 8
