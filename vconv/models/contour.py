"""What the decoder reads of the pitch: the source's melody in the output's register.

A pitch front-end (:mod:`vconv.frontends.pitch`) gives ``[3, F]`` per utterance: log-F0 (continuous across
unvoiced frames), voiced, periodicity. A voice's *register* is the mean and spread of its voiced log-F0
(:class:`Register`). The source's contour is *whitened* (its own register removed: only the melody's shape is
left, the voice's pitch level gone) and the output register put back::

    log-F0_out = out.mean + out.spread * (log-F0_src - src.mean) / src.spread + shift

``out`` is the target's register by default (a converted voice speaks at the target's pitch), the source's own
when the user keeps it (singing, same-speaker edits), and ``shift`` the user's transposition in semitones. In
training the decoder reconstructs the utterance itself, so ``out = src`` and ``log-F0_out`` is its own contour.

How the register reaches the decoder is the model's ``pitch_register`` setting: ``explicit`` gives it
``log-F0_out`` itself (normalised by fixed constants), ``implicit`` only the whitened shape, leaving the level to
the speaker embedding (:func:`decoder_contour`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vconv.audio.pitch import YIN_VERSION
from vconv.errors import VconvError

__all__ = ["Register", "REGISTER_MODES", "PITCH_REGISTERS", "MAX_SHIFT_SEMITONES", "TARGET_TRIM_SEMITONES", "PITCH_RULES", "check_pitch_shift",
           "check_register_mode", "decoder_contour", "output_log_f0", "voiced_register"]

LOG_F0_CENTER = math.log(150.0)  # the explicit contour's fixed normalisation: (log-F0 - centre) / scale
LOG_F0_SCALE = 0.5
MIN_SPREAD = 0.02  # nats (~35 cents): a monotone reference must not blow the whitened contour up
DEFAULT_SPREAD = 0.15  # nats (~260 cents): the spread assumed when too few frames are voiced to measure one
MIN_VOICED_FRAMES = 16  # a quarter second of voicing before a register is measured rather than assumed
MAX_SHIFT_SEMITONES = 24.0
REGISTER_MODES = ("target", "source")  # whose register the output takes (the user's choice at conversion)
PITCH_REGISTERS = ("explicit", "implicit")  # how the model is given it (a model setting, fixed in training)
SEMITONE = math.log(2.0) / 12.0  # one semitone in nats of F0
# A target's register is taken over its references' voiced frames within 9 semitones of their median: wider than a
# speaking voice's range around its centre, narrower than an octave. YIN reads a voice with a weak fundamental an
# octave up on some frames (piper_joe: its references' plain mean 104 Hz where Praat and pYIN read 88-89), and the
# output took that register; measured in recipes/voices/MODEL_HISTORY.md, "The pitch judge".
TARGET_TRIM_SEMITONES = 9.0
# What a pitch-path conversion's register and contour depend on besides the audio and the bundle: a cached voice
# (vconv.inference.voice_file) and a corpus's finished outputs (vconv.corpus) of other rules are made again.
PITCH_RULES = f"register trim {TARGET_TRIM_SEMITONES:g} st, yin {YIN_VERSION}"


@dataclass(frozen=True)
class Register:
    """A voice's pitch register: ``mean`` and ``spread`` (standard deviation) of its voiced log-F0, in nats of Hz,
    over ``frames`` voiced frames (``trusted`` when there are at least :data:`MIN_VOICED_FRAMES`)."""

    mean: float
    spread: float
    frames: int

    @property
    def trusted(self) -> bool:
        return self.frames >= MIN_VOICED_FRAMES

    @property
    def hz(self) -> float:
        """The register's centre in Hz (the geometric mean of the voiced F0)."""
        return math.exp(self.mean)

    def to_list(self) -> list[float]:
        return [self.mean, self.spread, float(self.frames)]

    @classmethod
    def from_list(cls, values: list[float] | tuple[float, ...] | torch.Tensor) -> "Register":
        mean, spread, frames = (float(v) for v in values)
        return cls(mean, max(spread, MIN_SPREAD), int(frames))


