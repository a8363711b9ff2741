"""Property-based checks of the three readers of user files: bundles, manifests and run configs.

Random bytes, truncations and mutated JSON/YAML values must give a clean :class:`VconvError` (or a valid
result), never another exception and never an allocation past the bound: the parameter budget
(:mod:`vconv.models.budget`) is lowered to :data:`TEST_BUDGET` parameters here, so any model these
readers would build is at most 4 bytes x that (plus the weights file itself, which is digest-checked),
and the process's peak RSS may not grow by more than :data:`RSS_BOUND_MB` over a whole property.
"""

from __future__ import annotations

import json
import resource
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vconv.errors import VconvError

TEST_BUDGET = 5_000_000  # parameters: 20 MB of float32
RSS_BOUND_MB = 400  # peak RSS growth allowed over one property (a tiny model, a front-end, parsing)
SETTINGS = settings(max_examples=60, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow], derandomize=True)

# any JSON value, including the awkward ones: huge and negative numbers, wrong types, deep-ish nesting
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from([0, 1, -1, 65536, 10**12, 0.5, 1e308, "", "1e5", "maybe"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@pytest.fixture
def small_budget(monkeypatch):
    import vconv.models.budget as budget

    monkeypatch.setattr(budget, "MAX_PARAMETERS", TEST_BUDGET)
    start = peak_rss_mb()
    yield
    assert peak_rss_mb() - start < RSS_BOUND_MB


# ------------------------------------------------------------------------------------------ bundles


@pytest.fixture(scope="module")
def bundle_copy(tiny_bundle, tmp_path_factory) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("prop") / "b"))


def _load_bundle_with_config(bundle: Path, config_bytes: bytes, scratch: Path) -> None:
    from vconv.bundles import load_bundle

    target = scratch / "b"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle, target)
    (target / "config.json").write_bytes(config_bytes)
    try:
        load_bundle(target)
    except VconvError as exc:
        assert str(exc) and "\n" not in str(exc)


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_bundle_config_of_random_bytes(data, bundle_copy, tmp_path, small_budget):
    _load_bundle_with_config(bundle_copy, data, tmp_path)


@SETTINGS
@given(cut=st.floats(0.0, 1.0))
def test_bundle_config_truncated(cut, bundle_copy, tmp_path, small_budget):
    raw = (bundle_copy / "config.json").read_bytes()
    _load_bundle_with_config(bundle_copy, raw[: int(cut * len(raw))], tmp_path)


