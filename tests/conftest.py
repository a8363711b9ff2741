"""Shared fixtures and helpers: the committed TTS corpus, manifests of it, small generated signals, the
CLI runner with its one-line-error check (``from tests.conftest import invoke, one_line_error``), and
``deny_reading``, which makes files and folders unreadable for a test run as root. Every test runs with its own
``XDG_CACHE_HOME``, so the CLI's cache of prepared voices never reads or fills the user's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "corpus"


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path_factory, monkeypatch) -> Path:
    """A fresh ``XDG_CACHE_HOME`` for each test (the CLI caches every prepared target voice there)."""
    home = tmp_path_factory.mktemp("cache-home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def voiced_signal(seconds: float = 1.0, sr: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A speech-like test signal ``[T]``: harmonics of a wobbling f0, syllable-rate amplitude envelope, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) + 0.05
    wav = wav * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.5 * wav / np.max(np.abs(wav))).astype(np.float32)


def invoke(*args):
    """Run the vconv CLI in-process with ``args`` (paths and numbers as strings); the Typer result."""
    from typer.testing import CliRunner

    from vconv.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, reason: str) -> None:
    """Assert a CLI result failed with exit code 1 and exactly one ``error: ...`` line naming ``reason``."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], result.output


def deny_reading(monkeypatch, *paths) -> None:
    """Make ``paths`` unreadable as the kernel makes a ``chmod 000`` file or folder for a normal user; the tests run
    as root, who may read anything. ``os.access(path, R_OK)`` says no (what Click's own check and vconv's audio
    checks ask), and listing such a folder raises PermissionError (``os.scandir``, which ``os.walk`` uses, and
    ``os.listdir``, which ``Path.iterdir`` uses)."""
    import os

    locked = {os.path.abspath(p) for p in paths}

    def is_locked(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)) in locked

    real_access, real_scandir, real_listdir = os.access, os.scandir, os.listdir

    def access(path, mode, **kwargs):
        return False if mode & os.R_OK and is_locked(path) else real_access(path, mode, **kwargs)

    def lister(real):
        def listing(path="."):
            if is_locked(path):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path)
        return listing

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "scandir", lister(real_scandir))
    monkeypatch.setattr(os, "listdir", lister(real_listdir))


@pytest.fixture(scope="module")
def manifests(request, tmp_path_factory, corpus_dir) -> Path:
    """``all/train/valid/test.jsonl`` of the fixture corpus (seed 0), once per test module; the module's
    ``VALID_SPEAKERS`` (default 1) speakers go to validation."""
    from vconv.data.prepare import prepare_corpus

    out = tmp_path_factory.mktemp("manifests")
    prepare_corpus(corpus_dir, out, num_valid_speakers=getattr(request.module, "VALID_SPEAKERS", 1), seed=0)
    return out


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    assert CORPUS.is_dir(), "tests/data/corpus is missing; run python tests/data/make_fixtures.py"
    return CORPUS


@pytest.fixture
def wav_file(tmp_path: Path) -> Path:
    path = tmp_path / "voice.wav"
    sf.write(path, voiced_signal(1.0), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> Path:
    """Two speech-like recordings at 16 kHz, ``low.wav`` (F0 about 110 Hz) and ``high.wav`` (about 220 Hz)."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("voices")
    sf.write(folder / "low.wav", voiced_signal(2.0, f0=110.0, seed=1), 16000)
    sf.write(folder / "high.wav", voiced_signal(2.0, f0=220.0, seed=2), 16000)
    return folder


TINY = dict(  # a model small enough for CPU tests (~60k parameters), each part from its own section
    n_mels=16, code_dim=8, speaker_dim=12, n_speakers=3,
    content_encoder={"kind": "conv", "channels": 32, "blocks": 2, "downsample": [1, 2]},
    quantizer={"kind": "vq", "codebook_size": 16},
    speaker_encoder={"kind": "conv", "channels": 32, "blocks": 2},
    decoder={"kind": "adain", "channels": 32, "blocks": 2},
    adversary={"kind": "classifier", "hidden": 32},
)


def tiny_model_config(**overrides):
    """:data:`TINY` with ``overrides``: a part's settings merged into its section (``content_encoder={"blocks": 3}``),
    another kind replacing it (``quantizer={"kind": "none"}``)."""
    def merge(key, value):
        base = TINY.get(key)
        if isinstance(base, dict) and value.get("kind", base["kind"]) == base["kind"]:
            return {**base, **value}
        return value
    from vconv.config import ModelConfig

    merged = {key: merge(key, value) for key, value in overrides.items()}
    return ModelConfig(**{**TINY, **merged})


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A randomly initialised debug-size VC model saved as a bundle (fp16 weights)."""
    import torch

    from vconv.audio.frontend import FeatureStats, FrontEnd
    from vconv.bundles import save_bundle
    from vconv.config import load_run_config
    from vconv.models import build_model

    features, model_cfg, _ = load_run_config("debug", ["train.train_manifest=x", "train.run_dir=y"])
    torch.manual_seed(0)
    model = build_model(model_cfg)
    stats = FeatureStats(torch.full((features.n_mels,), -4.0), torch.full((features.n_mels,), 2.0), 1)
    return save_bundle(tmp_path_factory.mktemp("bundles") / "tiny", model, FrontEnd(features, stats), dtype=torch.float16)


@pytest.fixture(scope="session")
def tiny_pitch_bundle(tmp_path_factory) -> Path:
    """A randomly initialised debug-size VC model with the pitch path (YIN), its pitch projections non-zero."""
    import torch

    from vconv.audio.frontend import FeatureStats, FrontEnd
    from vconv.bundles import save_bundle
    from vconv.config import load_run_config
    from vconv.frontends import pitch_part
    from vconv.models import build_model

    features, model_cfg, _ = load_run_config("debug", ["train.train_manifest=x", "train.run_dir=y", "model.pitch_frontend.kind=yin"])
    torch.manual_seed(0)
    model = build_model(model_cfg)
    with torch.no_grad():
        for projection in model.decoder.pitch_in:
            projection.weight.normal_(0, 0.5)
    stats = FeatureStats(torch.full((features.n_mels,), -4.0), torch.full((features.n_mels,), 2.0), 1)
    frontend = FrontEnd(features, stats, pitch=pitch_part(model_cfg))
    return save_bundle(tmp_path_factory.mktemp("bundles") / "tiny_pitch", model, frontend, dtype=torch.float16)
