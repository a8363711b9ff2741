"""Distil the causal twin of a bundle's voice converter (:mod:`vconv.models.causal`), for ``vc.stream``.

The teacher is the bundle's offline model, frozen; the student starts from its weights with causal
convolutions and sliding-window norms, and learns to give what the teacher gives on whole utterances:

* a training sequence is several utterances of one training speaker, one after another (a live stream is
  long, so the student's norms must work at full window as well as from a cold start), cropped to
  ``frames`` frames at a random offset;
* its target is the teacher's conversion of each utterance *as a whole* (what offline conversion gives),
  to a voice picked at random among the training utterances (the speaker encoder is the teacher's);
* the loss is the L1 distance in model space (normalised log-mel) between student and teacher.

The teacher's inputs are the content front-end's states of whole utterances, read from the feature files
``vconv extract`` wrote; the stream computes them on a window that ends at the look-ahead, which the student
never sees in training (measured in docs/STREAMING.md).

Weights are checkpointed every few minutes (``student.safetensors`` + ``progress.json``), and a run
started again with the same ``out`` resumes from them (the optimiser's moments start afresh).
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vconv.data.feature_files import load_feature_tensors
from vconv.data.manifest import read_manifest
from vconv.errors import VconvError
from vconv.fileio import atomic_path
from vconv.models.causal import CausalLayout, lookahead_of, make_causal

STUDENT_FILE = "stream_model.safetensors"


@dataclass
class StudentSettings:
    """The distillation's knobs (the defaults are what the twin measured in docs/STREAMING.md was trained with)."""

    steps: int = 3000
    batch: int = 8
    frames: int = 256
    lr: float = 2e-4
    checkpoint_minutes: float = 5.0
    valid_every: int = 250
    layout: CausalLayout = CausalLayout()
    seed: int = 0


@dataclass
class Utterance:
    speaker: str
    content: torch.Tensor  # [C, F] float16, the content front-end's states
    mel: torch.Tensor  # [n_mels, F] float16, normalised log-mel (the speaker encoder's input)


def load_utterances(manifest: Path, features: Path, content_key: str, normalize) -> list[Utterance]:
    """Every utterance of ``manifest`` with its feature file under ``features`` (``<id>.safetensors``)."""
    items = []
    for utt in read_manifest(manifest, nonempty=True):
        path = features / f"{utt.id}.safetensors"
        if not path.is_file():
            continue
        tensors = load_feature_tensors(path, keys=("mel", content_key))  # a missing key is a one-line error
        items.append(Utterance(utt.speaker, tensors[content_key].half(), normalize(tensors["mel"]).half()))
    if not items:
        raise VconvError(f"no feature files of {manifest} under {features}")
    return items


