"""Conversion, embedding, bundles and the Python API, end to end through the CLI with a tiny model."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import vconv
from tests.conftest import invoke
from vconv.bundles import load_bundle
from vconv.config import FeatureConfig
from vconv.errors import VconvError
from vconv.training.runs import load_training_state
from vconv.vocoders import check_compatible, get_vocoder

runner = CliRunner()


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return tiny_bundle


@pytest.fixture
def spk(corpus_dir):
    return {p.name: sorted(p.glob("*.wav")) for p in corpus_dir.iterdir() if p.is_dir()}


def test_cli_convert_file_length_rate_and_force(bundle, spk, tmp_path):
    src = spk["flite_awb"][0]
    out = tmp_path / "out.wav"
    result = invoke("convert", src, "--target", spk["flite_slt"][1], "-o", out, "-m", bundle)
    assert result.exit_code == 0, result.output
    info, src_info = sf.info(str(out)), sf.info(str(src))
    assert info.samplerate == 16000 and info.channels == 1 and info.frames == src_info.frames
    data, _ = sf.read(str(out))
    assert np.isfinite(data).all() and np.abs(data).max() > 0
    before = out.read_bytes()
    again = invoke("convert", src, "--target", spk["espeak_f3"][0], "-o", out, "-m", bundle)
    assert again.exit_code == 1 and "already exists; pass --force" in again.output
    assert out.read_bytes() == before
    forced = invoke("convert", src, "--target", spk["espeak_f3"][0], "-o", out, "-m", bundle, "--force", "--sample-rate", 22050)
    assert forced.exit_code == 0, forced.output
    assert sf.info(str(out)).samplerate == 22050


def test_cli_convert_folder_with_a_broken_file_is_a_partial_failure(bundle, corpus_dir, spk, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(corpus_dir / "flite_rms", src / "rms")
    (src / "rms" / "broken.wav").write_bytes(b"not audio at all")
    result = invoke("convert", src, "--target", corpus_dir / "flite_slt", "-o", tmp_path / "out", "-m", bundle, "--no-progress")
    assert result.exit_code == 3, result.output  # some failed, the rest done
    assert "converted 4 file(s)" in result.stdout and "1 failed" in result.stdout
    assert result.stderr.strip().startswith(f"error: {src / 'rms' / 'broken.wav'}: not a readable audio file (")
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "out" / "rms").iterdir()) == [p.name for p in spk["flite_rms"]]


def test_api_round_trip_and_averaged_references(bundle, spk):
    vc = vconv.load(bundle, precision="float32")  # the averaging checked to float32's precision (bfloat16: test_precision.py)
    assert isinstance(vc, vconv.VoiceConverter) and vc.sample_rate == 16000
    wav, sr = sf.read(str(spk["flite_kal16"][0]), dtype="float32")
    out = vc.convert(wav, [spk["flite_slt"][0]], sr=sr)
    assert out.shape == wav.shape and out.dtype == np.float32
    # a 44.1 kHz stereo array is downmixed and resampled, giving the same length at 16 kHz
    import soxr

    stereo = np.stack([soxr.resample(wav, 16000, 44100)] * 2, axis=1)
    assert abs(vc.convert(stereo, spk["flite_slt"][0], sr=44100).size - wav.size) <= 2
    a, b = spk["flite_slt"][0], spk["espeak_f3"][0]
    both = vc.speaker_embedding([a, b])
    each = torch.cat([vc.speaker_embedding([a]), vc.speaker_embedding([b])]).mean(0, keepdim=True)
    torch.testing.assert_close(both, each, rtol=1e-5, atol=1e-5)
    emb = vc.embed([a, b])
    assert emb.shape == (2, vc.model.config.speaker_dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(VconvError, match="sample rate"):
        vc.convert(wav, a)


def _seam_frames(vc, length: int, chunk_seconds: float, overlap_seconds: float, margin_seconds: float) -> np.ndarray:
    """A mask ``[frames]`` that is False within ``margin_seconds`` of every chunk join (same rounding as convert_wav)."""
    from vconv.inference.chunking import chunk_starts

    hop, sr = vc.features.hop_length, vc.sample_rate
    chunk = int(chunk_seconds * sr) // hop * hop
    overlap = min(chunk // 2, int(overlap_seconds * sr) // hop * hop)
    away = np.ones(1 + length // hop, dtype=bool)
    margin = int(margin_seconds * sr)
    for start in chunk_starts(length, chunk, overlap, hop)[1:]:
        away[max(0, start - margin) // hop : (start + overlap + margin) // hop + 1] = False
    return away


@pytest.mark.parametrize("overlap_seconds,spectrum_matched", [(1.0, False), (0.0, False), (1.0, True)])
def test_chunked_conversion_of_a_long_input_is_continuous_and_matches_the_whole(overlap_seconds, spectrum_matched):
    """Away from the joins a chunked conversion sounds like the unchunked one; at the joins there is no jump.

    Compared as log-mels (the vocoder's phases may differ sample by sample). Measured with the shipped v5
    (4 + 4 vocoder passes) on 10.7 s in 4 s chunks, as fractions of how far conversion itself moves the
    log-mel (0.97): away from the joins 0.23 (1 s overlap) / 0.26 (none) / 0.27 (1 s, target matching),
    near them 0.33 / 0.35 / 0.36; the largest frame-to-frame level step 0.91 / 0.98 / 1.03 of the unchunked
    one. Before chunks were converted with context (``CONTEXT_SECONDS``), zero overlap gave 0.62 near the
    joins and a step of 1.44: the model's first frames of every chunk, 1.7-3.7 nats too quiet, left a
    ~50 ms dropout at each join.
    """
    vc = vconv.load()
    source = vc.prepare_audio(EXAMPLES / "source.wav", None)
    long = np.concatenate([source, 0.8 * source[::-1], source])
    # each chunk is matched to the target spectrum on its own statistics: that too must not show at the joins
    emb = vc.target_voice([EXAMPLES / "target.wav"]) if spectrum_matched else vc.speaker_embedding([EXAMPLES / "target.wav"])
    whole = vc.convert_wav(long, emb, chunk_seconds=60.0)
    chunked = vc.convert_wav(long, emb, chunk_seconds=4.0, overlap_seconds=overlap_seconds)
    assert chunked.shape == whole.shape == long.shape and np.isfinite(chunked).all()
    a, b = vc.frontend.log_mel(chunked).numpy(), vc.frontend.log_mel(whole).numpy()
    speech = b.mean(axis=0) > np.percentile(b.mean(axis=0), 30)
    away = _seam_frames(vc, long.size, 4.0, overlap_seconds, margin_seconds=0.5)
    conversion_change = np.abs(b - vc.frontend.log_mel(long).numpy())[:, speech].mean()
    assert np.abs(a - b)[:, away & speech].mean() < 0.4 * conversion_change
    assert np.abs(a - b)[:, ~away & speech].mean() < 0.5 * conversion_change
    level = a.mean(axis=0)  # a click or a gap at a join is a step in the frame level
    assert np.abs(np.diff(level)).max() < 1.25 * np.abs(np.diff(b.mean(axis=0))).max()


def test_zero_overlap_with_a_sliver_left_over_still_converts_the_tail():
    # before the fix: 2 chunks + a few samples left a chunk of one mel frame -> "too short" for the whole file
    vc = vconv.load()
    wav = vc.prepare_audio(EXAMPLES / "source.wav", None)
    chunk = int(1.0 * vc.sample_rate) // vc.features.hop_length * vc.features.hop_length
    long = np.tile(wav, 3)[: 2 * chunk + 100]
    emb = vc.speaker_embedding([EXAMPLES / "target.wav"])
    out = vc.convert_wav(long, emb, chunk_seconds=1.0, overlap_seconds=0.0)
    assert out.shape == long.shape and np.isfinite(out).all()
    whole = vc.convert_wav(long, emb, chunk_seconds=60.0)
    rms = lambda x: float(np.sqrt(np.mean(x[2 * chunk - 4000 :] ** 2)))  # noqa: E731 - the last quarter second
    assert rms(out) > 0.5 * rms(whole)  # the tail is converted like the rest, not left near-silent


def test_cli_embed_json_npy_and_similarity(bundle, corpus_dir, tmp_path):
    out = tmp_path / "e.json"
    result = invoke("embed", corpus_dir / "flite_slt", corpus_dir / "flite_awb", "-o", out, "-m", bundle, "--similarity", "--no-progress")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["speakers"]) == {"flite_slt", "flite_awb"} and len(data["utterances"]) == 8
    assert "flite_slt" in result.output and "1.000" in result.output
    npy = tmp_path / "e.npy"
    assert invoke("embed", corpus_dir / "flite_slt", corpus_dir / "espeak_f3", corpus_dir / "flite_rms", "-o", npy, "-m", bundle, "--no-progress").exit_code == 0
    matrix = np.load(npy)
    assert matrix.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    lines = [{"id": f.stem, "path": str(f), "speaker": d, "duration": 1.0} for d in ("flite_slt", "flite_awb")
             for f in sorted((corpus_dir / d).glob("*.wav"))]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    by_manifest = invoke("embed", tmp_path / "m.jsonl", "-o", tmp_path / "m.json", "-m", bundle, "--no-progress")
    assert by_manifest.exit_code == 0, by_manifest.output
    assert json.loads((tmp_path / "m.json").read_text())["speakers"] == data["speakers"]  # a manifest's lines by speaker


def test_tampered_weights_fail_the_sha256_check(bundle, spk, tmp_path):
    bad = tmp_path / "tampered"
    shutil.copytree(bundle, bad)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = invoke("convert", spk["flite_awb"][0], "-t", spk["flite_slt"][0], "-o", tmp_path / "o.wav", "-m", bad)
    assert result.exit_code == 1 and "sha256 mismatch" in result.output
    assert not (tmp_path / "o.wav").exists()


def test_bundle_of_another_version_is_refused(bundle, tmp_path):
    other = tmp_path / "old"
    shutil.copytree(bundle, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["format_version"] = 99
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(VconvError, match="bundle format version 99"):
        load_bundle(other)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/vconv-pwned",))


def test_pickle_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"model": _Exploit()}, fh)
    if os.path.exists("/tmp/vconv-pwned"):
        os.unlink("/tmp/vconv-pwned")
    with pytest.raises(VconvError, match="refused"):
        load_training_state(path)
    assert not os.path.exists("/tmp/vconv-pwned")


def test_model_vocoder_feature_mismatch_is_refused(bundle):
    vocoder = get_vocoder("griffinlim", FeatureConfig(hop_length=200))
    with pytest.raises(VconvError) as info:
        check_compatible(FeatureConfig(), vocoder)
    assert "hop_length" in str(info.value) and "200" in str(info.value) and "256" in str(info.value)
    model, frontend, bundle_info = load_bundle(bundle)
    with pytest.raises(VconvError, match="hop_length"):
        vconv.VoiceConverter(model, frontend, bundle_info, vocoder)


def test_models_lists_bundles_from_vconv_models(bundle, monkeypatch):
    monkeypatch.setenv("VCONV_MODELS", str(bundle.parent))
    result = invoke("models")
    assert result.exit_code == 0 and "tiny" in result.output and "VCONV_MODELS" in result.output
    unknown = invoke("convert", "x.wav", "-t", "y.wav", "-o", "z.wav", "-m", "no-such-model")
    assert unknown.exit_code == 1 and "model 'no-such-model' not found" in unknown.output


@pytest.mark.slow
def test_regular_wheel_install_finds_the_shipped_bundles(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), root], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("vconv-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"), str(wheel)], check=True, timeout=300)
    code = "import vconv.inference.registry as p, json; print(json.dumps([[b.name, str(b.path)] for b in p.list_bundles()]))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
                          capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(proc.stdout)
    shipped = sorted(p for p in os.listdir(os.path.join(root, "pretrained")) if os.path.isfile(os.path.join(root, "pretrained", p, "config.json")))
    assert sorted(name for name, _ in found) == shipped
    assert all(str(tmp_path / "site") in path for _, path in found)
    # the page of `vconv serve` is package data too
    assert {p.name for p in (tmp_path / "site" / "vconv" / "serve" / "static").iterdir()} == {"index.html", "app.js", "live.js", "live-worklet.js", "style.css"}


@pytest.mark.parametrize("chunk_seconds", [20.0, 1.0])  # one chunk, and several cross-faded ones
def test_the_pair_of_outputs_is_the_conversion_and_the_model_own_output(tiny_bundle, chunk_seconds):
    """convert_wav_pair: what `vconv convert` writes, and what it writes with --target-match off, from one pass."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    matched_vc = vconv.load(tiny_bundle, vocoder="griffinlim")
    off_vc = vconv.load(tiny_bundle, vocoder="griffinlim", target_match="off")
    wav = matched_vc.prepare_audio(examples / "source.wav", None)
    refs = [examples / "target.wav"]
    target = matched_vc.target_voice(refs)
    converted, own = matched_vc.convert_wav_pair(wav, target, chunk_seconds=chunk_seconds, overlap_seconds=0.25)
    np.testing.assert_array_equal(converted, matched_vc.convert_wav(wav, target, chunk_seconds=chunk_seconds, overlap_seconds=0.25))
    np.testing.assert_array_equal(own, off_vc.convert_wav(wav, off_vc.target_voice(refs), chunk_seconds=chunk_seconds,
                                                          overlap_seconds=0.25))
    assert not np.array_equal(converted, own)  # the matching did something


@pytest.mark.parametrize(("source_rate", "out_rate"), [(16000, None), (44100, 22050)])
def test_a_long_file_converts_in_bounded_memory_to_what_the_whole_file_gives(tmp_path, source_rate, out_rate):
    """A source longer than one chunk is read, converted and written a chunk at a time (vconv.inference.long_files);
    the file it writes is the one converting the whole waveform in memory gives."""
    from vconv.audio.io import resample, save
    from vconv.inference.batch import convert_paths, is_long
    from vconv.inference.converter import limit_peak

    vc = vconv.load()
    speech = vc.prepare_audio(EXAMPLES / "source.wav", None)
    stereo_noise = 0.01 * np.random.default_rng(0).standard_normal((speech.size * 13, 2)).astype(np.float32)
    stereo = np.tile(speech, 13)[:, None] * np.array([0.9, 0.7], np.float32) + stereo_noise  # ~46 s, 3 chunks
    src = tmp_path / "long.wav"
    if source_rate == 16000:  # stereo at the model's rate: read in place, downmixed a span at a time
        sf.write(src, stereo, source_rate)
    else:  # mono at another rate: read through the resampled scratch copy
        sf.write(src, resample(stereo.mean(axis=1), 16000, source_rate), source_rate)
    assert is_long(src, vc.sample_rate)
    ref = EXAMPLES / "target.wav"
    report = convert_paths(vc, src, [ref], tmp_path / "streamed.wav", force=True, progress=False, sample_rate=out_rate)
    assert report.converted and not report.failed

    whole = vc.convert_wav(vc.prepare_audio(src, None, str(src)), vc.target_voice([ref]))  # the in-memory path
    rate = out_rate or vc.sample_rate
    if rate != vc.sample_rate:
        whole = limit_peak(resample(whole, vc.sample_rate, rate))
    save(tmp_path / "whole.wav", whole, rate)
    streamed, sr = sf.read(tmp_path / "streamed.wav", dtype="int16")
    expected, _ = sf.read(tmp_path / "whole.wav", dtype="int16")
    assert sr == rate and streamed.shape == expected.shape
    assert np.abs(streamed.astype(np.int32) - expected).max() <= 2  # 16-bit rounding of float differences


PEAK_PROBE = """
import resource, sys
from vconv.cli import main
sys.argv = ["vconv", "convert", sys.argv[1], "--target", sys.argv[2], "-o", sys.argv[3], "--force"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_the_source_length(tmp_path):
    """`vconv convert` of a 5-minute source peaks within 10 % of a 40-second one's (both several chunks long),
    each in a fresh process: the source is read, converted and written a chunk at a time."""
    speech, rate = sf.read(EXAMPLES / "source.wav", dtype="float32")
    peaks = {}
    for seconds in (40, 300):
        src = tmp_path / f"src{seconds}.wav"
        sf.write(src, np.tile(speech, int(np.ceil(seconds * rate / speech.size)))[: seconds * rate], rate)
        proc = subprocess.run([sys.executable, "-c", PEAK_PROBE, str(src), str(EXAMPLES / "target.wav"),
                               str(tmp_path / f"out{seconds}.wav")], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-1000:]
        peaks[seconds] = int(proc.stdout.split("PEAK")[1])
        assert sf.info(tmp_path / f"out{seconds}.wav").frames == seconds * rate
    assert peaks[300] < 1.10 * peaks[40], peaks


@pytest.mark.slow
def test_a_long_reference_is_read_only_as_far_as_it_is_used(tmp_path):
    """A 10-minute target reference: its first two minutes make the voice (said in a note), memory stays
    far below what reading it whole would take, and the conversion equals one with those two minutes."""
    speech, rate = sf.read(EXAMPLES / "target.wav", dtype="float32")
    long_ref = tmp_path / "long_target.wav"
    sf.write(long_ref, np.tile(speech, int(np.ceil(600 * rate / speech.size)))[: 600 * rate], rate)
    first = tmp_path / "first_two_minutes.wav"
    sf.write(first, np.tile(speech, int(np.ceil(120 * rate / speech.size)))[: 120 * rate], rate)
    result = invoke("convert", EXAMPLES / "source.wav", "-t", long_ref, "-o", tmp_path / "a.wav")
    assert result.exit_code == 0, result.output
    assert "long_target.wav: 10.0 min long; its first 120 s are used for the voice" in result.stderr
    assert invoke("convert", EXAMPLES / "source.wav", "-t", first, "-o", tmp_path / "b.wav").exit_code == 0
    a, _ = sf.read(tmp_path / "a.wav", dtype="int16")
    b, _ = sf.read(tmp_path / "b.wav", dtype="int16")
    assert np.abs(a.astype(np.int32) - b).max() <= 1


def test_a_long_file_at_another_rate_gets_the_in_memory_peak_gain(tmp_path):
    """The long-file path applies one gain for the whole file; at another output rate it must equal the two gains
    of the in-memory path (limit at the model's rate, resample, limit again), whichever of the two peaks is larger."""
    from types import SimpleNamespace

    from vconv.audio.io import resample, save
    from vconv.inference.converter import limit_peak
    from vconv.inference.long_files import convert_long_file

    rng = np.random.default_rng(3)
    peaks = []
    for case in range(2):  # over 0.99 at 16 kHz; resampled, the peak rises (noise) or falls (lone one-sample clicks)
        source = (0.4 if case == 0 else 0.05) * rng.standard_normal(16000 * 3)
        if case == 1:
            source[rng.choice(source.size, 20, replace=False)] = 0.9
        source = source.clip(-0.99, 0.99).astype(np.float32)
        sf.write(tmp_path / "src.wav", source, 16000)
        made = 2.0 * source  # what the stand-in converter makes of it (peak > 0.99)
        peaks.append(float(np.abs(resample(made, 16000, 22050)).max()) > float(np.abs(made).max()))
        converter = SimpleNamespace(sample_rate=16000, convert_spans=lambda length, read, target, emit: [
            emit(2.0 * read(a, min(a + 5000, length))) for a in range(0, length, 5000)])
        convert_long_file(converter, tmp_path / "src.wav", None, tmp_path / "long.wav", rate=22050, force=True)
        save(tmp_path / f"whole{case}.wav", limit_peak(resample(limit_peak(made), 16000, 22050)), 22050)
        written, _ = sf.read(tmp_path / "long.wav", dtype="int16")
        expected, _ = sf.read(tmp_path / f"whole{case}.wav", dtype="int16")
        assert np.abs(written.astype(np.int32) - expected).max() <= 2, case
    assert peaks == [True, False]  # both orders of the two peaks were met
