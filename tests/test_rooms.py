"""Simulated rooms (vconv.audio.rooms): their measured decay, noise and alignment; the room tensors of `vconv extract`;
training that reads them while rebuilding the clean mel; `vconv evaluate --room`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import invoke, voiced_signal
from vconv.audio.rooms import Room, draw_room, impulse_response, in_room, parse_room
from vconv.config import TrainConfig
from vconv.errors import VconvError

SR = 16000
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _schroeder_rt60(rir: np.ndarray) -> float:
    """RT60 from the -5 to -35 dB span of the energy decay curve (T30, doubled)."""
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    curve = 10 * np.log10(energy / energy[0])
    return 2 * (np.argmax(curve < -35) - np.argmax(curve < -5)) / SR


@pytest.mark.parametrize("rt60", [0.2, 0.45, 0.8])
def test_the_impulse_response_decays_in_its_rt60_and_keeps_the_direct_path_first(rt60):
    rir = impulse_response(Room(rt60, 20.0, seed=3), SR)
    assert rir[0] == pytest.approx(1.0) and np.argmax(np.abs(rir)) == 0
    assert _schroeder_rt60(rir) == pytest.approx(rt60, rel=0.25)


def test_a_room_is_the_same_for_the_same_seed_and_key_and_adds_noise_at_its_snr():
    wav, _ = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")
    room = draw_room(7, "spk/utt1")
    assert room == draw_room(7, "spk/utt1") and room != draw_room(7, "spk/utt2") and room != draw_room(8, "spk/utt1")
    assert 0.2 <= room.rt60 <= 0.8 and 10 <= room.snr_db <= 30
    heard = in_room(wav, SR, room)
    np.testing.assert_array_equal(heard, in_room(wav, SR, room))
    assert heard.shape == wav.shape and heard.dtype == np.float32 and np.abs(heard).max() <= 0.99
    dry = in_room(wav, SR, Room(0.3, 80.0, seed=1))  # reverberant, (almost) no noise: the noise is the difference
    noisy = in_room(wav, SR, Room(0.3, 20.0, seed=1))
    frames = np.sort(np.mean(wav[: wav.size // 320 * 320].reshape(-1, 320) ** 2, axis=1))  # the clean speech's 20 ms frames
    snr = 10 * np.log10(np.mean(frames[frames.size // 2 :]) / np.mean((noisy - dry) ** 2))  # its louder half: the speech
    assert snr == pytest.approx(20.0, abs=1.5)
    lag = np.argmax(np.correlate(dry[:8000], wav[:8000], "full")) - 7999
    assert abs(lag) <= 1  # aligned with the clean recording (a hop is 256 samples): frame for frame


def test_room_settings_are_checked_in_one_line():
    assert parse_room("0.45,20") == ((0.45, 0.45), (20.0, 20.0))
    assert parse_room("mixed") == ((0.2, 0.8), (10.0, 30.0))
    for bad, reason in (("loud", "expected RT60,SNR"), ("9,20", "rt60"), ("0.4,200", "snr")):
        with pytest.raises(VconvError, match=reason):
            parse_room(bad)
    paths = {"train_manifest": "t.jsonl", "run_dir": "r"}
    assert TrainConfig(**paths).rooms() is None
    assert TrainConfig(**paths, room_probability=0.5, room_seed=3).rooms() == (3, (0.2, 0.8), (10.0, 30.0))
    with pytest.raises(VconvError, match=r"train.room_rt60 must be \[low, high\] within"):
        TrainConfig(**paths, room_rt60=[0.8, 0.2])


def test_extract_adds_each_tensor_in_the_room_and_training_reads_it_against_the_clean_target(manifests, tmp_path):
    from vconv.config import load_run_config
    from vconv.data.feature_files import load_feature_tensors
    from vconv.data.manifest import feature_path, read_manifest
    from vconv.training.vc_trainer import ModelTrainer

    conf = tmp_path / "rooms.yaml"
    conf.write_text("base: debug\nmodel:\n  pitch_frontend: {kind: yin}\ntrain:\n  room_probability: 1.0\n  room_seed: 2\n")
    feats = tmp_path / "feats"
    assert invoke("extract", str(manifests / "all.jsonl"), "-o", str(feats), "-c", str(conf), "--no-progress").exit_code == 0
    utt = read_manifest(manifests / "all.jsonl")[0]
    tensors = load_feature_tensors(feature_path(feats, utt), None, ("mel", "mel_room", "pitch_yin", "pitch_yin_room"))
    assert tensors["mel_room"].shape == tensors["mel"].shape and not torch.equal(tensors["mel_room"], tensors["mel"])
    overrides = [f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={tmp_path / 'run'}",
                 f"train.features_dir={feats}", "train.steps=2", "train.perturb_content=false"]
    features, model, train = load_run_config(str(conf), overrides)
    batches = ModelTrainer(features, model, train, progress=False).batches
    clean = ModelTrainer(*load_run_config(str(conf), [*overrides, "train.room_probability=0",
                                                       f"train.run_dir={tmp_path / 'clean'}"]), progress=False).batches
    roomed, plain = batches[0], clean[0]
    # the first item draws its utterance and window before the room's draw: the same clean target in both runs
    torch.testing.assert_close(roomed.mel[0], plain.mel[0])
    torch.testing.assert_close(plain.source, plain.mel)  # without rooms the (unperturbed) content path reads the target
    assert not torch.allclose(roomed.source[0], roomed.mel[0], atol=0.1)  # with them, the same frames in the room
    assert not torch.allclose(roomed.pitch[0], plain.pitch[0])


def test_evaluate_room_needs_a_manifest_and_a_known_room(tmp_path):
    result = invoke("evaluate", "--protocol", str(tmp_path / "p.json"), "-o", str(tmp_path / "out"), "--room", "0.45,20")
    assert result.exit_code == 1 and "--room converts the held-out pairs in a room: it needs --manifest" in result.output
    result = invoke("evaluate", "--manifest", str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "out"), "--room", "kitchen")
    assert result.exit_code == 1 and "--room 'kitchen'" in result.output


def test_a_conversion_in_a_room_differs_from_the_clean_one_and_is_deterministic(tiny_bundle, tmp_path):
    from vconv.evaluation.model_eval import _Conversions
    from vconv.inference.converter import load

    sf.write(tmp_path / "src.wav", voiced_signal(1.0, f0=150.0), SR)
    sf.write(tmp_path / "ref.wav", voiced_signal(1.0, f0=220.0), SR)
    converter = load(tiny_bundle, vocoder="griffinlim")
    clean = _Conversions(converter, "meanstd")
    room = _Conversions(converter, "meanstd", room="0.45,20", seed=1)
    a, b = room.heard(str(tmp_path / "src.wav"), "source"), room.heard(str(tmp_path / "src.wav"), "source")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, clean.heard(str(tmp_path / "src.wav"), "source"))
    assert not np.allclose(room.convert(str(tmp_path / "src.wav"), [str(tmp_path / "ref.wav")])[0],
                           clean.convert(str(tmp_path / "src.wav"), [str(tmp_path / "ref.wav")])[0])


def test_info_estimates_the_snr_and_warns_of_a_noisy_recording(tmp_path):
    from vconv.audio.rooms import estimate_snr

    wav, _ = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")
    estimates = [estimate_snr(in_room(wav, SR, Room(0.45, snr, seed=1)), SR) for snr in (30.0, 20.0, 8.0)]
    assert estimates[0] > estimates[1] > estimates[2]  # a blind estimate: ordered, not exact
    sf.write(tmp_path / "noisy.wav", in_room(wav, SR, Room(0.45, 8.0, seed=1)), SR)
    result = invoke("info", str(EXAMPLES / "source.wav"), str(tmp_path / "noisy.wav"))
    assert result.exit_code == 0 and "SNR about" in result.output
    assert "noisy.wav: noisy (SNR about" in result.output and "source.wav: noisy" not in result.output
    # a quiet room that reverberates: reverberant, not noisy; the example as recorded is neither
    sf.write(tmp_path / "hall.wav", in_room(wav, SR, Room(0.8, 40.0, seed=1)), SR)
    result = invoke("info", str(EXAMPLES / "source.wav"), str(tmp_path / "hall.wav"))
    assert result.exit_code == 0 and "late reverberation about" in result.output
    assert "hall.wav: reverberant (late reverberation about" in result.output and "--enhance" in result.output
    assert "source.wav: reverberant" not in result.output and "hall.wav: noisy" not in result.output