class Distiller:
    """One teacher, one student, the training utterances and their voices."""

    def __init__(self, teacher, train: list[Utterance], valid: list[Utterance], settings: StudentSettings) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.student = make_causal(copy.deepcopy(teacher), settings.layout).requires_grad_(True)
        self.student.quantizer.eval()  # the codebook is the teacher's: no EMA updates, straight-through gradients
        self.student.speaker_encoder.requires_grad_(False)
        self.settings = settings
        self.train_pools, self.valid_pools = _by_speaker(train), _by_speaker(valid)
        with torch.no_grad():
            self.voices = torch.cat([teacher.embed_speaker(item.mel.float()[None]) for item in train])  # [N, S]

    def sequence(self, rng: random.Random, voice: torch.Tensor, pools: dict[str, list[Utterance]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(content [C, frames], teacher's output [n_mels, frames])``: the utterances of one speaker of
        ``pools`` end to end, each converted whole by the teacher to ``voice [1, S]``, cropped at a random offset."""
        frames = self.settings.frames
        pool = pools[rng.choice(sorted(pools))]
        contents, targets, total = [], [], 0
        while total < frames + 1:
            content = rng.choice(pool).content.float()[None]
            with torch.no_grad():
                targets.append(self.teacher.convert(content, embedding=voice)[0])
            contents.append(content[0])
            total += content.shape[-1]
        start = rng.randrange(total - frames)
        return torch.cat(contents, -1)[:, start : start + frames], torch.cat(targets, -1)[:, start : start + frames]

    def batch(self, rng: random.Random, size: int, pools: dict[str, list[Utterance]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(content [B, C, frames], target [B, n_mels, frames], voices [B, S])``, a random voice each."""
        voices = torch.cat([self.voices[rng.randrange(len(self.voices))][None] for _ in range(size)])
        pairs = [self.sequence(rng, voice[None], pools) for voice in voices]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]), voices

    def loss(self, content: torch.Tensor, target: torch.Tensor, voices: torch.Tensor) -> torch.Tensor:
        out = self.student.decode(self.student.encode_content(content).quantized, voices, content.shape[-1])
        return (out - target).abs().mean()

    def valid_loss(self) -> float:
        """The student's L1 against the teacher on the validation utterances (the same sequences and voices
        every time)."""
        rng = random.Random(1234)
        with torch.no_grad():
            losses = [float(self.loss(*self.batch(rng, 4, self.valid_pools))) for _ in range(8)]
        return sum(losses) / len(losses)


def _by_speaker(items: list[Utterance]) -> dict[str, list[Utterance]]:
    pools: dict[str, list[Utterance]] = {}
    for item in items:
        pools.setdefault(item.speaker, []).append(item)
    return pools


def distill(bundle: str | Path, features: Path, train_manifest: Path, valid_manifest: Path, out: Path,
            settings: StudentSettings = StudentSettings(), log=print) -> Path:
    """Train (or resume) the causal twin of the model in the bundle folder ``bundle``; write
    ``out/stream_model.safetensors`` (attach it with :func:`vconv.bundles.stream_twin.attach_stream_twin`)."""
    from vconv.bundles import load_bundle

    model, frontend, _ = load_bundle(bundle)
    key = frontend.content.feature_key if frontend.content is not None else "mel"
    normalize = frontend.normalize
    train = load_utterances(train_manifest, features, key, normalize)
    valid = load_utterances(valid_manifest, features, key, normalize)
    log(f"{len(train)} training and {len(valid)} validation utterances; look-ahead {settings.layout.lookahead_frames} "
        f"frames, norms over {settings.layout.norm_frames}")
    job = Distiller(model, train, valid, settings)
    out.mkdir(parents=True, exist_ok=True)
    step = _resume(job, out, log)
    params = [p for p in job.student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    last_save, started = time.monotonic(), time.monotonic()
    rng = random.Random(settings.seed + step)
    while step < settings.steps:
        job.student.train()
        job.student.quantizer.eval()
        loss = job.loss(*job.batch(rng, settings.batch, job.train_pools))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            log(f"step {step} loss {loss.item():.4f} ({(time.monotonic() - started) / 60:.1f} min)")
        if step % settings.valid_every == 0 or step == settings.steps:
            job.student.eval()
            log(f"step {step} valid L1 {job.valid_loss():.4f}")
        if time.monotonic() - last_save > settings.checkpoint_minutes * 60 or step == settings.steps:
            _save(job, out, step)
            last_save = time.monotonic()
    return out / STUDENT_FILE


def _resume(job: Distiller, out: Path, log) -> int:
    progress = out / "progress.json"
    if not progress.is_file():
        return 0
    step = int(json.loads(progress.read_text())["step"])
    job.student.load_state_dict(load_file(str(out / STUDENT_FILE)), strict=True)
    log(f"resumed at step {step}")
    return step


def _save(job: Distiller, out: Path, step: int) -> None:
    layout = job.settings.layout
    meta = {"format": "vconv-causal-twin", "step": str(step), **{k: str(v) for k, v in layout.to_dict().items()},
            "lookahead_frames_measured": str(lookahead_of(job.student))}
    with atomic_path(out / STUDENT_FILE) as tmp:
        save_file({k: v.detach().contiguous() for k, v in job.student.state_dict().items()}, str(tmp), metadata=meta)
    with atomic_path(out / "progress.json") as tmp:
        Path(tmp).write_text(json.dumps({"step": step}) + "\n")
