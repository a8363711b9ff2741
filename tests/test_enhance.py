"""Room clean-up before conversion (vconv.audio.enhance, `--enhance`): the reverberant tail and the noise floor fall,
the speech stays, the option reaches the converter for the source and the references alike."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import invoke, voiced_signal
from vconv.audio.enhance import enhance
from vconv.audio.rooms import Room, impulse_response

SR = 16000


def _bursts() -> tuple[np.ndarray, np.ndarray]:
    """Three 0.4 s voiced bursts with 0.6 s of silence after each ``[T]``, and the mask of the silences."""
    burst = voiced_signal(0.4, f0=150.0)
    wav = np.concatenate([np.concatenate([burst, np.zeros(int(0.6 * SR), np.float32)]) for _ in range(3)])
    silent = np.concatenate([np.concatenate([np.zeros(burst.size, bool), np.ones(int(0.6 * SR), bool)]) for _ in range(3)])
    return wav, silent


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


def test_dereverberation_takes_the_tail_down_and_keeps_the_speech():
    dry, silent = _bursts()
    wet = np.convolve(dry, impulse_response(Room(rt60=0.6, snr_db=60.0), SR))[: dry.size].astype(np.float32)
    cleaned = enhance(wet, SR, denoise=False)
    assert cleaned.shape == wet.shape and cleaned.dtype == np.float32
    tail = silent.copy()
    tail[np.flatnonzero(np.diff(silent.astype(int)) == 1)[:, None] + np.arange(int(0.05 * SR))] = False  # early reflections
    assert _db(cleaned[tail]) < _db(wet[tail]) - 3.0  # the late reverberation between bursts: more than 3 dB down
    # the bursts keep their speech: no quieter than the dry ones (the room's early energy makes the wet ones louder),
    # and no less like them than the reverberant input is
    assert _db(cleaned[~silent]) > _db(dry[~silent]) - 1.0
    assert np.corrcoef(dry[~silent], cleaned[~silent])[0, 1] >= np.corrcoef(dry[~silent], wet[~silent])[0, 1]


def test_the_noise_floor_falls_and_a_short_input_is_left_alone():
    dry, silent = _bursts()
    noisy = dry + 0.01 * np.random.default_rng(0).standard_normal(dry.size).astype(np.float32)
    cleaned = enhance(noisy, SR, dereverb=False)
    assert _db(cleaned[silent]) < _db(noisy[silent]) - 4.0
    assert abs(_db(cleaned[~silent]) - _db(noisy[~silent])) < 2.0
    short = noisy[:500]
    np.testing.assert_array_equal(enhance(short, SR), short)


def test_enhance_reaches_the_source_and_the_references(tiny_bundle, tmp_path):
    from vconv.inference.converter import load

    sf.write(tmp_path / "src.wav", voiced_signal(1.0, f0=150.0), SR)
    sf.write(tmp_path / "ref.wav", voiced_signal(1.0, f0=220.0), SR)
    plain = load(tiny_bundle, vocoder="griffinlim", enhance="off")
    cleaned = load(tiny_bundle, vocoder="griffinlim", enhance="on")
    wav = plain.prepare_audio(str(tmp_path / "src.wav"), None)
    np.testing.assert_array_equal(plain.heard(wav), wav)
    assert not np.allclose(cleaned.heard(wav), wav)
    ref = str(tmp_path / "ref.wav")
    assert not np.allclose(cleaned.target_voice([ref]).spectrum.mean, plain.target_voice([ref]).spectrum.mean)
    out = tmp_path / "out.wav"
    result = invoke("convert", str(tmp_path / "src.wav"), "-t", ref, "-o", str(out), "--model", str(tiny_bundle),
                    "--vocoder", "griffinlim", "--enhance", "on")
    assert result.exit_code == 0, result.output
    assert sf.info(str(out)).frames == sf.info(str(tmp_path / "src.wav")).frames


def test_a_source_cleaned_of_a_room_has_its_spread_only_narrowed(tiny_bundle, monkeypatch):
    # the file conversion tells the matching whether the enhancer took a room out of the source (docs/ROOMS.md)
    import vconv.inference.converter as converter
    from vconv.inference.target_match import match_spectrum

    dry, _ = _bursts()
    wet = np.convolve(dry, impulse_response(Room(rt60=0.6, snr_db=60.0), SR))[: dry.size].astype(np.float32)
    widened = []

    def recording(*args, **kwargs):
        widened.append(kwargs["widen"])
        return match_spectrum(*args, **kwargs)

    monkeypatch.setattr(converter, "match_spectrum", recording)
    vc = converter.load(tiny_bundle, vocoder="griffinlim", enhance="auto")
    target = vc.target_voice(voiced_signal(2.0, f0=220.0), SR)
    for wav in (dry, wet):
        vc.convert_wav(wav, target)
    assert widened == [True, False]
    converter.load(tiny_bundle, vocoder="griffinlim", enhance="off").convert_wav(wet, target)
    assert widened[-1] is True  # not cleaned, as recorded: matched as a clean source is


def test_a_long_file_is_judged_once_on_its_start_and_every_chunk_follows(tiny_bundle, monkeypatch):
    """With enhance auto, a source of several chunks pays one room estimate, on its start (from its first sound), and
    every chunk is cleaned or none (the sound does not change at a join); a source of one chunk is judged on itself."""
    import vconv.audio.enhance as enhance_module
    import vconv.inference.converter as converter
    from vconv.inference.target_match import match_spectrum

    dry, _ = _bursts()
    wet = np.convolve(dry, impulse_response(Room(rt60=0.6, snr_db=60.0), SR))[: dry.size].astype(np.float32)
    estimates, widened = [], []
    quick = enhance_module.quick_late_db
    monkeypatch.setattr(enhance_module, "quick_late_db", lambda spec: estimates.append(1) or quick(spec))
    monkeypatch.setattr(enhance_module, "ROOM_DECISION_SECONDS", 3.0)  # the start: the first of the two halves
    monkeypatch.setattr(converter, "match_spectrum", lambda *a, **k: widened.append(k["widen"]) or match_spectrum(*a, **k))
    vc = converter.load(tiny_bundle, vocoder="griffinlim", enhance="auto")
    target = vc.target_voice(voiced_signal(2.0, f0=220.0), SR)
    lead_in = np.zeros(4 * SR, np.float32)  # digital silence before the speech: judged from the first sound on
    for wav, cleaned in ((np.concatenate([wet, dry]), True), (np.concatenate([dry, wet]), False),
                         (np.concatenate([lead_in, wet, dry]), True)):
        estimates.clear()
        widened.clear()
        vc.convert_wav(wav, target, chunk_seconds=1.0)
        assert len(estimates) == 1 and len(widened) >= 5 and set(widened) == {not cleaned}  # cleaned: only narrowed
    estimates.clear()
    widened.clear()
    vc.convert_wav(wet, target)  # one chunk
    assert len(estimates) == 1 and widened == [False]


def test_auto_cleans_only_what_its_estimates_place_in_a_room(tmp_path):
    from vconv.audio.enhance import QUICK_REVERBERANT_DB, _spectrum, late_reverberation_db, quick_late_db

    dry, _ = _bursts()
    wet = np.convolve(dry, impulse_response(Room(rt60=0.6, snr_db=60.0), SR))[: dry.size].astype(np.float32)
    assert late_reverberation_db(dry, SR) < -15.0 < late_reverberation_db(wet, SR)
    assert quick_late_db(_spectrum(dry)) < QUICK_REVERBERANT_DB < quick_late_db(_spectrum(wet))  # what auto decides on
    np.testing.assert_array_equal(enhance(dry, SR, only_in_a_room=True), dry)  # as recorded: left alone
    np.testing.assert_array_equal(enhance(wet, SR, only_in_a_room=True), enhance(wet, SR))
    from vconv.audio.enhance import enhance_in_a_room

    assert enhance_in_a_room(dry, SR) is None  # and the caller learns which it was
    np.testing.assert_array_equal(enhance_in_a_room(wet, SR), enhance(wet, SR))
    result = invoke("convert", "x.wav", "-t", "y.wav", "-o", str(tmp_path / "o.wav"), "--enhance", "maybe")
    assert result.exit_code == 1 and "--enhance 'maybe': expected one of off, auto, on" in result.output


@pytest.mark.parametrize("command", [["stream", "-i", "x.wav", "-t", "y.wav", "-o", "o.wav"], ["voice", "y.wav", "-o", "v.voice"],
                                     ["serve"]])
def test_every_converting_command_takes_enhance_and_refuses_a_bad_mode(command):
    """auto is the default everywhere a recording is read whole; a bad mode is a one-line error before any model loads."""
    result = invoke(*command, "--enhance", "maybe")
    assert result.exit_code == 1 and "--enhance 'maybe': expected one of off, auto, on" in result.output, result.output


def _wpe_in_double(spec, delay: int, taps: int, passes: int):
    """WPE written plainly, bin by bin and all in double precision: the reference the fast version is held to."""
    import torch

    spec = spec.to(torch.complex128)
    floor = 1e-10 * max(float(spec.abs().square().max()), 1.0)
    out = torch.empty_like(spec)
    for f in range(spec.shape[0]):
        x = spec[f]
        frames = x.shape[0]
        past = torch.zeros(frames, taps, dtype=x.dtype)
        for k in range(taps):  # column k: the frame delay + (taps - 1 - k) back, the fast version's order
            lag = delay + taps - 1 - k
            past[lag:, k] = x[: frames - lag]
        dry = x
        for _ in range(passes):
            weight = 1.0 / dry.abs().square().clamp_min(floor)
            correlation = past.conj().T @ (weight[:, None] * past)
            cross = past.conj().T @ (weight * x)
            correlation = correlation + 1e-6 * correlation.diagonal().real.mean().clamp_min(1e-10) * torch.eye(taps)
            dry = x - past @ torch.linalg.solve(correlation, cross)
        out[f] = dry
    return out


def test_dereverberation_agrees_with_plain_wpe_in_either_precision():
    """The cleaning (by default, products in double) is the plain double-precision WPE's; products in single precision
    (the quick estimate's), the small normal equations still in double, stay within a fraction of a per cent of it and
    are not the same numbers (on held-out speech in rooms a whole cleaning in single precision moved 0.3 %)."""
    import torch

    from vconv.audio.enhance import _spectrum, dereverberate

    dry, _ = _bursts()
    wet = np.convolve(dry, impulse_response(Room(rt60=0.6, snr_db=60.0), SR))[: dry.size].astype(np.float32)
    spec = _spectrum(wet)[::16]  # 17 bins keep the plain loop quick
    reference = _wpe_in_double(spec, 3, 10, 2)
    default = dereverberate(spec, taps=10, passes=2)
    single = dereverberate(spec, taps=10, passes=2, products=torch.complex64)
    for fast, tolerance in ((default, 1e-6), (single, 5e-3)):
        assert fast.dtype == torch.complex64 and fast.shape == spec.shape
        assert float((fast.to(torch.complex128) - reference).abs().norm() / reference.abs().norm()) < tolerance
    assert not torch.equal(default, single)  # the precision asked for is the one used
    with pytest.raises(ValueError, match="products"):
        dereverberate(spec, products=torch.float64)
    assert float((spec - default).abs().norm()) > 0.05 * float(spec.abs().norm())  # and it did take something out
