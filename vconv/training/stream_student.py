"""Distil the causal twin of a bundle's voice converter (:mod:`vconv.models.causal`), for ``vc.stream``.

The teacher is the bundle's offline model, frozen; the student starts from its weights with causal
convolutions and sliding-window norms, and learns to give what the teacher gives on whole utterances:

* a training sequence is several utterances of one training speaker, one after another (a live stream is
  long, so the student's norms must work at full window as well as from a cold start), cropped to
  ``frames`` frames at a random offset;
* its target is the teacher's conversion of each utterance *as a whole* (what offline conversion gives),
  to a voice picked at random among the training utterances (the speaker encoder is the teacher's);
* the loss is the L1 distance in model space (normalised log-mel) between student and teacher, plus (with
  ``code_weight > 0``, the default) a cross-entropy that teaches the student's content encoder the teacher's
  VQ codes of the whole utterance. With it the student's decoder reads the teacher's codes in training
  (teacher forcing): the encoder learns *which* code each frame is (a classification target, which does
  not blur as a regression to the teacher's spectrogram does), the decoder learns to render true codes
  causally. At inference the student reads its own codes. (A model without a VQ bottleneck has no codes:
  the L1 alone.)

The teacher's inputs are the content front-end's states of whole utterances, read from the feature files
``vconv extract`` wrote; the stream computes them on a window that ends at the look-ahead, which the student
never sees in training (measured in docs/STREAMING.md).

Weights are checkpointed every few minutes (``student.safetensors`` + ``progress.json``), and a run
started again with the same ``out`` resumes from them (the optimiser's moments start afresh).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from vconv.data.feature_files import load_feature_tensors
from vconv.data.manifest import read_manifest
from vconv.errors import VconvError
from vconv.fileio import atomic_path
from vconv.models.causal import CausalLayout, lookahead_of, make_causal
from vconv.models.quantize import VectorQuantizer, squared_distances

STUDENT_FILE = "stream_model.safetensors"


@dataclass
class StudentSettings:
    """The distillation's knobs (the defaults are what the twin measured in docs/STREAMING.md was trained with)."""

    steps: int = 3000
    batch: int = 8
    frames: int = 256
    lr: float = 2e-4  # the peak; it follows a cosine down to 0 at ``steps`` (from the step a run resumes at, too)
    checkpoint_minutes: float = 5.0
    valid_every: int = 250
    code_weight: float = 1.0  # the cross-entropy to the teacher's codes (0: the L1 alone, the decoder on the student's codes)
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
        if teacher.reads_pitch:  # the student would need the contour of every utterance too; not built
            raise VconvError("a causal twin is distilled from a model without the pitch path (a pitch model streams as "
                             "it is: vconv stream runs the offline model on each window)")
        self.teacher = teacher.eval().requires_grad_(False)
        self.student = make_causal(copy.deepcopy(teacher), settings.layout).requires_grad_(True)
        self.student.quantizer.eval()  # the codebook is the teacher's: no EMA updates, straight-through gradients
        self.student.speaker_encoder.requires_grad_(False)
        self.settings = settings
        self.train_pools, self.valid_pools = _by_speaker(train), _by_speaker(valid)
        with torch.no_grad():
            self.voices = torch.cat([teacher.embed_speaker(item.mel.float()[None]) for item in train])  # [N, S]

    def sequence(self, rng: random.Random, voice: torch.Tensor, pools: dict[str, list[Utterance]]) -> Batch:
        """The utterances of one speaker of ``pools`` end to end, each encoded and converted whole by the teacher
        to ``voice [1, S]``, cropped to ``frames`` at a random offset (one item, no batch axis)."""
        frames = self.settings.frames
        pool = pools[rng.choice(sorted(pools))]
        contents, targets, quantized, codes, total = [], [], [], [], 0
        while total < frames + 1:
            content = rng.choice(pool).content.float()[None]
            with torch.no_grad():
                encoded = self.teacher.encode_content(content)
                targets.append(self.teacher.decode(encoded.quantized, voice, content.shape[-1])[0])
            contents.append(content[0])
            quantized.append(encoded.quantized[0])
            codes.append(encoded.codes[0].reshape(content.shape[-1], -1))  # [F, G]
            total += content.shape[-1]
        start = rng.randrange(total - frames)
        span = slice(start, start + frames)
        return Batch(torch.cat(contents, -1)[:, span], torch.cat(targets, -1)[:, span], voice[0],
                     torch.cat(quantized, -1)[:, span], torch.cat(codes, 0)[span])

    def batch(self, rng: random.Random, size: int, pools: dict[str, list[Utterance]]) -> Batch:
        """``size`` sequences (:meth:`sequence`) stacked, a random training voice each."""
        voices = [self.voices[rng.randrange(len(self.voices))][None] for _ in range(size)]
        items = [self.sequence(rng, voice, pools) for voice in voices]
        return Batch(*(torch.stack([getattr(item, f.name) for item in items]) for f in dataclasses.fields(Batch)))

    def code_logits(self, content: torch.Tensor, quantizer: VectorQuantizer) -> torch.Tensor:
        """The student's scores for every code at every frame and group, ``[B, T, G, K]``: minus the squared
        distance of its (unquantised) content vector to each code vector, the nearest code scoring highest."""
        z = self.student.content_encoder(content).float()  # [B, G*D, T]
        batch, _, frames = z.shape
        z = z.reshape(batch, quantizer.groups, quantizer.dim, frames).permute(0, 3, 1, 2)  # [B, T, G, D]
        codebook = quantizer.codebook.float()  # [K, D]
        return -squared_distances(z, codebook)

    def loss(self, batch: Batch) -> torch.Tensor:
        """L1 of the student's output against the teacher's, plus ``code_weight`` x the cross-entropy of its
        codes against the teacher's (then the decoder reads the teacher's codes)."""
        frames = batch.content.shape[-1]
        quantizer = self.student.quantizer
        if self.settings.code_weight <= 0 or not isinstance(quantizer, VectorQuantizer):
            out = self.student.decode(self.student.encode_content(batch.content).quantized, batch.voices, frames)
            return (out - batch.target).abs().mean()
        out = self.student.decode(batch.quantized, batch.voices, frames)
        logits = self.code_logits(batch.content, quantizer)
        codes = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.codes.reshape(-1))
        return (out - batch.target).abs().mean() + self.settings.code_weight * codes

    def validate(self) -> tuple[float, float]:
        """``(L1, code accuracy)`` of the student *as it streams* (its own codes) against the teacher, on the
        validation utterances (the same sequences and voices every time)."""
        rng = random.Random(1234)
        l1, hits = [], []
        with torch.no_grad():
            for _ in range(8):
                batch = self.batch(rng, 4, self.valid_pools)
                encoded = self.student.encode_content(batch.content)
                out = self.student.decode(encoded.quantized, batch.voices, batch.content.shape[-1])
                l1.append(float((out - batch.target).abs().mean()))
                hits.append(float((encoded.codes.reshape(batch.codes.shape) == batch.codes).float().mean()))
        return sum(l1) / len(l1), sum(hits) / len(hits)


@dataclass
class Batch:
    """Training sequences: ``content [B, C, T]`` (front-end states), ``target [B, n_mels, T]`` (the teacher's
    output), ``voices [B, S]``, ``quantized [B, code_dim, T]`` and ``codes [B, T, G]`` (the teacher's codes)."""

    content: torch.Tensor
    target: torch.Tensor
    voices: torch.Tensor
    quantized: torch.Tensor
    codes: torch.Tensor


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
        for group in opt.param_groups:
            group["lr"] = settings.lr * 0.5 * (1.0 + math.cos(math.pi * step / settings.steps))
        loss = job.loss(job.batch(rng, settings.batch, job.train_pools))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            log(f"step {step} loss {loss.item():.4f} ({(time.monotonic() - started) / 60:.1f} min)")
        if step % settings.valid_every == 0 or step == settings.steps:
            job.student.eval()
            l1, accuracy = job.validate()
            log(f"step {step} valid L1 {l1:.4f} code accuracy {accuracy:.3f}")
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
