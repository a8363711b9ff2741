"""Objective measures for voice conversion: pure functions of arrays and strings, no models.

Everything here is deterministic and CPU-only. The pretrained judges (speaker embedder, ASR, DNSMOS)
live in :mod:`vconv.evaluation.judges`; :mod:`vconv.evaluation.scoring` combines both into the evaluation protocol.

- **Text**: :func:`normalize_text`, :func:`edit_distance`, :func:`error_rates` (CER and WER with the
  raw counts, so a corpus-level rate is ``sum(errors) / sum(length)`` rather than a mean of ratios).
- **Spectrum**: :func:`mel_cepstrum` (WORLD envelope → all-pass-warped cepstrum, SPTK convention),
  :func:`dtw`, :func:`mcd` / :func:`mcd_dtw` (mel-cepstral distortion in dB, ``c0`` excluded).
- **Pitch**: :func:`f0_scores` (Pearson correlation and
  RMSE of log-F0 over jointly voiced frames after a mean-variance shift), :func:`log_f0_mean`.
- **Speaker decisions**: :func:`cosine`, :func:`eer` (equal error rate + its threshold from
  genuine/impostor scores), :func:`success_rate`, :func:`accept_rate`.

The pitch judge itself (Praat's tracker) is :mod:`vconv.evaluation.pitch_judge`. pyworld is imported only by the
functions that need it (it belongs to the ``eval`` extra).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vconv.errors import VconvError

EVAL_EXTRA = "pip install 'vconv[eval]'"
FRAME_PERIOD_MS = 5.0  # WORLD analysis hop; 5 ms is the usual MCD / F0 resolution
MCD_ORDER = 24  # c1..c24, the common choice for 16-24 kHz speech
_DB = 10.0 / math.log(10.0)  # MCD constant: (10 / ln 10) * sqrt(2 * sum(dc^2)) is the RMS log-spectral distance in dB
_CENTS = 1200.0 / math.log(2.0)  # natural-log F0 difference → cents


# --------------------------------------------------------------------------------------------- text


def normalize_text(text: str) -> str:
    """Lowercase, drop apostrophes, turn other punctuation/symbols into spaces, collapse whitespace.

    ``"Don't stop—now!"`` → ``"dont stop now"``. Apostrophes vanish (rather than split words) so that
    "don't" and "dont" agree; hyphens and dashes split, so "well-known" matches ASR's "well known".
    Numbers are left as written: "10" and "ten" still differ.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"['’‘`´]", "", text)
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return " ".join(text.split())


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions + deletions + insertions, unit costs) between two sequences.

    One numpy row per reference item: the insertion chain along a row is a running minimum of
    ``row[k] - k`` (then ``+ j``), so no inner Python loop over the hypothesis is needed.
    """
    n_hyp = len(hyp)
    if len(ref) == 0:
        return n_hyp
    if n_hyp == 0:
        return len(ref)
    vocab: dict = {}
    hyp_ids = np.array([vocab.setdefault(h, len(vocab)) for h in hyp])
    ramp = np.arange(n_hyp + 1)
    prev = ramp.copy()  # distance from the empty reference prefix
    for i, item in enumerate(ref, 1):
        ref_id = vocab.get(item, -1)
        cur = np.empty_like(prev)
        cur[0] = i
        # deletion (from above) or match/substitution (diagonal)
        cur[1:] = np.minimum(prev[1:] + 1, prev[:-1] + (hyp_ids != ref_id))
        # insertion chain: cur[j] = min_k cur[k] + (j - k)
        cur = np.minimum.accumulate(cur - ramp) + ramp
        prev = cur
    return int(prev[-1])


@dataclass
class ErrorRates:
    """CER/WER of one hypothesis with the counts behind them (lengths are of the normalised reference)."""

    cer: float
    wer: float
    char_errors: int
    chars: int
    word_errors: int
    words: int


def error_rates(reference: str, hypothesis: str) -> ErrorRates:
    """Character and word error rates after :func:`normalize_text` on both sides.

    CER counts characters of the normalised string *including* single spaces (as jiwer does); an empty
    reference gives rate 1.0 for any non-empty hypothesis (and 0.0 for an empty one).
    """
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    ce, we = edit_distance(ref, hyp), edit_distance(ref.split(), hyp.split())
    n_c, n_w = len(ref), len(ref.split())
    return ErrorRates(
        cer=ce / n_c if n_c else float(ce > 0),
        wer=we / n_w if n_w else float(we > 0),
        char_errors=ce,
        chars=n_c,
        word_errors=we,
        words=n_w,
    )


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate (see :func:`error_rates`)."""
    return error_rates(reference, hypothesis).cer


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate (see :func:`error_rates`)."""
    return error_rates(reference, hypothesis).wer


# ------------------------------------------------------------------------------------ WORLD analysis


def _pyworld():
    try:
        import pyworld
    except ImportError:
        raise VconvError(f"spectral measures need pyworld (part of the eval extra): {EVAL_EXTRA}") from None
    return pyworld


def world_f0(
    wav: np.ndarray, sr: int, frame_period: float = FRAME_PERIOD_MS, f0_floor: float = 60.0, f0_ceil: float = 700.0
) -> np.ndarray:
    """F0 in Hz per frame ``[F]`` (0 where unvoiced), WORLD dio refined by stonemask: the pitch WORLD's own
    envelope analysis (:func:`mel_cepstrum`) is made with, as every MCD figure of vconv was."""
    pw = _pyworld()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, t = pw.dio(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period)
    return pw.stonemask(x, f0, t, sr)


# All-pass constants whose warp approximates the mel scale, as used by SPTK-based MCD tools
# (ESPnet's evaluate_mcd among them); other rates are interpolated.
_MCEP_ALPHA = {8000: 0.31, 16000: 0.42, 22050: 0.45, 24000: 0.46, 44100: 0.53, 48000: 0.55}


def mcep_alpha(sr: int) -> float:
    """All-pass warping constant for mel-cepstra at ``sr`` (0.42 at 16 kHz), from the usual SPTK table."""
    rates = sorted(_MCEP_ALPHA)
    return float(np.interp(sr, rates, [_MCEP_ALPHA[r] for r in rates]))


def _warp(omega: np.ndarray, alpha: float) -> np.ndarray:
    """Phase response of the first-order all-pass ``(z^-1 - a) / (1 - a z^-1)``: ω → warped ω̃ on [0, π]."""
    return omega + 2.0 * np.arctan2(alpha * np.sin(omega), 1.0 - alpha * np.cos(omega))


def envelope_to_mcep(sp: np.ndarray, order: int, alpha: float) -> np.ndarray:
    """Power spectral envelope ``[F, K]`` (K = n_fft/2+1) → mel-cepstrum ``[F, order+1]`` (SPTK convention).

    The mel-cepstrum is the cosine series of the log amplitude on the *warped* frequency axis, so we
    resample log|H| onto a uniform grid of ω̃ (via the inverse warp, which is the warp with -alpha) and take
    its real cepstrum. Coefficients m>=1 are doubled: SPTK writes log|H| = c0 + sum c_m cos(m ω̃), the
    one-sided form that the MCD constant assumes.
    """
    k = sp.shape[1]
    log_amp = 0.5 * np.log(np.maximum(sp, 1e-16))  # [F, K]
    grid = np.linspace(0.0, np.pi, k)
    omega_at = _warp(grid, -alpha)  # linear frequency that lands on each warped grid point
    warped = np.stack([np.interp(omega_at, grid, row) for row in log_amp])  # [F, K]
    ceps = np.fft.irfft(warped, axis=1)[:, : order + 1]
    ceps[:, 1:] *= 2.0
    return ceps


def mel_cepstrum(
    wav: np.ndarray, sr: int, order: int = MCD_ORDER, alpha: float | None = None, frame_period: float = FRAME_PERIOD_MS,
    f0: np.ndarray | None = None,
) -> np.ndarray:
    """Mel-cepstrum ``[F, order+1]`` of ``[T]`` from WORLD's CheapTrick envelope (pitch-adaptive, so the
    harmonics of the voice do not leak into the envelope as they would in a plain STFT cepstrum).

    Pass ``f0`` (from :func:`world_f0` with the same ``frame_period``) to skip a second pitch analysis.
    """
    pw = _pyworld()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    if f0 is None:
        f0 = world_f0(wav, sr, frame_period)
    t = np.arange(len(f0)) * frame_period / 1000.0
    sp = pw.cheaptrick(x, np.ascontiguousarray(f0, dtype=np.float64), t, sr)
    return envelope_to_mcep(sp, order, mcep_alpha(sr) if alpha is None else alpha)


def speech_span(mcep: np.ndarray, top_db: float = 40.0) -> slice:
    """Frames from the first to the last whose energy (from ``c0``) is within ``top_db`` of the loudest.

    Leading/trailing silence is dropped before MCD: its envelope is the recording's noise floor, which
    says nothing about the voice and would otherwise dominate short utterances.
    """
    energy_db = 20.0 / math.log(10.0) * mcep[:, 0]
    active = np.flatnonzero(energy_db >= energy_db.max() - top_db)
    return slice(int(active[0]), int(active[-1]) + 1)


# ------------------------------------------------------------------------------------- DTW and MCD


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Minimum-cost monotonic alignment of a local cost matrix ``[N, M]``.

    Steps (1,0), (0,1), (1,1), each adding the local cost of the cell reached; the path runs from
    (0, 0) to (N-1, M-1). Returns ``(i_idx [L], j_idx [L], total_cost)``.

    Cells on one anti-diagonal ``i + j = d`` depend only on the two previous anti-diagonals, so each
    diagonal is one vectorised numpy step (N+M steps in all) instead of N*M Python iterations.
    """
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for d in range(2, n + m + 1):  # d = i + j in 1-based accumulator coordinates
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        best = np.minimum(np.minimum(acc[i - 1, j - 1], acc[i - 1, j]), acc[i, j - 1])
        acc[i, j] = cost[i - 1, j - 1] + best
    # backtrack from the end, preferring the diagonal on ties (fewer, more plausible steps)
    i, j = n, m
    path = [(i - 1, j - 1)]
    while (i, j) != (1, 1):
        moves = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(moves, key=lambda ij: acc[ij])
        path.append((i - 1, j - 1))
    idx = np.array(path[::-1])
    return idx[:, 0], idx[:, 1], float(acc[n, m])


