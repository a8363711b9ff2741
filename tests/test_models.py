"""Tests for vconv.models: encoders, decoder, adversary and the composed VoiceConversionModel."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import tiny_model_config as tiny
from vconv.config import ModelConfig
from vconv.errors import VconvError
from vconv.models import (
    ReconstructionOutput,
    SpeakerClassifier,
    VoiceConversionModel,
    build_model,
)
from vconv.models.quantize import QuantizerOutput
from vconv.models.speaker import stats_pool


def content_encoder_of(**section):
    return build_model(tiny(content_encoder=section)).content_encoder


# ------------------------------------------------------------------------------------------------------
# content encoder


@pytest.mark.parametrize("downsample", [[1, 1], [1, 2], [2, 2], [3, 2]])
@pytest.mark.parametrize("frames", [7, 37, 40, 41])
def test_content_encoder_shapes(downsample, frames):
    enc = content_encoder_of(downsample=downsample)
    assert enc.total_stride == math.prod(downsample)
    z = enc.eval()(torch.randn(2, 16, frames))
    assert z.shape == (2, 8, math.ceil(frames / enc.total_stride))


def test_content_encoder_refuses_too_short_input():
    enc = content_encoder_of(downsample=[2, 2])
    assert enc(torch.randn(1, 16, enc.min_frames)).shape[-1] == 2
    with pytest.raises(VconvError, match="too short"):
        enc(torch.randn(1, 16, enc.min_frames - 1))


def test_content_encoder_rejects_stride_count_mismatch():
    with pytest.raises(VconvError, match="downsample"):
        content_encoder_of(blocks=3, downsample=[1, 2])
    with pytest.raises(VconvError, match="downsample"):
        content_encoder_of(downsample=[1, 0])


def test_content_encoder_instance_norm_outputs_are_normalised():
    torch.manual_seed(0)
    enc = content_encoder_of()
    seen: list[torch.Tensor] = []
    hooks = [b.norm.register_forward_hook(lambda m, i, o: seen.append(o)) for b in enc.blocks]
    # speaker-like offsets and scales per channel that the norms must remove
    mel = torch.randn(2, 16, 40) * torch.rand(2, 16, 1) * 4 + torch.randn(2, 16, 1) * 3
    enc(mel)
    for h in hooks:
        h.remove()
    assert len(seen) == 2
    for out in seen:
        torch.testing.assert_close(out.mean(-1), torch.zeros(out.shape[:2]), atol=1e-4, rtol=0)
        torch.testing.assert_close(out.std(-1, unbiased=False), torch.ones(out.shape[:2]), atol=1e-3, rtol=0)


# ------------------------------------------------------------------------------------------------------
# speaker encoder


def test_speaker_encoder_shapes_and_lengths():
    torch.manual_seed(0)
    enc = build_model(tiny()).speaker_encoder.eval()
    assert enc(torch.randn(3, 16, 25)).shape == (3, 12)
    # stats pooling with lengths ignores padded frames exactly
    h = torch.randn(2, 5, 30)
    pooled = stats_pool(h, torch.tensor([30, 18]))
    torch.testing.assert_close(pooled[1], stats_pool(h[1:, :, :18])[0])
    torch.testing.assert_close(pooled[0], stats_pool(h[:1])[0])
    # a padded batch with lengths gives each item the embedding it gets alone, whatever the padding
    mel = torch.randn(2, 16, 30)
    short = mel[1, :, :18].clone()
    mel[1, :, 18:] = 50.0
    with_len = enc(mel, torch.tensor([30, 18]))
    torch.testing.assert_close(with_len[0], enc(mel[:1])[0])
    torch.testing.assert_close(with_len[1], enc(short[None])[0])
    assert not torch.allclose(enc(mel)[1], with_len[1])  # without lengths the padding counts


def test_embed_many_averages_references():
    torch.manual_seed(0)
    enc = build_model(tiny()).speaker_encoder.eval()
    refs = [torch.randn(16, t) for t in (20, 33, 41)]
    single = torch.stack([enc(r[None])[0] for r in refs])
    torch.testing.assert_close(enc.embed_many(refs), single.mean(0))
    with pytest.raises(ValueError):
        enc.embed_many([])


# ------------------------------------------------------------------------------------------------------
# decoder and adversary


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("length", [1, 37, 40, 41])
def test_decoder_output_length(stride, length):
    dec = build_model(tiny(content_encoder={"downsample": [1, stride]})).decoder
    t_code = math.ceil(length / stride)
    q, e = torch.randn(2, 8, t_code), torch.randn(2, 12)
    assert dec(q, e, length).shape == (2, 16, length)
    assert dec(q, e).shape == (2, 16, t_code * stride)
    assert dec(q, e, t_code * stride + 3).shape == (2, 16, t_code * stride + 3)  # padded


def test_decoder_output_depends_on_speaker():
    torch.manual_seed(0)
    dec = build_model(tiny()).decoder
    for p in dec.parameters():  # AdaIN starts near identity; make the speaker's influence visible
        torch.nn.init.normal_(p, std=0.3)
    q = torch.randn(1, 8, 10)
    assert (dec(q, torch.randn(1, 12), 20) - dec(q, torch.randn(1, 12), 20)).abs().mean() > 1e-3


def test_speaker_classifier_shapes_and_reversal():
    torch.manual_seed(0)
    clf = build_model(tiny(n_speakers=5)).adversary
    q = torch.randn(2, 8, 13, requires_grad=True)
    logits = clf(q)
    assert logits.shape == (2, 5)
    (g_plain,) = torch.autograd.grad(logits.sum(), q)
    (g_rev,) = torch.autograd.grad(clf(q, reversal_weight=0.5).sum(), q)
    torch.testing.assert_close(g_rev, -0.5 * g_plain)


# ------------------------------------------------------------------------------------------------------
# the composed model


def test_build_model_adversary_switch():
    with_adv = build_model(tiny(n_speakers=4))
    assert isinstance(with_adv.adversary, SpeakerClassifier)
    assert any(k.startswith("adversary.") for k in with_adv.state_dict())
    mel = torch.randn(2, 16, 40)
    assert with_adv.reconstruct(mel, mel).speaker_logits.shape == (2, 4)
    for cfg in (tiny(n_speakers=0), tiny(adversary={"kind": "none"}, n_speakers=4)):
        model = build_model(cfg)
        assert model.adversary is None
        assert not any(k.startswith("adversary.") for k in model.state_dict())
        assert model.reconstruct(mel, mel).speaker_logits is None
    n_with = sum(p.numel() for p in with_adv.parameters())
    n_without = sum(p.numel() for p in build_model(tiny(n_speakers=0)).parameters())
    assert n_with > n_without


@pytest.mark.parametrize("frames", [37, 40, 41])
def test_reconstruct_shapes(frames):
    torch.manual_seed(0)
    model = build_model(tiny(content_encoder={"downsample": [2, 2]}))
    assert model.config.code_dim == 8
    mel, ref = torch.randn(2, 16, frames), torch.randn(2, 16, 29)
    out = model(mel, ref, adversary_weight=0.1)
    assert isinstance(out, ReconstructionOutput) and isinstance(out.quantizer, QuantizerOutput)
    assert out.mel.shape == mel.shape
    assert out.quantizer.quantized.shape == (2, 8, math.ceil(frames / 4))
    assert out.quantizer.codes.shape == (2, math.ceil(frames / 4))
    assert out.speaker_embedding.shape == (2, 12)
    assert out.speaker_logits.shape == (2, 3)


def test_adversary_gradient_is_reversed_into_the_content_encoder():
    torch.manual_seed(0)
    model = build_model(tiny()).eval()  # eval: the quantiser must not change between the two passes
    mel, labels = torch.randn(2, 16, 40), torch.tensor([0, 2])
    params = list(model.content_encoder.parameters())

    ce = F.cross_entropy(model.reconstruct(mel, mel, adversary_weight=0.5).speaker_logits, labels)
    g_rev = torch.autograd.grad(ce, params)
    ce_plain = F.cross_entropy(model.adversary(model.encode_content(mel).quantized), labels)
    g_plain = torch.autograd.grad(ce_plain, params)
    assert any(g.abs().sum() > 0 for g in g_plain)
    for a, b in zip(g_rev, g_plain):
        torch.testing.assert_close(a, -0.5 * b)


def test_embed_speaker_list_is_the_mean_of_individual_embeddings():
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    refs = [torch.randn(16, t) for t in (24, 40)]
    many = model.embed_speaker(refs)
    assert many.shape == (1, 12)
    single = torch.cat([model.embed_speaker(r[None]) for r in refs])
    torch.testing.assert_close(many[0], single.mean(0))
    torch.testing.assert_close(model.embed_speaker(refs[0]), single[:1])  # 2-D tensor -> [1, S]
    assert model.embed_speaker(torch.randn(3, 16, 30)).shape == (3, 12)


def test_convert_never_updates_a_codebook_left_training_inside_an_eval_model():
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    model.quantizer.train()  # a part left training: convert must still run it in eval mode
    book = model.quantizer.codebook.clone()
    model.convert(torch.randn(16, 41), torch.randn(16, 30))
    assert torch.equal(model.quantizer.codebook, book)


def test_convert_keeps_length_shape_and_model_state():
    torch.manual_seed(0)
    model = build_model(tiny()).train()
    src = torch.randn(16, 41)
    book = model.quantizer.codebook.clone()
    out = model.convert(src, [torch.randn(16, 30), torch.randn(16, 22)])
    assert out.shape == src.shape
    assert model.training  # mode restored
    assert torch.equal(model.quantizer.codebook, book)  # converting never touches the codebook
    assert model.convert(src[None].expand(2, -1, -1), torch.randn(16, 30)).shape == (2, 16, 41)
    assert model.convert(src[None].expand(2, -1, -1), torch.randn(2, 16, 30)).shape == (2, 16, 41)
    # same content, other speaker: a different output
    a = model.convert(src, torch.randn(16, 30))
    b = model.convert(src, torch.randn(16, 30) * 3 + 1)
    assert not torch.allclose(a, b)


def test_mismatched_strides_are_refused():
    cfg = tiny()
    model = build_model(cfg)
    decoder = build_model(tiny(content_encoder={"downsample": [1, 3]})).decoder
    with pytest.raises(VconvError, match="up-samples"):
        VoiceConversionModel(model.content_encoder, model.quantizer, model.speaker_encoder, decoder, config=cfg)


def test_state_dict_round_trip_is_strict_and_exact():
    torch.manual_seed(0)
    cfg = tiny()
    model = build_model(cfg).train()
    mel = torch.randn(2, 16, 40)
    model(mel, mel)  # initialises the codebook from data and moves the EMA statistics
    clone = build_model(dataclasses.replace(cfg))
    clone.load_state_dict(model.state_dict(), strict=True)
    model.eval(), clone.eval()
    torch.testing.assert_close(clone(mel, mel).mel, model(mel, mel).mel)
    assert bool(clone.quantizer.initialized)  # a loaded model is never re-initialised from data


def test_default_model_size_is_sane():
    n = sum(p.numel() for p in build_model(ModelConfig(n_speakers=0)).parameters())
    assert 5e6 < n < 15e6


def test_a_few_adam_steps_lower_the_reconstruction_loss():
    torch.manual_seed(0)
    model = build_model(tiny()).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    mel, ref = torch.randn(4, 16, 40), torch.randn(4, 16, 40)
    losses = []
    for _ in range(30):
        out = model(mel, ref)
        recon = F.l1_loss(out.mel, mel)
        opt.zero_grad()
        (recon + out.quantizer.loss).backward()
        opt.step()
        losses.append(recon.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0]


def test_quantize_switch_off_passes_the_code_through():
    from vconv.models import build_model
    from vconv.models.quantize import PassThroughQuantizer

    cfg = tiny(quantizer={"kind": "none"})
    model = build_model(cfg)
    assert isinstance(model.quantizer, PassThroughQuantizer)
    mel = torch.randn(2, 16, 24)
    out = model.reconstruct(mel, mel)
    assert out.mel.shape == mel.shape and float(out.quantizer.loss) == 0.0
    assert float(out.quantizer.perplexity) == 1.0


def test_vq_groups_must_divide_the_code_dimension():
    from vconv.config import ModelConfig
    from vconv.errors import VconvError
    from vconv.models import build_model

    with pytest.raises(VconvError, match="model.quantizer.groups: expected 1..4096, got 0"):  # the config's own range check
        ModelConfig(code_dim=64, quantizer={"kind": "vq", "groups": 0})
    with pytest.raises(VconvError, match="model.quantizer.groups must divide model.code_dim"):
        build_model(ModelConfig(code_dim=64, quantizer={"kind": "vq", "groups": 3}))
    model = build_model(tiny(code_dim=64, quantizer={"groups": 2}))
    assert model.quantizer.dim == 32 and model.quantizer.groups == 2


def test_quantizer_in_eval_counts_codes_as_training_does():
    """Eval mode counts code use without the one-hot matrix; the perplexity, codes and vectors are those of the
    training-mode forward on the same codebook."""
    from vconv.models.quantize import VectorQuantizer

    torch.manual_seed(0)
    vq = VectorQuantizer(dim=8, codebook_size=16, groups=2, data_init=False, dead_after=0)
    z = torch.randn(2, 16, 30)
    evaluated = vq.eval()(z)
    vq.train()
    vq.decay = 1.0  # the EMA keeps the codebook as it is, so both forwards see the same codes
    trained = vq(z)
    assert torch.equal(evaluated.codes, trained.codes) and torch.equal(evaluated.quantized, trained.quantized)
    assert float(evaluated.perplexity) == pytest.approx(float(trained.perplexity), rel=1e-6)
    assert 1.0 < float(evaluated.perplexity) <= 16.0
