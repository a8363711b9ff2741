"""ModelTrainer: loss falls, kill + resume equals an uninterrupted run, DDP keeps replicas identical, CLI."""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.multiprocessing as mp
from typer.testing import CliRunner

from vconv.cli import app
from vconv.config import FeatureConfig, TrainConfig, load_run_config
from vconv.data.extract import ExtractSpec
from vconv.training.vc_trainer import ModelTrainer

VALID_SPEAKERS = 2  # the shared manifests fixture (conftest) sends two speakers to validation


def tiny(manifests, run_dir, **train_overrides):
    overrides = [f"train.train_manifest={manifests / 'train.jsonl'}", f"train.run_dir={run_dir}"]
    overrides += [f"train.{k}={v}" for k, v in train_overrides.items()]
    features, model, train = load_run_config("debug", overrides)
    return features, model, train


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fifty_steps_on_one_batch_halve_the_reconstruction_loss(manifests, tmp_path):
    features, model, train = tiny(manifests, tmp_path / "run", lr=0.002, warmup_steps=5)
    trainer = ModelTrainer(features, model, train, progress=False)
    batch = trainer.batches[0]
    losses = [trainer.train_step(batch)["recon"] for _ in range(50)]
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_resume_after_kill_matches_uninterrupted_run(manifests, tmp_path):
    settings = dict(steps=6, save_every=3, log_every=1, valid_every=1000)
    full = ModelTrainer(*tiny(manifests, tmp_path / "full", **settings), progress=False)
    full.fit()

    first = ModelTrainer(*tiny(manifests, tmp_path / "killed", **settings), progress=False)
    first.fit(until=4)  # "killed" after step 4; the last checkpoint is step 3
    del first
    resumed = ModelTrainer(*tiny(manifests, tmp_path / "killed", **settings), resume=True, progress=False)
    assert resumed.step == 3
    resumed.fit()
    a, b = params(full.model), params(resumed.model)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_training_wall_time_is_logged_and_summed_over_a_resume(manifests, tmp_path):
    settings = dict(steps=4, save_every=2, log_every=1, valid_every=1000)
    first = ModelTrainer(*tiny(manifests, tmp_path / "run", **settings), progress=False)
    first.fit(until=2)
    spent = first.train_seconds
    assert spent > 0
    del first
    resumed = ModelTrainer(*tiny(manifests, tmp_path / "run", **settings), resume=True, progress=False)
    assert 0 < resumed.train_seconds <= spent  # the step-2 checkpoint was written just before fit() returned
    resumed.fit()
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    seconds = [r["train_s"] for r in logged if r["split"] == "train"]
    assert len(seconds) == 4 and seconds == sorted(seconds) and seconds[-1] > seconds[1] > 0


def test_existing_run_is_not_overwritten_without_resume(manifests, tmp_path):
    cfgs = tiny(manifests, tmp_path / "run", steps=2, save_every=1)
    ModelTrainer(*cfgs, progress=False).fit()
    from vconv.errors import VconvError

    with pytest.raises(VconvError, match="--resume"):
        ModelTrainer(*tiny(manifests, tmp_path / "run", steps=2), progress=False)


def test_adversary_switch_and_bf16(manifests, tmp_path):
    features, model, train = tiny(manifests, tmp_path / "a", bf16=True)
    trainer = ModelTrainer(features, model, train, progress=False)
    metrics = trainer.train_step(trainer.batches[0])
    assert {"adv_loss", "adv_acc"} <= metrics.keys() and torch.isfinite(torch.tensor(metrics["loss"]))
    features, model, train = tiny(manifests, tmp_path / "b")
    model.adversary = {"kind": "none"}
    trainer = ModelTrainer(features, model, train, progress=False)
    assert trainer.model.adversary is None
    assert "adv_loss" not in trainer.train_step(trainer.batches[0])


