"""The shipped bundle: found by default, verified, and it converts the README example."""

from __future__ import annotations

import numpy as np
import soundfile as sf

import vconv
from vconv.pretrained import DEFAULT_BUNDLE, list_bundles

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


def test_default_bundle_is_shipped_and_small():
    bundles = {b.name: b for b in list_bundles()}
    assert DEFAULT_BUNDLE in bundles
    folder = bundles[DEFAULT_BUNDLE].path
    assert (folder / "MODEL_CARD.md").is_file()
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total < 50e6


def test_shipped_model_converts_the_example():
    vc = vconv.load()
    source, sr = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")
    out = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav"])
    assert vc.sample_rate == 16000 and sr == 16000
    assert out.dtype == np.float32 and out.shape == source.shape
    assert np.isfinite(out).all()
    rms_db = 20 * np.log10(np.sqrt(np.mean(out**2)) + 1e-12)
    assert rms_db > -40  # speech level, not silence