def mcd(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean mel-cepstral distortion in dB between already aligned mel-cepstra ``[F, order+1]`` (``c0`` excluded)."""
    diff = ref[:, 1:] - test[:, 1:]
    return float(np.mean(_DB * np.sqrt(2.0 * np.sum(diff**2, axis=1))))


@dataclass
class MCDResult:
    """MCD after DTW: ``mcd`` in dB averaged over the path; ``ref_idx``/``test_idx`` ``[L]`` index the
    trimmed frames (offsets ``ref_start``/``test_start`` into the full contours)."""

    mcd: float
    ref_idx: np.ndarray
    test_idx: np.ndarray
    ref_start: int
    test_start: int
    frames: int


def mcd_dtw(ref_mcep: np.ndarray, test_mcep: np.ndarray, top_db: float = 40.0) -> MCDResult:
    """MCD between two mel-cepstra ``[N, D]``, ``[M, D]`` of the same sentence, aligned by :func:`dtw`.

    Silence at both ends is trimmed first (:func:`speech_span`); alignment cost is the per-frame MCD on
    ``c1..`` so the path is the one that the reported number is minimal over (the usual convention).
    Memory is ``N * M`` floats: fine for utterances up to ~30 s at 5 ms frames.
    """
    rs, ts = speech_span(ref_mcep, top_db), speech_span(test_mcep, top_db)
    a, b = ref_mcep[rs, 1:], test_mcep[ts, 1:]
    # ||a-b||^2 = |a|^2 + |b|^2 - 2ab, clipped at 0 against rounding
    sq = np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
    local = _DB * np.sqrt(2.0 * sq)
    i, j, _ = dtw(local)
    return MCDResult(float(local[i, j].mean()), i, j, rs.start, ts.start, len(i))


# ---------------------------------------------------------------------------------------------- F0


@dataclass
class F0Scores:
    """Agreement of two pitch contours over their jointly voiced frames.

    ``corr``: Pearson correlation of log-F0 (1 = same melody); ``rmse_cents``: RMS difference of log-F0
    in cents after shifting the reference contour to the test contour's log-F0 mean and standard
    deviation (so only the shape counts, not the register); ``voiced``: frames used. NaN when fewer
    than ``min_frames`` frames are voiced in both.
    """

    corr: float
    rmse_cents: float
    voiced: int


def f0_scores(
    ref_f0: np.ndarray,
    test_f0: np.ndarray,
    ref_idx: np.ndarray | None = None,
    test_idx: np.ndarray | None = None,
    min_frames: int = 10,
) -> F0Scores:
    """Compare F0 contours ``[N]`` and ``[M]`` (Hz, 0 = unvoiced).

    Alignment: explicit index pairs (e.g. a DTW path) if given; otherwise a linear time map, which is
    right for outputs that keep the input's timing (conversion, copy synthesis) even if a vocoder's
    framing changes the length by a few frames.
    """
    if ref_idx is None or test_idx is None:
        n, m = len(ref_f0), len(test_f0)
        ref_idx = np.arange(n)
        test_idx = np.rint(np.arange(n) * (m - 1) / max(n - 1, 1)).astype(int)
    r, t = ref_f0[ref_idx], test_f0[test_idx]
    both = (r > 0) & (t > 0)
    if both.sum() < min_frames:
        return F0Scores(float("nan"), float("nan"), int(both.sum()))
    lr, lt = np.log(r[both]), np.log(t[both])
    if lr.std() == 0 or lt.std() == 0:  # a monotone contour has no shape to correlate
        return F0Scores(float("nan"), float("nan"), int(both.sum()))
    corr = float(np.corrcoef(lr, lt)[0, 1])
    shifted = (lr - lr.mean()) / lr.std() * lt.std() + lt.mean()
    rmse = float(_CENTS * np.sqrt(np.mean((lt - shifted) ** 2)))
    return F0Scores(corr, rmse, int(both.sum()))


def log_f0_mean(f0: np.ndarray) -> float:
    """Mean natural-log F0 over voiced frames (NaN if none): the register of a voice."""
    voiced = f0[f0 > 0]
    return float(np.log(voiced).mean()) if voiced.size else float("nan")


def cents(log_ratio: float) -> float:
    """Natural-log frequency ratio → cents."""
    return _CENTS * log_ratio


# ------------------------------------------------------------------------------- speaker decisions


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors ``[D]`` (NaN if either is all zeros)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else float("nan")


@dataclass
class EERResult:
    """Equal error rate of a verifier and the threshold where false accepts ≈ false rejects.

    A trial is accepted when ``score >= threshold``. ``far``/``frr`` are the rates at that threshold
    (``eer`` is their mean).
    """

    eer: float
    threshold: float
    far: float
    frr: float
    genuine: int
    impostor: int


def eer(genuine: Sequence[float], impostor: Sequence[float]) -> EERResult:
    """EER from genuine (same speaker) and impostor (different speakers) similarity scores.

    Candidate thresholds are midpoints between consecutive distinct scores (plus both ends), so for
    separable lists the threshold sits in the middle of the gap rather than on a score. Among
    candidates the one with the smallest ``|FAR - FRR|`` wins; ties take the middle one.
    """
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    if g.size == 0 or i.size == 0:
        raise ValueError("eer needs at least one genuine and one impostor score")
    s = np.unique(np.concatenate([g, i]))
    thr = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2.0, [s[-1] + 1e-6]])
    frr = np.searchsorted(g, thr, side="left") / g.size  # genuine below threshold: rejected
    far = 1.0 - np.searchsorted(i, thr, side="left") / i.size  # impostors at/above threshold: accepted
    gap = np.abs(far - frr)
    best = np.flatnonzero(gap == gap.min())
    k = int(best[len(best) // 2])
    return EERResult(float((far[k] + frr[k]) / 2.0), float(thr[k]), float(far[k]), float(frr[k]), g.size, i.size)


def success_rate(sim_target: Sequence[float], sim_source: Sequence[float]) -> float:
    """Fraction of conversions closer to the target speaker than to the source speaker (strictly)."""
    t, s = np.asarray(sim_target, dtype=np.float64), np.asarray(sim_source, dtype=np.float64)
    if t.shape != s.shape or t.size == 0:
        raise ValueError(f"success_rate needs two equally long non-empty lists, got {t.shape} and {s.shape}")
    return float(np.mean(t > s))


def accept_rate(scores: Sequence[float], threshold: float) -> float:
    """Fraction of scores a verifier with this threshold accepts (``score >= threshold``)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        raise ValueError("accept_rate needs at least one score")
    return float(np.mean(x >= threshold))
