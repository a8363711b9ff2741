"""The networks' arithmetic (vconv.inference.precision): choosing it, what runs in it, and what it changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vconv
from tests.conftest import invoke, one_line_error
from vconv.errors import VconvError
from vconv.inference.precision import check_precision, compute_in, native_bfloat16, resolve_precision


def test_choices_and_their_dtypes(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == torch.float32
    assert resolve_precision("bfloat16", cpu) == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not native_bfloat16(cpu) and resolve_precision("auto", cpu) == torch.float32  # emulated bf16 is slower
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert native_bfloat16(cpu) and resolve_precision("auto", cpu) == torch.bfloat16
    with pytest.raises(VconvError, match="--precision 'half': choose one of auto, float32, bfloat16"):
        check_precision("half", "--precision")


def test_compute_in_lowers_matrix_products_only_in_bfloat16():
    weight, x = torch.randn(4, 3), torch.randn(2, 3)
    with compute_in(torch.bfloat16, torch.device("cpu")):
        assert torch.nn.functional.linear(x, weight).dtype == torch.bfloat16
    with compute_in(torch.float32, torch.device("cpu")):
        assert torch.nn.functional.linear(x, weight).dtype == torch.float32


@pytest.fixture(scope="module")
def pair(tiny_bundle):
    return vconv.load(tiny_bundle, precision="float32"), vconv.load(tiny_bundle, precision="bfloat16")


def test_bfloat16_conversion_stays_close_to_float32(pair, corpus_dir):
    full, low = pair
    assert (full.compute_dtype, low.compute_dtype) == (torch.float32, torch.bfloat16)
    src, ref = sorted((corpus_dir / "flite_kal16").glob("*.wav"))[0], sorted((corpus_dir / "flite_slt").glob("*.wav"))[0]
    a, b = full.convert(src, ref), low.convert(src, ref)
    assert a.shape == b.shape and b.dtype == np.float32 and np.isfinite(b).all()
    assert np.corrcoef(a, b)[0, 1] > 0.9  # the same waveform up to bfloat16's rounding, not another one
    # a target prepared by either converter is float32 and serves both
    target = low.target_voice(ref)
    assert target.embedding.dtype == torch.float32
    torch.testing.assert_close(target.embedding, full.target_voice(ref).embedding, rtol=0.05, atol=0.05)
    assert full.convert_wav(full.prepare_audio(src, None), target).shape == a.shape


def test_griffin_lim_never_runs_in_bfloat16(tiny_bundle):
    vc = vconv.load(tiny_bundle, vocoder="griffinlim", precision="bfloat16")
    with vc.compute("vocoder"):
        assert torch.matmul(torch.randn(2, 2), torch.randn(2, 2)).dtype == torch.float32
    with vc.compute("model"):
        assert torch.matmul(torch.randn(2, 2), torch.randn(2, 2)).dtype == torch.bfloat16


def test_cli_refuses_an_unknown_precision_in_one_line(tiny_bundle, tmp_path):
    src = tmp_path / "never-read.wav"
    one_line_error(invoke("convert", src, "--target", src, "-o", tmp_path / "o.wav", "--model", tiny_bundle,
                          "--precision", "half"), "--precision 'half'")


def test_bfloat16_weights_are_stored_lowered_and_change_no_sample(pair, tiny_bundle, corpus_dir):
    full, low = pair
    content = {id(m) for m in low.model.content_encoder.modules()}
    layers = [m for m in low.model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear)) and id(m) not in content]
    assert layers and all(m.weight.dtype == torch.bfloat16 for m in layers)
    assert all(p.dtype == torch.float32 for p in low.model.content_encoder.parameters())  # its codes carry the words
    assert low.model.content_in_float32 and not full.model.content_in_float32
    assert all(p.dtype == torch.float32 for p in full.model.parameters())  # float32 precision lowers nothing
    assert low.model.quantizer.embedding.dtype == torch.float32  # the codebook's distances stay float32
    # the same bundle with float32 weights under the same autocast: what autocast would cast at every call
    cast_every_call = vconv.load(tiny_bundle, precision="float32")
    cast_every_call.compute_dtype = torch.bfloat16
    cast_every_call.model.content_in_float32 = True
    src, ref = sorted((corpus_dir / "flite_kal16").glob("*.wav"))[0], sorted((corpus_dir / "flite_slt").glob("*.wav"))[0]
    np.testing.assert_array_equal(low.convert(src, ref), cast_every_call.convert(src, ref))
