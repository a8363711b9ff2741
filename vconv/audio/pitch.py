"""A weight-free pitch tracker (YIN, de Cheveigné & Kawahara 2002) in torch, on the mel frame grid.

``track_pitch(wav [T], sample_rate, hop) -> PitchTrack(f0 [F], voiced [F], periodicity [F])`` with
``F = 1 + T // hop``: frame ``k`` is centred at sample ``k * hop``, as the log-mel's (centred STFT) frames are,
so the contour and the spectrogram line up frame for frame.

Why YIN and why written here: it needs no weights (nothing to convert or ship), it is deterministic, and each
frame's measures need a bounded look-ahead (half a window, 32 ms at 16 kHz), so a stream's blocks can track it; the
decisions made over the whole signal (the loud level that tells silence, the octave-slip path, the median) read what
the signal holds, so a stream's window, which ends at its block's look-ahead, can decide a frame otherwise than the
whole file does. On clean speech it agrees with Praat's tracker (the pitch judge) on most frames
(``benchmarks/bench_pitch.py tracker`` measures it against the other trackers).

Per frame of ``window`` samples: the difference function ``d(τ) = Σ_j (x_j - x_{j+τ})²`` over the first
``window - τ_max`` samples (energy terms from cumulative sums, the cross term by FFT), its cumulative-mean
normalisation ``d'(τ) = d(τ) τ / Σ_{1..τ} d``, the first dip below ``threshold`` that is a local minimum (else
the global minimum), refined by a parabola through its neighbours. ``periodicity = 1 - d'(τ*)`` (1: a pure
periodic signal); a frame is voiced when its periodicity passes ``voicing`` and it is not much quieter than the
utterance's loud frames. A voice whose fundamental is weaker than its second harmonic makes YIN's first dip fall at
half the period on some frames (an octave up); the cheapest path through the voiced frames, each read at its F0 or at
half of it, with octave jumps between neighbours costly and glides free, reads those at the period
(:func:`_octave_up_slips`; on the held-out voices' recordings the log-F0 correlation with Praat's tracker per
utterance rose 0.894 -> 0.911, piper_joe's 0.634 -> 0.681, and on twelve training voices 0.915 -> 0.935). A 3-frame
median over log-F0 of voiced runs removes what single-frame slips remain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["PitchTrack", "track_pitch", "YinGrid", "FrameMeasures", "frame_measures", "decide_voicing", "FMIN", "FMAX",
           "YIN_VERSION"]

YIN_VERSION = 2  # raised whenever the same audio gets another track (2: octave-up slips read at half, 2026-11-28)

FMIN = 50.0  # Hz: below the lowest speaking voice (a bass's vocal fry is not pitch we can follow)
FMAX = 500.0  # Hz: above a child's or a soprano's speaking voice (higher, the short lags of vocoder buzz read as pitch)
WINDOW_SECONDS = 0.064  # two periods of FMIN plus the largest lag: 1024 samples at 16 kHz
SUBHARMONIC_MARGIN = 0.1  # a dip at a fraction of the chosen lag this close to its depth is the true period
EDGE_JUMP_OCTAVES = 0.3  # a voiced run's first or last frame this far from its neighbour is an onset artefact
HALF_COST = 0.2  # octave-slip path: reading a frame at half its YIN F0 (YIN's own reading is preferred)
GLIDE_OCTAVES = 0.25  # ... a step between voiced frames this far apart per frame is a glide, free
JUMP_COST_CAP = 0.75  # ... a step costs at most an octave's: a frame far off (a creak read at a third) is one error
REGISTER_OCTAVES = 0.75  # ... within this of the voiced median, free; beyond it, REGISTER_COST an octave
REGISTER_COST = 0.5
REGISTER_MIN_FRAMES = 8  # ... voiced frames of the voice's own before its median is trusted
SILENCE_DB = 45.0  # frames this far below the loud (95th percentile) frame energy are unvoiced whatever their shape


@dataclass
class PitchTrack:
    """The tracker's output on ``F`` frames: ``f0`` Hz (0 where unvoiced), ``voiced`` bool, ``periodicity`` in [0, 1]."""

    f0: torch.Tensor
    voiced: torch.Tensor
    periodicity: torch.Tensor

    @property
    def frames(self) -> int:
        return int(self.f0.shape[-1])


