"""Target-spectrum matching (vconv.inference.target_match) and its place in the conversion path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vconv
from vconv.cli import app
from vconv.errors import VconvError
from vconv.inference.converter import TargetVoice
from vconv.inference.target_match import (
    MIN_SPEECH_FRAMES,
    STD_RATIO_RANGE,
    SpectrumStats,
    check_mode,
    is_pause,
    match_spectrum,
    spectrum_stats,
    speech_frames,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def utterance(frames: int = 200, n_mels: int = 80, level: float = 0.0, spread: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A log-mel ``[n_mels, frames]``: speech in the middle half (around ``level``), near-silence around it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n_mels, frames), -11.0) + 0.1 * torch.randn(n_mels, frames, generator=g)
    body = slice(frames // 4, 3 * frames // 4)
    tilt = torch.linspace(1.0, -1.0, n_mels)[:, None]  # a spectral slope, so the bands differ
    # speech-like: each band moves slowly (syllables), not from frame to frame
    wiggle = torch.nn.functional.avg_pool1d(torch.randn(n_mels, 1, frames // 2 + 14, generator=g), 15, stride=1)[:, 0]
    x[:, body] = level + tilt + spread * wiggle / wiggle.std(1, keepdim=True)
    return x


def test_speech_frames_leave_the_pauses_out():
    x = utterance()
    kept = speech_frames(x)
    assert kept.shape == (80, 100)  # the middle half; the -11 nats of silence are 11 below speech
    assert kept.mean() > -1.0


def test_stats_pool_references_and_match_moves_mean_and_spread_onto_the_target():
    target = spectrum_stats([utterance(level=-2.0, spread=0.8, seed=1), utterance(level=-2.0, spread=0.8, seed=2)])
    assert target.frames == 200 and target.mean.shape == target.std.shape == (80, 1)
    source = utterance(level=1.0, spread=0.6, seed=3)[None]  # [1, n_mels, F]
    out = match_spectrum(source, target, "meanstd")
    assert out.shape == source.shape
    moved = spectrum_stats([out[0]])
    # the speech frames of a slow contour are matched exactly; the smoothing across the pause edges and
    # the unscaled frame-to-frame detail leave a little off
    def shape(mean: torch.Tensor) -> torch.Tensor:  # the spectral shape: band means less their average
        return mean - mean.mean()

    torch.testing.assert_close(shape(moved.mean), shape(target.mean), atol=0.2, rtol=0)
    # the level (average over bands) stays the converted one's: 3 nats above the target here
    assert abs(float(moved.mean.mean() - spectrum_stats([source[0]]).mean.mean())) < 0.2
    torch.testing.assert_close(moved.std, target.std, atol=0, rtol=0.25)
    assert abs(float(moved.std.mean() / target.std.mean()) - 1) < 0.1
    assert float((moved.std / spectrum_stats([source[0]]).std).mean()) > 1.2  # 0.8 / 0.6: the spread widened
    # mean only: the mean moves, the spread stays the converted one's
    shifted = spectrum_stats([match_spectrum(source, target, "mean")[0]])
    torch.testing.assert_close(shape(shifted.mean), shape(target.mean), atol=0.05, rtol=0)
    torch.testing.assert_close(shifted.std, spectrum_stats([source[0]]).std, atol=1e-4, rtol=0)


def test_the_melody_s_bands_keep_the_model_s_spread_and_take_the_target_s_shape():
    from vconv.inference.target_match import SPREAD_FROM_HZ

    target = spectrum_stats([utterance(level=-2.0, spread=0.8, seed=1)])
    source = utterance(level=1.0, spread=0.4, seed=3)[None]
    centres = torch.linspace(0.0, 8000.0, 80)  # [n_mels] Hz: the first bands lie below SPREAD_FROM_HZ
    low = centres < SPREAD_FROM_HZ
    assert 0 < int(low.sum()) < 80
    given = spectrum_stats([source[0]])
    moved = spectrum_stats([match_spectrum(source, target, "meanstd", band_centres=centres)[0]])
    torch.testing.assert_close(moved.std[low], given.std[low], atol=0, rtol=0.03)  # the melody's spread: the model's
    assert float((moved.std[~low] / given.std[~low]).mean()) > 1.5  # above it, widened toward the target's 0.8
    everywhere = spectrum_stats([match_spectrum(source, target, "meanstd")[0]])  # no centres: every band, as before
    assert float((everywhere.std[low] / given.std[low]).mean()) > 1.5
    # the low bands' means still move: the same shape as without the rule
    torch.testing.assert_close(moved.mean[low] - moved.mean.mean(), everywhere.mean[low] - everywhere.mean.mean(), atol=0.1, rtol=0)


def test_without_widening_a_spread_is_only_narrowed():
    target = spectrum_stats([utterance(level=-2.0, spread=0.8, seed=1)])
    lively, flat = utterance(spread=1.2, seed=3)[None], utterance(spread=0.4, seed=4)[None]
    for source in (lively, flat):
        own = spectrum_stats([source[0]]).std
        narrowed = spectrum_stats([match_spectrum(source, target, "meanstd", widen=False)[0]]).std
        both = spectrum_stats([match_spectrum(source, target, "meanstd")[0]]).std
        if source is lively:  # above the target's: narrowed as with widening
            torch.testing.assert_close(narrowed, both)
            assert float((narrowed / own).mean()) < 0.8
        else:  # under it: left at its own, where widening would double it
            torch.testing.assert_close(narrowed, own, atol=0, rtol=0.02)
            assert float((both / own).mean()) > 1.5


def test_spread_ratio_is_bounded():
    target = spectrum_stats([utterance(spread=5.0)])
    source = utterance(spread=0.5, seed=4)[None]
    out = spectrum_stats([match_spectrum(source, target)[0]]).std
    ratio = out / spectrum_stats([source[0]]).std
    assert float(ratio.median()) <= STD_RATIO_RANGE[1] * 1.05  # not the 10x the target asked for


def test_off_and_too_little_speech_leave_the_output_as_the_model_made_it():
    source = utterance(level=1.0, seed=5)[None]
    target = spectrum_stats([utterance(level=-3.0, seed=6)])
    assert torch.equal(match_spectrum(source, target, "off"), source)
    short = spectrum_stats([utterance(frames=2 * MIN_SPEECH_FRAMES - 4, level=-3.0)])  # fewer speech frames than trusted
    assert not short.trusted
    assert torch.equal(match_spectrum(source, short), source)
    tiny_source = utterance(frames=20, level=1.0)[None]
    assert torch.equal(match_spectrum(tiny_source, target), tiny_source)


def test_unknown_mode_is_a_one_line_error():
    assert check_mode("mean") == "mean"
    with pytest.raises(VconvError, match="--target-match 'loud': unknown; choose one of meanstd, mean, off"):
        check_mode("loud", "--target-match")


def test_conversion_matches_the_target_spectrum_and_a_bare_embedding_does_not():
    """The shipped model's output moves toward the target reference's long-term spectrum."""
    vc = vconv.load()
    assert vc.target_match == "meanstd"
    source = vc.prepare_audio(EXAMPLES / "source.wav", None)
    target = vc.target_voice([EXAMPLES / "target.wav"])
    assert isinstance(target, TargetVoice) and target.spectrum.trusted
    torch.testing.assert_close(target.embedding, vc.speaker_embedding([EXAMPLES / "target.wav"]))
    matched = vc.convert_wav(source, target)
    plain = vc.convert_wav(source, target.embedding)  # no statistics given: the model's own output
    assert matched.shape == plain.shape == source.shape and np.isfinite(matched).all()

    def distance(wav: np.ndarray) -> float:  # between spectral shapes (loudness is left alone)
        own = spectrum_stats([vc.frontend.log_mel(wav[None])[0]]).mean
        return float(((own - own.mean()) - (target.spectrum.mean - target.spectrum.mean.mean())).abs().mean())

    assert distance(matched) < 0.7 * distance(plain)
    # off: the model's own output for this target (its register too: a bare embedding has none, the source keeps its own)
    off = vconv.load(target_match="off")
    np.testing.assert_allclose(off.convert_wav(source, target), vc.convert_wav_pair(source, target)[1], atol=1e-5)


def test_cli_refuses_an_unknown_mode_before_loading_anything(tmp_path, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("the model must not load before --target-match is checked")

    monkeypatch.setattr("vconv.inference.converter.load", no_load)
    result = CliRunner().invoke(app, ["convert", str(EXAMPLES / "source.wav"), "--target", str(EXAMPLES / "target.wav"),
                                      "--out", str(tmp_path / "o.wav"), "--target-match", "loud"])
    assert result.exit_code != 0
    assert "--target-match 'loud': unknown" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.wav").exists()


def test_nothing_ends_below_the_feature_floor():
    target = spectrum_stats([utterance(spread=2.0)])
    source = utterance(spread=0.5, seed=7)[None]  # its pauses at -11 would be pushed to about -3 - 8 * 2
    floor = float(np.log(1e-5))
    assert float(match_spectrum(source, target).min()) < floor
    assert float(match_spectrum(source, target, floor=floor).min()) >= floor


def test_the_spread_is_scaled_on_the_slow_contour_and_frame_to_frame_detail_passes_unscaled():
    from vconv.inference.target_match import slow_contour

    frames = 400
    t = torch.arange(frames, dtype=torch.float32)
    slow = torch.sin(2 * torch.pi * t / 100)  # a 1.6 s contour
    fast = 0.3 * (-1.0) ** t  # frame-rate jitter
    x = torch.stack([slow + fast] * 4) - 2.0  # [4 bands, F], all speech
    torch.testing.assert_close(slow_contour(torch.full((3, 50), 1.5)), torch.full((3, 50), 1.5))  # a constant stays
    assert slow_contour(x).shape == x.shape
    target = SpectrumStats(mean=torch.full((4, 1), -1.0), std=torch.full((4, 1), 2 * float(slow.std())), frames=frames)
    y = match_spectrum(x[None], target)[0]
    sign = (-1.0) ** t

    def jitter(z: torch.Tensor) -> float:  # amplitude of the frame-rate component
        return float((z * sign).mean(1).abs().mean())

    assert abs(jitter(y) - 0.3) < 0.03  # scaling everything would have made it about 0.6
    def contour(z: torch.Tensor) -> torch.Tensor:
        return (z * torch.sin(2 * torch.pi * t / 100)).mean(1)
    assert float(contour(y).mean()) > 1.8 * float(contour(x).mean())  # the contour got the target's spread


def test_a_conversion_never_clips_and_a_quiet_one_is_left_alone():
    from vconv.inference.converter import PEAK, limit_peak

    loud = np.array([0.5, -3.0, 1.5], dtype=np.float32)
    limited = limit_peak(loud)
    assert limited.dtype == np.float32 and np.isclose(np.abs(limited).max(), PEAK)
    np.testing.assert_allclose(limited / limited[0], loud / loud[0], rtol=1e-6)  # one gain for the whole file
    quiet = np.array([0.1, -0.2], dtype=np.float32)
    assert limit_peak(quiet) is quiet and limit_peak(np.zeros(0, np.float32)).size == 0


def test_near_silence_is_left_alone_and_a_target_of_another_model_is_a_clear_error():
    floor = float(np.log(1e-5))
    target = spectrum_stats([utterance(level=-2.0)])
    hush = (torch.full((1, 80, 200), floor) + 0.3 * torch.rand(1, 80, 200, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(match_spectrum(hush, target, floor=floor), hush)  # a pause-only chunk gets no voice painted on
    vc = vconv.load()
    alien = TargetVoice(embedding=vc.speaker_embedding([EXAMPLES / "target.wav"]), spectrum=spectrum_stats([torch.zeros(40, 50)]))
    with pytest.raises(VconvError, match="40 mel bands, this model 80"):
        vc.convert_wav(vc.prepare_audio(EXAMPLES / "source.wav", None), alien)


def test_a_reference_too_short_to_match_onto_is_said_not_silent(tmp_path):
    """Matching is skipped for a reference with under MIN_SPEECH_FRAMES of speech, and convert says so on stderr."""
    import soundfile as sf

    wav, sr = sf.read(EXAMPLES / "target.wav", dtype="float32")
    loudest = int(np.argmax(np.abs(wav)))
    short = tmp_path / "short.wav"
    sf.write(short, wav[max(0, loudest - sr // 10): loudest + sr // 10], sr)  # 0.2 s of speech: 12 frames < 16
    vc = vconv.load()
    assert vc.matching_skipped(vc.target_voice([EXAMPLES / "target.wav"])) is None
    said = vc.matching_skipped(vc.target_voice([short]))
    assert said is not None and "at least 0.26 s is needed" in said
    assert vconv.load(target_match="off").matching_skipped(vc.target_voice([short])) is None

    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(EXAMPLES / "source.wav"), "--target", str(short), "--out", str(tmp_path / "o.wav")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.wav").exists()
    assert "note: target-spectrum matching skipped" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["convert", str(EXAMPLES / "source.wav"), "--target", str(EXAMPLES / "target.wav"),
                                 "--out", str(tmp_path / "p.wav")])
    assert result.exit_code == 0 and "note:" not in result.stderr


def test_a_chunk_of_room_tone_in_a_long_file_is_not_matched():
    """Chunks are matched on their own statistics, but one whose source holds no speech compared with the
    whole file (room tone between takes) is left as the model made it: matching would paint the voice onto it."""
    vc = vconv.load()
    speech = vc.prepare_audio(EXAMPLES / "source.wav", None)
    sr = vc.sample_rate
    room = 0.003 * np.random.default_rng(0).standard_normal(7 * sr).astype(np.float32)  # 32 dB below the voice, far above the log floor
    wav = np.concatenate([speech, room])
    target = vc.target_voice([EXAMPLES / "target.wav"])
    matched = vc.convert_wav(wav, target, chunk_seconds=3.0, overlap_seconds=0.5)
    plain = vconv.load(target_match="off").convert_wav(wav, target, chunk_seconds=3.0, overlap_seconds=0.5)
    tail = slice(speech.size + 3 * sr, wav.size - sr)  # covered only by chunks of room tone

    def same(a: np.ndarray, b: np.ndarray) -> bool:  # equal up to the one per-file peak-limiting gain
        return float(np.corrcoef(a, b)[0, 1]) > 0.9999

    assert same(matched[tail], plain[tail])
    assert not same(matched[: speech.size // 2], plain[: speech.size // 2])  # the speech is matched
    assert is_pause(-9.0, -5.0) and not is_pause(-8.0, -5.0)


def test_the_file_level_in_blocks_is_the_whole_files():
    """A long file's speech level is measured block by block (its whole spectrogram would take ~60 bytes
    per sample); it agrees with the level of the whole file's log-mel."""
    from vconv.inference.target_match import energy_level

    vc = vconv.load()
    speech = vc.prepare_audio(EXAMPLES / "source.wav", None)
    quiet = 0.002 * np.random.default_rng(1).standard_normal(5 * vc.sample_rate).astype(np.float32)
    wav = np.concatenate([speech, quiet, speech * 0.5, quiet])
    whole = energy_level(vc.frontend.log_mel(wav))
    for block in (vc.sample_rate, 3 * vc.sample_rate + 256):
        assert abs(vc._energy_level_in_blocks(lambda a, b: wav[a:b], wav.size, block) - whole) < 0.05


