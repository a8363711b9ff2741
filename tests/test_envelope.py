"""Mel-envelope matching (vconv.vocoders.envelope) and the Vocos vocoder's inference-time post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vconv.audio.logmel import LogMel
from vconv.config import FeatureConfig, VocoderConfig
from vconv.errors import VconvError
from vconv.vocoders.envelope import MelEnvelopeMatch
from vconv.vocoders.vocos import VocosVocoder, load_vocoder, save_vocoder

from .conftest import voiced_signal

CFG = FeatureConfig()


def _speech(seconds: float = 1.0) -> torch.Tensor:
    """``[1, T]`` speech-like signal, T a multiple of the hop (so lengths round-trip exactly)."""
    wav = torch.from_numpy(voiced_signal(seconds)).float()
    return wav[: wav.numel() // CFG.hop_length * CFG.hop_length][None]


def _low_band_cut(wav: torch.Tensor, factor: float = 0.2, below_hz: float = 600.0) -> torch.Tensor:
    """``wav`` with every STFT bin under ``below_hz`` scaled by ``factor`` (what phase cancellation does)."""
    window = torch.hann_window(CFG.win_length)
    spec = torch.stft(wav, CFG.n_fft, CFG.hop_length, CFG.win_length, window=window, return_complex=True)
    cut = int(below_hz / (CFG.sample_rate / CFG.n_fft))
    spec[:, :cut] *= factor
    return torch.istft(spec, CFG.n_fft, CFG.hop_length, CFG.win_length, window=window, length=wav.shape[-1])


def _mel_error(wav: torch.Tensor, target: torch.Tensor) -> float:
    return (LogMel(CFG)(wav) - target).abs().mean().item()


def test_matching_restores_a_cut_low_band_and_each_pass_gets_closer():
    wav = _speech()
    target = LogMel(CFG)(wav)
    damaged = _low_band_cut(wav)
    match = MelEnvelopeMatch(CFG)
    errors = [_mel_error(match(damaged, target, passes=p), target) for p in (0, 1, 4, 16)]
    assert errors[0] == pytest.approx(_mel_error(damaged, target))  # 0 passes: untouched
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 0.25 * errors[0]
    out = match(damaged, target, passes=4)
    assert out.shape == wav.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def _scramble_low_band_phase(wav: torch.Tensor, below_hz: float = 600.0) -> torch.Tensor:
    """``wav`` with random, frame-to-frame inconsistent phases below ``below_hz``: the overlap-add partly
    cancels them, as it does a vocoder's badly predicted phases."""
    window = torch.hann_window(CFG.win_length)
    spec = torch.stft(wav, CFG.n_fft, CFG.hop_length, CFG.win_length, window=window, return_complex=True)
    cut = int(below_hz / (CFG.sample_rate / CFG.n_fft))
    angles = torch.rand(spec[:, :cut].shape, generator=torch.Generator().manual_seed(0))
    spec[:, :cut] *= torch.exp(2j * torch.pi * angles)
    return torch.istft(spec, CFG.n_fft, CFG.hop_length, CFG.win_length, window=window, length=wav.shape[-1])


def test_momentum_gets_closer_on_inconsistent_phases_in_the_same_number_of_passes():
    wav = _speech()
    target = LogMel(CFG)(wav)
    scrambled = _scramble_low_band_phase(wav)
    plain = _mel_error(MelEnvelopeMatch(CFG)(scrambled, target, passes=16), target)
    fast = _mel_error(MelEnvelopeMatch(CFG)(scrambled, target, passes=16, momentum=0.9), target)
    assert plain < 0.6 * _mel_error(scrambled, target)
    assert fast < 0.8 * plain  # measured: 0.037 vs 0.056


def test_one_pass_lifts_the_level_by_at_most_the_gain_bound():
    wav = _speech()
    target = LogMel(CFG)(wav)
    quiet = 0.01 * wav  # 40 dB too quiet: natural-log gain 4.6 wanted in every band
    out = MelEnvelopeMatch(CFG)(quiet, target, passes=1, max_log_gain=1.5)
    ratio = (out.pow(2).mean().sqrt() / quiet.pow(2).mean().sqrt()).item()
    assert ratio == pytest.approx(np.exp(1.5), rel=0.05)
    # with enough passes the full 40 dB come back
    out = MelEnvelopeMatch(CFG)(quiet, target, passes=6, max_log_gain=1.5)
    assert (out.pow(2).mean().sqrt() / wav.pow(2).mean().sqrt()).item() == pytest.approx(1.0, rel=0.05)