@torch.no_grad()
def track_pitch(wav: torch.Tensor, sample_rate: int, hop: int, *, fmin: float = FMIN, fmax: float = FMAX,
                threshold: float = 0.15, voicing: float = 0.55) -> PitchTrack:
    """YIN on mono ``wav [T]`` (float, any scale) -> :class:`PitchTrack` of ``1 + T // hop`` frames (module docstring).

    ``threshold``: YIN's absolute threshold on ``d'`` for the first dip; ``voicing``: the least periodicity of a
    voiced frame. Runs in float32 on ``wav``'s device.
    """
    if wav.dim() != 1:
        raise ValueError(f"expected mono audio [T], got shape {tuple(wav.shape)}")
    grid = YinGrid(sample_rate, hop, fmin, fmax)
    chunks = grid.chunks(wav.float())
    return decide_voicing(frame_measures(chunks, grid, threshold), grid, voicing)


@dataclass(frozen=True)
class YinGrid:
    """The frame geometry of YIN at ``sample_rate`` on the mel grid of ``hop``: a frame reads ``window`` samples
    centred on it, lags ``tau_min..tau_max``, difference sums over ``span`` samples."""

    sample_rate: int
    hop: int
    fmin: float = FMIN
    fmax: float = FMAX

    def __post_init__(self) -> None:
        if not 0 < self.fmin < self.fmax < self.sample_rate / 2:
            raise ValueError(f"need 0 < fmin < fmax < sample_rate / 2, got {self.fmin}, {self.fmax}")

    @property
    def window(self) -> int:
        return int(round(WINDOW_SECONDS * self.sample_rate))

    @property
    def tau_min(self) -> int:
        return max(2, int(self.sample_rate / self.fmax))

    @property
    def tau_max(self) -> int:
        return min(self.window // 2, int(math.ceil(self.sample_rate / self.fmin)))

    def chunks(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T]`` -> its frames ``[1 + T // hop, window]`` (frame ``k`` centred at sample ``k * hop``, zeros
        past either edge): a strided view, not a copy."""
        padded = F.pad(x, (self.window // 2, self.window // 2 + self.hop))
        return padded.unfold(0, self.window, self.hop)[: 1 + x.shape[0] // self.hop]


@dataclass
class FrameMeasures:
    """What YIN measures in each frame alone, ``[F]`` each: the period's ``lag`` (fractional samples), ``d'`` at it
    (``dip``), the frame's mean square (``energy``), and the best dip near twice the lag (``double_lag``,
    ``double_dip``; ``double_dip`` > 1 where twice the lag is out of range), which :func:`decide_voicing` takes
    instead when the frame's F0 slipped an octave up. Nothing here depends on another frame, so a stream computes
    each frame once (:class:`vconv.audio.pitch_stream.WindowPitch`)."""

    lag: torch.Tensor
    dip: torch.Tensor
    energy: torch.Tensor
    double_lag: torch.Tensor
    double_dip: torch.Tensor

    @staticmethod
    def cat(parts: "list[FrameMeasures]") -> "FrameMeasures":
        return FrameMeasures(*(torch.cat([getattr(p, name) for p in parts]) for name in _MEASURES))

    def __getitem__(self, frames: slice) -> "FrameMeasures":
        return FrameMeasures(*(getattr(self, name)[frames] for name in _MEASURES))


_MEASURES = ("lag", "dip", "energy", "double_lag", "double_dip")


def frame_measures(chunks: torch.Tensor, grid: YinGrid, threshold: float) -> FrameMeasures:
    """:class:`FrameMeasures` of the frames ``chunks [F, window]`` (as :meth:`YinGrid.chunks` cuts them)."""
    span = grid.window - grid.tau_max  # samples each difference sum runs over
    chunks = chunks - chunks.mean(dim=1, keepdim=True)
    cmnd = _cumulative_mean_normalised(_difference(chunks, span, grid.tau_max))  # [F, tau_max + 1]
    tau = _pick_lag(cmnd, grid.tau_min, threshold)
    lag, dip = _refine(cmnd, tau)
    double, double_dip = _dip_near(cmnd, 2 * tau.float(), grid.tau_min, int(math.ceil(0.12 * cmnd.shape[1])) + 2)
    double_lag, _ = _refine(cmnd, double)
    return FrameMeasures(lag, dip, chunks[:, :span].pow(2).mean(dim=1), double_lag, double_dip)


def decide_voicing(measures: FrameMeasures, grid: YinGrid, voicing: float, own_from: int = 0) -> PitchTrack:
    """The utterance's decisions on its frames' measures: voiced where periodic enough and within
    :data:`SILENCE_DB` of its loud frames, stray run edges dropped, octave-up slips read at half
    (:func:`_octave_up_slips`, its register from the frames ``own_from`` on: a stream's window opens on the target's
    speech, which is not the voice tracked), a 3-frame median over voiced runs."""
    f0 = grid.sample_rate / measures.lag
    periodicity = (1.0 - measures.dip).clamp(0.0, 1.0)
    level_db = 10 * torch.log10(measures.energy + 1e-10)
    loud = torch.quantile(level_db, 0.95) if level_db.shape[0] > 1 else level_db.max()
    # a dip at the shortest lag allowed is the range's edge, not a period (onsets, where half the frame is silence)
    inside = measures.lag > grid.tau_min + 0.5
    voiced = (periodicity >= voicing) & (level_db > loud - SILENCE_DB) & (measures.energy > 1e-8) & inside
    voiced = voiced & ~_stray_run_edges(f0, voiced)
    slipped = _octave_up_slips(f0, voiced, 1.0 - measures.double_dip >= voicing, own_from)
    f0 = torch.where(slipped, grid.sample_rate / measures.double_lag, f0)
    f0 = _median_of_voiced(torch.where(voiced, f0, torch.zeros_like(f0)), voiced)
    return PitchTrack(f0=f0, voiced=voiced, periodicity=periodicity)


def _octave_up_slips(f0: torch.Tensor, voiced: torch.Tensor, periodic_at_double: torch.Tensor,
                     own_from: int = 0) -> torch.Tensor:
    """``[F]`` bool: the voiced frames whose F0 slipped an octave up, by the cheapest path through the voiced frames.

    A voice with a weak fundamental (piper_joe: H1 far under H2) dips at half its period first, and YIN's first-dip
    rule reads an octave up; a real period is periodic at twice its lag too, so the frame alone cannot tell. The
    path can: each voiced frame is read at its F0 or (where periodic there) at half of it, reading half costs
    :data:`HALF_COST`, a step between consecutive voiced frames costs the octaves it moves beyond what a glide moves
    in the frames between (:data:`GLIDE_OCTAVES` a frame), at most :data:`JUMP_COST_CAP` (so that one frame read far
    below, which this path cannot mend, does not drag its neighbours down), and lying more than
    :data:`REGISTER_OCTAVES` from the median of the voiced frames from ``own_from`` on costs :data:`REGISTER_COST` an
    octave (no such cost with fewer than :data:`REGISTER_MIN_FRAMES` of them). A glide up to a high note is read as it
    is; an octave jump and back, or a run an octave over its neighbours, is read at half.
    """
    at = torch.nonzero(voiced).flatten()
    if at.numel() < 2:
        return torch.zeros_like(voiced)
    log_f0 = f0[at].clamp(min=1.0).log2()
    levels = torch.stack([log_f0, log_f0 - 1.0], dim=1).tolist()
    allowed = periodic_at_double[at].tolist()
    gaps = (at[1:] - at[:-1]).tolist()
    own = log_f0[at >= own_from]
    median = float(own.median()) if own.numel() >= REGISTER_MIN_FRAMES else None
    halves = _cheapest_path(levels, allowed, gaps, median)
    slipped = torch.zeros_like(voiced)
    slipped[at[torch.tensor(halves, dtype=torch.bool, device=at.device)]] = True
    return slipped


def _cheapest_path(levels: list[list[float]], allowed: list[bool], gaps: list[int], median: float | None) -> list[bool]:
    """Viterbi over two readings per voiced frame (``levels[i] = [log2 F0, log2 F0 - 1]``; the second only where
    ``allowed[i]``), ``gaps[i]`` frames between voiced frames ``i`` and ``i + 1`` -> per frame, whether the
    cheapest path reads it at half (:func:`_octave_up_slips` gives the costs). Plain floats: a stream runs it on
    every window."""
    def local(i: int, state: int) -> float:
        if state and not allowed[i]:
            return math.inf
        far = 0.0 if median is None else max(0.0, abs(levels[i][state] - median) - REGISTER_OCTAVES)
        return HALF_COST * state + REGISTER_COST * far

    cost = [local(0, 0), local(0, 1)]
    back: list[tuple[int, int]] = []  # per frame after the first: the best previous state for each state
    for i, gap in enumerate(gaps, start=1):
        free = GLIDE_OCTAVES * gap
        totals = [[cost[p] + min(JUMP_COST_CAP, max(0.0, abs(levels[i][s] - levels[i - 1][p]) - free)) for p in (0, 1)]
                  for s in (0, 1)]
        best = (0 if totals[0][0] <= totals[0][1] else 1, 0 if totals[1][0] <= totals[1][1] else 1)
        cost = [totals[s][best[s]] + local(i, s) for s in (0, 1)]
        back.append(best)
    state = 0 if cost[0] <= cost[1] else 1
    path = [state]
    for previous in reversed(back):
        state = previous[state]
        path.append(state)
    return [bool(s) for s in reversed(path)]


def _stray_run_edges(f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """The first and last frames of voiced runs whose F0 is more than :data:`EDGE_JUMP_OCTAVES` from their voiced
    neighbour's ``[F]`` bool: at an onset or offset the frame is half silence, and its lag is not the period."""
    if f0.shape[0] < 3:
        return torch.zeros_like(voiced)
    before = torch.cat([voiced.new_zeros(1), voiced[:-1]])
    after = torch.cat([voiced[1:], voiced.new_zeros(1)])
    jump_next = torch.cat([(f0[:-1] / f0[1:].clamp(min=1.0)).log2().abs(), f0.new_zeros(1)])
    jump_prev = torch.cat([f0.new_zeros(1), (f0[1:] / f0[:-1].clamp(min=1.0)).log2().abs()])
    starts = voiced & ~before & after & (jump_next > EDGE_JUMP_OCTAVES)
    ends = voiced & before & ~after & (jump_prev > EDGE_JUMP_OCTAVES)
    return starts | ends