LOG_FLOOR = float(np.log(1e-5))  # the features' log floor


def noisy_upper_bands(x: torch.Tensor, first: int, level: float = -5.0, seed: int = 3) -> torch.Tensor:
    """``x [n_mels, F]`` with its bands from ``first`` up replaced by a steady noise floor at ``level`` (a room's hiss
    over a band-limited voice: nothing in those bands moves with the speech)."""
    g = torch.Generator().manual_seed(seed)
    out = x.clone()
    out[first:] = level + 0.1 * torch.randn(x.shape[0] - first, x.shape[1], generator=g)
    return out


def test_a_band_that_holds_only_a_noise_floor_is_not_the_voice_s():
    x = utterance()
    centres = torch.linspace(40.0, 7700.0, 80)  # Hz
    assert spectrum_stats([x]).voiced_bands is None  # the converted side's own statistics: every band
    assert bool(spectrum_stats([x], floor=LOG_FLOOR, band_centres=centres).voiced_bands.all())
    noisy = spectrum_stats([noisy_upper_bands(x, 60)], floor=LOG_FLOOR, band_centres=centres).voiced_bands
    assert noisy.shape == (80, 1) and bool(noisy[:60].all()) and not bool(noisy[60:].any())
    silent = x.clone()
    silent[60:] = LOG_FLOOR  # a band-limited recording: digital silence up there is the voice's
    assert bool(spectrum_stats([silent], floor=LOG_FLOOR, band_centres=centres).voiced_bands.all())
    rumble = noisy_upper_bands(x.flip(0), 20).flip(0)  # a steady floor in the 20 lowest bands, 40 Hz and up
    low = spectrum_stats([rumble], floor=LOG_FLOOR, band_centres=centres).voiced_bands[:20, 0]
    assert bool(low[centres[:20] < 60].all()) and not bool(low[centres[:20] >= 60].any())  # below a voice: not judged


