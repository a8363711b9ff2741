"""Twins (one recording in several voices): the file, the index, and what the content path reads."""

from __future__ import annotations

import json

import pytest
import torch

from vconv.audio.frontend import FrontEnd
from vconv.config import FeatureConfig
from vconv.data.extract import ExtractSpec
from vconv.data.manifest import Utterance
from vconv.data.segments import FeatureStore, SegmentBatches
from vconv.data.twins import load_twin_groups, twin_index
from vconv.errors import VconvError
from vconv.frontends import build_frontend_part

FRAMES, SEGMENT = 40, 16


DVECTOR = build_frontend_part("speaker", {"kind": "dvector"})


def content_part(key: str):
    """The content front-end part whose feature key is ``key`` (``mel`` or ``whisper4``)."""
    return build_frontend_part("content", {"kind": "mel"} if key == "mel" else {"kind": "whisper", "layer": 4})


def utterances() -> list[Utterance]:
    """Speaker a's u0/u1 and their warped copies by aug_a (u0 only) and aug_b (u0, u1)."""
    ids = ["a/u0", "a/u1", "aug_a/u0", "aug_a/u9", "aug_b/u0", "aug_b/u1"]
    return [Utterance(i, f"/nowhere/{i}.wav", i.split("/")[0], 1.0) for i in ids]


def fake_store(utts: list[Utterance]) -> FeatureStore:
    """Each utterance's features are filled with its own index (+1), so a batch shows whose it read."""
    store = FeatureStore(utts, ExtractSpec(FeatureConfig().to_dict()), None)
    store.tensors = lambda i: {"mel": torch.full((80, FRAMES), -3.0 + i), "whisper4": torch.full((384, FRAMES), float(i + 1)),
                               "dvector": torch.full((256,), float(i + 1))}
    return store


def test_twin_file_and_index(tmp_path):
    path = tmp_path / "twins.json"
    path.write_text(json.dumps({"groups": [["a/u0", "aug_a/u0", "aug_b/u0"], ["a/u1", "aug_b/u1", "gone/u1"], ["only/one"]]}))
    index = twin_index(load_twin_groups(path), utterances())
    assert index == {0: [2, 4], 2: [0, 4], 4: [0, 2], 1: [5], 5: [1]}  # aug_a/u9 has none; unknown ids ignored
    for text, message in [("{", "not JSON"), ('{"groups": [["a", 3]]}', "manifest ids as strings"), ("[]", "expected")]:
        path.write_text(text)
        with pytest.raises(VconvError, match=message):
            load_twin_groups(path)
    with pytest.raises(VconvError, match="twins file not found"):
        load_twin_groups(tmp_path / "missing.json")


def batches(twin_probability: float, content_key: str, utts=None) -> SegmentBatches:
    utts = utts or utterances()
    twins = twin_index([["a/u0", "aug_a/u0", "aug_b/u0"], ["a/u1", "aug_b/u1"]], utts)
    speakers = sorted({u.speaker for u in utts})
    return SegmentBatches(fake_store(utts), speakers, FrontEnd(FeatureConfig()), batch_size=64, segment_frames=SEGMENT,
                          content=content_part(content_key), speaker=DVECTOR, perturb=False,
                          twins=twins, twin_probability=twin_probability)


def test_with_probability_one_the_content_comes_from_a_twin_and_the_target_stays_own():
    data = batches(1.0, "whisper4")
    batch = data[3]
    picks = data._pick_utterances(torch.Generator().manual_seed(hash((0, 0, 3)) & 0x7FFF_FFFF_FFFF))
    own = torch.tensor([float(i + 1) for i in picks])
    read = batch.content[:, 0, 0]
    has_twins = torch.tensor([i in data.twins for i in picks])
    assert has_twins.any() and (~has_twins).any()
    assert torch.all(read[~has_twins] == own[~has_twins])  # no twin: its own states
    for i, value in zip(torch.tensor(picks)[has_twins].tolist(), read[has_twins].tolist()):
        assert int(value) - 1 in data.twins[i]  # a twin's states, never its own
    own_mels = data.frontend.normalize(torch.stack([torch.full((80, SEGMENT), -3.0 + i) for i in picks]))
    assert torch.equal(batch.mel, own_mels)  # the decoder still rebuilds the utterance's own mel


