"""Vocoder protocol, registry, feature-contract check, and Griffin-Lim shape/determinism/quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vconv
from tests.conftest import voiced_signal
from vconv.audio.logmel import LogMel
from vconv.config import FeatureConfig
from vconv.errors import VconvError
from vconv.vocoders import VOCODERS, GriffinLim, Vocoder, check_compatible, get_vocoder, register_vocoder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this module single-threaded, then restore the thread count.

    Griffin-Lim is many small FFT and element-wise ops; on 2 shared cores with other processes busy,
    OpenMP threads waiting for each other made these tests 10-100x slower (seconds instead of tens of ms).
    One thread gives the same numbers and a stable run time.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cfg() -> FeatureConfig:
    return FeatureConfig()


@pytest.fixture(scope="module")
def wav() -> torch.Tensor:
    """1 s @ 16 kHz of harmonics of ~140 Hz with a 4 Hz syllable envelope, ``[1, T]``."""
    return torch.from_numpy(voiced_signal(1.0, seed=0))[None]


@pytest.fixture(scope="module")
def log_mel(cfg, wav) -> torch.Tensor:
    return LogMel(cfg)(wav)  # [1, n_mels, F]


def spectral_convergence(estimate: torch.Tensor, target: torch.Tensor) -> float:
    """``||target - estimate||_F / ||target||_F`` of two magnitudes ``[B, n_freq, F]``."""
    return ((target - estimate).norm() / target.norm()).item()


def test_shapes_and_length(cfg, log_mel):
    gl = GriffinLim(cfg, n_iter=2)
    frames = log_mel.shape[-1]
    batch = torch.cat([log_mel, log_mel - 1.0])  # [2, n_mels, F]
    out = gl(batch)
    assert out.shape == (2, (frames - 1) * cfg.hop_length) and out.dtype == torch.float32
    assert gl.num_samples(frames) == out.shape[1]
    # vocode: unbatched numpy in -> numpy [T] out; batched tensor in -> tensor out
    single = gl.vocode(log_mel[0].numpy())
    assert isinstance(single, np.ndarray) and single.shape == (out.shape[1],) and single.dtype == np.float32
    tensor = gl.vocode(batch)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == out.shape and not tensor.requires_grad
    # a waveform -> log-mel -> waveform round trip keeps the length up to a multiple of hop
    assert out.shape[1] == (16000 // cfg.hop_length) * cfg.hop_length


def test_other_stft_settings_give_the_declared_length(wav):
    cfg = FeatureConfig(hop_length=200, win_length=800, n_mels=64)
    mel = LogMel(cfg)(wav)
    out = GriffinLim(cfg, n_iter=2)(mel)
    assert out.shape == (1, (mel.shape[-1] - 1) * 200) and torch.isfinite(out).all()


def test_deterministic_and_batch_independent(cfg):
    gl = GriffinLim(cfg, n_iter=8)
    extractor = LogMel(cfg)
    a, b = voiced_signal(1.0, seed=1), voiced_signal(1.0, seed=2, f0=210.0)
    mels = extractor(torch.from_numpy(np.stack([a, b])))
    first, second = gl(mels), gl(mels)
    assert torch.equal(first, second)  # bit-identical: seeded initial phase, no other randomness
    torch.testing.assert_close(gl(mels[1:]), first[1:], rtol=0, atol=1e-5)  # item alone == item in a batch
    assert not torch.equal(GriffinLim(cfg, n_iter=8, seed=1)(mels), first)  # the seed is what fixes it


def test_output_log_mel_is_close_to_input_and_improves_with_iterations(cfg, log_mel):
    extractor = LogMel(cfg)

    def mel_error(n_iter: int) -> float:
        out = GriffinLim(cfg, n_iter=n_iter)(log_mel)
        return (extractor(out) - log_mel).abs().mean().item()

    many, few = mel_error(32), mel_error(2)
    # measured (torch 2.13 CPU): 32 iterations 0.151, 2 iterations 0.231 (natural-log units)
    assert many < 0.2
    assert many < 0.8 * few


def test_momentum_converges_faster_than_classic(cfg, wav):
    extractor = LogMel(cfg)
    target = extractor.magnitude(wav)  # a consistent magnitude: perfect reconstruction is possible

    def sc(alpha: float) -> float:
        out = GriffinLim(cfg, alpha=alpha).from_magnitude(target, n_iter=32)
        return spectral_convergence(extractor.magnitude(out), target)

    fast, classic = sc(0.99), sc(0.0)
    # measured: fast 0.044, classic 0.125 after 32 iterations
    assert fast < 0.08
    assert fast < 0.75 * classic


def test_bad_input_gets_a_clear_error(cfg, log_mel):
    gl = GriffinLim(cfg, n_iter=1)
    with pytest.raises(VconvError, match=r"\[B, 80, F\]"):
        gl(log_mel[:, :64])
    with pytest.raises(VconvError, match="NaN"):
        gl(torch.full_like(log_mel, float("nan")))
    with pytest.raises(VconvError, match="2 frames"):
        gl(log_mel[..., :1])
    with pytest.raises(VconvError, match="alpha"):
        GriffinLim(cfg, alpha=-0.1)


def test_check_compatible_names_both_values(cfg):
    check_compatible(cfg, GriffinLim(FeatureConfig()))  # equal configs: no error
    vocoder = GriffinLim(FeatureConfig(hop_length=200, n_mels=64))
    with pytest.raises(VconvError) as info:
        check_compatible(cfg, vocoder)
    message = str(info.value)
    assert "griffinlim" in message and "\n" not in message
    assert "hop_length: 200 vs 256" in message and "n_mels: 64 vs 80" in message


def test_registry(cfg):
    vocoder = get_vocoder("griffinlim", cfg, n_iter=4)
    assert isinstance(vocoder, GriffinLim) and vocoder.n_iter == 4 and vocoder.feature_config == cfg
    with pytest.raises(VconvError, match=r"vocoder 'hifigan': unknown; known vocoders: griffinlim"):
        get_vocoder("hifigan", cfg)

    class Silence(Vocoder):
        name = "silence"

        def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
            return log_mel.new_zeros(log_mel.shape[0], self.num_samples(log_mel.shape[-1]))

    register_vocoder("silence", Silence)
    try:
        assert get_vocoder("silence", cfg).vocode(torch.zeros(80, 5)).shape == (4 * cfg.hop_length,)
        with pytest.raises(VconvError, match="already registered"):
            register_vocoder("silence", lambda c: Silence(c))
    finally:
        VOCODERS.pop("silence")
    with pytest.raises(TypeError):
        Vocoder(cfg)  # abstract: forward must be implemented


def test_one_place_chooses_the_vocoder_by_name(tiny_bundle):
    """choose_vocoder: the bundle's own by default or by its kind, a registered name otherwise; --fast only for a
    vocoder with post-processing passes; a trained kind the bundle lacks is said in one line."""
    from vconv.bundles import choose_vocoder, read_bundle_info
    from vconv.vocoders import GriffinLim

    features = read_bundle_info(tiny_bundle).feature_config
    assert isinstance(choose_vocoder(tiny_bundle, features), GriffinLim)  # the tiny bundle has no trained vocoder
    assert isinstance(choose_vocoder(tiny_bundle, features, "griffinlim"), GriffinLim)
    with pytest.raises(VconvError, match="no trained vocos vocoder"):
        choose_vocoder(tiny_bundle, features, "vocos")
    with pytest.raises(VconvError, match="vocoder griffinlim has none"):
        choose_vocoder(tiny_bundle, features, "griffinlim", fast=True)
    with pytest.raises(VconvError, match="vocoder 'hifigan': unknown"):
        choose_vocoder(tiny_bundle, features, "hifigan")


def test_conversion_settings_are_checked_once_and_name_the_option_as_the_caller_knows_it():
    from vconv.inference.settings import CLI_NAMES, ConversionSettings

    assert ConversionSettings(pitch_shift="3", fast=1).pitch_shift == 3.0  # normalised on construction
    with pytest.raises(VconvError, match="^--target-match 'loud'"):
        ConversionSettings(target_match="loud", names=CLI_NAMES)
    with pytest.raises(VconvError, match="^target_match 'loud'"):
        ConversionSettings(target_match="loud")
    with pytest.raises(VconvError, match="--vocoder 'wavenet': unknown"):
        ConversionSettings(vocoder="wavenet", names=CLI_NAMES)
    with pytest.raises(VconvError, match="--pitch-shift must lie within"):
        ConversionSettings(pitch_shift=30, names=CLI_NAMES)
    with pytest.raises(TypeError, match="not both"):
        vconv.load(None, ConversionSettings(), fast=True)