def test_matching_takes_the_shape_from_the_voice_s_bands_and_never_raises_a_noise_floor():
    # the target's hiss stands over the voice's quiet upper bands, as a 20 dB room's does over a band-limited voice
    target = spectrum_stats([noisy_upper_bands(utterance(level=-2.0, seed=2), 60, level=-1.0)], floor=LOG_FLOOR,
                            band_centres=torch.linspace(40.0, 7700.0, 80))
    x = utterance(level=-4.0, seed=1)[None]
    own = spectrum_stats([x[0]])
    after = spectrum_stats([match_spectrum(x, target, "meanstd")[0]])
    assert bool((after.mean[60:] <= own.mean[60:] + 1e-4).all())  # the hiss is not painted onto the output
    shaped = target.mean[:60] - target.mean[:60].mean() + own.mean[:60].mean()  # the shape of the voice's bands alone
    assert torch.allclose(after.mean[:60], shaped, atol=0.05)
    blind = spectrum_stats([match_spectrum(x, dataclasses.replace(target, voiced_bands=None), "meanstd")[0]])
    assert float((blind.mean[60:] - own.mean[60:]).mean()) > 1.0  # as before: the noise floor raised the bands
    every = dataclasses.replace(target, voiced_bands=torch.ones(80, 1, dtype=torch.bool))
    assert torch.equal(match_spectrum(x, every), match_spectrum(x, dataclasses.replace(target, voiced_bands=None)))
    spread = torch.stack([match_spectrum(x, target)[0], x[0]])  # a noise band keeps the output's own spread
    assert torch.allclose(speech_frames(spread[0])[60:].std(1), speech_frames(spread[1])[60:].std(1), rtol=1e-3)
    mean_only = spectrum_stats([match_spectrum(x, target, "mean")[0]])
    assert torch.allclose(mean_only.mean[:60], shaped, atol=0.05) and bool((mean_only.mean[60:] <= own.mean[60:] + 1e-4).all())