def test_validation_reports_disentanglement_metrics(manifests, tmp_path):
    features, model, train = tiny(manifests, tmp_path / "run", steps=2)
    train.valid_manifest = str(manifests / "valid.jsonl")
    trainer = ModelTrainer(features, model, train, progress=False)
    result = trainer.validate()
    assert {"recon", "perplexity", "adv_acc", "spk_same_cos", "spk_diff_cos", "spk_separation"} <= result.keys()
    assert 1.0 <= result["perplexity"] <= model.quantizer["codebook_size"]
    assert 0.0 <= result["adv_acc"] <= 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, configs, out_dir: str) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    trainer = ModelTrainer(*configs, progress=False)
    for step in range(2):
        trainer.train_step(trainer.batches[step])
    torch.save(params(trainer.model), f"{out_dir}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_gloo_ddp_keeps_replicas_identical(manifests, tmp_path):
    configs = tiny(manifests, tmp_path / "run", steps=2)
    mp.spawn(_ddp_worker, args=(2, _free_port(), configs, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=1e-6, msg=key)


def test_cli_train_writes_log_config_and_bundle(manifests, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "-c", "debug", "--no-progress", f"train.train_manifest={manifests / 'train.jsonl'}",
        f"train.valid_manifest={manifests / 'valid.jsonl'}", f"train.run_dir={run}", "train.steps=4",
        "train.log_every=2", "train.valid_every=4", "train.save_every=2",
    ])
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["split"] == "train"] == [2, 4]
    assert (run / "config.yaml").is_file() and (run / "model" / "model.safetensors").is_file()
    bad = CliRunner().invoke(app, ["train", "-c", "debug", "train.steps=4"])
    assert bad.exit_code == 1 and "train_manifest" in bad.output

    # a checkpoint exports as a bundle: the last one holds the exported model's weights, an earlier one its own step
    from safetensors.torch import load_file

    exported = {}
    for name in ("latest.pt", "step_00000002.pt"):
        result = CliRunner().invoke(app, ["bundle", "from-checkpoint", str(run / "checkpoints" / name), "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        exported[name] = load_file(str(tmp_path / name / "model.safetensors"))
        assert (tmp_path / name / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable by others, as a bundle should be
    final = load_file(str(run / "model" / "model.safetensors"))
    assert all(torch.equal(final[k], exported["latest.pt"][k]) for k in final)
    assert not all(torch.equal(final[k], exported["step_00000002.pt"][k]) for k in final)
    assert json.loads((tmp_path / "step_00000002.pt" / "config.json").read_text())["trained_steps"] == 2
    again = CliRunner().invoke(app, ["bundle", "from-checkpoint", str(run / "checkpoints" / "latest.pt"), "-o", str(tmp_path / "latest.pt")])
    assert again.exit_code == 1 and "already exists" in again.output


def test_cli_train_in_slices_stops_with_a_checkpoint_and_resumes_to_the_end(manifests, tmp_path):
    run = tmp_path / "run"
    args = ["train", "-c", "debug", "--no-progress", f"train.train_manifest={manifests / 'train.jsonl'}",
            f"train.run_dir={run}", "train.steps=5", "train.log_every=1", "train.valid_every=1000", "train.save_every=4"]
    first = CliRunner().invoke(app, [*args, "--until", "3"])
    assert first.exit_code == 0, first.output
    assert "stopped at step 3 of 5" in first.output and "--resume" in first.output
    assert (run / "checkpoints" / "step_00000003.pt").is_file()  # off the save_every grid: written because it stopped there
    assert not (run / "model").exists()  # no export before the last step
    behind = CliRunner().invoke(app, [*args, "--resume", "--until", "2"])
    assert behind.exit_code == 1 and "--until 2" in behind.output and "already at step 3" in behind.output
    assert len(behind.output.strip().splitlines()) == 1
    rest = CliRunner().invoke(app, [*args, "--resume"])
    assert rest.exit_code == 0, rest.output
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5] and (run / "model" / "model.safetensors").is_file()


def test_unknown_override_key_is_a_clear_error():
    from vconv.errors import VconvError

    with pytest.raises(VconvError, match="unknown key"):
        load_run_config("debug", ["model.chanels=3", "train.train_manifest=a", "train.run_dir=b"])
    assert isinstance(load_run_config(None, ["train.train_manifest=a", "train.run_dir=b"])[2], TrainConfig)
    assert load_run_config("debug", ["train.train_manifest=a", "train.run_dir=b"])[0] == FeatureConfig()


def test_exponent_numbers_from_yaml_are_numbers_and_words_are_a_clear_error():
    from vconv.errors import VconvError

    # YAML 1.1 reads 1e-4 (no dot) as the string "1e-4"
    train = load_run_config(None, ["train.train_manifest=a", "train.run_dir=b", "train.lr=1e-4", "train.steps=2000"])[2]
    assert train.lr == 1e-4 and isinstance(train.lr, float) and train.steps == 2000
    assert load_run_config(None, ["train.train_manifest=a", "train.run_dir=b", "train.steps=2e3"])[2].steps == 2000
    with pytest.raises(VconvError, match="train.steps: expected a whole number"):
        load_run_config(None, ["train.train_manifest=a", "train.run_dir=b", "train.steps=1.25e1"])
    with pytest.raises(VconvError, match="train.lr: expected a number, got 'fast'"):
        load_run_config(None, ["train.train_manifest=a", "train.run_dir=b", "train.lr=fast"])


def test_speaker_sampling_power_zero_balances_unequal_speakers():
    from vconv.audio.frontend import FrontEnd
    from vconv.data.manifest import Utterance
    from vconv.data.segments import FeatureStore, SegmentBatches

    # speaker "big" has 9x the utterances of "small": per-utterance sampling sees it ~90 % of the time
    utts = [Utterance(f"big{i}", f"/nowhere/big{i}.wav", "big", 1.0) for i in range(90)]
    utts += [Utterance(f"small{i}", f"/nowhere/small{i}.wav", "small", 1.0) for i in range(10)]
    store = FeatureStore(utts, ExtractSpec(FeatureConfig().to_dict()), None)

    def share_of_small(power: float) -> float:
        batches = SegmentBatches(store, ["big", "small"], FrontEnd(FeatureConfig()), batch_size=400, segment_frames=8,
                                 speaker_sampling_power=power)
        picks = batches._pick_utterances(torch.Generator().manual_seed(0))
        return sum(utts[i].speaker == "small" for i in picks) / len(picks)

    assert share_of_small(1.0) == pytest.approx(0.10, abs=0.04)
    assert share_of_small(0.0) == pytest.approx(0.50, abs=0.07)
    assert share_of_small(0.5) == pytest.approx(1 / (1 + 3), abs=0.07)  # sqrt(90/10) = 3


def test_balanced_adversary_accuracy_does_not_reward_the_majority_guess():
    from vconv.training.vc_validation import adversary_accuracy

    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])
    always_zero = adversary_accuracy(torch.zeros(8, dtype=torch.long), labels)
    assert always_zero["adv_acc"] == pytest.approx(0.75)
    assert always_zero["adv_bal_acc"] == pytest.approx(1 / 3)
    assert adversary_accuracy(labels.clone(), labels) == {"adv_acc": 1.0, "adv_bal_acc": 1.0}


