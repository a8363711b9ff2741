"""Pitch/formant-shifted pseudo-speakers: augmentation, never new speakers.

Each chosen training voice gets up to ``per_voice`` transformed copies, analysed and resynthesised
with WORLD (pyworld: dio + stonemask F0, CheapTrick envelope, D4C aperiodicity). A copy scales F0 by
``pitch`` and warps the spectral envelope's frequency axis by ``formant`` (``formant > 1`` moves formants
up, as for a shorter vocal tract), so pitch and timbre change together like a different person's voice
rather than a sped-up recording. The grid below stays inside the ranges that remain natural
(pitch 0.75-1.45, formant 0.88-1.15) and pairs low with low and high with high.

Copies go to ``ROOT/aug_<voice>_p<pitch%>_f<formant%>/`` with the original transcript. Held-out and
validation voices must be excluded by the caller, or their copies would leak into training.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from corpus_common import log, write_text, write_utterance

AUG_PREFIX = "aug_"


@dataclass(frozen=True)
class Shift:
    pitch: float
    formant: float

    @property
    def tag(self) -> str:
        return f"p{round(self.pitch * 100):03d}_f{round(self.formant * 100):03d}"


# Most distinct first, so a small ``per_voice`` still spreads the speakers far apart.
SHIFTS = (Shift(1.40, 1.12), Shift(0.78, 0.90), Shift(1.20, 1.06), Shift(0.88, 0.94))


def warp_envelope(envelope: np.ndarray, formant: float) -> np.ndarray:
    """``envelope [frames, bins]`` with its frequency axis scaled by ``formant`` (value at f ← f / formant)."""
    bins = np.arange(envelope.shape[1], dtype=np.float64)
    source = np.clip(bins / formant, 0, envelope.shape[1] - 1)
    return np.stack([np.interp(source, bins, frame) for frame in envelope])


def analyse(wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WORLD analysis of ``wav [T]``: ``(f0 [frames], envelope [frames, bins], aperiodicity [frames, bins])``."""
    import pyworld

    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, times = pyworld.dio(x, sr, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, times, sr)
    return f0, pyworld.cheaptrick(x, f0, times, sr), pyworld.d4c(x, f0, times, sr)


def resynthesise(analysis: tuple[np.ndarray, np.ndarray, np.ndarray], sr: int, shift: Shift) -> np.ndarray:
    """One WORLD analysis → the same words in a pitch- and formant-shifted voice ``[T']`` (float32)."""
    import pyworld

    f0, envelope, aperiodicity = analysis
    y = pyworld.synthesize(f0 * shift.pitch, warp_envelope(envelope, shift.formant), aperiodicity, sr, frame_period=5.0)
    return y.astype(np.float32)


def shift_voice(wav: np.ndarray, sr: int, shift: Shift) -> np.ndarray:
    """``wav [T]`` float at ``sr`` → the same words in a pitch- and formant-shifted voice ``[T']``."""
    return resynthesise(analyse(wav, sr), sr, shift)


def _augment_utterance(job: tuple[Path, list[tuple[Path, Shift]]]) -> None:
    """Write every missing shifted copy of one utterance; the (slow) analysis runs once for all of them."""
    wav_path, targets = job
    wav, sr = sf.read(wav_path, dtype="float32")
    analysis = analyse(wav, sr)
    for folder, shift in targets:
        write_utterance(folder, wav_path.stem, resynthesise(analysis, sr, shift), sr)


def build_augmented(root: Path, per_voice: int, exclude: set[str], max_per: int | None = None,
                    jobs: int = 1) -> collections.Counter:
    """Pseudo-speakers for every voice under ``root`` not in ``exclude``; returns utterances per copy.

    Resumable: copies already on disk are kept. ``jobs`` worker processes share the utterances.
    """
    try:
        import pyworld  # noqa: F401
    except ImportError:
        raise SystemExit("[augment] needs pyworld: pip install pyworld-prebuilt") from None
    voices = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(AUG_PREFIX) and p.name not in exclude)
    counts: collections.Counter = collections.Counter()
    work: list[tuple[Path, list[tuple[Path, Shift]]]] = []
    for voice in voices:
        for wav_path in sorted(voice.glob("*.wav"))[:max_per]:
            missing = []
            for shift in SHIFTS[:per_voice]:
                folder = root / f"{AUG_PREFIX}{voice.name}_{shift.tag}"
                if not (folder / wav_path.name).exists():
                    missing.append((folder, shift))
                text = wav_path.with_suffix(".txt")
                if text.exists() and not (folder / text.name).exists():
                    folder.mkdir(parents=True, exist_ok=True)
                    write_text(folder / text.name, text.read_text(encoding="utf-8"))
                counts[folder.name] += 1
            if missing:
                work.append((wav_path, missing))
    log(f"[augment] {len(voices)} voices x {per_voice} pseudo-speakers; {len(work)} utterances to analyse, {jobs} jobs")
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for done, _ in enumerate(pool.imap_unordered(_augment_utterance, work, chunksize=8), 1):
                if done % 500 == 0:
                    log(f"[augment] {done}/{len(work)} utterances")
    else:
        for done, job in enumerate(work, 1):
            _augment_utterance(job)
            if done % 500 == 0:
                log(f"[augment] {done}/{len(work)} utterances")
    return counts