def test_a_noise_floor_below_the_output_caps_it_and_a_target_without_voice_is_not_matched():
    centres = torch.linspace(40.0, 7700.0, 80)
    # the hiss 3 nats under the target's voice: shaped at the output's level it lands below the output's own bands
    target = spectrum_stats([noisy_upper_bands(utterance(level=-2.0, seed=2), 60, level=-6.0)], floor=LOG_FLOOR,
                            band_centres=centres)
    assert not bool(target.voiced_bands[60:].any())
    x = utterance(level=-3.0, seed=1)[None]
    own = spectrum_stats([x[0]])
    shaped = target.mean - target.mean[:60].mean() + own.mean[:60].mean()
    assert bool((shaped[60:] < own.mean[60:] - 0.5).all())
    after = spectrum_stats([match_spectrum(x, target)[0]])
    assert torch.allclose(after.mean[60:], shaped[60:], atol=0.05)  # pulled down to the cap
    nothing = dataclasses.replace(target, voiced_bands=torch.zeros(80, 1, dtype=torch.bool))
    assert torch.allclose(match_spectrum(x, nothing), x, atol=1e-5)


def band_limited_target(vc) -> np.ndarray:
    """The example target as an 8 kHz recording (a game's) would have it: nothing above 4 kHz; ``[T]`` at 16 kHz."""
    from scipy.signal import butter, sosfiltfilt

    voice = vc.prepare_audio(EXAMPLES / "target.wav", None)
    return sosfiltfilt(butter(10, 4000, fs=vc.sample_rate, output="sos"), voice).astype(np.float32)


