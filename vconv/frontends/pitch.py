"""The pitch front-end: the source's F0 contour and voicing at the mel frame rate, for the decoder's pitch path.

A pitch part has the role ``"pitch"`` and gives ``[3, F]`` per utterance (``F = 1 + T // hop``, the log-mel's
frames)::

    row 0  log-F0 (natural log of Hz), interpolated linearly across unvoiced frames (held at the edges), so the
           contour is continuous; an utterance with no voiced frame holds :data:`NEUTRAL_LOG_F0`
    row 1  voiced: 1.0 or 0.0
    row 2  periodicity in [0, 1] (how periodic the frame is, whatever the voicing decision)

What the decoder reads of it (whitened, the register put back) is :mod:`vconv.models.contour`'s. The model config
names the tracker as any part: ``model.pitch_frontend: {kind: yin}`` or ``{kind: swift}`` (``{kind: none}``: no pitch
path, the models before it). ``vconv extract`` stores the output under :attr:`feature_key` (``pitch_yin``,
``pitch_swift``), so training reads it. The trackers compared: ``benchmarks/bench_pitch.py tracker``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from vconv.audio.pitch import FMAX, FMIN, YIN_VERSION, YinGrid, track_pitch
from vconv.audio.pitch_stream import WindowPitch
from vconv.audio.pretrained import SWIFT_FILE
from vconv.audio.swift_pitch import CLASS_RATIO as SWIFT_CLASS_RATIO
from vconv.audio.swift_pitch import HIGHEST_HZ as SWIFT_HIGHEST_HZ
from vconv.audio.swift_pitch import HOP as SWIFT_HOP
from vconv.audio.swift_pitch import LOWEST_HZ as SWIFT_LOWEST_HZ
from vconv.audio.swift_pitch import SAMPLE_RATE as SWIFT_RATE
from vconv.audio.swift_pitch import SwiftPitchNet
from vconv.errors import VconvError
from vconv.frontends.base import FrontEndPart, register_frontend

NEUTRAL_LOG_F0 = math.log(150.0)  # the contour of an utterance with no voiced frame (between the usual registers)
PITCH_ROWS = 3


def pitch_rows(f0: torch.Tensor, voiced: torch.Tensor, periodicity: torch.Tensor) -> torch.Tensor:
    """A tracker's ``f0`` Hz, ``voiced`` and ``periodicity`` ``[F]`` -> the part's ``[3, F]`` rows (module docstring)."""
    log_f0 = torch.log(f0.clamp(min=1.0))
    return torch.stack([fill_unvoiced(log_f0, voiced), voiced.float(), periodicity.float()])


def _as_tensor(wav: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))


def fill_unvoiced(log_f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """``log_f0 [F]`` with its unvoiced frames replaced by the line between their voiced neighbours (the nearest
    voiced value at the edges; :data:`NEUTRAL_LOG_F0` when no frame is voiced)."""
    frames = log_f0.shape[0]
    idx = torch.nonzero(voiced, as_tuple=False).flatten()
    if idx.numel() == 0:
        return torch.full_like(log_f0, NEUTRAL_LOG_F0)
    positions = torch.arange(frames, dtype=log_f0.dtype, device=log_f0.device)
    known = log_f0[idx]
    right = torch.searchsorted(idx, torch.arange(frames, device=idx.device)).clamp(max=idx.numel() - 1)
    left = (right - 1).clamp(min=0)
    left = torch.where(idx[right] <= positions.long(), right, left)  # a voiced frame is its own left neighbour
    x0, x1 = idx[left].to(log_f0.dtype), idx[right].to(log_f0.dtype)
    span = (x1 - x0).clamp(min=1.0)
    weight = ((positions - x0) / span).clamp(0.0, 1.0)
    filled = known[left] * (1 - weight) + known[right] * weight
    return torch.where(voiced, log_f0, filled)


class PitchPart(FrontEndPart):
    """Base of the pitch trackers: subclasses implement :meth:`track` (``wav [T] -> (f0 Hz [F], voiced [F],
    periodicity [F])``); :meth:`compute` makes the ``[3, F]`` rows of the module docstring."""

    role = "pitch"

    def channels(self, n_mels: int) -> int:
        return PITCH_ROWS

    @property
    def feature_key(self) -> str:
        return f"pitch_{self.kind}"

    def track(self, wav: torch.Tensor, sample_rate: int, hop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def compute(self, wav: np.ndarray, frontend: Any) -> torch.Tensor:
        """Mono ``[T]`` at the features' rate -> ``[3, F]`` (module docstring), ``F = 1 + T // hop``."""
        return pitch_rows(*self.track(_as_tensor(wav), frontend.cfg.sample_rate, frontend.cfg.hop_length))

    def window_rows(self, frontend: Any) -> Callable[[np.ndarray, int], torch.Tensor]:
        """For one stream: ``(window [T], window_start) -> [3, F]``, what :meth:`compute` gives for each of its
        consecutive windows (``window_start``: the window's first sample in the stream, a multiple of the hop). A
        tracker that can reuse what it measured in the previous window overrides this; by default every window is
        tracked whole."""
        return lambda wav, window_start: self.compute(wav, frontend)


