"""The SwiftF0 tracker: our port against the package's own ONNX run, the weight file's round trip, and the
pitch part's behaviour (a tone of known F0, silence, bad settings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import voiced_signal
from tests.test_pitch import harmonic_tone
from vconv.audio.onnx_weights import read_onnx_initializers
from vconv.audio.pretrained import SWIFT_FILE, load_swift_pitch, packaged_swift_onnx, save_swift_pitch, swift_pitch_from_package
from vconv.audio.swift_pitch import HOP, SAMPLE_RATE, SILENCE_PEAK
from vconv.errors import VconvError
from vconv.fileio import sha256_of
from vconv.frontends.pitch import SwiftPitch

SR = SAMPLE_RATE


@pytest.fixture(scope="module")
def net():
    return swift_pitch_from_package()


@pytest.fixture(scope="module")
def part(net):
    return SwiftPitch().attach(net)


def test_the_port_matches_the_package_run_by_onnxruntime(net):
    """Same audio through the package's ONNX model and through ours: frames away from the end (the ONNX graph
    stops one frame early and pads the time convolutions there) agree to float precision."""
    onnxruntime = pytest.importorskip("onnxruntime")
    wav = voiced_signal(2.0, f0=140.0) + 0.01 * np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32)
    session = onnxruntime.InferenceSession(str(packaged_swift_onnx()), providers=["CPUExecutionProvider"])
    limits = {"fmin": np.asarray(50.0, np.float32), "fmax": np.asarray(550.0, np.float32)}
    pitch, confidence = session.run(["pitch", "confidence"], {"audio": wav[None], **limits})
    with torch.no_grad():
        f0, ours = net(torch.from_numpy(wav)[None], fmin=50.0, fmax=550.0)
    assert f0.shape == ours.shape == (1, 1 + len(wav) // HOP) and pitch.shape == (1, len(wav) // HOP)
    inner = slice(0, pitch.shape[1] - 8)
    assert np.abs(f0[0, inner].numpy() / pitch[0, inner] - 1).max() < 1e-5
    assert np.abs(ours[0, inner].numpy() - confidence[0, inner]).max() < 1e-4
    assert (confidence[0, inner] > 0.5).mean() > 0.7  # a comparison on voiced frames, not on nothing


def test_the_onnx_reader_finds_every_weight_of_the_pinned_file():
    weights = read_onnx_initializers(packaged_swift_onnx())
    assert weights["v353"].shape == (12, 3, 3, 3) and weights["v353"].dtype == np.float32
    assert weights["v455"].dtype == np.float64 and weights["v123"].dtype == np.int32
    assert len(weights) == 108


def test_an_unreadable_onnx_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x3a\xff\xff")  # a graph field whose length runs past the end
    with pytest.raises(VconvError, match="not a readable ONNX model"):
        read_onnx_initializers(bad)


@pytest.mark.parametrize("f0", [80.0, 140.0, 220.0, 410.0])
def test_a_tone_of_known_f0_comes_back_within_one_percent(part, f0):
    f0s, voiced, periodicity = part.track(torch.from_numpy(harmonic_tone(f0)), SR, HOP)
    inner = slice(8, -8)
    assert voiced[inner].all() and (periodicity[inner] > 0.5).all()
    assert torch.allclose(f0s[inner], torch.tensor(f0), rtol=0.01)
    assert f0s.shape[0] == 1 + SR // HOP


def test_silence_is_unvoiced_and_quiet_hops_are_silence(part):
    _, voiced, _ = part.track(torch.zeros(SR), SR, HOP)
    assert not voiced.any()
    quiet = torch.from_numpy(harmonic_tone(140.0)) * (0.5 * SILENCE_PEAK / 1.5)  # peaks below the silence level
    assert not part.track(quiet, SR, HOP)[1].any()


def test_the_part_gives_the_rows_the_decoder_reads(part):
    class Features:  # what compute reads of the front-end: the mel settings
        class cfg:
            sample_rate, hop_length = SR, HOP

    rows = part.compute(voiced_signal(1.0, f0=140.0), Features)
    assert rows.shape == (3, 1 + SR // HOP)
    assert torch.isfinite(rows).all() and set(rows[1].unique().tolist()) <= {0.0, 1.0}
    assert abs(float(rows[0][rows[1] > 0].exp().median()) - 140.0) < 10.0


def test_the_weight_file_round_trips_and_an_altered_one_is_refused(net, tmp_path):
    save_swift_pitch(net, tmp_path / SWIFT_FILE)
    config = {"sha256": {SWIFT_FILE: sha256_of(tmp_path / SWIFT_FILE)}}
    loaded = load_swift_pitch(tmp_path, config)
    wav = torch.from_numpy(voiced_signal(1.0, f0=200.0))[None]
    with torch.no_grad():
        assert torch.equal(loaded(wav)[0], net(wav)[0])
    data = bytearray((tmp_path / SWIFT_FILE).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / SWIFT_FILE).write_bytes(bytes(data))
    with pytest.raises(VconvError):
        load_swift_pitch(tmp_path, config)


@pytest.mark.parametrize("settings", [{"fmin": 20.0}, {"fmin": 300.0, "fmax": 200.0}, {"fmax": 5000.0}, {"voicing": 1.5},
                                      {"fmin": 200.0, "fmax": 201.0}])
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValueError):
        SwiftPitch(**settings)


def test_other_rates_and_a_part_without_weights_are_one_line_errors(part, tmp_path):
    with pytest.raises(VconvError, match="16000 Hz"):
        part.track(torch.zeros(SR), 22050, 256)
    with pytest.raises(VconvError, match="no weights"):
        SwiftPitch().track(torch.zeros(SR), SR, HOP)
    with pytest.raises(VconvError, match="vconv frontend prepare"):  # a front-end folder made before the tracker
        SwiftPitch().load_weights(tmp_path, {"sha256": {"whisper_encoder.safetensors": "0" * 64}})


def test_the_tracker_stays_on_the_cpu_when_the_front_end_moves(part):
    from vconv.audio.frontend import FeatureStats, FrontEnd
    from vconv.config import FeatureConfig

    features = FeatureConfig()
    frontend = FrontEnd(features, FeatureStats(torch.zeros(features.n_mels), torch.ones(features.n_mels), 1), pitch=part)
    frontend.to(torch.float64)  # any move: the tracker is not among the front-end's modules
    assert part.net is not None and part.net.class_hz.dtype == torch.float32
    assert not any(name.startswith("pitch.") for name in frontend.state_dict())


@pytest.fixture(scope="module")
def frontends(tmp_path_factory):
    from vconv.audio.pretrained import prepare_frontends

    return prepare_frontends(tmp_path_factory.mktemp("frontends"))


def test_a_yin_model_fine_tuned_onto_swift_carries_the_tracker_in_its_bundle(manifests, tmp_path, tiny_pitch_bundle,
                                                                              frontends, voices):
    """``train.init_from`` a bundle whose pitch path reads YIN, with ``model.pitch_frontend: {kind: swift}``: the run
    starts from the bundle's weights, trains on the new tracker's rows, and its bundle carries the tracker's weights,
    so a conversion with it needs nothing else."""
    import vconv
    from vconv.bundles import load_bundle
    from vconv.config import load_run_config
    from vconv.training.vc_trainer import ModelTrainer

    overrides = [f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={tmp_path / 'run'}",
                 f"train.init_from={tiny_pitch_bundle}", f"train.frontends_dir={frontends}",
                 "model.pitch_frontend.kind=swift", "model.adversary=false"]
    features, model, train = load_run_config("debug", overrides)
    trainer = ModelTrainer(features, model, train, progress=False)
    before, _, _ = load_bundle(tiny_pitch_bundle)
    weight = "decoder.pitch_in.0.weight"
    assert torch.allclose(trainer.model.state_dict()[weight], before.state_dict()[weight].float())
    assert trainer.pitch_part is not None and trainer.pitch_part.feature_key == "pitch_swift"
    assert trainer.batches[0].pitch is not None
    assert np.isfinite(trainer.train_step(trainer.batches[0])["recon"])
    trainer.export()
    bundle = tmp_path / "run" / "model"
    assert (bundle / SWIFT_FILE).is_file()
    _, frontend, _ = load_bundle(bundle)
    assert isinstance(frontend.pitch, SwiftPitch) and frontend.pitch.net is not None
    converter = vconv.load(bundle)
    out = converter.convert(voices / "low.wav", voices / "high.wav")
    assert out.size > 0 and np.isfinite(out).all()
    (bundle / SWIFT_FILE).unlink()
    with pytest.raises(VconvError, match=SWIFT_FILE):
        vconv.load(bundle)
