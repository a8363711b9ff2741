"""The pitch path: the tracker, the contour's whitening and register, the decoder's use of it, training with it, the
controls and their errors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import invoke, one_line_error, voiced_signal
from vconv.audio.pitch import YinGrid, track_pitch
from vconv.audio.pitch_stream import WindowPitch
from vconv.config import load_run_config
from vconv.errors import VconvError
from vconv.frontends.pitch import NEUTRAL_LOG_F0, YinPitch, fill_unvoiced
from vconv.models import build_model
from vconv.models.contour import (
    LOG_F0_SCALE,
    SEMITONE,
    TARGET_TRIM_SEMITONES,
    Register,
    check_pitch_shift,
    check_register_mode,
    decoder_contour,
    voiced_register,
)
from vconv.training.vc_trainer import ModelTrainer

SR, HOP = 16000, 256
VALID_SPEAKERS = 1


def harmonic_tone(f0: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))).astype(np.float32)


@pytest.mark.parametrize("f0", [80.0, 140.0, 220.0, 410.0])
def test_a_tone_of_known_f0_comes_back_within_one_percent(f0):
    track = track_pitch(torch.from_numpy(harmonic_tone(f0)), SR, HOP)
    inner = slice(4, -4)  # the edges hold half a window of padding
    assert track.voiced[inner].all()
    assert torch.allclose(track.f0[inner], torch.tensor(f0), rtol=0.01)
    assert track.frames == 1 + SR // HOP


def test_silence_and_noise_are_unvoiced():
    assert not track_pitch(torch.zeros(SR), SR, HOP).voiced.any()
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1)
    assert track_pitch(noise, SR, HOP).voiced.float().mean() < 0.1


def stream_windows(length: int, block: int, context: int, lookahead: int):
    """``(start, stop)`` of the windows a stream converts over ``length`` samples (vconv.inference.streaming)."""
    for begin in range(0, length - lookahead, block):
        yield max(0, begin - context), min(length, begin + block + lookahead)


@pytest.mark.parametrize("rate", [SR, 22050])  # at 22.05 kHz YIN's 64 ms window is odd (1411 samples)
def test_a_stream_s_windows_are_tracked_as_whole_windows_with_each_frame_measured_once(rate):
    # speech-like: a wobbling voice, a pause, noise, the voice again; windows as a stream cuts them (96 ms blocks,
    # 48 ms look-ahead, 1.5 s of context), so frames are reused across windows, and a gap restarts the reuse
    rng = np.random.default_rng(3)
    # ... and a weak fundamental, which the octave-slip path reads at half from the double-lag measures kept
    weak, _ = gliding_voice(1.0, lambda t: 100 * (1 + 0.03 * np.sin(2 * np.pi * 2 * t)), (0.3, 0.5))
    wav = np.concatenate([voiced_signal(1.2, f0=140.0), np.zeros(SR // 4, np.float32),
                          0.05 * rng.standard_normal(SR // 4).astype(np.float32), voiced_signal(1.5, f0=210.0), weak])
    frontend = SimpleNamespace(cfg=SimpleNamespace(sample_rate=rate, hop_length=HOP))  # what a pitch part reads of it
    tracker = YinPitch().window_rows(frontend)
    windows = list(stream_windows(wav.size, 6 * HOP, 94 * HOP, 3 * HOP))
    windows.insert(12, (2 * HOP, 40 * HOP))  # a window elsewhere: what is kept must not leak into it
    # windows whose end is not on a hop; at 22.05 kHz, 705 past one is where a frame's last sample is the window's last
    windows[20:20] = [(k * HOP, k * HOP + 40 * HOP + 705) for k in (0, 1, 2)] + [(3 * HOP, 44 * HOP + 100)]
    whole_frames = 0
    for start, stop in windows:
        rows = tracker(wav[start:stop], start)
        expected = YinPitch().compute(wav[start:stop], frontend)  # the window tracked whole
        assert torch.equal(rows, expected)  # the same rows, bit for bit
        whole_frames += rows.shape[-1]
    counter = WindowPitch(YinGrid(rate, HOP), 0.1, 0.5)
    for start, stop in stream_windows(wav.size, 6 * HOP, 94 * HOP, 3 * HOP):
        counter.track(torch.from_numpy(wav[start:stop]), start)
    assert counter.measured < whole_frames / 5  # each block measures its new frames and the window's first two


def test_a_stream_window_must_start_on_a_hop():
    with pytest.raises(ValueError, match="starting on a hop"):
        WindowPitch(YinGrid(SR, HOP), 0.1, 0.5).track(torch.zeros(SR), 100)


def test_a_wobbling_voice_is_followed():
    wav = voiced_signal(2.0, f0=140.0)
    track = track_pitch(torch.from_numpy(wav), SR, HOP)
    t = np.arange(track.frames) * HOP / SR
    truth = 140.0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    voiced = track.voiced.numpy()
    assert voiced.mean() > 0.7
    cents = 1200 * np.abs(np.log2(track.f0.numpy()[voiced] / truth[voiced]))
    assert np.median(cents) < 30 and np.mean(cents > 100) < 0.05


def gliding_voice(seconds: float, f0_of_time, weak_fundamental: tuple[float, float] | None = None):
    """A voice whose F0 follows ``f0_of_time(t)`` -> ``(wav [T], f0 Hz [T])``; over ``weak_fundamental`` (start, end
    seconds) its odd harmonics fade to 1 %, so it is nearly periodic at twice its F0 there (as piper_joe's voice is,
    where YIN's first dip reads an octave up)."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = f0_of_time(t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    odd = np.ones_like(t)
    if weak_fundamental:
        odd[(t > weak_fundamental[0]) & (t < weak_fundamental[1])] = 0.01
    odd = np.convolve(odd, np.hanning(401) / np.hanning(401).sum(), mode="same")  # 25 ms fades
    wav = 0.3 * sum((odd if k % 2 else 1.0) * np.sin(k * phase) / k for k in range(1, 9))
    return wav.astype(np.float32), f0


def octaves_off(wav: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """How far the tracker's F0 is from the truth on its voiced frames, in octaves; at least 90 % must be voiced."""
    track = track_pitch(torch.from_numpy(wav), SR, HOP)
    voiced = track.voiced.numpy()
    assert voiced.mean() > 0.9
    return np.abs(np.log2(track.f0.numpy()[voiced] / f0[np.arange(track.frames) * HOP][voiced]))


@pytest.mark.parametrize("weak", [(0.58, 0.72), (0.5, 0.7)])
def test_a_weak_fundamental_s_octave_slip_is_read_at_the_period(weak):
    # YIN alone reads the weak span an octave up (7 and 11 frames); the path through the voiced frames does not
    wav, f0 = gliding_voice(1.5, lambda t: 100 * (1 + 0.03 * np.sin(2 * np.pi * 2 * t)), weak)
    assert octaves_off(wav, f0).max() < 0.03


def test_a_glide_up_to_a_high_note_is_followed_not_halved():
    # 150 Hz, then up 0.9 octave in 0.3 s and held: far above the voiced median, but reached by a glide
    wav, f0 = gliding_voice(1.5, lambda t: 150 * 2 ** (0.9 * np.clip((t - 0.9) / 0.3, 0, 1)))
    assert octaves_off(wav, f0).max() < 0.05  # a frame reads 64 ms of a glide: within 60 cents


def test_the_slip_path_halves_a_run_an_octave_over_its_neighbours_and_nothing_a_far_frame_drags():
    from vconv.audio.pitch import _octave_up_slips

    def slipped(hz: list[float]) -> list[int]:
        f0 = torch.tensor(hz)
        return torch.nonzero(_octave_up_slips(f0, f0 > 0, torch.ones_like(f0, dtype=torch.bool))).flatten().tolist()

    assert slipped([100.0] * 10 + [200.0] * 3 + [100.0] * 10) == [10, 11, 12]
    assert slipped([100.0] * 10 + [0.0] * 2 + [200.0] * 3 + [100.0] * 10) == [12, 13, 14]  # across a short pause
    assert slipped([150.0] * 10 + [200.0, 250.0, 300.0] * 1 + [300.0] * 10) == []  # a glide is read as it is
    # one frame read at a third (a creak) before an upward step: its neighbours are not halved to come near it
    assert slipped([140.0] * 10 + [59.0] + [177.0] * 10) == []
    assert slipped([120.0]) == [] and slipped([]) == []


def test_the_register_cost_waits_for_enough_of_the_voice_s_own_frames():
    from vconv.audio.pitch import REGISTER_MIN_FRAMES, _octave_up_slips

    def slipped(own: int) -> list[int]:
        # a window opening on 20 frames of the target's primer at 150 Hz (before own_from), then the source at 300 Hz
        f0 = torch.tensor([150.0] * 20 + [300.0] * own)
        return torch.nonzero(_octave_up_slips(f0, f0 > 0, torch.ones_like(f0, dtype=torch.bool), own_from=20)).flatten().tolist()

    # 3 frames of its own are no register: the step from the primer decides (0.75), halving them costs 3 x 0.2
    assert REGISTER_MIN_FRAMES > 3 and slipped(3) == [20, 21, 22]
    # from REGISTER_MIN_FRAMES on, their own median is the register, and an octave under it costs more than the step
    assert slipped(REGISTER_MIN_FRAMES) == []


def test_a_high_voice_after_a_low_primer_keeps_its_octave_in_a_stream_window():
    # a stream's window opens on the target's speech before sample 0; the slip path's register is the source's alone
    primer, _ = gliding_voice(1.4, lambda t: np.full_like(t, 95.0))
    source, _ = gliding_voice(0.6, lambda t: np.full_like(t, 240.0))
    primed = primer.size // HOP * HOP  # the primer's whole hops, before stream sample 0
    start = -primed
    window = torch.from_numpy(np.concatenate([primer[primer.size - primed:], source]))
    track = WindowPitch(YinGrid(SR, HOP), 0.15, 0.55).track(window, start)
    own = track.f0[-start // HOP + 4 : -4][track.voiced[-start // HOP + 4 : -4]]
    assert own.numel() > 20 and torch.allclose(own, torch.tensor(240.0), rtol=0.02)


def test_the_part_gives_continuous_log_f0_voicing_and_periodicity():
    part = YinPitch()
    frontend = type("FE", (), {"cfg": type("C", (), {"sample_rate": SR, "hop_length": HOP})()})()
    wav = np.concatenate([np.zeros(SR // 2, np.float32), harmonic_tone(200.0), np.zeros(SR // 2, np.float32)])
    rows = part.compute(wav, frontend)
    assert rows.shape == (3, 1 + wav.size // HOP)
    assert torch.allclose(rows[0], torch.full_like(rows[0], math.log(200.0)), atol=0.02)  # held across silence
    assert rows[1, :20].sum() == 0 and rows[1, 40:80].all()
    assert 0 <= rows[2].min() and rows[2].max() <= 1


def test_unvoiced_gaps_are_bridged_by_a_line():
    log_f0 = torch.tensor([5.0, 0.0, 0.0, 5.3, 0.0])
    voiced = torch.tensor([True, False, False, True, False])
    assert torch.allclose(fill_unvoiced(log_f0, voiced), torch.tensor([5.0, 5.1, 5.2, 5.3, 5.3]))
    assert torch.allclose(fill_unvoiced(log_f0, torch.zeros(5, dtype=torch.bool)), torch.full((5,), NEUTRAL_LOG_F0))


def rows_of(log_f0: torch.Tensor) -> torch.Tensor:
    return torch.stack([log_f0, torch.ones_like(log_f0), torch.ones_like(log_f0)])[None]


def test_the_contour_is_the_melody_in_the_output_register_shifted_by_semitones():
    melody = math.log(120.0) + 0.1 * torch.sin(torch.linspace(0, 6, 100))
    pitch = rows_of(melody)
    own = decoder_contour(pitch, "explicit")
    source = voiced_register(pitch[0])
    assert math.isclose(source.hz, math.exp(melody.double().mean()), rel_tol=1e-4)
    target = Register(math.log(240.0), 2 * source.spread, 100)
    moved = decoder_contour(pitch, "explicit", source=source, output=target)
    shifted = decoder_contour(pitch, "explicit", source=source, output=target, shift_semitones=-5)
    # the level moves by an octave, the excursions double, the shift is the same number of semitones everywhere
    assert torch.allclose((moved[0, 0] - own[0, 0]).mean() * LOG_F0_SCALE, torch.tensor(math.log(2.0)), atol=1e-3)
    assert torch.allclose(moved[0, 0].std(), 2 * own[0, 0].std(), rtol=1e-3)
    assert torch.allclose((moved - shifted)[0, 0] * LOG_F0_SCALE, torch.full((100,), 5 * SEMITONE), atol=1e-5)
    whitened = decoder_contour(pitch, "implicit", source=source, output=target)
    assert abs(float(whitened[0, 0].mean())) < 1e-4 and abs(float(whitened[0, 0].std()) - 1) < 0.02
    assert torch.equal(moved[:, 1:], pitch[:, 1:])


def test_a_register_from_too_few_voiced_frames_is_not_trusted():
    pitch = rows_of(torch.full((30,), math.log(200.0)))
    pitch[0, 1, 5:] = 0
    register = voiced_register(pitch[0])
    assert register.frames == 5 and not register.trusted and register.spread > 0.1
    assert Register.from_list(register.to_list()) == register


def test_a_target_register_leaves_a_trackers_octave_errors_out():
    """A voice at 90 Hz read an octave up on a fifth of its frames: the plain register is pulled ~2.4 semitones up and
    widened, the trimmed one stays at 90 Hz with the melody's own spread; a voice without such frames: the same."""
    melody = math.log(90.0) + 0.08 * torch.sin(torch.linspace(0, 20, 200))
    clean = rows_of(melody)[0]
    octave_up = clean.clone()
    octave_up[0, ::5] += math.log(2.0)
    plain, trimmed = voiced_register(octave_up), voiced_register(octave_up, TARGET_TRIM_SEMITONES)
    assert 12 * math.log2(plain.hz / 90.0) > 2.0
    assert abs(12 * math.log2(trimmed.hz / 90.0)) < 0.2 and trimmed.frames == 160
    assert abs(trimmed.spread - voiced_register(clean).spread) < 0.01 < plain.spread - trimmed.spread
    assert voiced_register(clean, TARGET_TRIM_SEMITONES) == voiced_register(clean)
    few = rows_of(melody[:20])[0]
    few[0, ::2] += math.log(2.0)  # too few frames would be left: all of them count
    assert voiced_register(few, TARGET_TRIM_SEMITONES) == voiced_register(few)


@pytest.mark.parametrize("value", [25, -24.5, float("nan"), "up"])
def test_out_of_range_pitch_shifts_and_unknown_registers_are_errors(value):
    with pytest.raises(VconvError, match="semitones"):
        check_pitch_shift(value)
    with pytest.raises(VconvError, match="target, source"):
        check_register_mode("alto")
    assert check_pitch_shift(-24) == -24.0


def pitch_model_config(**overrides):
    _, model, _ = load_run_config("debug", ["train.train_manifest=x", "train.run_dir=y", "model.pitch_frontend.kind=yin",
                                            *[f"model.{k}={v}" for k, v in overrides.items()]])
    return model


def test_the_decoder_reads_the_contour_and_refuses_to_go_without_it():
    torch.manual_seed(0)
    model = build_model(pitch_model_config()).eval()
    assert model.reads_pitch
    mel = torch.randn(1, model.config.n_mels, 48)
    low = decoder_contour(rows_of(torch.full((48,), math.log(100.0))), "explicit")
    with torch.no_grad():
        torch.nn.init.normal_(model.decoder.pitch_in[0].weight)  # (a trained model's projections are not zero)
    a = model.convert(mel, mel, pitch=low)
    b = model.convert(mel, mel, pitch=low + torch.tensor([1.0, 0, 0])[:, None])
    assert a.shape == mel.shape and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="reads a pitch contour"):
        model.convert(mel, mel)
    plain = build_model(load_run_config("debug", ["train.train_manifest=x", "train.run_dir=y"])[1])
    with pytest.raises(ValueError, match="no pitch path"):
        plain.convert(mel, mel, pitch=low)


def test_training_with_the_pitch_path_lowers_the_loss(manifests, tmp_path):
    overrides = [f"train.train_manifest={manifests / 'train.jsonl'}", f"train.valid_manifest={manifests / 'valid.jsonl'}",
                 f"train.run_dir={tmp_path / 'run'}", "train.lr=0.002", "train.warmup_steps=5", "model.pitch_frontend.kind=yin"]
    features, model, train = load_run_config("debug", overrides)
    trainer = ModelTrainer(features, model, train, progress=False)
    batch = trainer.batches[0]
    assert batch.pitch is not None and batch.pitch.shape == (train.batch_size, 3, train.segment_frames)
    losses = [trainer.train_step(batch)["recon"] for _ in range(40)]
    assert losses[-1] < 0.6 * losses[0], losses[::10]
    assert math.isfinite(trainer.validate()["recon"])


def test_a_trained_model_grows_a_pitch_path_that_starts_at_zero(manifests, tmp_path, tiny_bundle):
    overrides = [f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={tmp_path / 'run'}",
                 f"train.init_from={tiny_bundle}", "model.pitch_frontend.kind=yin", "model.adversary=false"]
    features, model, train = load_run_config("debug", overrides)
    trainer = ModelTrainer(features, model, train, progress=False)
    from vconv.bundles import load_bundle

    before, _, _ = load_bundle(tiny_bundle)
    mel = torch.randn(1, model.n_mels, 40)
    contour = decoder_contour(rows_of(torch.full((40,), math.log(150.0))), "explicit")
    with torch.no_grad():
        grown = trainer.model.eval().convert(mel, mel, pitch=contour)
        old = before.float().eval().convert(mel, mel)
    assert torch.allclose(grown, old, atol=1e-5)


def test_pitch_controls_need_a_model_with_the_pitch_path(tmp_path):
    out = tmp_path / "out.wav"
    one_line_error(invoke("convert", "examples/source.wav", "-t", "examples/target.wav", "-o", out, "--pitch-shift", "30"),
                   "--pitch-shift must lie within")
    one_line_error(invoke("convert", "examples/source.wav", "-t", "examples/target.wav", "-o", out, "--pitch-register",
                          "alto"), "--pitch-register must be one of target, source")
    assert not out.exists()
    assert check_register_mode("source") == "source"


def test_the_target_register_is_measured_saved_and_used(tiny_pitch_bundle, voices, tmp_path):
    import vconv
    from vconv.inference.voice_file import VoiceSource, save_voice

    converter = vconv.load(str(tiny_pitch_bundle))
    target = converter.target_voice([str(voices / "high.wav")])
    assert target.register is not None and target.register.trusted
    assert abs(target.register.hz - 220.0) < 10
    path = save_voice(tmp_path / "high.voice", target, VoiceSource(converter.info.path.name, converter.info.digest, SR, 0, (), "float32"))
    assert converter.open_voice(path).register == target.register
    assert target.h1_h2 is not None and converter.open_voice(path).h1_h2 == target.h1_h2
    source = voiced_signal(2.0, f0=110.0, seed=3)
    contour = converter.source_pitch(source, target.register).contour
    kept = vconv.load(str(tiny_pitch_bundle), pitch_register="source").source_pitch(source, target.register).contour
    up = vconv.load(str(tiny_pitch_bundle), pitch_shift=7).source_pitch(source, target.register).contour
    assert abs(float((contour - kept)[0, 0].mean()) * LOG_F0_SCALE - math.log(2.0)) < 0.1  # an octave apart
    assert torch.allclose((up - contour)[0, 0] * LOG_F0_SCALE, torch.full_like(up[0, 0], 7 * SEMITONE), atol=1e-4)
    wav = converter.convert(str(voices / "low.wav"), [str(voices / "high.wav")])
    assert wav.shape == (2 * SR,) and np.isfinite(wav).all()


def test_a_voice_file_of_older_pitch_rules_converts_and_says_so(tiny_pitch_bundle, voices, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    import vconv
    from vconv.inference.batch import convert_paths
    from vconv.inference.voice_file import VoiceSource, save_voice, stale_register_note
    from vconv.models.contour import PITCH_RULES

    converter = vconv.load(str(tiny_pitch_bundle))
    path = save_voice(tmp_path / "high.voice", converter.target_voice([str(voices / "high.wav")]),
                      VoiceSource(converter.info.path.name, converter.info.digest, SR, 0, (), "float32"))
    assert converter.open_voice(path).register_rules == PITCH_RULES and stale_register_note(converter.open_voice(path), path) is None
    with safe_open(str(path), framework="pt") as fh:  # the same file as a vconv before the rules were recorded wrote it
        metadata = {k: v for k, v in (fh.metadata() or {}).items() if k != "pitch_rules"}
    old = tmp_path / "old.voice"
    save_file(load_file(str(path)), str(old), metadata=metadata)
    note = stale_register_note(converter.open_voice(old), old)
    assert note is not None and str(old) in note and "before they were recorded" in note and PITCH_RULES in note
    report = convert_paths(converter, voices / "low.wav", [old], tmp_path / "out.wav", progress=False)
    assert report.converted and note in report.notes  # it converts, with the register of its day, and says so


def test_the_stream_runs_the_pitch_path_and_matches_block_sizes(tiny_pitch_bundle, voices):
    import soundfile as sf

    import vconv

    converter = vconv.load(str(tiny_pitch_bundle))
    source, _ = sf.read(voices / "low.wav", dtype="float32")
    target = converter.target_voice([str(voices / "high.wav")])
    outputs = []
    for block in (1000, 4096):
        stream = converter.stream(target, recent_frontend="off", busy_block_ms=0)  # exact comparison: no timing-driven switch
        pieces = [stream.push(source[i:i + block]) for i in range(0, source.size, block)]
        outputs.append(np.concatenate([*pieces, stream.flush()]))
    assert outputs[0].shape == source.shape and np.isfinite(outputs[0]).all()
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-4)  # the running register does not depend on the pushes


def test_a_stream_s_learned_register_pools_its_voiced_frames():
    """Heard a block at a time, the running register is the pooled register of every frame heard so far (the
    window's not-yet-emitted frames counted, not kept); a known register starts it and weighs as at most its frames."""
    import torch

    from vconv.inference.stream_register import RunningRegister
    from vconv.models.contour import DEFAULT_SPREAD, voiced_register

    rng = np.random.default_rng(0)
    log_f0 = torch.tensor(np.log(180.0) + 0.1 * rng.standard_normal(60))

    def register_of(values):
        return voiced_register(torch.stack([values, torch.ones_like(values), torch.ones_like(values)]))

    learned = RunningRegister()
    for start in range(0, 60, 6):
        block = log_f0[start:start + 6]
        estimate, pooled = learned.estimate(log_f0[start:start + 9]), register_of(log_f0[:start + 9])
        assert estimate.frames == pooled.frames and estimate.mean == pytest.approx(pooled.mean)
        assert estimate.spread == pytest.approx(pooled.spread, rel=0.05 if pooled.trusted else 0)  # population vs sample sd
        learned.add(block)
    assert learned.sums[0] == 60
    assert RunningRegister().estimate(log_f0[:4]).spread == DEFAULT_SPREAD  # too few frames to measure a spread
    known = RunningRegister(register_of(log_f0 + 0.5), prior_frames=20)
    assert known.sums[0] == 20 and known.estimate(log_f0[:0]).mean == pytest.approx(float(log_f0.mean()) + 0.5)


def test_a_stream_given_its_speaker_s_voice_starts_in_its_register(tiny_pitch_bundle, voices, tmp_path):
    import soundfile as sf

    import vconv
    from vconv.inference.stream_register import register_of_sums
    from vconv.inference.streaming import SOURCE_PRIOR_SECONDS
    from vconv.inference.voice_file import VoiceSource, save_voice

    converter = vconv.load(str(tiny_pitch_bundle))
    known = converter.voice_register([str(voices / "low.wav")])
    assert known.trusted and abs(known.hz - 110.0) < 6
    path = save_voice(tmp_path / "me.voice", converter.target_voice([str(voices / "low.wav")]),
                      VoiceSource(converter.info.path.name, converter.info.digest, SR, 0, (), "float32"))
    assert converter.voice_register(str(path)) == known  # a voice file of the same recording: the same register
    target = converter.target_voice([str(voices / "high.wav")])
    learning = converter.stream(target, recent_frontend="off", busy_block_ms=0)
    given = converter.stream(target, recent_frontend="off", busy_block_ms=0, source_voice=[str(voices / "low.wav")])
    assert learning._register.sums[0] == 0
    start = register_of_sums(*given._register.sums)  # before any block: the known register, weighing as at most 2 s
    assert start.frames == min(known.frames, round(SOURCE_PRIOR_SECONDS * SR / HOP))
    assert abs(start.mean - known.mean) < 1e-9 and abs(start.spread - known.spread) < 1e-9
    source, _ = sf.read(voices / "low.wav", dtype="float32")
    outputs = [np.concatenate([*(s.push(source[i:i + 2048]) for i in range(0, source.size, 2048)), s.flush()])
               for s in (learning, given)]
    assert outputs[1].shape == source.shape and np.isfinite(outputs[1]).all()
    assert not np.allclose(outputs[0], outputs[1])  # the first blocks' melody is whitened on another register


def test_a_source_voice_without_voicing_or_for_a_model_without_pitch_is_a_one_line_error(tiny_pitch_bundle, tiny_bundle,
                                                                                         tmp_path):
    import soundfile as sf

    import vconv

    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.random.default_rng(0).normal(0, 1e-4, SR).astype(np.float32), SR)
    with pytest.raises(VconvError, match="too little voiced speech"):
        vconv.load(str(tiny_pitch_bundle)).voice_register(str(quiet))
    with pytest.raises(VconvError, match="no pitch path"):
        vconv.load(str(tiny_bundle)).voice_register(str(quiet))
    out = tmp_path / "out.wav"
    one_line_error(invoke("stream", "-t", "examples/target.wav", "-i", "examples/source.wav", "-o", out, "-m",
                          tiny_pitch_bundle, "--source-voice", quiet), "too little voiced speech")
    one_line_error(invoke("stream", "-t", "examples/target.wav", "-i", "examples/source.wav", "-o", out,
                          "--source-voice", tmp_path / "missing.wav"), "missing.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quiet.wav"]  # no output, no temporary file left
    with pytest.raises(VconvError, match="at least one recording"):
        vconv.load(str(tiny_pitch_bundle)).voice_register([])
    with pytest.raises(VconvError, match="no pitch path"):
        vconv.load(str(tiny_bundle)).stream(vconv.load(str(tiny_bundle)).target_voice(str(quiet)), source_voice=Register(5.0, 0.1, 100))


def test_cli_pitch_controls_on_a_pitch_model(tiny_pitch_bundle, voices, tmp_path):
    out = tmp_path / "up.wav"
    result = invoke("convert", voices / "low.wav", "-t", voices / "high.wav", "-o", out, "-m", tiny_pitch_bundle,
                    "--pitch-shift", "-3.5", "--pitch-register", "source")
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_the_removed_fourier_basis_reads_at_zero_and_is_refused_on(manifests, tmp_path, tiny_bundle):
    """``model.pitch_harmonics`` and ``train.grown_lr_scale`` left vconv (vconv.config.legacy): a config or bundle that
    names them at their off values (the shipped bundle's ``pitch_harmonics: 0``) reads; turning them on is refused."""
    base = [f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={tmp_path / 'run'}",
            "model.pitch_frontend.kind=yin"]
    _, model, train = load_run_config("debug", base + ["model.pitch_harmonics=0", "model.decoder.pitch_harmonics=0",
                                                       "train.grown_lr_scale=1.0"])
    assert "pitch_harmonics" not in model.decoder and "grown_lr_scale" not in train.to_dict()
    for override in ("model.pitch_harmonics=8", "model.decoder.pitch_harmonics=8", "train.grown_lr_scale=10"):
        with pytest.raises(VconvError, match=r"(pitch_harmonics|grown_lr_scale): this option left vconv.*commit 1d69df6"):
            load_run_config("debug", base + [override])
    trainer = ModelTrainer(*load_run_config("debug", base + [f"train.init_from={tiny_bundle}", "model.adversary=false"]),
                           progress=False)
    assert len(trainer.optimizer.param_groups) == 1 and trainer.model.decoder.pitch_in[0].weight.shape[1] == 3
    trainer.train_step(trainer.batches[0])


def test_harmonic_excitation_puts_the_asked_f0_into_a_spectrum_that_had_none():
    from vconv.audio.frontend import FrontEnd
    from vconv.config import FeatureConfig
    from vconv.vocoders.griffinlim import GriffinLim
    from vconv.vocoders.harmonics import impose_harmonics

    cfg = FeatureConfig()
    frontend = FrontEnd(cfg)
    white = np.random.default_rng(0).standard_normal(SR + 64)
    noise = torch.from_numpy(np.convolve(white, np.hanning(32), "valid")[:SR].astype(np.float32) * 0.02)  # speech-like tilt
    log_mel = frontend.log_mel(noise[None])  # [1, 80, F]: no pitch in it
    frames = log_mel.shape[-1]
    f0 = torch.full((1, frames), 180.0)
    voicing = torch.ones(1, frames)
    voicing[:, :4] = 0.0
    excited = impose_harmonics(log_mel, f0, voicing, frontend.logmel, math.log(cfg.log_floor))
    assert excited.shape == log_mel.shape
    # a frame marked unvoiced is left as it is; in the voiced ones the bands that span many harmonics (the upper
    # spectrum: the consonants, the formants above F1) keep the decoder's level, the resolved low bands are modulated
    assert torch.allclose(excited[..., :4], log_mel[..., :4], atol=1e-5)
    centres = frontend.logmel.band_centres
    upper, low = centres > 3000, centres < 1000
    assert (excited[:, upper, 4:] - log_mel[:, upper, 4:]).abs().mean() < 0.1
    assert (excited[:, low, 4:] - log_mel[:, low, 4:]).std() > 0.5
    wav = GriffinLim(cfg)(excited)[0]
    track = track_pitch(wav, SR, HOP)
    inner = slice(8, -8)
    assert track.voiced[inner].float().mean() > 0.8
    assert abs(float(track.f0[inner][track.voiced[inner]].median()) - 180.0) < 180.0 * 0.03
    assert not track_pitch(GriffinLim(cfg)(log_mel)[0], SR, HOP).voiced[inner].float().mean() > 0.2


def weak_fundamental_tone(f0: float, fundamental: float, seconds: float = 1.0) -> np.ndarray:
    """A harmonic tone whose first harmonic has ``2 * fundamental`` times the second's amplitude (the others fall
    as 1/k)."""
    t = np.arange(int(seconds * SR)) / SR
    amplitudes = [fundamental * 0.5] + [0.5 / k for k in range(2, 9)]
    return (0.3 * sum(a * np.sin(2 * np.pi * (k + 1) * f0 * t) for k, a in enumerate(amplitudes))).astype(np.float32)


def test_h1_h2_reads_how_much_weaker_the_fundamental_is():
    from vconv.audio.frontend import FrontEnd
    from vconv.config import FeatureConfig
    from vconv.vocoders.harmonics import h1_h2

    frontend = FrontEnd(FeatureConfig())
    centres = frontend.logmel.band_centres

    def measured(wav: np.ndarray) -> float | None:
        pitch = YinPitch().compute(wav, frontend)
        return h1_h2([frontend.log_mel(wav[None])[0]], [pitch], centres)

    weak, louder, strong = (measured(weak_fundamental_tone(120.0, a)) for a in (0.05, 1.0, 4.0))  # H1/H2 0.1, 2, 8
    assert weak is not None and louder is not None and strong is not None
    # monotone in the first harmonic's strength; the mel bands' overlap (a band at 120 Hz also hears 240) compresses it
    assert weak < -1.5 and weak < louder - 2.5 and strong > louder + 1.0
    assert measured(np.zeros(SR, dtype=np.float32)) is None  # no voicing: unknown, not 0


def test_the_excitation_keeps_a_target_s_weak_fundamental():
    from vconv.audio.frontend import FrontEnd
    from vconv.config import FeatureConfig
    from vconv.vocoders.harmonics import impose_harmonics

    cfg = FeatureConfig()
    frontend = FrontEnd(cfg)
    log_mel = frontend.log_mel(torch.from_numpy(weak_fundamental_tone(120.0, 0.05))[None])  # [1, 80, F]
    frames = log_mel.shape[-1]
    f0, voicing, floor = torch.full((1, frames), 120.0), torch.ones(1, frames), math.log(cfg.log_floor)
    low = frontend.logmel.band_centres < 1.5 * 120.0
    raised = impose_harmonics(log_mel, f0, voicing, frontend.logmel, floor)  # unknown: raised to the second's level
    kept = impose_harmonics(log_mel, f0, voicing, frontend.logmel, floor, h1_h2=-4.0)
    assert float((raised - kept)[:, low].mean()) > 2.0
    assert torch.equal(raised[:, ~low], kept[:, ~low])  # only the fundamental's bands differ
    assert torch.equal(impose_harmonics(log_mel, f0, voicing, frontend.logmel, floor, h1_h2=1.5), raised)  # never raised beyond


def test_the_target_s_h1_h2_reaches_every_conversion_and_survives_the_cache(tiny_pitch_bundle, voices, tmp_path, monkeypatch):
    import dataclasses

    import soundfile as sf

    import vconv
    import vconv.inference.pitch_stage as pitch_stage
    from vconv.inference.voice_file import VoiceCache, save_voice

    seen: list[float | None] = []
    real = pitch_stage.impose_harmonics
    monkeypatch.setattr(pitch_stage, "impose_harmonics", lambda *args, **kwargs: seen.append(args[5]) or real(*args, **kwargs))
    converter = vconv.load(str(tiny_pitch_bundle))
    target = dataclasses.replace(converter.target_voice([str(voices / "high.wav")]), h1_h2=-1.25)
    source, _ = sf.read(voices / "low.wav", dtype="float32")
    converter.convert_wav(source, target)  # one chunk
    converter.convert_wav(source, target, chunk_seconds=0.5, overlap_seconds=0.1)  # several
    stream = converter.stream(target, recent_frontend="off", busy_block_ms=0)
    stream.push(source)
    stream.flush()
    assert seen and set(seen) == {-1.25}

    # a voice cached before vconv measured the H1-H2 gets it from its references, without a fit
    fitting = vconv.load(str(tiny_pitch_bundle), fit_steps=2)
    fitting.voice_cache = VoiceCache(tmp_path / "cache")
    fresh, source_of = fitting.prepared_target([str(voices / "high.wav")])
    fitting.voice_cache.put(source_of, dataclasses.replace(fresh, h1_h2=None))
    again, _ = fitting.prepared_target([str(voices / "high.wav")])
    assert again.origin == "cache" and again.h1_h2 == fresh.h1_h2 is not None

    # a voice file whose H1-H2 is not one finite number is corrupt, in one line
    bad = save_voice(tmp_path / "bad.voice", dataclasses.replace(fresh, h1_h2=float("nan")), source_of)
    with pytest.raises(VconvError, match="corrupt voice file"):
        fitting.open_voice(bad)


def test_a_pseudo_voice_mixes_the_h1_h2_of_its_voices_or_leaves_it_unknown():
    from vconv.corpus.voices import pseudo_voice
    from vconv.inference.target import TargetVoice
    from vconv.inference.target_match import SpectrumStats

    def voice(i: int, h1_h2: float | None) -> TargetVoice:
        voiced = torch.tensor([[True], [True], [i % 2 == 0], [h1_h2 is not None]])  # a noise floor in bands 2 or 3
        return TargetVoice(embedding=torch.randn(1, 8, generator=torch.Generator().manual_seed(i)),
                           spectrum=SpectrumStats(torch.zeros(4, 1), torch.ones(4, 1), 100, voiced),
                           register=Register(5.0 + 0.1 * i, 0.2, 100), h1_h2=h1_h2)

    own = torch.ones(1, 8)
    known = [voice(i, -0.5 * i) for i in range(6)]
    mixed, chosen = pseudo_voice(None, known, own, seed=0, speaker="s1")
    assert mixed.h1_h2 is not None and min(-0.5 * i for i in chosen) <= mixed.h1_h2 <= max(-0.5 * i for i in chosen)
    assert len(set(chosen)) == 3 and len({-0.5 * i for i in chosen}) > 1
    # a band is the mix's voice only where it is every mixed voice's
    assert mixed.spectrum.voiced_bands[:, 0].tolist() == [True, True, all(i % 2 == 0 for i in chosen), True]
    partly = [voice(i, -1.0 if i == 0 else None) for i in range(6)]  # three mixed, at most one of them known
    assert pseudo_voice(None, partly, own, seed=0, speaker="s1")[0].h1_h2 is None  # unknown unless every voice is known
    from dataclasses import replace

    # the same draw (it reads the embeddings) with one mixed voice made before vconv told its bands apart: unknown
    unmarked = [replace(v, spectrum=replace(v.spectrum, voiced_bands=None)) if i == chosen[0] else v for i, v in enumerate(known)]
    assert pseudo_voice(None, unmarked, own, seed=0, speaker="s1")[0].spectrum.voiced_bands is None
