"""The reference path (vconv.models.reference): shapes and masking, a model that starts as the AdaIN model,
training references that are never the reconstructed segment, bundles with and without it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import vconv
from vconv.audio.frontend import FrontEnd
from vconv.config import FeatureConfig, ModelConfig, load_run_config
from vconv.data.extract import ExtractSpec
from vconv.data.manifest import Utterance
from vconv.data.segments import FeatureStore, SegmentBatches
from vconv.errors import VconvError
from vconv.frontends import build_frontend_part
from vconv.models import build_model
from vconv.models.reference import FrameRetrieval, ReferenceMemory, TimbreAttention, build_reference_path
from vconv.training.vc_trainer import ModelTrainer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
N_MELS, CHANNELS, CODE_DIM = 16, 32, 8


def tiny(**overrides) -> ModelConfig:
    base = dict(n_mels=N_MELS, channels=CHANNELS, content_blocks=2, downsample=[1, 2], code_dim=8, codebook_size=16,
                speaker_channels=32, speaker_blocks=2, speaker_dim=12, decoder_blocks=2, kernel_size=5,
                reference={"kind": "attention", "dim": 16, "heads": 2, "layers": 1})
    base.update(overrides)
    return ModelConfig(**base)


def path(**settings) -> TimbreAttention:
    built = build_reference_path({"kind": "attention", "dim": 16, "heads": 2, **settings}, n_mels=N_MELS,
                                 channels=CHANNELS, decoder_blocks=4, code_dim=CODE_DIM)
    assert isinstance(built, TimbreAttention)
    return built


# ----------------------------------------------------------------------------------- shapes and masking

@pytest.mark.parametrize("ref_frames", [(7,), (50,), (7, 90, 3)])  # shorter and longer than the source, several
def test_memory_and_attention_shapes(ref_frames):
    torch.manual_seed(0)
    attention = path()
    memory = attention.encode([torch.randn(N_MELS, t) for t in ref_frames])
    assert memory.keys.shape == memory.values.shape == (1, sum(ref_frames), 16) and memory.mask.all()
    h = torch.randn(3, CHANNELS, 40)  # three sources, one voice: the memory is shared
    assert attention.attend(attention.stages[0], h, memory).shape == h.shape
    assert torch.equal(attention.attend(1, h, memory), h) or 1 in attention.stages  # other stages pass through


def test_padded_frames_are_masked():
    """A batch of two voices whose references differ in length gives each item what it gets alone."""
    torch.manual_seed(0)
    attention = path()
    for layer in attention.out:  # a trained path: not the zero initialisation
        torch.nn.init.normal_(layer.weight)
    short, long = attention.encode([torch.randn(N_MELS, 9)]), attention.encode([torch.randn(N_MELS, 30)])
    batch = ReferenceMemory.stack([short, long])
    assert batch.keys.shape == (2, 30, 16) and batch.mask.sum(1).tolist() == [9, 30]
    h = torch.randn(2, CHANNELS, 20)
    stage = attention.stages[0]
    together = attention.attend(stage, h, batch)
    assert torch.allclose(together[:1], attention.attend(stage, h[:1], short), atol=1e-5)
    assert torch.allclose(together[1:], attention.attend(stage, h[1:], long), atol=1e-5)
    max_frames = path(max_frames=12).encode([torch.randn(N_MELS, 10), torch.randn(N_MELS, 10)])
    assert max_frames.keys.shape[1] == 12  # the first frames, bounded


def test_settings_are_checked_by_the_part():
    with pytest.raises(VconvError, match="stages must be distinct decoder blocks in 1..4"):
        path(stages=[0, 2])
    with pytest.raises(VconvError, match="multiple of heads"):
        path(heads=3)
    with pytest.raises(VconvError, match="unknown key.*depth"):
        path(depth=2)
    with pytest.raises(VconvError, match="kind must be one of none, attention"):
        build_reference_path({"kind": "knn"}, n_mels=N_MELS, channels=CHANNELS, decoder_blocks=4, code_dim=CODE_DIM)
    assert build_reference_path({"kind": "none"}, n_mels=N_MELS, channels=CHANNELS, decoder_blocks=4, code_dim=CODE_DIM) is None


def test_an_untrained_path_changes_nothing_and_a_trained_one_reads_the_reference():
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    plain = build_model(tiny(reference={"kind": "none"})).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("reference.")})
    src, ref = torch.randn(N_MELS, 41), torch.randn(N_MELS, 30)
    assert torch.allclose(model.convert(src, ref), plain.convert(src, ref), atol=1e-6)
    for layer in model.reference.out:
        torch.nn.init.normal_(layer.weight)
    e = model.embed_speaker(ref)  # the same embedding: only the frames the path reads differ
    a = model.convert(src, embedding=e, reference=ref)
    b = model.convert(src, embedding=e, reference=[ref * 2 + 1, torch.randn(N_MELS, 12)])
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="reference frames"):
        model.convert(src, embedding=e)


# --------------------------------------------------------------- retrieval: frames matched by their codes

RETRIEVAL = {"kind": "retrieval", "dim": 16, "heads": 2, "layers": 1}


def test_retrieval_memory_keys_are_the_reference_codes_and_shapes_hold():
    torch.manual_seed(0)
    retrieval = build_reference_path(RETRIEVAL, n_mels=N_MELS, channels=CHANNELS, decoder_blocks=4, code_dim=CODE_DIM)
    assert isinstance(retrieval, FrameRetrieval) and retrieval.reads_codes
    refs, codes = [torch.randn(N_MELS, t) for t in (7, 90, 3)], [torch.randn(CODE_DIM, t) for t in (7, 90, 3)]
    memory = retrieval.encode(refs, codes)
    assert memory.keys.shape == (1, 100, CODE_DIM) and memory.values.shape == (1, 100, 16) and memory.mask.all()
    assert torch.equal(memory.keys[0, 7:97], codes[1].T)  # what each frame says: its code, in order
    h, source_codes = torch.randn(3, CHANNELS, 40), torch.randn(3, CODE_DIM, 40)
    assert retrieval.attend(retrieval.stages[0], h, memory, source_codes).shape == h.shape
    with pytest.raises(ValueError, match="source's codes on the decoder's 40 frames"):
        retrieval.attend(retrieval.stages[0], h, memory, source_codes[..., :39])
    with pytest.raises(ValueError, match="content codes"):
        retrieval.encode(refs)
    with pytest.raises(ValueError, match=r"reference codes \[1, 8, 7\]"):
        retrieval.encode(refs[0][None], codes[0][None, :, :6])


def test_retrieval_looks_frames_up_by_what_they_say():
    """Two reference frames that say the same thing in different voices are interchangeable to a query; the
    frame whose code the source shares dominates what is read."""
    torch.manual_seed(0)
    retrieval = build_reference_path({**RETRIEVAL, "heads": 1}, n_mels=N_MELS, channels=CHANNELS, decoder_blocks=2,
                                     code_dim=CODE_DIM)
    for layer in retrieval.out:
        torch.nn.init.normal_(layer.weight)
    with torch.no_grad():
        for layer in retrieval.match:  # a sharp metric: identical codes win
            layer.weight.zero_()
            layer.weight[:CODE_DIM] = 6.0 * torch.eye(CODE_DIM)
            layer.bias.zero_()
    says = torch.eye(CODE_DIM)[:2]  # two sounds, as one-hot codes
    mels = torch.randn(N_MELS, 2)  # how each sounds in this voice
    memory = retrieval.encode([mels], [says.T])
    stage, h = retrieval.stages[0], torch.zeros(1, CHANNELS, 1)
    read_first = retrieval.attend(stage, h, memory, says[0][None, :, None])
    read_second = retrieval.attend(stage, h, memory, says[1][None, :, None])
    with torch.no_grad():  # what frame k alone gives: its value, projected
        first, second = (retrieval.out[0](retrieval.value[0](memory.values[:, k : k + 1])).transpose(1, 2) for k in (0, 1))
    assert not torch.allclose(read_first, read_second, atol=1e-2)
    assert torch.allclose(read_first, first, atol=1e-2 * float(first.abs().max()))
    assert torch.allclose(read_second, second, atol=1e-2 * float(second.abs().max()))


def test_a_retrieval_model_starts_as_the_adaln_model_and_matches_on_its_own_codes():
    torch.manual_seed(0)
    model = build_model(tiny(reference=RETRIEVAL)).eval()
    plain = build_model(tiny(reference={"kind": "none"})).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("reference.")})
    src, ref_mel = torch.randn(N_MELS, 41), torch.randn(N_MELS, 30)
    frames = model.reference_frames(ref_mel, torch.randn(N_MELS, 31))  # content features one frame longer: cut
    assert frames.shape == (2 * N_MELS, 30)
    e = model.embed_speaker(ref_mel)
    assert torch.allclose(model.convert(src, embedding=e, reference=frames), plain.convert(src, embedding=e), atol=1e-6)
    memory = model.encode_reference([frames])
    codes = model.reference_codes(frames[None, N_MELS:])  # on the reference's own frames (the encoder halves them)
    assert codes.shape == (1, CODE_DIM, 30) and torch.equal(memory.keys[0], codes[0].T)
    nearest = model.quantizer.lookup(model.content_encoder(frames[None, N_MELS:]))
    assert torch.equal(codes[0, :, ::2], nearest[0, :, :15])  # each code held for the frames it stands for
    model.train()
    before = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    model.reference_codes(frames[None, N_MELS:])  # in training mode: reading a reference's codes updates nothing
    assert all(torch.equal(v, before[k]) for k, v in model.quantizer.state_dict().items())
    model.reconstruct(src[None], ref_mel[None], ref_frames=frames[None])  # (the source's codes do)
    assert not all(torch.equal(v, before[k]) for k, v in model.quantizer.state_dict().items())


def test_speaker_dropout_zeroes_the_embedding_only_in_training():
    torch.manual_seed(0)
    model = build_model(tiny(reference=RETRIEVAL, dropout=0.0))
    src, ref_mel = torch.randn(3, N_MELS, 41), torch.randn(3, N_MELS, 30)
    frames = model.reference_frames(ref_mel, ref_mel)
    model.train()
    dropped = model.reconstruct(src, ref_mel, ref_frames=frames, speaker_dropout=1.0)
    memory = model.encode_reference(frames)
    zero = torch.zeros(3, model.config.speaker_dim)
    assert torch.equal(dropped.speaker_embedding, zero)
    expected = model.decode(dropped.quantizer.quantized, zero, 41, memory)  # the same codes, no embedding
    assert torch.allclose(dropped.mel, expected, atol=1e-5)
    model.eval()
    kept = model.reconstruct(src, ref_mel, ref_frames=frames, speaker_dropout=1.0)
    assert torch.allclose(kept.mel, model.reconstruct(src, ref_mel, ref_frames=frames).mel)
    assert not torch.allclose(kept.mel, model.decode(model.encode_content(src).quantized, zero, 41, memory), atol=1e-4)


# -------------------------------------------------------------------------- what training shows the path

def _store(utts: list[Utterance], frames: int = 40) -> FeatureStore:
    """Utterance ``i``'s mel holds ``100 * i + frame`` in every bin: a batch shows whose frames, and which."""
    store = FeatureStore(utts, ExtractSpec(FeatureConfig().to_dict()), None)
    ramp = torch.arange(frames, dtype=torch.float32)
    store.tensors = lambda i: {"mel": (100.0 * i + ramp).expand(80, -1).clone(), "dvector": torch.full((256,), float(i))}
    return store


