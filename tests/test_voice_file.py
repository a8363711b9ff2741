"""Voice files, the cache of prepared voices, the fit's progress line and the thread policy (issue "a busy machine")."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import vconv
from tests.conftest import invoke, one_line_error, voiced_signal
from vconv.errors import VconvError
from vconv.inference import voice_fit
from vconv.inference.threads import apply_threads, check_threads
from vconv.inference.voice_file import VoiceCache, load_voice, looks_like_voice_file, save_voice, voice_metadata

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fitted(tiny_bundle):
    converter = vconv.load(str(tiny_bundle), fit_steps=3)
    return converter


@pytest.fixture
def refs(tmp_path) -> list[Path]:
    paths = []
    for i, f0 in enumerate((120.0, 180.0)):
        path = tmp_path / f"ref{i}.wav"
        sf.write(path, voiced_signal(1.5, f0=f0, seed=i), 16000)
        paths.append(path)
    return paths


@pytest.fixture
def counted_fits(monkeypatch):
    calls = []
    real = voice_fit.fit_embedding

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("vconv.inference.targets.fit_embedding", counting)
    return calls


def test_a_voice_file_round_trips_and_converts_as_its_references_do(fitted, refs, tmp_path):
    voice, source = fitted.prepared_target([str(r) for r in refs])
    path = save_voice(tmp_path / "v.voice", voice, source)
    again = load_voice(path, fitted.info.path.name, fitted.info.digest)
    assert torch.equal(again.embedding, voice.embedding)
    assert torch.equal(again.spectrum.mean, voice.spectrum.mean) and again.spectrum.frames == voice.spectrum.frames
    assert np.array_equal(again.primer, voice.primer) and again.fit_losses == voice.fit_losses and again.origin == "file"
    meta = voice_metadata(path)
    assert meta["fit_steps"] == "3" and meta["bundle_digest"] == fitted.info.digest and len(meta["references"]) > 64
    wav = voiced_signal(1.0, f0=150.0, seed=5)
    np.testing.assert_array_equal(fitted.convert(wav, [str(path)], sr=16000), fitted.convert(wav, [str(r) for r in refs], sr=16000))
    with pytest.raises(VconvError, match="pass --force"):  # an existing file is kept
        save_voice(path, voice, source)


def test_the_cache_spares_the_second_fit_and_misses_when_references_or_bundle_change(fitted, refs, tmp_path, counted_fits):
    fitted.voice_cache = VoiceCache(tmp_path / "cache")
    try:
        first = fitted.target_voice([str(r) for r in refs])
        second = fitted.target_voice([str(r) for r in refs])
        assert len(counted_fits) == 1 and first.origin == "computed" and second.origin == "cache"
        assert torch.equal(first.embedding, second.embedding)
        fitted.target_voice([str(refs[0])])  # other references: another voice
        assert len(counted_fits) == 2
        digest = fitted.info.extra["sha256"]
        fitted.info.extra["sha256"] = {**digest, "model.safetensors": "0" * 64}  # another bundle's weights
        try:
            assert fitted.target_voice([str(r) for r in refs]).origin == "computed" and len(counted_fits) == 3
        finally:
            fitted.info.extra["sha256"] = digest
    finally:
        fitted.voice_cache = None


def test_the_cache_is_bounded_and_never_an_error(fitted, refs, tmp_path):
    voice, source = fitted.prepared_target([str(refs[0])])
    cache = VoiceCache(tmp_path / "c", entries=2)
    for steps in (1, 2, 3):
        cache.put(dataclasses.replace(source, fit_steps=steps), voice)
    assert len(list((tmp_path / "c").glob("*.voice"))) == 2
    assert dataclasses.replace(source, precision="other").key != source.key  # a fit in other arithmetic is another voice
    (tmp_path / "c" / f"{source.key}.voice").write_bytes(b"garbage")  # a damaged entry is a miss
    assert cache.get(source) is None
    blocked = tmp_path / "file"
    blocked.write_text("x")
    VoiceCache(blocked / "below").put(source, voice)  # cannot be written: skipped silently


def test_bad_voice_files_are_one_line_naming_what(fitted, refs, tmp_path):
    voice, source = fitted.prepared_target([str(refs[0])])
    good = save_voice(tmp_path / "good.voice", voice, source)
    cut = tmp_path / "cut.voice"
    cut.write_bytes(good.read_bytes()[:200])
    other = tmp_path / "other.voice"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "something-else"})
    junk = tmp_path / "junk.voice"
    junk.write_bytes(b"\x00" * 64)
    for path, reason in ((cut, "corrupt voice file"), (other, "not a vconv voice file"), (junk, "not a vconv voice file"),
                         (tmp_path / "missing.voice", "file not found")):
        with pytest.raises(VconvError, match=reason):
            fitted.open_voice(path)
    with pytest.raises(VconvError, match="a voice file of another model"):
        load_voice(good, "another", "f" * 64)
    assert looks_like_voice_file(good) and not looks_like_voice_file(refs[0])
    extensionless = tmp_path / "voicefile"
    extensionless.write_bytes(good.read_bytes())
    assert looks_like_voice_file(extensionless)  # known by its content, whatever its name


def test_cli_voice_then_convert_with_it(tiny_bundle, refs, tmp_path):
    out = tmp_path / "t.voice"
    result = invoke("voice", *map(str, refs), "-o", str(out), "-m", str(tiny_bundle), "--fit-voice", "2")
    assert result.exit_code == 0, result.output
    assert "fitted in 2 steps" in result.output and out.is_file()
    one_line_error(invoke("voice", str(refs[0]), "-o", str(out), "-m", str(tiny_bundle)), "already exists")
    one_line_error(invoke("voice", str(refs[0]), "-o", str(tmp_path / "t.wav"), "-m", str(tiny_bundle)), "extension")
    source = tmp_path / "s.wav"
    sf.write(source, voiced_signal(1.0, f0=150.0, seed=9), 16000)
    converted = invoke("convert", str(source), "-t", str(out), "-o", str(tmp_path / "o.wav"), "-m", str(tiny_bundle))
    assert converted.exit_code == 0, converted.output
    assert "(file)" in converted.output and "from the voice file" in converted.output
    other = tmp_path / "bad.voice"
    other.write_bytes(b"RIFF....WAVE")
    one_line_error(invoke("convert", str(source), "-t", str(other), "-o", str(tmp_path / "p.wav"), "-m", str(tiny_bundle)),
                   "not a vconv voice file")
    one_line_error(invoke("convert", str(source), "-t", str(out), "-t", str(refs[0]), "-o", str(tmp_path / "q.wav"),
                          "-m", str(tiny_bundle)), "a voice file is a whole target")


def test_the_cli_caches_every_prepared_target_and_serve_only_fitted_ones(tiny_bundle, refs, tmp_path, private_cache_home):
    """A second `vconv convert` to the same references reads the prepared voice from the cache (the room estimate,
    the embedding, the register and the spectrum not computed again: ~50 ms of the example's conversion) and writes
    the same audio; --no-cache neither reads nor writes it; serve's cache keeps an unfitted upload nowhere."""
    from vconv.cli.common import load_converter
    from vconv.inference.settings import ConversionSettings

    source = tmp_path / "s.wav"
    sf.write(source, voiced_signal(1.0, f0=150.0, seed=9), 16000)

    def convert(out: str, *extra: str) -> str:
        result = invoke("convert", str(source), "-t", str(refs[0]), "-o", str(tmp_path / out), "-m", str(tiny_bundle), *extra)
        assert result.exit_code == 0, result.output
        return result.output

    assert "(cache)" not in convert("a.wav", "--no-cache") and not (private_cache_home / "vconv").exists()
    assert "(cache)" not in convert("b.wav")
    assert len(list((private_cache_home / "vconv" / "voices").glob("*.voice"))) == 1
    assert "(cache)" in convert("c.wav")
    a, b, c = (sf.read(tmp_path / name)[0] for name in ("a.wav", "b.wav", "c.wav"))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, c)
    serving = load_converter(str(tiny_bundle), ConversionSettings(), fitted_only=True)
    assert serving.target_voice([str(refs[1])]).origin == "computed"
    assert serving.target_voice([str(refs[1])]).origin == "computed"  # an unfitted upload was not kept
    assert len(list((private_cache_home / "vconv" / "voices").glob("*.voice"))) == 1