def voiced_register(pitch: torch.Tensor | list[torch.Tensor], trim_semitones: float | None = None) -> Register:
    """The register of ``pitch [3, F]`` (a pitch part's output), or of several pooled (a target's references).

    With fewer than :data:`MIN_VOICED_FRAMES` voiced frames the spread is :data:`DEFAULT_SPREAD` (a mean from a
    few frames is still the best guess of the level; with none, :data:`LOG_F0_CENTER`). ``trim_semitones``: the
    register of the voiced frames within that many semitones of their median only (all of them if fewer than
    :data:`MIN_VOICED_FRAMES` are), so that a tracker's octave errors move neither its level nor its spread
    (:data:`TARGET_TRIM_SEMITONES`).
    """
    rows = pitch if isinstance(pitch, list) else [pitch]
    voiced_log_f0 = torch.cat([p[0][p[1] > 0.5].double() for p in rows])
    if trim_semitones is not None and voiced_log_f0.numel() >= MIN_VOICED_FRAMES:
        kept = voiced_log_f0[(voiced_log_f0 - voiced_log_f0.median()).abs() <= trim_semitones * SEMITONE]
        voiced_log_f0 = kept if kept.numel() >= MIN_VOICED_FRAMES else voiced_log_f0
    frames = int(voiced_log_f0.numel())
    if frames == 0:
        return Register(LOG_F0_CENTER, DEFAULT_SPREAD, 0)
    mean = float(voiced_log_f0.mean())
    if frames < MIN_VOICED_FRAMES:
        return Register(mean, DEFAULT_SPREAD, frames)
    return Register(mean, max(float(voiced_log_f0.std()), MIN_SPREAD), frames)


def output_log_f0(log_f0: torch.Tensor, source: Register, output: Register, shift_semitones: float = 0.0) -> torch.Tensor:
    """``log_f0 [..., F]`` of the source moved to ``output``'s register, plus ``shift_semitones`` (module docstring)."""
    shape = (log_f0 - source.mean) / source.spread
    return output.mean + output.spread * shape + shift_semitones * SEMITONE


def decoder_contour(pitch: torch.Tensor, mode: str, *, source: Register | list[Register] | None = None,
                    output: Register | list[Register] | None = None, shift_semitones: float = 0.0) -> torch.Tensor:
    """What the decoder reads: ``pitch [B, 3, T]`` -> ``[B, 3, T]`` (contour, voiced, periodicity).

    ``mode`` is the model's ``pitch_register``: ``explicit`` -> row 0 is the output's log-F0 normalised by fixed
    constants; ``implicit`` -> the whitened source contour (shape only). ``source`` / ``output``: one register for
    every item or one per item; ``source`` defaults to each item's own (:func:`voiced_register` of it), ``output``
    to ``source`` (reconstruction: the contour as it is).
    """
    if mode not in PITCH_REGISTERS:
        raise VconvError(f"model.pitch_register must be one of {', '.join(PITCH_REGISTERS)}, got {mode!r}")
    items = pitch.shape[0]
    sources = _per_item(source, items) if source is not None else [voiced_register(p) for p in pitch]
    log_f0 = pitch[:, 0].float()
    if mode == "implicit":
        mean, spread = _columns(sources, log_f0)
        row = (log_f0 - mean) / spread
    else:
        outputs = _per_item(output, items) if output is not None else sources
        src_mean, src_spread = _columns(sources, log_f0)
        out_mean, out_spread = _columns(outputs, log_f0)
        moved = out_mean + out_spread * (log_f0 - src_mean) / src_spread + shift_semitones * SEMITONE
        row = (moved - LOG_F0_CENTER) / LOG_F0_SCALE
    return torch.cat([row[:, None].to(pitch.dtype), pitch[:, 1:]], dim=1)


def check_pitch_shift(value: float, where: str = "pitch shift") -> float:
    """``value`` semitones as a float within ±:data:`MAX_SHIFT_SEMITONES`, else a one-line VconvError."""
    try:
        shift = float(value)
    except (TypeError, ValueError):
        raise VconvError(f"{where} must be a number of semitones, got {value!r}") from None
    if not math.isfinite(shift) or abs(shift) > MAX_SHIFT_SEMITONES:
        raise VconvError(f"{where} must lie within ±{MAX_SHIFT_SEMITONES:g} semitones, got {value!r}")
    return shift


def check_register_mode(value: str, where: str = "pitch register") -> str:
    """``value`` if it is one of :data:`REGISTER_MODES`, else a one-line VconvError."""
    if value not in REGISTER_MODES:
        raise VconvError(f"{where} must be one of {', '.join(REGISTER_MODES)}, got {value!r}")
    return value


def _per_item(registers: Register | list[Register], items: int) -> list[Register]:
    listed = [registers] * items if isinstance(registers, Register) else list(registers)
    if len(listed) != items:
        raise ValueError(f"{len(listed)} registers for {items} items")
    return listed


def _columns(registers: list[Register], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [B, 1], spread [B, 1])`` of per-item registers, on ``like``'s device and dtype."""
    mean = torch.tensor([r.mean for r in registers], dtype=like.dtype, device=like.device)[:, None]
    spread = torch.tensor([r.spread for r in registers], dtype=like.dtype, device=like.device)[:, None]
    return mean, spread