@register_frontend
class YinPitch(PitchPart):
    """YIN (:mod:`vconv.audio.pitch`): weight-free, deterministic, 32 ms of look-ahead for each frame's measures (the
    decisions over the signal, the octave-slip path among them, read the whole window)."""

    kind = "yin"
    output_version = YIN_VERSION

    def __init__(self, fmin: float = FMIN, fmax: float = FMAX, threshold: float = 0.1, voicing: float = 0.5) -> None:
        super().__init__()
        if not 0 < float(fmin) < float(fmax) <= 2000:
            raise ValueError(f"need 0 < fmin < fmax <= 2000 Hz, got {fmin} and {fmax}")
        if not 0 < float(threshold) < 1 or not 0 < float(voicing) < 1:
            raise ValueError(f"threshold and voicing must lie between 0 and 1, got {threshold} and {voicing}")
        self.fmin, self.fmax, self.threshold, self.voicing = float(fmin), float(fmax), float(threshold), float(voicing)

    def track(self, wav: torch.Tensor, sample_rate: int, hop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        result = track_pitch(wav, sample_rate, hop, fmin=self.fmin, fmax=self._fmax_at(sample_rate),
                             threshold=self.threshold, voicing=self.voicing)
        return result.f0, result.voiced, result.periodicity

    def window_rows(self, frontend: Any) -> Callable[[np.ndarray, int], torch.Tensor]:
        """Each frame measured once per stream (:class:`vconv.audio.pitch_stream.WindowPitch`), the same rows."""
        rate = frontend.cfg.sample_rate
        grid = YinGrid(rate, frontend.cfg.hop_length, self.fmin, self._fmax_at(rate))
        tracker = WindowPitch(grid, self.threshold, self.voicing)

        def rows(wav: np.ndarray, window_start: int) -> torch.Tensor:
            track = tracker.track(_as_tensor(wav), window_start)
            return pitch_rows(track.f0, track.voiced, track.periodicity)
        return rows

    def _fmax_at(self, rate: int) -> float:
        """The highest F0 tracked at ``rate``: :attr:`fmax`, kept under 0.45 of the rate."""
        return min(self.fmax, 0.45 * rate)

    def describe(self, bundle: Any) -> str:
        return f"the source's F0 by YIN ({self.fmin:g}-{self.fmax:g} Hz, no weights)"


@register_frontend
class SwiftPitch(PitchPart):
    """SwiftF0 (:mod:`vconv.audio.swift_pitch`): a 0.12 MB CNN over three spectra, converted from the ``swift-f0``
    package by ``vconv frontend prepare`` and carried in the bundle. Fewer octave slips than YIN on our held-out
    voices; 2,815 samples (176 ms) of context each way, about 5x YIN's cost (0.1 s per 10 s on one thread)."""

    kind = "swift"
    weight_files = (SWIFT_FILE,)
    sample_rate = SWIFT_RATE

    def __init__(self, fmin: float = FMIN, fmax: float = 550.0, voicing: float = 0.5) -> None:
        super().__init__()
        if not SWIFT_LOWEST_HZ <= float(fmin) < float(fmax) <= SWIFT_HIGHEST_HZ:
            raise ValueError(f"need {SWIFT_LOWEST_HZ:g} <= fmin < fmax <= {SWIFT_HIGHEST_HZ:g} Hz (the tracker's classes), "
                             f"got {fmin} and {fmax}")
        if not 0 < float(voicing) < 1:
            raise ValueError(f"voicing must lie between 0 and 1, got {voicing}")
        if float(fmax) < float(fmin) * SWIFT_CLASS_RATIO:
            raise ValueError(f"fmax must be at least {SWIFT_CLASS_RATIO:.3f} x fmin (one pitch class), got {fmin} and {fmax}")
        self.fmin, self.fmax, self.voicing = float(fmin), float(fmax), float(voicing)
        self.__dict__["_cpu_net"] = None

    @property
    def net(self) -> SwiftPitchNet | None:
        """The tracker, kept on the CPU whatever device the front-end moves to: it is small, its class decoding is in
        float64 (which MPS lacks), and it reads the CPU audio the front-end gives it; its rows move with the rest."""
        return self.__dict__["_cpu_net"]

    def attach(self, net: SwiftPitchNet) -> "SwiftPitch":
        """Use ``net`` (held outside the module tree, so ``Module.to()`` leaves it on the CPU)."""
        self.__dict__["_cpu_net"] = net
        return self

    def load_weights(self, folder: str | Path, config: Mapping[str, Any]) -> "SwiftPitch":
        from vconv.audio.pretrained import load_swift_pitch

        if SWIFT_FILE not in dict(config).get("sha256", {}):
            raise VconvError(f"{folder}: no SwiftF0 weights ({SWIFT_FILE}) there; a front-end folder gets them from "
                             f"`vconv frontend prepare -o {folder} --force` (pip install swift-f0)")
        return self.attach(load_swift_pitch(folder, dict(config)).requires_grad_(False))

    def save_weights(self, folder: Path, dtype: torch.dtype) -> list[str]:
        from vconv.audio.pretrained import save_swift_pitch

        save_swift_pitch(self._net(), folder / SWIFT_FILE, source="swift-f0 0.3.0: model.onnx")
        return [SWIFT_FILE]

    def track(self, wav: torch.Tensor, sample_rate: int, hop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if (sample_rate, hop) != (SWIFT_RATE, SWIFT_HOP):
            raise VconvError(f"the swift pitch tracker needs {SWIFT_RATE} Hz audio and hop {SWIFT_HOP} "
                             f"(these features: {sample_rate} Hz, hop {hop}); use model.pitch_frontend: {{kind: yin}}")
        f0, confidence = self._net()(wav[None], fmin=self.fmin, fmax=self.fmax)
        voiced = confidence[0] >= self.voicing
        return torch.where(voiced, f0[0], torch.zeros_like(f0[0])), voiced, confidence[0]

    def describe(self, bundle: Any) -> str:
        return (f"the source's F0 by SwiftF0 ({self.fmin:g}-{self.fmax:g} Hz, `{SWIFT_FILE}`, converted from the "
                "swift-f0 package by `vconv frontend prepare`)")

    def _net(self) -> SwiftPitchNet:
        if self.net is None:
            raise VconvError("the swift pitch tracker has no weights loaded (train.frontends_dir or a bundle that carries them)")
        return self.net