def test_a_cache_folder_that_cannot_be_read_is_a_miss_not_an_error(tiny_bundle, refs, tmp_path, private_cache_home, monkeypatch):
    source = tmp_path / "s.wav"
    sf.write(source, voiced_signal(1.0, f0=150.0, seed=9), 16000)
    convert = ["convert", str(source), "-t", str(refs[0]), "-o", str(tmp_path / "o.wav"), "-m", str(tiny_bundle), "--force"]
    assert invoke(*convert).exit_code == 0  # the cache holds the voice now
    folder = private_cache_home / "vconv" / "voices"
    real_is_file = Path.is_file

    def unsearchable(path: Path) -> bool:  # a folder without search permission: Python 3.11's is_file raises
        if folder in path.parents:
            raise PermissionError(13, "Permission denied", str(path))
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", unsearchable)
    result = invoke(*convert)
    assert result.exit_code == 0 and "(cache)" not in result.output, result.output


def test_the_page_takes_an_uploaded_voice_file(fitted, refs, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from vconv.serve.app import create_app
    from vconv.serve.limits import ServeLimits

    voice, source = fitted.prepared_target([str(refs[0])])
    good = save_voice(tmp_path / "v.voice", voice, source).read_bytes()
    src = refs[1].read_bytes()
    with TestClient(create_app(fitted, ServeLimits(max_upload_mb=2, max_seconds=10))) as client:
        answer = client.post("/api/convert", files=[("source", ("s.wav", src, "audio/wav")), ("target", ("v.voice", good, "application/octet-stream"))])
        assert answer.status_code == 200, answer.text
        assert client.post("/api/target", files=[("target", ("v.voice", good, "application/octet-stream"))]).status_code == 200
        foreign = save_voice(tmp_path / "f.voice", voice, dataclasses.replace(source, bundle="x", bundle_digest="0" * 64)).read_bytes()
        refused = client.post("/api/convert", files=[("source", ("s.wav", src, "audio/wav")), ("target", ("f.voice", foreign, "x"))])
        assert refused.status_code == 422 and refused.json()["error"].startswith("target 1: a voice file of another model")


def test_the_fit_shows_its_progress_once_it_runs_past_a_second(monkeypatch, capsys):
    from vconv.cli import common as cli_common

    clock = iter([0.0, 0.4, 1.5, 2.0])
    monkeypatch.setattr(cli_common.time, "perf_counter", lambda: next(clock))
    progress = cli_common.FitProgress()
    for step in (1, 2, 3, 4):
        progress(step, 4)
    err = capsys.readouterr().err
    assert err == "fitting the voice: step 4/4, 2.0 s\n"  # not a terminal: one line, at the end
    quick = cli_common.FitProgress()
    monkeypatch.setattr(cli_common.time, "perf_counter", lambda: 0.1)
    quick(1, 1)
    assert capsys.readouterr().err == ""


def test_threads_are_validated_and_applied(monkeypatch):
    with pytest.raises(VconvError, match="--threads 0"):
        check_threads(0)
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        apply_threads(1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
    result = invoke("convert", "x.wav", "-t", "y.wav", "-o", "z.wav", "--threads", "0")
    assert result.exit_code == 2


def test_the_cli_makes_idle_threads_sleep_unless_the_user_chose(tmp_path):
    probe = "import os, sys; sys.argv = ['vconv', '--help']\nfrom vconv.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\nprint('POLICY', os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT).stdout
    assert "POLICY PASSIVE" in out
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, cwd=ROOT).stdout
    assert "POLICY ACTIVE" in out


def test_a_pipe_is_never_opened_to_tell_whether_it_is_a_voice_file(tmp_path):
    """Sniffing a FIFO would block until a writer comes: names are checked as regular files first."""
    fifo, voice_fifo = tmp_path / "x.wav", tmp_path / "x.voice"
    os.mkfifo(fifo)
    os.mkfifo(voice_fifo)
    assert not looks_like_voice_file(fifo)
    with pytest.raises(VconvError, match="not a regular file"):
        voice_metadata(voice_fifo)


def test_a_voice_file_keeps_which_bands_carry_the_voice_and_an_old_one_matches_every_band(fitted, refs, tmp_path):
    voice, source = fitted.prepared_target([str(refs[0])])
    voiced = torch.ones(voice.spectrum.mean.shape, dtype=torch.bool)
    voiced[-10:] = False  # as a room's hiss over a band-limited voice reads
    noisy = dataclasses.replace(voice, spectrum=dataclasses.replace(voice.spectrum, voiced_bands=voiced))
    again = load_voice(save_voice(tmp_path / "v.voice", noisy, source), fitted.info.path.name, fitted.info.digest)
    assert torch.equal(again.spectrum.voiced_bands, voiced)
    old = dataclasses.replace(voice, spectrum=dataclasses.replace(voice.spectrum, voiced_bands=None))
    assert load_voice(save_voice(tmp_path / "old.voice", old, source), fitted.info.path.name,
                      fitted.info.digest).spectrum.voiced_bands is None  # a file made before: every band matched
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "v.voice"))
    for bad in (torch.full_like(tensors["spectrum_voiced"], 2), tensors["spectrum_voiced"][:5]):
        save_file({**tensors, "spectrum_voiced": bad}, str(tmp_path / "bad.voice"), metadata=voice_metadata(tmp_path / "v.voice"))
        with pytest.raises(VconvError, match="corrupt voice file .*spectrum_voiced"):
            fitted.open_voice(tmp_path / "bad.voice")


