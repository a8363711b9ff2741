"""The conversion network over a stream's windows (vconv.inference.stream_network): only the last frames recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_model_config
from vconv.inference.stream_network import WindowNetwork, supports
from vconv.models import build_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _model(**overrides):
    torch.manual_seed(0)
    config = tiny_model_config(content_encoder={"downsample": [1, 1]}, pitch_frontend={"kind": "yin"}, **overrides)
    model = build_model(config).eval()
    with torch.no_grad():  # a contour that matters: the projections start at zero
        for projection in model.decoder.pitch_in:
            projection.weight.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def signal():
    """A slowly changing content input ``[1, 16, 300]`` and contour ``[1, 3, 300]`` (the windows slide over them)."""
    rng = np.random.default_rng(0)
    steps = torch.tensor(rng.normal(size=(1, 16, 300)), dtype=torch.float32)
    content = torch.nn.functional.avg_pool1d(steps, 9, 1, 4, count_include_pad=False) * 3  # neighbours alike, as speech
    contour = torch.tensor(rng.normal(size=(1, 3, 300)), dtype=torch.float32)
    return content, contour


def _embedding(model):
    return model.embed_speaker(torch.randn(1, 16, 40, generator=torch.Generator().manual_seed(1)))


def test_a_window_converted_whole_is_the_models_conversion(model, signal):
    content, contour = signal
    embedding = _embedding(model)
    got = WindowNetwork(model, embedding).decode(content[..., :120], contour[..., :120], first=0, fresh=0)
    want = model.convert(content[..., :120], embedding=embedding, pitch=contour[..., :120])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_the_same_window_again_keeps_its_values_and_gives_the_same_mel(model, signal):
    content, contour = signal
    network = WindowNetwork(model, _embedding(model))
    whole = network.decode(content[..., :120], contour[..., :120], first=0, fresh=0)
    again = network.decode(content[..., :120], contour[..., :120], first=0, fresh=30)
    assert network.kept == 90  # the kept frames' values were computed with these very statistics
    torch.testing.assert_close(again, whole, atol=1e-5, rtol=1e-5)


def test_a_sliding_window_keeps_all_but_its_last_frames_and_stays_near_the_whole_pass(model, signal):
    content, contour = signal
    embedding = _embedding(model)
    network = WindowNetwork(model, embedding)
    kept_errors, short_errors = [], []
    for first in range(0, 180, 6):  # 120-frame windows moving by 6 frames, as 96 ms blocks do
        window = content[..., first : first + 120], contour[..., first : first + 120]
        got = network.decode(*window, first=first, fresh=40)
        want = model.convert(window[0], embedding=embedding, pitch=window[1])
        assert got.shape == want.shape == (1, 16, 120)
        assert all(site.shape[-1] == 120 for site in network._sites)  # bounded: one window's values per site
        assert network.kept == (0 if first == 0 else 80)
        kept_errors.append(float((got - want)[..., -20:].abs().mean() / want.std()))
        # what the 40 frames alone give (a short window, its norms over itself)
        short = model.convert(window[0][..., -40:], embedding=embedding, pitch=window[1][..., -40:])
        short_errors.append(float((short - want[..., -40:])[..., -20:].abs().mean() / want.std()))
    assert kept_errors[0] < 1e-5
    # the kept values' older statistics: an approximation (~0.1 of the spread), a third of a short window's error
    assert np.mean(kept_errors) < 0.15 and max(kept_errors) < 0.3
    assert np.mean(kept_errors[1:]) < 0.5 * np.mean(short_errors[1:])


def test_frames_the_last_windows_edge_reached_are_recomputed_whatever_fresh_says(model, signal):
    content, contour = signal
    network = WindowNetwork(model, _embedding(model))
    network.decode(content[..., :100], contour[..., :100], first=0, fresh=0, real_frames=96)  # 4 frames held
    network.decode(content[..., 6:106], contour[..., 6:106], first=6, fresh=1)
    assert network.kept == 96 - network.guard - 6  # 8 convolutions reach 16 frames back from the real edge
    assert network.guard == 16


def test_a_window_that_starts_before_the_last_or_asks_for_all_is_converted_whole(model, signal):
    content, contour = signal
    network = WindowNetwork(model, _embedding(model))
    network.decode(content[..., 12:132], contour[..., 12:132], first=12, fresh=0)
    network.decode(content[..., 6:126], contour[..., 6:126], first=6, fresh=30)
    assert network.kept == 0
    network.decode(content[..., 12:132], contour[..., 12:132], first=12, fresh=0)
    assert network.kept == 0


def test_only_a_model_without_strides_is_run_part_by_part(model):
    assert supports(model)
    torch.manual_seed(0)
    assert not supports(build_model(tiny_model_config()).eval())  # TINY's content encoder halves the frame rate
    assert not supports(_model().train())  # dropout and the codebook's updates: never part by part


def test_a_stream_with_the_kept_network_converts_as_one_that_recomputes_it(tmp_path):
    import vconv

    vc = vconv.load()
    source = vc.prepare_audio(EXAMPLES / "source.wav", None)
    target = vc.target_voice([EXAMPLES / "target.wav"])

    def run(**settings):
        stream = vc.stream(target, recent_frontend="off", busy_block_ms=0, **settings)
        out = np.concatenate([stream.push(source), stream.flush()])
        return out, stream

    kept, stream = run()
    assert stream._network is not None and stream._network.kept > 0
    whole, _ = run(network_fresh_ms=0)
    assert kept.shape == whole.shape == source.shape

    def bands(audio):  # log power per 64 ms, over the whole file: the same speech, frame for frame
        frames = audio[: audio.size // 1024 * 1024].reshape(-1, 1024)
        return np.log(np.mean(frames**2, axis=1) + 1e-8)

    assert np.corrcoef(bands(kept), bands(whole))[0, 1] > 0.95


def test_the_networks_part_is_a_checked_stream_setting():
    from vconv.errors import VconvError
    from vconv.inference.stream_settings import DEFAULTS, StreamSettings

    assert DEFAULTS.network_fresh_ms == 1000.0
    with pytest.raises(VconvError, match="network_fresh_ms -1"):
        StreamSettings(network_fresh_ms=-1)
