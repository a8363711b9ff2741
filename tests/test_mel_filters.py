"""Our numpy mel filterbanks and windows against librosa's (which the conversion path no longer imports)."""

from __future__ import annotations

import numpy as np
import pytest

from vconv.audio import mel_filters

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (16000, 400, 80, 0.0, None),  # Whisper's
    (16000, 512, 40, 0.0, None),
    (16000, 1024, 80, 0.0, 8000.0),  # the shipped features'
    (22050, 1024, 80, 55.0, 7600.0),
    (24000, 2048, 128, 30.0, None),
])
def test_mel_basis_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filters.slaney_mel_basis(sr, n_fft, n_mels, fmin=fmin, fmax=fmax)
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == theirs.shape == (n_mels, n_fft // 2 + 1) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)
    assert (ours > 0).any(axis=1).all()  # no empty filter at these sizes


def test_mel_scale_round_trip_and_break():
    hz = np.array([0.0, 500.0, 999.9, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_filters.hz_to_mel(hz), librosa.hz_to_mel(hz), rtol=1e-12)
    np.testing.assert_allclose(mel_filters.mel_to_hz(mel_filters.hz_to_mel(hz)), hz, atol=1e-9)
    assert mel_filters.hz_to_mel(1000.0) == pytest.approx(15.0)
    np.testing.assert_allclose(mel_filters.mel_frequencies(10, 20.0, 7000.0), librosa.mel_frequencies(10, fmin=20.0, fmax=7000.0))
