"""A front-end part's output version travels with its stored tensor: `vconv extract` makes an older one again (only
that part), and training refuses it with a one-line error instead of learning from contours the model will never read."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from tests.conftest import invoke
from vconv.audio.pitch import YIN_VERSION
from vconv.data.feature_files import load_feature_tensors, read_feature_metadata, save_features, stored_versions
from vconv.data.manifest import feature_path, read_manifest
from vconv.errors import VconvError


def test_an_older_tracker_s_rows_are_made_again_by_extract_and_refused_by_training(manifests, tmp_path):
    import pytest

    from vconv.config import FeatureConfig, load_run_config
    from vconv.training.vc_trainer import ModelTrainer

    conf = tmp_path / "pitch.yaml"
    conf.write_text("base: debug\nmodel:\n  pitch_frontend: {kind: yin}\n")
    feats = tmp_path / "feats"
    extract = ("extract", str(manifests / "all.jsonl"), "-o", str(feats), "-c", str(conf), "--no-progress")
    assert invoke(*extract).exit_code == 0
    first, second = (feature_path(feats, utt) for utt in read_manifest(manifests / "all.jsonl")[:2])
    assert stored_versions(read_feature_metadata(first)) == {"pitch_yin": YIN_VERSION}
    # what a vconv before the slip path wrote: the same file, its rows made by YIN 1 (zeros here, to tell them apart),
    # its mel marked (+1) to show that a rerun keeps what is not stale instead of computing it again
    tensors, cfg = load_file(str(first)), FeatureConfig.from_dict(read_feature_config(first))
    old_rows, marked_mel = torch.zeros_like(tensors["pitch_yin"]), tensors["mel"] + 1.0
    extra = {key: value for key, value in tensors.items() if key != "mel"}
    save_features(first, marked_mel, cfg, {**extra, "pitch_yin": old_rows}, {"pitch_yin": 1})
    second_bytes = second.read_bytes()

    with pytest.raises(VconvError, match=r"pitch_yin made by version 1 of its front-end \(this vconv makes %d\); "
                                         r"rerun `vconv extract`" % YIN_VERSION):
        load_feature_tensors(first, cfg, ("mel", "pitch_yin"), {"pitch_yin": YIN_VERSION})
    overrides = [f"train.train_manifest={manifests / 'all.jsonl'}", f"train.run_dir={tmp_path / 'run'}",
                 f"train.features_dir={feats}", "train.steps=1"]
    with pytest.raises(VconvError, match=r"\(one of 1 such feature files\): pitch_yin made by version 1"):
        ModelTrainer(*load_run_config(str(conf), overrides), progress=False)  # before any step, not when first drawn

    result = invoke(*extract)
    assert result.exit_code == 0, result.output
    again = load_file(str(first))
    torch.testing.assert_close(again["mel"], marked_mel)  # the mel is kept as stored (not computed again) ...
    torch.testing.assert_close(again["pitch_yin"], tensors["pitch_yin"])  # ... the tracker's rows made again
    assert stored_versions(read_feature_metadata(first)) == {"pitch_yin": YIN_VERSION}
    assert second.read_bytes() == second_bytes  # a file of this version is not touched


def read_feature_config(path) -> dict:
    import json

    return json.loads(read_feature_metadata(path)["feature_config"])
