from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import voiced_signal
from vconv.audio import io as audio
from vconv.errors import VconvError


@pytest.mark.parametrize(("ext", "subtype"), [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS")])
def test_load_each_format_resamples_and_downmixes(tmp_path, ext, subtype):
    mono = voiced_signal(1.0, sr=22050)
    stereo = np.stack([mono, 0.5 * mono], axis=1)
    path = tmp_path / f"x{ext}"
    sf.write(path, stereo, 22050, subtype=subtype)
    wav, sr = audio.load(path, 16000)
    assert sr == 16000
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - 16000) <= 2
    # the downmix is the channel mean: 0.75 x the mono signal, resampled
    expected = audio.resample(0.75 * mono, 22050, 16000)
    n = min(expected.size, wav.size)
    tol = 0.05 if ext == ".ogg" else 2e-3
    assert np.max(np.abs(wav[:n] - expected[:n])) < tol


def test_load_keeps_native_rate_when_none(wav_file):
    wav, sr = audio.load(wav_file)
    assert sr == 16000 and wav.size == 16000


def _write_raw(path, data, sr=16000, subtype="FLOAT"):
    sf.write(path, data, sr, subtype=subtype)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "file not found"),
        ("directory", "is a directory"),
        ("not_audio", "not a readable audio file"),
        ("empty", "empty audio"),
        ("silent", "silent"),
        ("nan", "NaN/Inf"),
        ("short", "too short"),
    ],
)
def test_bad_input_gives_one_line_error_naming_the_file(tmp_path, case, message):
    path = tmp_path / f"{case}.wav"
    if case == "directory":
        path.mkdir()
    elif case == "not_audio":
        path.write_text("this is not audio\n" * 20)
    elif case == "empty":
        _write_raw(path, np.zeros(0, dtype=np.float32))
    elif case == "silent":
        _write_raw(path, np.zeros(16000, dtype=np.float32))
    elif case == "nan":
        data = voiced_signal(0.5)
        data[100] = np.nan
        _write_raw(path, data)
    elif case == "short":
        _write_raw(path, voiced_signal(0.1))
    with pytest.raises(VconvError) as info:
        audio.load(path, 16000, min_seconds=0.5)
    text = str(info.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_too_long_is_refused_before_reading(tmp_path):
    path = _write_raw(tmp_path / "long.wav", voiced_signal(2.0))
    with pytest.raises(VconvError, match="longer than"):
        audio.load(path, max_seconds=1.0)


def test_save_is_atomic_and_does_not_overwrite(tmp_path):
    path = tmp_path / "out" / "a.wav"
    audio.save(path, voiced_signal(0.5), 16000)
    before = path.read_bytes()
    with pytest.raises(VconvError, match="--force"):
        audio.save(path, np.zeros(100, dtype=np.float32) + 0.1, 16000)
    assert path.read_bytes() == before
    audio.save(path, voiced_signal(0.25), 16000, force=True)
    assert sf.info(str(path)).frames == 4000
    assert [p.name for p in path.parent.iterdir()] == ["a.wav"]  # no temp file left behind


def test_saved_files_get_normal_permissions_not_mkstemp_private(tmp_path):
    import os

    from vconv.fileio import default_mode

    path = audio.save(tmp_path / "p.wav", voiced_signal(0.1), 16000)
    assert os.stat(path).st_mode & 0o777 == default_mode()
