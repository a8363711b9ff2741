"""The causal twin for streaming (vconv.models.causal, vconv.training.stream_student, vconv.bundles.stream_twin)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vconv.errors import VconvError
from vconv.models.causal import CausalLayout, lookahead_of, make_causal
from vconv.models.layers import causal_stats

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LAYOUT = CausalLayout(lookahead_frames=3, norm_frames=24)


def _config():
    from vconv.config import load_run_config

    features, model_cfg, _ = load_run_config("debug", ["train.train_manifest=x", "train.run_dir=y"])
    return features, dataclasses.replace(model_cfg, downsample=[1, 1, 1])  # the twin needs frame-exact layers


def test_causal_stats_are_those_of_the_last_frames():
    x = torch.randn(2, 3, 40, dtype=torch.float64)
    mean, var = causal_stats(x, 7)
    for t in (0, 3, 6, 7, 25, 39):
        window = x[..., max(0, t - 6) : t + 1]
        assert torch.allclose(mean[..., t], window.mean(-1)) and torch.allclose(var[..., t], window.var(-1, unbiased=False))


@pytest.mark.parametrize("layout", [
    LAYOUT,
    CausalLayout(lookahead_frames=3, norm_frames=24, norm="frame", lookahead_first="decoder"),
], ids=["window-norms-content-first", "frame-norms-decoder-first"])
def test_the_twin_reads_no_further_ahead_than_its_lookahead(layout):
    from vconv.models import build_model

    _, cfg = _config()
    torch.manual_seed(0)
    twin = make_causal(build_model(cfg), layout).eval()
    assert lookahead_of(twin) == layout.lookahead_frames
    mel, other = torch.randn(1, cfg.n_mels, 80), torch.randn(1, cfg.n_mels, 80)
    changed = torch.cat([mel[..., :50], other[..., 50:]], -1)  # the same up to frame 49, different after
    e = torch.randn(1, cfg.speaker_dim)
    a, b = twin.convert(mel, embedding=e), twin.convert(changed, embedding=e)
    last_same = 49 - layout.lookahead_frames
    assert torch.equal(a[..., : last_same + 1], b[..., : last_same + 1])
    assert not torch.allclose(a[..., last_same + 1], b[..., last_same + 1])  # the look-ahead is used


def test_a_model_config_can_ask_for_a_causal_network_trained_as_such(tmp_path):
    """``model.causal`` builds the network causal from the start; its bundle saves and loads with the layout."""
    from vconv.audio.frontend import FeatureStats, FrontEnd
    from vconv.bundles import load_bundle, save_bundle
    from vconv.config import ModelConfig
    from vconv.models import build_model

    features, cfg = _config()
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "causal": LAYOUT.to_dict()})
    torch.manual_seed(0)
    model = build_model(cfg)
    assert lookahead_of(model) == LAYOUT.lookahead_frames and model.causal_layout == LAYOUT
    stats = FeatureStats(torch.zeros(cfg.n_mels), torch.ones(cfg.n_mels), 1)
    loaded, _, info = load_bundle(save_bundle(tmp_path / "causal", model, FrontEnd(features, stats)))
    assert info.model_config.causal == LAYOUT.to_dict() and lookahead_of(loaded) == LAYOUT.lookahead_frames
    mel, e = torch.randn(1, cfg.n_mels, 60), torch.randn(1, cfg.speaker_dim)
    whole, prefix = loaded.convert(mel, embedding=e), loaded.convert(mel[..., :40], embedding=e)
    assert torch.equal(whole[..., : 40 - LAYOUT.lookahead_frames], prefix[..., : 40 - LAYOUT.lookahead_frames])
    assert ModelConfig().causal == {}  # offline by default: every existing bundle loads as before


@pytest.mark.parametrize("section, message", [
    ({"lookahead_frames": 3}, "needs integer lookahead_frames and norm_frames"),
    ({"lookahead_frames": "x", "norm_frames": 4}, "needs integer"),
    ({"lookahead_frames": 3, "norm_frames": 0}, "out of range"),
    ({"lookahead_frames": 3, "norm_frames": 9, "frames": 1}, "takes lookahead_frames, norm_frames, norm and"),
    ({"lookahead_frames": 3, "norm_frames": 9, "norm": "batch"}, "norm is one of window, frame"),
    ({"lookahead_frames": 3, "norm_frames": 9, "lookahead_first": "vocoder"}, "lookahead_first one of content, decoder"),
])
def test_a_bad_causal_section_is_a_one_line_error(section, message):
    from vconv.config import ModelConfig

    with pytest.raises(VconvError, match=message) as info:
        ModelConfig.from_dict({"causal": section})
    assert "model.causal" in str(info.value) and "\n" not in str(info.value)


def test_the_look_ahead_goes_to_the_decoder_first_when_asked():
    from vconv.models import build_model
    from vconv.models.causal import _content_convs, _decoder_convs

    _, cfg = _config()
    twin = make_causal(build_model(cfg), CausalLayout(lookahead_frames=3, norm_frames=24, lookahead_first="decoder"))
    assert [c.pad_right for c in _decoder_convs(twin)][:2] == [2, 1] and sum(c.pad_right for c in _content_convs(twin)) == 0


def test_frame_norms_read_each_frame_alone():
    """norm="frame": every content norm and AdaIN normalises each frame over its channels, so a frame's output
    does not move when any other frame does (a stream needs no statistics carried between blocks)."""
    from vconv.models.causal import FrameNorm
    from vconv.models.layers import AdaIN

    x = torch.randn(2, 8, 30)
    y = FrameNorm()(x)
    assert torch.allclose(y.mean(1), torch.zeros(2, 30), atol=1e-5) and torch.allclose(y.std(1, unbiased=False), torch.ones(2, 30), atol=1e-3)
    ada = AdaIN(8, 4)
    ada.causal_frames = 0
    e = torch.randn(2, 4)
    changed = x.clone()
    changed[..., 10:] = torch.randn(2, 8, 20)
    assert torch.equal(ada(x, e)[..., :10], ada(changed, e)[..., :10])


def test_utterance_norms_keep_the_offline_statistics_and_only_the_convolutions_turn_causal():
    """norm="utterance": the convolutions read at most the look-ahead, the norms stay whole-input instance norms (so
    a frame far in the future still moves every output frame, through the statistics alone)."""
    from torch import nn

    from vconv.models import build_model
    from vconv.models.layers import AdaIN

    _, cfg = _config()
    torch.manual_seed(0)
    layout = CausalLayout(lookahead_frames=3, norm_frames=24, norm="utterance", lookahead_first="decoder")
    net = make_causal(build_model(cfg), layout).eval()
    assert lookahead_of(net) == 3 and net.causal_layout == layout
    assert all(isinstance(b.norm, nn.InstanceNorm1d) for b in net.content_encoder.blocks)
    assert all(m.causal_frames is None for m in net.decoder.modules() if isinstance(m, AdaIN))
    mel = torch.randn(1, cfg.n_mels, 80)
    e = torch.randn(1, cfg.speaker_dim)
    louder_end = mel.clone()
    louder_end[..., 70:] += 3.0  # 20+ frames past the look-ahead of frame 40
    a, b = net.convert(mel, embedding=e), net.convert(louder_end, embedding=e)
    assert not torch.allclose(a[..., :40], b[..., :40])  # the statistics span the whole input


def test_a_model_that_downsamples_has_no_twin():
    from vconv.config import load_run_config
    from vconv.models import build_model

    _, cfg, _ = load_run_config("debug", ["train.train_manifest=x", "train.run_dir=y"])
    with pytest.raises(ValueError, match="without down-sampling"):
        make_causal(build_model(cfg), LAYOUT)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, corpus_dir):
    """A debug-size bundle, its fixture-corpus features, and a twin distilled from it for 40 steps."""
    from vconv.audio.frontend import FeatureStats, FrontEnd
    from vconv.audio.io import load
    from vconv.bundles import save_bundle
    from vconv.data.feature_files import save_features
    from vconv.data.prepare import prepare_corpus
    from vconv.models import build_model
    from vconv.training.stream_student import StudentSettings, distill

    root = tmp_path_factory.mktemp("twin")
    features, cfg = _config()
    torch.manual_seed(0)
    stats = FeatureStats(torch.full((features.n_mels,), -4.0), torch.full((features.n_mels,), 2.0), 1)
    frontend = FrontEnd(features, stats)
    bundle = save_bundle(root / "bundle", build_model(cfg), frontend, dtype=torch.float16)
    prepare_corpus(corpus_dir, root / "data", num_valid_speakers=1, seed=0)
    from vconv.data.manifest import read_manifest

    for utt in read_manifest(root / "data" / "all.jsonl"):
        wav, _ = load(utt.path, features.sample_rate)
        save_features(root / "features" / f"{utt.id}.safetensors", frontend.log_mel(wav), features)
    log: list[str] = []
    settings = StudentSettings(steps=40, batch=4, frames=48, lr=1e-3, valid_every=20, layout=LAYOUT)
    weights = distill(bundle, root / "features", root / "data" / "train.jsonl", root / "data" / "valid.jsonl",
                      root / "run", settings, log=log.append)
    return bundle, weights, log


def test_distillation_brings_the_twin_closer_to_the_teacher(distilled):
    _, weights, log = distilled
    valid = [float(m) for line in log for m in re.findall(r"valid L1 ([0-9.]+)", line)]
    assert len(valid) == 2 and valid[1] < valid[0], log
    # the student also learns the teacher's codes (a cross-entropy); validation reports how many it finds itself
    accuracy = [float(m) for line in log for m in re.findall(r"code accuracy ([0-9.]+)", line)]
    assert len(accuracy) == 2 and all(0.0 <= a <= 1.0 for a in accuracy), log
    assert weights.name == "stream_model.safetensors" and weights.is_file()


def test_an_attached_twin_is_what_the_stream_runs(distilled, tmp_path):
    import shutil

    import vconv
    from vconv.bundles.stream_twin import attach_stream_twin

    bundle, weights, _ = distilled
    plain = vconv.load(bundle)
    with pytest.raises(VconvError, match="no causal twin"):
        plain.stream([EXAMPLES / "target.wav"], twin=True)
    copy = shutil.copytree(bundle, tmp_path / "with-twin")
    attach_stream_twin(copy, weights)
    vc = vconv.load(copy)
    stream = vc.stream([EXAMPLES / "target.wav"])
    assert stream.model is vc.stream_twin() and lookahead_of(stream.model) == LAYOUT.lookahead_frames
    assert vc.stream([EXAMPLES / "target.wav"], twin=False).model is vc.model
    wav = vc.prepare_audio(EXAMPLES / "source.wav", None)
    out = np.concatenate([stream.push(wav), stream.flush()])
    assert out.size == wav.size and np.isfinite(out).all()
    with pytest.raises(VconvError, match="causal twin reads 48 ms ahead"):
        vc.stream([EXAMPLES / "target.wav"], lookahead_ms=16)
    (copy / "stream_model.safetensors").write_bytes(b"tampered")
    with pytest.raises(VconvError, match="sha256"):
        vconv.load(copy).stream([EXAMPLES / "target.wav"])


def test_a_network_trained_causal_apart_streams_with_its_own_speaker_space(distilled, tmp_path):
    """A bundle trained causal from the start (model.causal) attaches from its folder; the stream then embeds the
    target with that network's own speaker encoder, not the bundle model's."""
    import shutil

    import vconv
    from vconv.audio.frontend import FeatureStats, FrontEnd
    from vconv.bundles import save_bundle
    from vconv.bundles.stream_twin import attach_stream_twin
    from vconv.config import ModelConfig
    from vconv.models import build_model

    bundle, _, _ = distilled
    features, cfg = _config()
    layout = CausalLayout(lookahead_frames=3, norm_frames=24, norm="frame", lookahead_first="decoder")
    torch.manual_seed(1)  # other weights than the bundle's model, speaker encoder included
    apart = build_model(ModelConfig.from_dict({**cfg.to_dict(), "causal": layout.to_dict(), "adversary": True}))
    stats = FeatureStats(torch.full((features.n_mels,), -4.0), torch.full((features.n_mels,), 2.0), 1)
    apart_dir = save_bundle(tmp_path / "apart", apart, FrontEnd(features, stats), training_parts=True)
    copy = shutil.copytree(bundle, tmp_path / "with-apart")
    with pytest.raises(VconvError, match="not a causal network"):
        attach_stream_twin(copy, bundle)
    attach_stream_twin(copy, apart_dir)
    vc = vconv.load(copy)
    stream = vc.stream([EXAMPLES / "target.wav"], lookahead_ms=48)
    assert stream.model.causal_layout == layout and lookahead_of(stream.model) == 3
    target = vc.target_voice([EXAMPLES / "target.wav"])
    own = apart.eval().embed_speaker(list(target.speaker_inputs))
    torch.testing.assert_close(stream.embedding, own, atol=2e-2, rtol=2e-2)  # fp16 weights in the bundle
    assert not torch.allclose(stream.embedding, target.embedding, atol=1e-2)  # not the bundle model's space
    wav = vc.prepare_audio(EXAMPLES / "source.wav", None)
    out = np.concatenate([stream.push(wav), stream.flush()])
    assert out.size == wav.size and np.isfinite(out).all()
