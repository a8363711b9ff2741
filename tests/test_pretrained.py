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


def test_shipped_model_keeps_the_source_melody_voiced_and_a_pitch_shift_lands():
    """Judged by WORLD harvest (not the YIN the converter tracks with): the README's example stays voiced where the
    source is (issue bar: 85 %; measured 98.6 %, v6 32 %), follows its melody (measured 0.73 with the comb at depth 1.5,
    0.80 at depth 1; v6 0.39; 0.92 since the matching leaves the melody's bands' spread, 2026-11-28; 0.81 with the comb at
    depth 2.5, 2026-11-29, by benchmarks/bench_pitch.py example); and by Praat's
    tracker (the pitch judge) it moves by a shift (+5 semitones measured +4.8 between the medians; harvest's medians,
    over other voiced frames, +4.0 to +4.1)."""
    pyworld = pytest.importorskip("pyworld")
    from vconv.evaluation.pitch_judge import f0_contour

    def harvest(wav: np.ndarray) -> np.ndarray:
        return pyworld.harvest(wav.astype(np.float64), 16000, f0_floor=60.0, f0_ceil=700.0, frame_period=16.0)[0]

    source = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")[0]
    out = vconv.load().convert(source, [EXAMPLES / "target.wav"], sr=16000)
    shifted = vconv.load(pitch_shift=5).convert(source, [EXAMPLES / "target.wav"], sr=16000)
    f0_source, f0_out = harvest(source), harvest(out)
    both = (f0_source > 0) & (f0_out > 0)
    assert both.sum() >= 0.85 * (f0_source > 0).sum()
    assert np.corrcoef(np.log(f0_source[both]), np.log(f0_out[both]))[0, 1] > 0.65
    f0_out, f0_shifted = f0_contour(out, 16000), f0_contour(shifted, 16000)
    moved = 12 * np.log2(np.median(f0_shifted[f0_shifted > 0]) / np.median(f0_out[f0_out > 0]))
    assert abs(moved - 5) < 1.0


def _frame_rate_beat(wav: np.ndarray, sr: int = 16000, frame_rate: float = 62.5) -> float:
    """Amplitude-envelope spectrum at the STFT frame rate over the 40-55 Hz band beside it (~1 for speech)."""
    envelope = np.abs(scipy.signal.hilbert(wav))
    spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
    freqs = np.fft.rfftfreq(envelope.size, 1 / sr)
    at = spectrum[(freqs >= frame_rate - 1.5) & (freqs < frame_rate + 1.5)].mean()
    return float(at / spectrum[(freqs >= 40) & (freqs < 55)].mean())


def test_shipped_neural_vocoder_is_the_default_and_does_not_beat_at_the_frame_rate():
    vc = vconv.load()
    assert vc.vocoder.name == "vocos" and vc.harmonics
    assert vc.vocoder.config.consistency_passes > 0 and vc.vocoder.config.envelope_passes > 0
    default = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    # the vocoder's passes, measured on the decoder's own mels (harmonic excitation off)
    vc.harmonics = False
    shipped = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    vc.vocoder.config = vc.vocoder.config.without_post_processing()
    network_only = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    # measured on v6 (with target matching): 0.91 shipped (1 prematch step + 4 + 2 passes), 1.19 at 4 + 4 (0.97 with 16 + 16), 2.32 network only (its
    # sharper mels beat less than v5's: 1.59 shipped, 5.86 network only; Griffin-Lim 1.50; v4 with 16 + 16: 0.84, 5.7);
    # v6 with the pitch path: 1.26 shipped, 1.84 network only (its mels follow the source's voicing: less to beat);
    # with the harmonic excitation (the default since): 1.02
    beat_shipped = _frame_rate_beat(shipped)
    assert beat_shipped < 2.0 and _frame_rate_beat(network_only) > 1.3 * beat_shipped
    assert _frame_rate_beat(default) < beat_shipped