def test_prematch_moves_the_predicted_magnitude_toward_the_input_mel_without_an_stft():
    wav = _speech()
    logmel = LogMel(CFG)
    target = logmel(wav)
    log_mag = torch.log(logmel.magnitude(wav).clamp_min(1e-5))
    damaged = log_mag.clone()
    damaged[:, :40] += np.log(0.2)  # the low band 14 dB too quiet, as cancelling phases leave it

    def error(candidate: torch.Tensor) -> float:
        return (logmel.log_mel_of(torch.exp(candidate)) - target).abs().mean().item()

    match = MelEnvelopeMatch(CFG)
    steps = [match.prematch(damaged, target, steps=n) for n in (0, 1, 3)]
    assert torch.equal(steps[0], damaged)  # 0 steps: untouched
    assert error(steps[0]) > 2 * error(steps[1]) > 2 * error(steps[2])
    assert steps[2].shape == damaged.shape and steps[2].dtype == torch.float32
    # one step's gain per band is bounded as a pass's is
    assert (match.prematch(damaged - 10.0, target, steps=1, max_log_gain=1.5) - (damaged - 10.0)).max() <= 1.5 + 1e-4


def test_vocoder_prematches_in_eval_mode_only_and_changes_its_output():
    mel = LogMel(CFG)(_speech(0.5))
    plain, prematched = _tiny_vocoder(envelope_passes=2), _tiny_vocoder(envelope_passes=2, envelope_prematch=1)
    torch.testing.assert_close(prematched(mel, post_process=False), plain(mel, post_process=False))
    assert not torch.allclose(prematched(mel), plain(mel))
    assert _mel_error(prematched(mel), mel) < _mel_error(plain(mel), mel)


def _tiny_vocoder(**post) -> VocosVocoder:
    torch.manual_seed(0)
    return VocosVocoder(CFG, VocoderConfig(dim=32, intermediate=64, blocks=2, **post)).eval()


def test_vocoder_post_processes_in_eval_mode_only():
    voc = _tiny_vocoder(envelope_passes=8, consistency_passes=8)
    wav = _speech(0.5)
    mel = LogMel(CFG)(wav)
    raw_train = voc.train()(mel)
    raw_eval = voc.eval()(mel, post_process=False)
    torch.testing.assert_close(raw_train, raw_eval)  # no dropout: the network's output is the same
    processed = voc(mel)
    assert processed.shape == raw_eval.shape
    # an untrained vocoder is far off; matching brings its output's mel much nearer the input
    assert _mel_error(processed, mel) < 0.5 * _mel_error(raw_eval, mel)
    off = _tiny_vocoder(envelope_passes=0, consistency_passes=0)
    assert not [k for k in voc.state_dict() if k.startswith(("envelope.", "phase_projection."))]  # no weights
    torch.testing.assert_close(off(mel), raw_eval)


def test_consistency_passes_make_the_output_keep_the_predicted_magnitude():
    """The plain inverse STFT of frames whose phases disagree does not have the predicted magnitude (the
    overlap-add cancels and beats); the phase-consistency iterations bring the two together."""
    mel = LogMel(CFG)(_speech(0.5))
    predicted = torch.exp(_tiny_vocoder().spectrum(mel)[0]).detach()

    def magnitude_error(consistency_passes: int) -> float:
        out = _tiny_vocoder(envelope_passes=0, consistency_passes=consistency_passes)(mel).detach()
        return (LogMel(CFG).magnitude(out) - predicted).norm().item() / predicted.norm().item()

    assert magnitude_error(16) < 0.7 * magnitude_error(0)


@pytest.mark.parametrize("field, value", [("envelope_passes", -1), ("envelope_max_log_gain", 0.0), ("envelope_momentum", 1.0),
                                          ("consistency_passes", -2), ("consistency_momentum", -0.1),
                                          ("envelope_prematch", -1)])
def test_bad_post_processing_settings_are_one_line_errors(field, value):
    with pytest.raises(VconvError, match=f"vocoder.{field}"):
        VocoderConfig.from_dict({field: value})


def test_a_format_1_vocoder_json_without_the_settings_loads_with_the_defaults(tmp_path):
    folder = save_vocoder(tmp_path / "v1", _tiny_vocoder())
    meta = json.loads((folder / "vocoder.json").read_text())
    assert meta["format_version"] == 2
    meta["format_version"] = 1
    meta["vocoder_config"] = {k: v for k, v in meta["vocoder_config"].items() if not k.startswith(("envelope_", "consistency_"))}
    (folder / "vocoder.json").write_text(json.dumps(meta))
    config = load_vocoder(folder).config
    assert (config.envelope_passes, config.consistency_passes) == (VocoderConfig().envelope_passes, VocoderConfig().consistency_passes)
    meta["format_version"] = 3
    (folder / "vocoder.json").write_text(json.dumps(meta))
    with pytest.raises(VconvError, match="format version 1 or 2"):
        load_vocoder(folder)