def _difference(chunks: torch.Tensor, span: int, tau_max: int) -> torch.Tensor:
    """YIN's ``d(τ)`` for ``τ = 0..tau_max`` of every frame ``[F, W]`` -> ``[F, tau_max + 1]``.

    ``d(τ) = e(0) + e(τ) - 2 r(τ)``: ``e(τ)`` the energy of ``x[τ : τ + span]`` (cumulative sums), ``r(τ)`` the
    cross-correlation of ``x[:span]`` with ``x[τ : τ + span]`` (one FFT product per frame).
    """
    width = chunks.shape[1]
    size = 1 << (width + span - 1).bit_length()
    head = F.pad(chunks[:, :span], (0, width - span))
    spectrum = torch.fft.rfft(chunks, size) * torch.fft.rfft(head, size).conj()
    corr = torch.fft.irfft(spectrum, size)[:, : tau_max + 1]  # r(τ) for τ >= 0
    squares = F.pad(chunks.pow(2).cumsum(dim=1), (1, 0))  # [F, W + 1]
    taus = torch.arange(tau_max + 1, device=chunks.device)
    energy = squares[:, taus + span] - squares[:, taus]  # e(τ)
    return (energy[:, :1] + energy - 2 * corr).clamp(min=0.0)


def _cumulative_mean_normalised(diff: torch.Tensor) -> torch.Tensor:
    """``d'(τ) = d(τ) τ / Σ_{j=1..τ} d(j)``, with ``d'(0) = 1`` -> same shape ``[F, L]``."""
    taus = torch.arange(diff.shape[1], device=diff.device, dtype=diff.dtype)
    running = diff[:, 1:].cumsum(dim=1)
    normalised = diff[:, 1:] * taus[1:] / running.clamp(min=1e-12)
    return torch.cat([torch.ones_like(diff[:, :1]), normalised], dim=1)