@pytest.mark.parametrize("speaker", ["mel", "dvector"])
def test_the_training_reference_is_never_the_reconstructed_segment(speaker):
    utts = [Utterance(f"{s}/u{k}", f"/nowhere/{s}{k}.wav", s, 1.0) for s, n in (("a", 3), ("b", 2), ("lone", 1)) for k in range(n)]
    identity = FrontEnd(FeatureConfig())  # statistics 0/1: normalised values stay readable
    data = SegmentBatches(_store(utts), ["a", "b", "lone"], identity, batch_size=64, segment_frames=16,
                          speaker=build_frontend_part("speaker", {"kind": speaker}), reference_frames=True)
    batch = data[7]
    assert batch.ref_frames is not None and batch.ref_frames.shape == (64, 80, 16)
    own = (batch.mel[:, 0, 0] // 100).long()  # whose mel is reconstructed
    read = (batch.ref_frames[:, 0, 0] // 100).long()  # whose frames the reference path reads
    lone = torch.tensor([utts[i].speaker == "lone" for i in own.tolist()])
    assert lone.any() and (~lone).any()
    assert torch.all(read[~lone] != own[~lone])  # another utterance ...
    assert all(utts[i].speaker == utts[j].speaker for i, j in zip(own.tolist(), read.tolist()))  # ... of the same voice
    first_frame_read = batch.ref_frames[lone, 0, 0] % 100
    assert torch.all(first_frame_read >= 20) and torch.all(batch.mel[lone, 0, -1] % 100 < 20)  # the lone one: the other half
    if speaker == "mel":
        assert torch.equal(batch.ref_frames, batch.ref)  # the speaker path's own window


def test_a_retrieval_path_reads_the_content_features_of_the_same_reference_window():
    utts = [Utterance(f"{s}/u{k}", f"/nowhere/{s}{k}.wav", s, 1.0) for s, n in (("a", 3), ("b", 2), ("lone", 1)) for k in range(n)]
    store = _store(utts)
    plain = store.tensors
    # content features: the mel's frame number, negated, in 8 channels (a Whisper-like part read as stored)
    store.tensors = lambda i: {**plain(i), "whisper4": -plain(i)["mel"][:8]}
    content = build_frontend_part("content", {"kind": "whisper", "layer": 4})
    data = SegmentBatches(store, ["a", "b", "lone"], FrontEnd(FeatureConfig()), batch_size=64, segment_frames=16,
                          content=content, reference_frames=True, reference_content=True)
    batch = data[5]
    assert batch.ref_frames is not None and batch.ref_frames.shape == (64, 80 + 8, 16)
    assert torch.equal(batch.ref_frames[:, 80:], -batch.ref_frames[:, :8])  # the same utterance, the same frames
    assert torch.equal(batch.ref_frames[:, :80], batch.ref)  # and the speaker path's window
    own, read = (batch.mel[:, 0, 0] // 100).long(), (batch.ref_frames[:, 0, 0] // 100).long()
    lone = torch.tensor([utts[i].speaker == "lone" for i in own.tolist()])
    assert torch.all(read[~lone] != own[~lone]) and torch.all(batch.ref_frames[lone, 0, 0] % 100 >= 20)


def test_without_the_path_batches_carry_no_frames_and_stay_as_before():
    utts = [Utterance(f"a/u{k}", f"/nowhere/{k}.wav", "a", 1.0) for k in range(3)]
    store = _store(utts)
    common = dict(batch_size=8, segment_frames=16)
    off = SegmentBatches(store, ["a"], FrontEnd(FeatureConfig()), **common)[3]
    on = SegmentBatches(store, ["a"], FrontEnd(FeatureConfig()), reference_frames=True, **common)[3]
    assert off.ref_frames is None
    assert torch.equal(off.mel, on.mel) and torch.equal(off.ref, on.ref)  # the mel speaker path draws nothing more


# ---------------------------------------------------------------------------------------------- bundles


@pytest.mark.parametrize("kind", ["attention", "retrieval"])
def test_a_reference_path_bundle_and_the_shipped_one_both_load_and_convert(manifests, tmp_path, kind):
    features, model, train = load_run_config("debug", [
        f"train.train_manifest={manifests / 'train.jsonl'}", f"train.valid_manifest={manifests / 'valid.jsonl'}",
        f"train.run_dir={tmp_path / 'run'}", "train.steps=2", "train.valid_every=2",
        f"model.reference={{kind: {kind}, dim: 16, heads: 2, layers: 1}}",
    ])
    history = ModelTrainer(features, model, train, progress=False).fit()
    assert [r for r in history if r["split"] == "valid"]
    bundle = tmp_path / "run" / "model"
    assert json.loads((bundle / "config.json").read_text())["model_config"]["reference"]["kind"] == kind
    source, _ = sf.read(str(EXAMPLES / "source.wav"), dtype="float32")
    for name in (bundle, None):  # None: the shipped bundle (no reference path)
        vc = vconv.load(name, vocoder="griffinlim")
        assert (vc.model.reference is not None) == (name is not None)
        out = vc.convert(EXAMPLES / "source.wav", [EXAMPLES / "target.wav", EXAMPLES / "source.wav"])
        assert out.shape == source.shape and np.isfinite(out).all()
    with pytest.raises(VconvError, match="bare embedding"):
        vc = vconv.load(bundle, vocoder="griffinlim")
        vc.convert_wav(source, vc.speaker_embedding([EXAMPLES / "target.wav"]))
