"""The shipped bundle: found by default, verified, and it converts the README example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

import vconv
from vconv.inference.registry import DEFAULT_BUNDLE, list_bundles

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FIXTURES = Path(__file__).resolve().parent / "data" / "corpus"


def test_default_bundle_is_shipped_and_small():
    bundles = {b.name: b for b in list_bundles()}
    assert DEFAULT_BUNDLE in bundles
    folder = bundles[DEFAULT_BUNDLE].path
    assert (folder / "MODEL_CARD.md").is_file()
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total < 50e6


def test_shipped_model_converts_the_example():
    vc = vconv.load()
    source, sr = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")
    out = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    assert vc.sample_rate == 16000 and sr == 16000
    assert out.dtype == np.float32 and out.shape == source.shape
    assert np.isfinite(out).all()
    rms_db = 20 * np.log10(np.sqrt(np.mean(out**2)) + 1e-12)
    assert rms_db > -40  # speech level, not silence


def _frame_rate_beat(wav: np.ndarray, sr: int = 16000, frame_rate: float = 62.5) -> float:
    """Amplitude-envelope spectrum at the STFT frame rate over the 40-55 Hz band beside it (~1 for speech)."""
    envelope = np.abs(scipy.signal.hilbert(wav))
    spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
    freqs = np.fft.rfftfreq(envelope.size, 1 / sr)
    at = spectrum[(freqs >= frame_rate - 1.5) & (freqs < frame_rate + 1.5)].mean()
    return float(at / spectrum[(freqs >= 40) & (freqs < 55)].mean())


def test_shipped_neural_vocoder_is_the_default_and_does_not_beat_at_the_frame_rate():
    vc = vconv.load()
    assert vc.vocoder.name == "vocos"
    assert vc.vocoder.config.consistency_passes > 0 and vc.vocoder.config.envelope_passes > 0
    shipped = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    vc.vocoder.config.consistency_passes = vc.vocoder.config.envelope_passes = 0
    network_only = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    # measured: 0.84 shipped, 5.7 network only, 0.81 Griffin-Lim
    assert _frame_rate_beat(shipped) < 1.5 < 3.0 < _frame_rate_beat(network_only)


@pytest.mark.slow
def test_shipped_model_moves_an_unseen_voice_toward_the_target_and_keeps_the_words():
    """Judged by independent models (Resemblyzer, Whisper tiny.en): a converter that returns its input, or
    noise, fails here. flite_awb and the example target are both held out of the shipped model's training.

    Measured on this bundle: similarity to the target 0.62 (the sources themselves 0.57), to the source 0.58,
    every conversion closer to the target than to its source; CER 0.15 (sources 0.08).
    """
    from vconv.evaluation.judges import AsrJudge, SpeakerJudge
    from vconv.evaluation.metrics import cer, cosine

    vc = vconv.load()
    speaker, asr = SpeakerJudge(), AsrJudge()
    target = speaker.embed(EXAMPLES / "target.wav")
    to_target, source_to_target, errors = [], [], []
    for wav in sorted((FIXTURES / "flite_awb").glob("*.wav")):
        converted = vc.convert(wav, [EXAMPLES / "target.wav"])
        source, out = speaker.embed(wav), speaker.embed_wav(converted, vc.sample_rate)
        to_target.append(cosine(out, target))
        source_to_target.append(cosine(source, target))
        assert cosine(out, target) > cosine(out, source), wav.name  # each conversion is closer to the target
        errors.append(cer(wav.with_suffix(".txt").read_text(), asr.transcribe_wav(converted, vc.sample_rate)))
    assert np.mean(to_target) > np.mean(source_to_target) + 0.02
    assert np.mean(errors) < 0.35