def _pick_lag(cmnd: torch.Tensor, tau_min: int, threshold: float) -> torch.Tensor:
    """Per frame, the period's lag ``[F]`` (whole samples) in ``cmnd [F, L]`` at ``τ >= tau_min``.

    YIN's rule: the first local minimum below ``threshold``, else the global minimum. Then the octave check: when a
    dip near ``τ/k`` (k = 4, 3, 2; ±6 %) is within :data:`SUBHARMONIC_MARGIN` of the chosen one, the chosen lag is a
    multiple of the period (the octave-down slip of a breathy or creaky frame) and the shortest such dip is taken.
    """
    length = cmnd.shape[1]
    rows = torch.arange(cmnd.shape[0], device=cmnd.device)
    inner = cmnd[:, tau_min:length - 1]
    is_min = (inner <= cmnd[:, tau_min - 1:length - 2]) & (inner <= cmnd[:, tau_min + 1:])
    below = is_min & (inner < threshold)
    tau = torch.where(below.any(dim=1), below.float().argmax(dim=1), inner.argmin(dim=1)) + tau_min
    chosen = cmnd[rows, tau]
    picked = tau.clone()
    for k in (4, 3, 2):
        centre = tau.float() / k
        lags, best = _dip_near(cmnd, centre, tau_min, int(math.ceil(0.12 * length / k)) + 2)
        shorter = (best < chosen + SUBHARMONIC_MARGIN) & (picked == tau) & (centre >= tau_min)
        picked = torch.where(shorter, lags, picked)
    return picked