def seeded_features(i: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    return {"mel": torch.randn(80, FRAMES, generator=g) - 4.0, "whisper4": torch.randn(384, FRAMES, generator=g),
            "dvector": torch.randn(256, generator=g)}


# sums of (mel, ref, speaker, source, content) of step 3, computed with the code before twins existed
# (commit 7164714): runs without twins, or with probability 0, must keep drawing exactly these batches
PINNED = {"mel": [-41198.341, -41.0125, 9.0, -41207.216, -41198.341],
          "whisper4": [-41137.0661, -41.0125, 9.0, 178.0382, 178.0382]}


@pytest.mark.parametrize("twins", [None, "probability 0"])
@pytest.mark.parametrize(("key", "perturb"), [("mel", True), ("whisper4", False)])
def test_without_twins_the_batches_are_those_of_before(key, perturb, twins):
    utts = utterances()
    store = FeatureStore(utts, ExtractSpec(FeatureConfig().to_dict()), None)
    store.tensors = seeded_features
    groups = twin_index([["a/u0", "aug_a/u0", "aug_b/u0"]], utts) if twins else None
    data = SegmentBatches(store, sorted({u.speaker for u in utts}), FrontEnd(FeatureConfig()), batch_size=8,
                          segment_frames=SEGMENT, content=content_part(key), speaker=DVECTOR, perturb=perturb,
                          twins=groups, twin_probability=0.0)
    batch = data[3]
    sums = [float(getattr(batch, f).double().sum()) for f in ("mel", "ref", "speaker", "source", "content")]
    assert sums == pytest.approx(PINNED[key], rel=1e-6, abs=1e-3)


def test_mel_content_path_reads_the_twin_mel_as_its_source():
    data = batches(1.0, "mel")
    batch = data[5]
    twin_sources = (batch.source != batch.mel).flatten(1).any(dim=1)
    picks = data._pick_utterances(torch.Generator().manual_seed(hash((0, 0, 5)) & 0x7FFF_FFFF_FFFF))
    assert twin_sources.tolist() == [i in data.twins for i in picks]
    assert torch.equal(batch.content, batch.mel)  # what the content path is judged against stays the clean own mel
    # the adversary's label is the voice the content path read: the twin's speaker
    donors = [data.speaker_index[data.store.utterances[i].speaker] for i in picks]
    assert [lab != own for lab, own in zip(batch.speaker.tolist(), donors)] == [i in data.twins for i in picks]


def test_twins_with_perturbation_on_perturb_the_twin_mel():
    utts = utterances()
    store = FeatureStore(utts, ExtractSpec(FeatureConfig().to_dict()), None)
    store.tensors = seeded_features
    twins = twin_index([["a/u0", "aug_a/u0", "aug_b/u0"], ["a/u1", "aug_b/u1"]], utts)
    common = dict(batch_size=64, segment_frames=SEGMENT, content=content_part("mel"), speaker=DVECTOR, twins=twins, twin_probability=1.0)
    speakers = sorted({u.speaker for u in utts})
    clean = SegmentBatches(store, speakers, FrontEnd(FeatureConfig()), perturb=False, **common)
    perturbed = SegmentBatches(store, speakers, FrontEnd(FeatureConfig()), perturb=True, **common)
    # the first item of a batch is drawn before any perturbation: the same utterance, window and twin
    step = next(s for s in range(50) if clean._pick_utterances(torch.Generator().manual_seed(hash((0, 0, s)) & 0x7FFF_FFFF_FFFF))[0] in twins)
    a, b = clean[step], perturbed[step]
    assert torch.equal(a.mel[0], b.mel[0]) and a.speaker[0] == b.speaker[0]
    assert not torch.equal(a.source[0], a.mel[0])  # the twin's mel ...
    assert not torch.equal(b.source[0], a.source[0]) and torch.isfinite(b.source).all()  # ... then timbre-perturbed


def test_trainer_reads_the_twins_file_and_warns_when_nothing_matches(corpus_dir, tmp_path, capsys):
    from vconv.config import load_run_config
    from vconv.data.manifest import read_manifest
    from vconv.data.prepare import prepare_corpus
    from vconv.training.vc_trainer import ModelTrainer

    prepare_corpus(corpus_dir, tmp_path / "m", num_valid_speakers=2, seed=0)
    train = read_manifest(tmp_path / "m" / "train.jsonl")
    pair = [train[0].id, next(u.id for u in train if u.speaker != train[0].speaker)]  # stand-ins: any two ids
    twins = tmp_path / "twins.json"
    twins.write_text(json.dumps({"groups": [pair]}))
    base = [f"train.train_manifest={tmp_path / 'm' / 'train.jsonl'}", f"train.content_twins={twins}", "train.content_twin_probability=1.0"]
    trainer = ModelTrainer(*load_run_config("debug", [*base, f"train.run_dir={tmp_path / 'run'}"]), progress=False)
    second = next(i for i, u in enumerate(train) if u.id == pair[1])
    assert trainer.twins == {0: [second], second: [0]}
    assert torch.isfinite(torch.tensor(trainer.train_step(trainer.batches[0])["loss"]))

    twins.write_text(json.dumps({"groups": [["nobody/x", "nobody/y"]]}))
    ModelTrainer(*load_run_config("debug", [*base, f"train.run_dir={tmp_path / 'run2'}"]), progress=False)
    assert "no group has two utterances of the training manifest" in capsys.readouterr().err
    with pytest.raises(VconvError, match="content_twin_probability"):
        load_run_config("debug", [*base, "train.content_twin_probability=1.5", f"train.run_dir={tmp_path / 'run3'}"])