def _paths(value, prefix=()):
    """Every key path into a JSON value (for picking what to mutate)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list) and value:
        yield from _paths(value[0], (*prefix, 0))


@SETTINGS
@given(data=st.data())
def test_bundle_config_with_a_mutated_value(data, bundle_copy, tmp_path, small_budget):
    config = json.loads((bundle_copy / "config.json").read_text())
    paths = [p for p in _paths(config) if p]
    path = data.draw(st.sampled_from(paths))
    value = data.draw(json_values)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    _load_bundle_with_config(bundle_copy, json.dumps(config).encode(), tmp_path)


@SETTINGS
@given(data=st.binary(max_size=4096), keep_digest=st.booleans())
def test_bundle_weights_of_random_bytes(data, keep_digest, bundle_copy, tmp_path, small_budget):
    """Garbage weights are refused by the digest, or (digest updated, as a forger would) by the parser."""
    from vconv.bundles import load_bundle
    from vconv.fileio import sha256_of

    target = tmp_path / "w"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle_copy, target)
    (target / "model.safetensors").write_bytes(data)
    if not keep_digest:
        config = json.loads((target / "config.json").read_text())
        config["sha256"]["model.safetensors"] = sha256_of(target / "model.safetensors")
        (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(VconvError):
        load_bundle(target)


# ---------------------------------------------------------------------------------------- manifests


def _read_manifest_bytes(data: bytes, tmp_path: Path) -> None:
    from vconv.data.manifest import feature_path, read_manifest

    path = tmp_path / "m.jsonl"
    path.write_bytes(data)
    try:
        utterances = read_manifest(path)
    except VconvError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    out = (tmp_path / "feats").resolve()
    ids = [u.id for u in utterances]
    assert len(ids) == len(set(ids))
    for utt in utterances:  # whatever the manifest says, its features land inside the folder
        assert out in feature_path(out, utt).resolve().parents


GOOD_MANIFEST = "".join(json.dumps({"id": f"spk/u{i}", "path": f"spk/u{i}.wav", "speaker": "spk", "duration": 1.5}) + "\n"
                        for i in range(3)).encode()


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_manifest_of_random_bytes(data, tmp_path):
    _read_manifest_bytes(data, tmp_path)


@SETTINGS
@given(cut=st.integers(0, len(GOOD_MANIFEST)), junk=st.binary(max_size=8))
def test_manifest_truncated(cut, junk, tmp_path):
    _read_manifest_bytes(GOOD_MANIFEST[:cut] + junk, tmp_path)


@SETTINGS
@given(key=st.sampled_from(["id", "path", "speaker", "duration", "text", "gender"]), value=json_values,
       ids=st.lists(st.text(alphabet="ab/.\\:\x00 ", max_size=8), max_size=3))
def test_manifest_with_mutated_values(key, value, ids, tmp_path):
    lines = [{"id": i, "path": "a.wav", "speaker": "s", "duration": 1.0} for i in ids]
    lines.append({"id": "spk/x", "path": "x.wav", "speaker": "s", "duration": 1.0, key: value})
    _read_manifest_bytes("".join(json.dumps(r) + "\n" for r in lines).encode(), tmp_path)


# ------------------------------------------------------------------------------------------ configs

SECTIONS = {
    "features": ["sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "fmin", "fmax", "log_floor"],
    "model": ["n_mels", "code_dim", "speaker_dim", "n_speakers", "content_encoder", "quantizer", "speaker_encoder", "decoder",
              "adversary", "content_frontend", "speaker_frontend",
              # the flat keys of older configs (vconv.config.legacy)
              "channels", "content_blocks", "downsample", "codebook_size", "vq_groups", "quantize", "kernel_size"],
    "train": ["steps", "batch_size", "lr", "bf16", "seed", "threads", "segment_frames", "valid_manifest", "keep_checkpoints"],
}


def _load_config(text: str, tmp_path: Path) -> None:
    from vconv.config import load_run_config
    from vconv.models import build_model

    path = tmp_path / "run.yaml"
    path.write_text(text)
    try:
        features, model, train = load_run_config(path, ["train.train_manifest=m.jsonl", "train.run_dir=r"])
        build_model(model)  # a config that passed is within the (lowered) parameter budget, or refused here
    except VconvError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert 1 <= train.steps and 1 <= train.batch_size and 1 <= model.decoder["channels"] <= 4096 and isinstance(train.bf16, bool)


@SETTINGS
@given(data=st.data())
def test_run_config_with_mutated_values(data, tmp_path, small_budget):
    section = data.draw(st.sampled_from(sorted(SECTIONS)))
    changes = data.draw(st.dictionaries(st.sampled_from(SECTIONS[section]), json_values, min_size=1, max_size=3))
    text = yaml.safe_dump({"base": "debug", section: changes}) if data.draw(st.booleans()) else \
        "base: debug\n" + yaml.safe_dump({section: changes})
    _load_config(text, tmp_path)


@SETTINGS
@given(data=st.binary(max_size=1024))
def test_run_config_of_random_bytes(data, tmp_path, small_budget):
    from vconv.config import load_run_config

    path = tmp_path / "run.yaml"
    path.write_bytes(data)
    try:
        load_run_config(path, ["train.train_manifest=m.jsonl", "train.run_dir=r"])
    except VconvError as exc:
        assert str(exc) and "\n" not in str(exc)


def test_yaml_aliases_that_nest_do_not_explode(tmp_path):
    """A "billion laughs" YAML (each level nine aliases of the last) stays shared, and the key is refused."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    text = "model:\n" + "\n".join("  " + line for line in levels) + "\n"
    path = tmp_path / "laughs.yaml"
    path.write_text(text)
    from vconv.config import load_run_config

    start = peak_rss_mb()
    with pytest.raises(VconvError, match="unknown key"):
        load_run_config(path, ["train.train_manifest=m.jsonl", "train.run_dir=r"])
    assert peak_rss_mb() - start < 100
