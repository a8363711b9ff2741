"""Fitting the speaker embedding to the target references (vconv.inference.voice_fit), and its options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vconv
from tests.conftest import invoke, one_line_error, tiny_model_config
from vconv.config import ModelConfig
from vconv.errors import VconvError
from vconv.inference.settings import CLI_NAMES, ConversionSettings
from vconv.inference.voice_fit import FitReference, check_fit_steps, crop_references, fit_embedding
from vconv.models import build_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def tiny(**overrides) -> ModelConfig:
    """A model small enough to fit a voice in a test's time (no adversary)."""
    return tiny_model_config(**{"n_speakers": 0, **overrides})


def _references(model, lengths: list[int], seed: int = 0) -> list[FitReference]:
    """References ``[1, n_mels, T]`` in a voice the model can render: random content features decoded with one
    random embedding (a voice whose embedding the fit has to find; a mel model's content features are a mel)."""
    generator = torch.Generator().manual_seed(seed)
    voice = 2 * torch.randn(1, model.config.speaker_dim, generator=generator)
    contents = [torch.randn(1, model.config.n_mels, t, generator=generator) for t in lengths]
    with torch.no_grad():
        mels = [model.decode(model.encode_content(c).quantized, voice, t) for c, t in zip(contents, lengths)]
    return [FitReference(content=c, mel=m) for c, m in zip(contents, mels)]


def test_the_fit_lowers_the_reference_error_and_leaves_the_weights_alone():
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    refs = _references(model, [40, 25])  # two references of different lengths
    start = model.embed_speaker([r.mel[0] for r in refs])
    fit = fit_embedding(model, refs, start, steps=30, lr=0.05)
    assert fit.embedding.shape == start.shape == (1, model.config.speaker_dim)
    assert len(fit.losses) == 31
    assert fit.losses[-1] < 0.6 * fit.losses[0]
    assert not fit.embedding.requires_grad and not torch.equal(fit.embedding, start)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.parameters())  # only the embedding's gradient was computed


def test_zero_steps_return_the_encoder_embedding_and_measure_it():
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    refs = _references(model, [30])
    start = model.embed_speaker(refs[0].mel)
    fit = fit_embedding(model, refs, start, steps=0)
    assert torch.equal(fit.embedding, start) and len(fit.losses) == 1


def test_references_are_cropped_to_the_budget_first_ones_first():
    model = build_model(tiny())
    refs = _references(model, [30, 20, 10])
    cropped = crop_references(refs, 45)
    assert [r.mel.shape[-1] for r in cropped] == [30, 15]
    assert torch.equal(cropped[1].mel, refs[1].mel[..., :15]) and torch.equal(cropped[1].content, refs[1].content[..., :15])
    assert [r.mel.shape[-1] for r in crop_references(refs, 100)] == [30, 20, 10]


@pytest.mark.parametrize("steps", [-1, 100_000])
def test_a_bad_number_of_steps_is_a_one_line_error(steps):
    with pytest.raises(VconvError, match="expected 0"):
        check_fit_steps(steps)
    with pytest.raises(VconvError, match="--fit-voice"):
        ConversionSettings(fit_steps=steps, names=CLI_NAMES)  # what every command that converts checks first


def test_a_fitted_converter_converts_with_the_fitted_embedding(tiny_bundle):
    plain = vconv.load(tiny_bundle, vocoder="griffinlim")
    fitted = vconv.load(tiny_bundle, vocoder="griffinlim", fit_steps=8)
    refs = [EXAMPLES / "target.wav"]
    target, tuned = plain.target_voice(refs), fitted.target_voice(refs)
    assert target.fit_losses == () and len(tuned.fit_losses) == 9
    assert tuned.fit_losses[-1] < tuned.fit_losses[0]
    assert tuned.embedding.shape == target.embedding.shape and not torch.allclose(tuned.embedding, target.embedding)
    wav = plain.prepare_audio(EXAMPLES / "source.wav", None)
    out = fitted.convert_wav(wav, tuned)
    assert out.shape == wav.shape and np.isfinite(out).all()
    assert not np.allclose(out, plain.convert_wav(wav, target))


def test_cli_fit_voice_says_what_the_fit_did_and_refuses_a_bad_count(tiny_bundle, tmp_path):
    out = tmp_path / "out.wav"
    args = ["convert", str(EXAMPLES / "source.wav"), "-t", str(EXAMPLES / "target.wav"), "-o", str(out),
            "-m", str(tiny_bundle), "--vocoder", "griffinlim"]
    result = invoke(*args, "--fit-voice", "4")
    assert result.exit_code == 0, result.output
    assert out.exists() and "voice fitted to the target references in 4 steps" in result.output
    bad = invoke(*args, "--fit-voice", "-2", "--force")
    one_line_error(bad, "--fit-voice -2")


def test_the_fit_s_own_adam_steps_as_torch_s_does():
    """VectorAdam (no torch optimiser, so no torch._dynamo import) follows torch.optim.Adam step for step."""
    from vconv.inference.voice_fit import VectorAdam

    torch.manual_seed(0)
    theirs = torch.randn(1, 16, requires_grad=True)
    ours = theirs.detach().clone().requires_grad_(True)
    reference, optimiser = torch.optim.Adam([theirs], lr=0.1), VectorAdam(ours, 0.1)
    goal = torch.randn(1, 16)
    for _ in range(30):
        (theirs.grad,) = torch.autograd.grad(((theirs - goal) ** 4).sum(), [theirs])
        reference.step()
        optimiser.step(torch.autograd.grad(((ours - goal) ** 4).sum(), [ours])[0])
    assert torch.allclose(theirs, ours, atol=1e-5) and not torch.allclose(ours, goal * 0)


def test_the_fit_runs_on_one_thread_and_gives_the_count_back(tiny_bundle, monkeypatch):
    """Many small backward passes: faster on one thread (vconv.inference.threads.one_thread); the conversion around
    it keeps its own count, also when the fit fails. In a worker thread (a server's) the count is left alone: torch's
    count is also the default that threads started meanwhile would keep."""
    import threading

    import vconv.inference.targets as targets

    seen: list[int] = []
    real_fit = targets.fit_embedding

    def counting_fit(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_fit(*args, **kwargs)

    def failing_fit(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise RuntimeError("boom")

    def prepare() -> None:
        vconv.load(tiny_bundle, vocoder="griffinlim", fit_steps=2).target_voice([EXAMPLES / "target.wav"])

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(targets, "fit_embedding", counting_fit)
        prepare()
        assert seen == [1] and torch.get_num_threads() == 2
        worker = threading.Thread(target=prepare)
        worker.start()
        worker.join()
        assert seen == [1, 2] and torch.get_num_threads() == 2
        monkeypatch.setattr(targets, "fit_embedding", failing_fit)
        with pytest.raises(RuntimeError, match="boom"):
            prepare()
        assert seen == [1, 2, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
