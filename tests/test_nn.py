"""Tests for vconv.nn: ConvBlock, AdaIN, gradient reversal and the vector quantiser."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

import vconv
from vconv.models.layers import AdaIN, ConvBlock, grad_reverse
from vconv.models.quantize import QuantizerOutput, VectorQuantizer

# ------------------------------------------------------------------------------------------------------
# ConvBlock


@pytest.mark.parametrize("kernel_size", [1, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("frames", [1, 40, 41])
@pytest.mark.parametrize("residual", [False, True])
def test_conv_block_same_padding_length(kernel_size, stride, frames, residual):
    block = ConvBlock(6, 10, kernel_size, stride=stride, residual=residual)
    y = block(torch.randn(2, 6, frames))
    assert y.shape == (2, 10, math.ceil(frames / stride))


def test_conv_block_residual_adds_input():
    torch.manual_seed(0)
    block = ConvBlock(4, 4, 3, activation="none", residual=True)
    plain = ConvBlock(4, 4, 3, activation="none", residual=False)
    plain.load_state_dict(block.state_dict())
    x = torch.randn(2, 4, 12)
    torch.testing.assert_close(block(x), plain(x) + x)


def test_conv_block_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        ConvBlock(2, 2, activation="swishy")


# ------------------------------------------------------------------------------------------------------
# AdaIN


def test_adain_output_statistics_are_the_injected_gamma_beta():
    torch.manual_seed(0)
    adain = AdaIN(channels=8, embed_dim=6)
    # Large weights so that γ and β differ clearly from the 1/0 of a plain instance norm.
    torch.nn.init.normal_(adain.affine.weight, std=1.0)
    torch.nn.init.normal_(adain.affine.bias, std=1.0)
    x = torch.randn(3, 8, 40) * 3.0 + 5.0
    e = torch.randn(3, 6)
    y = adain(x, e)
    gamma, beta = adain.style(e)
    assert y.shape == x.shape
    torch.testing.assert_close(y.mean(-1), beta[..., 0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(y.std(-1, unbiased=False), gamma[..., 0].abs(), atol=1e-4, rtol=1e-4)
    # The input's own statistics are gone: shifting/scaling x per channel does not change the output.
    torch.testing.assert_close(adain(x * 2.0 + 1.0, e), y, atol=1e-4, rtol=1e-4)


def test_adain_normalises_like_instance_norm_at_large_offsets():
    # the two-pass statistics: the biased variance about the mean, exact even where the mean dwarfs the spread
    torch.manual_seed(1)
    adain = AdaIN(channels=16, embed_dim=4)
    x = torch.randn(2, 16, 625) * 0.1 + 30.0  # mean 300x the spread
    e = torch.randn(2, 4)
    gamma, beta = adain.style(e)
    expected = torch.nn.functional.instance_norm(x.double(), eps=adain.eps) * gamma.double() + beta.double()
    torch.testing.assert_close(adain(x, e).double(), expected, rtol=0, atol=1e-3)


def test_adain_embedding_changes_output():
    torch.manual_seed(0)
    adain = AdaIN(4, 3)
    x = torch.randn(1, 4, 20)
    assert not torch.allclose(adain(x, torch.randn(1, 3)), adain(x, torch.randn(1, 3)))


# ------------------------------------------------------------------------------------------------------
# gradient reversal


@pytest.mark.parametrize("weight", [0.0, 0.3, 2.0])
def test_gradient_reversal(weight):
    x = torch.randn(2, 3, 5, requires_grad=True)
    y = grad_reverse(x, weight)
    torch.testing.assert_close(y, x)
    upstream = torch.randn_like(x)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -weight * upstream)


# ------------------------------------------------------------------------------------------------------
# vector quantiser


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # exact pairwise distances (the matmul shortcut loses ~1e-3 on vectors of norm ~10)
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _vq(**kw) -> VectorQuantizer:
    torch.manual_seed(0)
    kw.setdefault("data_init", False)
    return VectorQuantizer(dim=4, codebook_size=16, **kw)


@pytest.mark.parametrize("ema", [True, False])
def test_vq_codes_shapes_and_straight_through(ema):
    vq = _vq(ema=ema).train()
    x = torch.randn(2, 4, 11, requires_grad=True)
    out = vq(x * 2.0)  # stands in for an encoder: the gradient must reach x through it
    assert isinstance(out, QuantizerOutput)
    assert out.quantized.shape == (2, 4, 11)
    assert out.codes.shape == (2, 11) and out.codes.dtype == torch.long
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 16
    assert out.loss.dim() == 0 and out.loss.item() > 0
    assert 1.0 <= out.perplexity.item() <= 16.0
    # straight-through: d(sum q)/dx is exactly the encoder's own derivative (2), as if q were z
    out.quantized.sum().backward(retain_graph=True)
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))
    x.grad = None
    out.loss.backward()
    assert x.grad.abs().sum() > 0  # commitment pulls the encoder towards its codes
    if not ema:  # the codebook loss trains the codebook directly
        assert vq.embedding.grad is not None and vq.embedding.grad.abs().sum() > 0


def test_vq_forward_value_is_the_nearest_code():
    vq = _vq().eval()
    z = torch.randn(3, 4, 7)
    out = vq(z)
    flat = z.transpose(1, 2).reshape(-1, 4)
    nearest = torch.cdist(flat, vq.codebook).argmin(1)
    assert torch.equal(out.codes.reshape(-1), nearest)
    # exactly the code vector, no float32 residue of z (z + (q - z) is not q): two inputs with the same codes
    # must decode alike, also when the decoder rounds its input to bfloat16
    assert torch.equal(out.quantized.transpose(1, 2).reshape(-1, 4), vq.codebook[nearest])
    assert torch.equal(vq(z + 1e-4).quantized, out.quantized)


def test_grouped_vq_quantises_each_part_with_the_shared_codebook():
    vq = VectorQuantizer(4, 16, groups=2).eval()
    z = torch.randn(3, 8, 7)
    out = vq(z)
    assert out.quantized.shape == (3, 8, 7) and out.codes.shape == (3, 7, 2)
    for g in range(2):
        part = z[:, 4 * g : 4 * (g + 1)].transpose(1, 2).reshape(-1, 4)
        nearest = torch.cdist(part, vq.codebook).argmin(1)
        assert torch.equal(out.codes[..., g].reshape(-1), nearest)
        torch.testing.assert_close(out.quantized[:, 4 * g : 4 * (g + 1)].transpose(1, 2).reshape(-1, 4), vq.codebook[nearest])
    with pytest.raises(ValueError, match=r"\[B, 8, T\]"):
        vq(torch.randn(3, 4, 7))


def test_vq_ema_updates_only_in_training():
    vq = _vq(ema=True)
    z = torch.randn(2, 4, 30) + 3.0  # far from the codes: an EMA step must move the used ones
    before = vq.codebook.clone()
    vq.eval()
    vq(z)
    assert torch.equal(vq.codebook, before)
    assert int(vq.unused_steps.sum()) == 0
    vq.train()
    codes = vq(z).codes
    used = torch.unique(codes)
    assert not torch.allclose(vq.codebook[used], before[used])
    # used codes move towards the data mean, not away from it
    dist_before = (before[used] - 3.0).norm(dim=1)
    dist_after = (vq.codebook[used] - 3.0).norm(dim=1)
    assert bool((dist_after < dist_before).all())


def test_vq_perplexity_counts_used_codes():
    vq = _vq().eval()
    book = vq.codebook
    four = book[torch.tensor([0, 5, 9, 12])].repeat(5, 1)  # 4 codes, equal use -> perplexity 4
    z = four.t().reshape(1, 4, -1)
    torch.testing.assert_close(vq(z).perplexity, torch.tensor(4.0))
    one = book[3:4].repeat(8, 1).t().reshape(1, 4, -1)
    torch.testing.assert_close(vq(one).perplexity, torch.tensor(1.0))


@pytest.mark.parametrize("ema", [True, False])
def test_vq_dead_codes_are_reinitialised_from_the_batch(ema):
    vq = _vq(ema=ema, dead_after=2).train()
    book = vq.codebook.clone()

    def batch(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, 2, (40,), generator=g)  # only codes 0 and 1 are ever used
        flat = book[idx] + 1e-3 * torch.randn(40, 4, generator=g)
        return flat.t().reshape(1, 4, 40)

    vq(batch(1))
    # one unused step is not enough yet
    torch.testing.assert_close(vq.codebook[2:], book[2:], atol=1e-2, rtol=0)
    z2 = batch(2)
    vq(z2)
    new = vq.codebook[2:]
    assert not torch.allclose(new, book[2:], atol=1e-2)
    flat = z2[0].t()
    # every re-initialised code is one of the current batch's encoder outputs
    assert bool((_cdist(new, flat).min(dim=1).values < 1e-5).all())
    assert int(vq.unused_steps[2:].max()) == 0


def test_vq_data_init_happens_once_and_only_in_training():
    vq = VectorQuantizer(4, 8, data_init=True)
    z = torch.randn(2, 4, 20) * 0.1 + 7.0
    vq.eval()
    vq(z)
    assert not bool(vq.initialized)
    vq.train()
    vq(z)
    assert bool(vq.initialized)
    flat = z.transpose(1, 2).reshape(-1, 4)
    # every code starts at a batch vector (random init is ~7 away); the same forward's EMA step then
    # pulls it a little towards the mean of its cluster
    assert bool((_cdist(vq.codebook, flat).min(dim=1).values < 0.05).all())
    assert "initialized" in vq.state_dict()
    book = vq.codebook.clone()
    used = vq(z * 0.0 - 7.0).codes.unique()  # a far-away batch: no second data init
    unused = torch.ones(8, dtype=torch.bool)
    unused[used] = False
    torch.testing.assert_close(vq.codebook[unused], book[unused], atol=1e-3, rtol=0)


def test_vq_distances_in_float32_under_bf16_autocast():
    vq = _vq().eval()
    z = torch.randn(2, 4, 25)
    ref = vq(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
    assert torch.equal(out.codes, ref.codes)
    assert out.loss.dtype == torch.float32 and out.perplexity.dtype == torch.float32


# ------------------------------------------------------------------------------------------------------
# DDP: replicas fed different data keep one identical codebook


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)  # inside the worker process only
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        for ema in (True, False):
            torch.manual_seed(0)
            vq = VectorQuantizer(4, 16, ema=ema, dead_after=1, data_init=True).train()
            torch.manual_seed(100 + rank)  # different data and different random choices per rank
            for _ in range(3):
                vq(torch.randn(2, 4, 10) + rank)
            # numpy copies travel by value: shared-memory tensors can vanish when the sender exits first (flaky under load)
            queue.put((ema, rank, vq.codebook.detach().numpy().copy(), vq.unused_steps.numpy().copy()))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vq_ddp_replicas_stay_identical():
    """Two gloo processes see different batches; EMA stats are all-reduced, new codes broadcast."""
    env_before = os.environ.get("PYTHONPATH")
    # spawned children must import vconv the same way this process did
    repo_root = str(Path(vconv.__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env_before]))
    try:
        queue = torch.multiprocessing.get_context("spawn").Queue()
        ctx = torch.multiprocessing.start_processes(
            _ddp_worker, args=(2, _free_port(), queue), nprocs=2, join=False, start_method="spawn"
        )
        results = {(ema, r): (b, u) for ema, r, b, u in (queue.get(timeout=60) for _ in range(4))}
        while not ctx.join():
            pass
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_before
    for ema in (True, False):
        (book0, unused0), (book1, unused1) = results[(ema, 0)], results[(ema, 1)]
        assert np.array_equal(book0, book1), f"codebooks differ between replicas (ema={ema})"
        assert np.array_equal(unused0, unused1)