def test_a_room_s_hiss_over_a_band_limited_voice_is_told_from_the_voice():
    from vconv.audio.rooms import Room, in_room

    vc = vconv.load()
    sr = vc.sample_rate
    band_limited = band_limited_target(vc)
    centres = vc.frontend.logmel.band_centres
    upper, speech = centres >= 5000, (centres > 100) & (centres < 2000)  # well above the voice's 4 kHz edge; its core

    def voiced(wav: np.ndarray) -> torch.Tensor:
        return vc.target_voice([wav], sr).spectrum.voiced_bands[:, 0]

    assert bool(voiced(band_limited).all())
    in_the_room = voiced(in_room(band_limited, sr, Room(rt60=0.45, snr_db=20.0, colour="white", seed=0)))
    assert not bool(in_the_room[upper].any()) and bool(in_the_room[speech].all())


def test_convert_and_voice_say_which_bands_of_a_room_s_reference_are_only_noise(tmp_path):
    import soundfile as sf

    from tests.conftest import invoke
    from vconv.audio.rooms import Room, in_room

    vc = vconv.load()
    clean, room = tmp_path / "clean.wav", tmp_path / "room.wav"
    band_limited = band_limited_target(vc)
    sf.write(clean, band_limited, vc.sample_rate)
    sf.write(room, in_room(band_limited, vc.sample_rate, Room(rt60=0.45, snr_db=20.0, colour="white", seed=0)), vc.sample_rate)
    said = "hold only their room's noise: target matching leaves them to the model"
    result = invoke("convert", EXAMPLES / "source.wav", "-t", room, "-o", tmp_path / "out.wav")
    assert result.exit_code == 0 and said in result.output and "kHz" in result.output, result.output
    assert said not in invoke("convert", EXAMPLES / "source.wav", "-t", clean, "-o", tmp_path / "out2.wav").output
    assert said not in invoke("convert", EXAMPLES / "source.wav", "-t", room, "-o", tmp_path / "out3.wav", "--target-match", "off").output
    result = invoke("voice", room, "-o", tmp_path / "room.voice", "--fit-voice", "0")
    assert result.exit_code == 0 and said in result.output, result.output
    short = tmp_path / "short.wav"  # too little speech for trusted statistics: matching skipped, so no such note
    sf.write(short, in_room(band_limited[: vc.sample_rate // 5], vc.sample_rate, Room(rt60=0.45, snr_db=20.0, colour="white", seed=0)),
             vc.sample_rate)
    result = invoke("convert", EXAMPLES / "source.wav", "-t", short, "-o", tmp_path / "out4.wav")
    assert result.exit_code == 0 and "matching skipped" in result.output and said not in result.output, result.output
    result = invoke("convert", EXAMPLES / "source.wav", "-t", tmp_path / "room.voice", "-o", tmp_path / "out5.wav")
    assert result.exit_code == 0 and said in result.output, result.output  # a voice file carries its bands


def test_hours_of_references_are_told_apart_without_passing_torch_s_quantile_limit():
    from vconv.inference.target_match import QUANTILE_VALUES, voiced_bands

    frames = QUANTILE_VALUES // 2 + 1000  # two bands: more values than one quantile call takes
    g = torch.Generator().manual_seed(0)
    speech = -4.0 + torch.randn(frames, generator=g)
    hiss = -5.0 + 0.05 * torch.randn(frames, generator=g)
    log_mel = torch.stack([speech, hiss])
    mean = log_mel.mean(1, keepdim=True)
    assert voiced_bands(log_mel, mean, LOG_FLOOR, torch.tensor([1000.0, 6000.0]))[:, 0].tolist() == [True, False]