def test_an_older_cache_entry_learns_its_voiced_bands_without_a_fit(fitted, refs, tmp_path, counted_fits):
    from vconv.audio.rooms import Room, in_room

    sr = fitted.sample_rate
    wav = fitted.prepare_audio(str(refs[0]), None)
    wet = in_room(np.concatenate([wav, wav]), sr, Room(rt60=0.45, snr_db=20.0, colour="white", seed=0))
    fitted.voice_cache = VoiceCache(tmp_path / "cache")
    try:
        fresh, source = fitted.prepared_target([wet], sr)
        assert fresh.spectrum.voiced_bands is not None and len(counted_fits) == 1
        fitted.voice_cache.put(source, dataclasses.replace(fresh, spectrum=dataclasses.replace(fresh.spectrum, voiced_bands=None)))
        again = fitted.target_voice([wet], sr)
        assert again.origin == "cache" and len(counted_fits) == 1
        assert torch.equal(again.spectrum.voiced_bands, fresh.spectrum.voiced_bands)
    finally:
        fitted.voice_cache = None


def test_a_cache_hit_runs_no_enhancer_and_the_enhance_mode_is_part_of_the_key(fitted, refs, tmp_path, counted_fits, monkeypatch):
    """The cache is keyed on the references as recorded and the enhance mode, so a hit skips the room estimate
    (18-37 ms of a 3.5 s reference) that a second conversion used to pay before its lookup."""
    fitted.voice_cache = VoiceCache(tmp_path / "cache")
    mode = fitted.enhance
    try:
        fitted.enhance = "auto"
        first = fitted.target_voice([str(r) for r in refs])
        heard: list[int] = []
        real = type(fitted).heard_cleaned
        monkeypatch.setattr(type(fitted), "heard_cleaned", lambda self, wav, *rest: heard.append(1) or real(self, wav, *rest))
        again = fitted.target_voice([str(r) for r in refs])
        assert again.origin == "cache" and not heard and torch.equal(again.embedding, first.embedding)
        fitted.enhance = "off"  # read another way: another voice
        assert fitted.target_voice([str(r) for r in refs]).origin == "computed" and len(counted_fits) == 2
    finally:
        fitted.enhance, fitted.voice_cache = mode, None
