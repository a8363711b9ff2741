"""Fitting the target's voice at conversion time: the speaker embedding tuned on the target's own references.

Why: the speaker encoder learned its embedding space from a few dozen training voices, so a voice it never
heard is mapped near the voices it knows, and the decoder renders that neighbour (on the held-out voices the
network's own output stays ~0.58 from the target, recipes/voices/MODEL_HISTORY.md). Here the encoder's
embedding is only the starting point: a few Adam steps move it so that the frozen decoder rebuilds each
reference's log-mel from that reference's own content codes. The codes carry the words; the one vector
``[1, S]`` that drives every AdaIN layer can only take up what is the same all through the references, the
voice. No weight of the network changes, and the cost is per target (``steps`` decoder passes forward and back
over at most :data:`MAX_FIT_SECONDS` of reference), not per second of source.

:func:`fit_embedding` is the whole procedure; :class:`~vconv.inference.converter.VoiceConverter` calls it from
``target_voice`` when it was loaded with ``fit_steps > 0`` (``vconv convert --fit-voice N``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F

from vconv.errors import VconvError

if TYPE_CHECKING:
    from vconv.models.vc import VoiceConversionModel

__all__ = ["DEFAULT_FIT_LR", "FitReference", "MAX_FIT_SECONDS", "MAX_FIT_STEPS", "VoiceFit", "check_fit_steps", "crop_references",
           "fit_embedding"]

# Adam's step on the embedding: 30 steps at 0.1 judge as 60 at 0.03 on the held-out voices (both take v6's reference
# reconstruction L1 from 0.41 to ~0.34, moving the embedding to cosine ~0.5 of where the encoder put it); 0.01 had
# not converged in 100 steps (recipes/voices/MODEL_HISTORY.md, "Fitting the voice")
DEFAULT_FIT_LR = 0.1
# the reference frames a fit reads at most, over all references: its cost grows with them, its voice does not
MAX_FIT_SECONDS = 8.0
MAX_FIT_STEPS = 2000  # a typo guard: a fit of this many steps takes minutes


@dataclass(frozen=True)
class FitReference:
    """One target reference as the fit reads it.

    Attributes:
        content: ``[1, C, T]`` what the content encoder reads of it (normalised log-mel or Whisper states).
        mel: ``[1, n_mels, T]`` its normalised log-mel, the decoder's target.
        pitch: ``[1, 3, T]`` the decoder's contour of the reference itself (its own register), for a model with the
            pitch path; else None.
    """

    content: torch.Tensor
    mel: torch.Tensor
    pitch: torch.Tensor | None = None


@dataclass(frozen=True)
class VoiceFit:
    """What :func:`fit_embedding` returns: ``embedding [1, S]`` (float32, no gradient) and the reconstruction L1
    of the references before each step and after the last (``steps + 1`` values; the first is the encoder's)."""

    embedding: torch.Tensor
    losses: tuple[float, ...]


def check_fit_steps(steps: int, what: str = "--fit-voice") -> int:
    """``steps`` if it is a usable number of fit steps (0 = no fit), else a one-line VconvError."""
    if not 0 <= steps <= MAX_FIT_STEPS:
        raise VconvError(f"{what} {steps}: expected 0 (no fit) to {MAX_FIT_STEPS} steps")
    return steps


def crop_references(references: Sequence[FitReference], max_frames: int) -> list[FitReference]:
    """The references cut to ``max_frames`` frames in all, the first ones first (each at least one frame)."""
    cropped, left = [], max_frames
    for ref in references:
        if left <= 0:
            break
        frames = min(ref.mel.shape[-1], ref.content.shape[-1], left)
        cropped.append(FitReference(ref.content[..., :frames], ref.mel[..., :frames],
                                    ref.pitch[..., :frames] if ref.pitch is not None else None))
        left -= frames
    return cropped


def fit_embedding(model: "VoiceConversionModel", references: Sequence[FitReference], embedding: torch.Tensor, *,
                  steps: int, lr: float = DEFAULT_FIT_LR,
                  progress: Callable[[int, int], None] | None = None) -> VoiceFit:
    """Tune ``embedding [1, S]`` so that ``model``'s decoder rebuilds each reference from its own codes.

    Args:
        model: the conversion network, in eval mode; its weights are read, never changed, and no gradient is
            left on them (only the embedding's is computed).
        references: the target's references (:class:`FitReference`), already cropped to what the fit may read.
        embedding: ``[1, S]`` the starting point, the speaker encoder's embedding of the references.
        steps: Adam steps (0 returns ``embedding`` unchanged).
        lr: Adam's learning rate.
        progress: called with (steps done, steps) after each step (the CLI shows a progress line with it).

    Runs in whatever autocast the caller set (the converter's precision); the loss is the mean of the
    references' L1 in the normalised log-mel space the model was trained in.
    """
    if not references:
        raise ValueError("fit_embedding needs at least one reference")
    with torch.no_grad():  # the codes do not depend on the embedding: computed once
        codes = [model.encode_content(ref.content).quantized for ref in references]
    fitted = embedding.detach().float().clone().requires_grad_(True)
    optimiser = VectorAdam(fitted, lr)
    losses: list[float] = []
    with torch.enable_grad():
        for _ in range(steps + 1):
            loss = torch.stack([
                F.l1_loss(model.decode(q, fitted, ref.mel.shape[-1], ref.pitch).float(), ref.mel.float())
                for q, ref in zip(codes, references)
            ]).mean()
            losses.append(float(loss.detach()))
            if len(losses) > steps:  # the last pass only measures
                break
            # the embedding's gradient alone: backward() would also compute (and keep) every weight's
            (gradient,) = torch.autograd.grad(loss, [fitted])
            optimiser.step(gradient)
            if progress is not None:
                progress(len(losses), steps)
    return VoiceFit(embedding=fitted.detach(), losses=tuple(losses))


class VectorAdam:
    """Adam (Kingma & Ba 2015, default betas and epsilon, as ``torch.optim.Adam``) on one tensor, in place.

    The fit moves a single ``[1, S]`` vector, so the update is a few tensor operations. ``torch.optim.Adam`` would do the
    same, but constructing any torch optimiser imports ``torch._dynamo`` (1.5 s on these machines), which was most of a
    fitted ``vconv convert``'s extra time in a fresh process.
    """

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.mean = torch.zeros_like(param)
        self.square = torch.zeros_like(param)
        self.steps = 0

    @torch.no_grad()
    def step(self, gradient: torch.Tensor) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        self.mean.mul_(beta1).add_(gradient, alpha=1 - beta1)
        self.square.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        mean_hat = self.mean / (1 - beta1 ** self.steps)
        root = (self.square / (1 - beta2 ** self.steps)).sqrt_().add_(self.eps)
        self.param.addcdiv_(mean_hat, root, value=-self.lr)