@pytest.mark.slow
def test_shipped_model_moves_unseen_voices_toward_the_target_and_keeps_the_words():
    """Judged by independent models (Resemblyzer, Whisper tiny.en) on 13 conversions between voices that
    no shipped model trained on: flite_awb and espeak_f3 (the fixtures) to the README's example target
    (fotaq_39), flite_awb to espeak_f3, and the example source (fotaq_61) to flite_awb. Where the target
    has more than the reference utterance, the conversion is judged against the others. A converter that
    returns its input (never closer to the target) or noise (no words) fails here.

    Four pair types rather than one: flite_awb -> fotaq_39 alone is the hardest pair of the held-out
    evaluation (success 3/5 for the mel/mel v4, 2/5 with target matching) and said little about the rest.
    Measured (closer to the target / mean similarity to it; the untouched sources 0.525 / CER): the shipped
    v5 9/13, 0.648, CER 0.27 (with `target_match="off"`: 11/13, 0.562, 0.20); the previous mel/mel v4
    with matching 9/13, 0.649, 0.26. The four misses are all flite_awb -> fotaq_39.
    """
    from vconv.evaluation.judges import AsrJudge, SpeakerJudge
    from vconv.evaluation.metrics import cer, cosine

    vc = vconv.load()
    speaker, asr = SpeakerJudge(), AsrJudge()
    awb, f3 = sorted((FIXTURES / "flite_awb").glob("*.wav")), sorted((FIXTURES / "espeak_f3").glob("*.wav"))

    def judged_against(files: list[Path]) -> np.ndarray:
        mean = np.mean([speaker.embed(f) for f in files], axis=0)
        return mean / np.linalg.norm(mean)

    example_target = speaker.embed(EXAMPLES / "target.wav")  # one clip: judged against itself (optimistic)
    cases = ([(w, EXAMPLES / "target.wav", example_target) for w in awb + f3]
             + [(w, f3[0], judged_against(f3[1:])) for w in awb]
             + [(EXAMPLES / "source.wav", awb[0], judged_against(awb[1:]))])
    closer, to_target, source_to_target, errors = 0, [], [], []
    for source, reference, target in cases:
        converted = vc.convert(source, [reference])
        out, own = speaker.embed_wav(converted, vc.sample_rate), speaker.embed(source)
        closer += cosine(out, target) > cosine(out, own)
        to_target.append(cosine(out, target))
        source_to_target.append(cosine(own, target))
        if source.with_suffix(".txt").exists():
            errors.append(cer(source.with_suffix(".txt").read_text(), asr.transcribe_wav(converted, vc.sample_rate)))
    assert closer >= 8, f"only {closer} of {len(cases)} conversions closer to the target than to their source"
    assert np.mean(to_target) > np.mean(source_to_target) + 0.05
    assert np.mean(errors) < 0.35


@pytest.mark.slow
def test_fitting_the_voice_brings_the_network_own_output_nearer_unseen_targets():
    """`--fit-voice`: the shipped model's own output (matching off) with and without the embedding fitted to the
    reference, on 10 conversions between two voices no shipped model trained on (flite_awb and espeak_f3, each
    judged against the target's other utterances) and from the README's example source, by Resemblyzer and
    Whisper tiny.en. Measured on v6 (30 steps): similarity to the target 0.611 -> 0.715, closer to the target
    than to the source 9 -> 10 of 10, CER 0.15 -> 0.19 (with matching after it: 0.718 -> 0.743)."""
    from vconv.evaluation.judges import AsrJudge, SpeakerJudge
    from vconv.evaluation.metrics import cer, cosine

    speaker, asr = SpeakerJudge(), AsrJudge()
    awb, f3 = sorted((FIXTURES / "flite_awb").glob("*.wav")), sorted((FIXTURES / "espeak_f3").glob("*.wav"))

    def judged_against(files: list[Path]) -> np.ndarray:
        mean = np.mean([speaker.embed(f) for f in files], axis=0)
        return mean / np.linalg.norm(mean)

    cases = ([(w, f3[0], judged_against(f3[1:])) for w in awb] + [(w, awb[0], judged_against(awb[1:])) for w in f3]
             + [(EXAMPLES / "source.wav", ref, judged_against(rest)) for ref, rest in ((awb[0], awb[1:]), (f3[0], f3[1:]))])

    def own_output(fit_steps: int) -> tuple[float, int, float]:
        vc = vconv.load(target_match="off", fit_steps=fit_steps)
        to_target, closer, errors = [], 0, []
        for source, reference, target in cases:
            converted = vc.convert(source, [reference])
            out = speaker.embed_wav(converted, vc.sample_rate)
            to_target.append(cosine(out, target))
            closer += cosine(out, target) > cosine(out, speaker.embed(source))
            if source.with_suffix(".txt").exists():
                errors.append(cer(source.with_suffix(".txt").read_text(), asr.transcribe_wav(converted, vc.sample_rate)))
        return float(np.mean(to_target)), closer, float(np.mean(errors))

    plain, fitted = own_output(0), own_output(30)
    assert fitted[0] > plain[0] + 0.05, (plain, fitted)
    assert fitted[1] >= 9 and fitted[2] < 0.30, fitted