def _dip_near(cmnd: torch.Tensor, centre: torch.Tensor, tau_min: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The deepest ``d'`` of ``cmnd [F, L]`` within ±6 % of each frame's ``centre [F]`` (lags, looked at ``width`` at a
    time from the lower bound, at least ``tau_min``) -> ``(lag [F] whole samples, d' there [F])``; a centre whose
    lower bound lies past the lags there are gets ``d'`` 10 (no dip)."""
    length = cmnd.shape[1]
    low = (centre * 0.94).floor().long().clamp(min=tau_min, max=length - 2)
    lags = (low[:, None] + torch.arange(width, device=cmnd.device)).clamp(max=length - 2)
    inside = (lags.float() <= centre[:, None] * 1.06) & (centre[:, None] * 0.94 <= length - 2)
    values = torch.where(inside, cmnd.gather(1, lags), torch.full_like(lags, 10.0, dtype=cmnd.dtype))
    best, at = values.min(dim=1)
    return lags.gather(1, at[:, None])[:, 0], best


def _refine(cmnd: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-sample lags ``tau [F]`` refined by a parabola through ``cmnd [F, L]`` around them -> ``(lag [F]
    fractional samples, d' at the whole lag [F])``."""
    rows = torch.arange(cmnd.shape[0], device=cmnd.device)
    tau = tau.clamp(min=1, max=cmnd.shape[1] - 2)
    left, mid, right = cmnd[rows, tau - 1], cmnd[rows, tau], cmnd[rows, tau + 1]
    curve = left - 2 * mid + right
    offset = torch.where(curve > 1e-9, 0.5 * (left - right) / curve, torch.zeros_like(curve)).clamp(-0.5, 0.5)
    return tau.float() + offset, mid


def _median_of_voiced(f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """A 3-frame median of ``f0 [F]`` where a voiced frame has voiced neighbours on both sides; others as they are."""
    if f0.shape[0] < 3:
        return f0
    stacked = torch.stack([f0[:-2], f0[1:-1], f0[2:]])  # [3, F-2]
    both = voiced[:-2] & voiced[1:-1] & voiced[2:]
    middle = torch.where(both, stacked.median(dim=0).values, f0[1:-1])
    return torch.cat([f0[:1], middle, f0[-1:]])