def test_validation_poses_the_training_task_speaker_path_from_another_utterance(manifests, tmp_path):
    """Before: validation reconstructed each utterance from itself (content could leak through the
    speaker path, an easier task than training's); now ``recon`` takes the speaker from another utterance
    of the same speaker, and the self-referenced score is reported apart as ``recon_self_ref``."""
    features, model, train = tiny(manifests, tmp_path / "run", valid_manifest=manifests / "valid.jsonl")
    trainer = ModelTrainer(features, model, train, progress=False)
    calls = []
    original = trainer.model.reconstruct

    def spy(mel, ref, *args, **kwargs):
        calls.append((mel, ref))
        return original(mel, ref, *args, **kwargs)

    trainer.model.reconstruct = spy
    result = trainer.validate(max_utterances=6)
    as_training = calls[0::2]  # each pick: first as training poses it, then self-referenced
    assert as_training and all(ref.shape != mel.shape or not torch.equal(ref, mel) for mel, ref in as_training)
    assert all(torch.equal(ref, mel) for mel, ref in calls[1::2])
    assert {"recon", "recon_self_ref", "perplexity"} <= set(result)


def test_bf16_capability_is_read_from_the_cpu_flags(tmp_path):
    from vconv.training.distributed import cpu_has_native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16(str(info)) is True
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert cpu_has_native_bf16(str(info)) is False
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is None
