from __future__ import annotations

import numpy as np
import torch

from vconv.audio.perturb import MelPerturber, PerturbConfig
from vconv.config import FeatureConfig


def test_warp_identity_and_direction():
    p = MelPerturber(FeatureConfig())
    mel = torch.randn(80, 10)
    torch.testing.assert_close(p.warp(mel, 1.0), mel)
    peak = torch.full((80, 1), -5.0)
    peak[30] = 5.0
    assert int(p.warp(peak, 1.15).argmax()) > 30  # alpha > 1 moves spectral content up
    assert int(p.warp(peak, 0.87).argmax()) < 30


def test_perturbation_is_seeded_bounded_and_switchable():
    p = MelPerturber(FeatureConfig())
    mel = torch.randn(80, 20, generator=torch.Generator().manual_seed(0))
    a = p(mel, torch.Generator().manual_seed(3))
    b = p(mel, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, mel)
    # a mel that is flat across bands is unchanged by any frequency warp, so what remains is the EQ curve:
    # at most eq_db (6 dB) in natural-log amplitude, 6 / 20 * ln 10 = 0.69, and not zero
    flat = torch.randn(1, 20, generator=torch.Generator().manual_seed(1)).expand(80, 20)
    for seed in range(20):
        eq = p(flat, torch.Generator().manual_seed(seed)) - flat
        assert eq.abs().max() <= p.cfg.eq_db / 20 * np.log(10) + 1e-5
        assert torch.allclose(eq, eq[:, :1].expand_as(eq), atol=1e-5)  # one curve over frequency, the same in every frame
    off = MelPerturber(FeatureConfig(), PerturbConfig(probability=0.0))
    torch.testing.assert_close(off(mel, torch.Generator().manual_seed(3)), mel)
