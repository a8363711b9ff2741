"""The pitch path measured: the tracker against WORLD, and what a bundle does with the source's melody.

Usage::

    python benchmarks/bench_pitch.py tracker --manifest EXP/data/test.jsonl [--per-speaker 8] [--reference harvest]
    python benchmarks/bench_pitch.py example [--model BUNDLE] [--shift 5]
    python benchmarks/bench_pitch.py judges --manifest EXP/data/test.jsonl [--per-speaker 8]

``tracker``: vconv's two pitch front-ends, YIN (:mod:`vconv.audio.pitch`) and the SwiftF0 port
(:mod:`vconv.audio.swift_pitch`, converted from the installed swift-f0 package), and WORLD dio + stonemask against
the reference, Praat's tracker (the pitch judge, :mod:`vconv.evaluation.pitch_judge`; ``--reference harvest``: WORLD
harvest, the reference before it, which misreads a voice with a weak fundamental) on ``--per-speaker`` utterances of
each speaker of the manifest, on vconv's frame grid (16 ms): gross pitch error (frames both call voiced whose F0
differs by more than 20 % / 50 cents), voicing decision error, the correlation of log-F0 on jointly voiced frames,
the speaker with the most gross errors, and the seconds each takes per 10 s of audio (two threads, best of five).

``example``: the README's example (``examples/source.wav`` to ``examples/target.wav``) converted by ``--model``
(default the shipped bundle), judged by WORLD harvest: the share of the source's voiced frames that are voiced in the
output (the issue's bar: at least 85 %), the correlation of the output's log-F0 with the source's on frames both
voice, the register (median F0) of source, target and output; and, for a bundle with the pitch path, the same with
``--shift SHIFT``: the output's median F0 should move by SHIFT semitones (``--no-harmonics``: without the harmonic
excitation, :mod:`vconv.vocoders.harmonics`).

``judges``: which tracker can judge the melody. On each speaker's own recordings (no model involved) the weight-free
candidates, Praat's autocorrelation tracker (``vconv evaluate``'s pitch judge since 2026-11-28, with a second pass
under each recording's own ceiling; ``Praat 60-700``: its first pass alone), pYIN, WORLD harvest and
WORLD dio + stonemask (the judge before), each pair's share of jointly voiced frames within 50 cents and their log-F0
correlation there, and each tracker's median F0 per speaker: a judge should agree with the others on every voice.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
HOP_SECONDS = 0.016


def harvest(wav: np.ndarray, rate: int = 16000) -> np.ndarray:
    import pyworld as pw

    f0, _ = pw.harvest(wav.astype(np.float64), rate, f0_floor=50.0, f0_ceil=800.0, frame_period=1000 * HOP_SECONDS)
    return f0


def dio(wav: np.ndarray, rate: int = 16000) -> np.ndarray:
    import pyworld as pw

    x = wav.astype(np.float64)
    f0, t = pw.dio(x, rate, f0_floor=50.0, f0_ceil=500.0, frame_period=1000 * HOP_SECONDS)
    return pw.stonemask(x, f0, t, rate)


def yin(wav: np.ndarray, rate: int = 16000) -> np.ndarray:
    from vconv.audio.pitch import track_pitch

    track = track_pitch(torch.from_numpy(wav), rate, int(HOP_SECONDS * rate))
    return torch.where(track.voiced, track.f0, torch.zeros_like(track.f0)).numpy()


_SWIFT: list = []  # the converted tracker, built once


def swift(wav: np.ndarray, rate: int = 16000) -> np.ndarray:
    from vconv.audio.pretrained import swift_pitch_from_package

    if not _SWIFT:
        _SWIFT.append(swift_pitch_from_package())
    with torch.no_grad():
        f0, confidence = _SWIFT[0](torch.from_numpy(wav)[None])
    return torch.where(confidence[0] >= 0.5, f0[0], torch.zeros_like(f0[0])).numpy()


def compare(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """Counts for GPE / VDE / correlation of ``estimate`` against ``reference`` (Hz per frame, 0 = unvoiced)."""
    n = min(reference.size, estimate.size)
    ref, est = reference[:n], estimate[:n]
    both = (ref > 0) & (est > 0)
    cents = 1200 * np.abs(np.log2(est[both] / ref[both]))
    return {"frames": n, "both": int(both.sum()), "gross20": int((cents > 1200 * math.log2(1.2)).sum()),
            "gross50": int((cents > 50).sum()), "voicing_errors": int(((ref > 0) != (est > 0)).sum()),
            "log_est": np.log(est[both]).tolist(), "log_ref": np.log(ref[both]).tolist()}


def praat(wav: np.ndarray, rate: int = 16000) -> np.ndarray:
    from vconv.evaluation.pitch_judge import f0_contour

    return f0_contour(wav, rate, frame_period=1000 * HOP_SECONDS)


REFERENCES = {"praat": ("Praat (the pitch judge)", praat), "harvest": ("WORLD harvest", harvest)}


def tracker_report(manifest: Path, per_speaker: int, reference: str = "praat") -> None:
    from vconv.audio.io import load
    from vconv.data.manifest import read_manifest

    torch.set_num_threads(2)
    by_speaker: dict[str, list] = {}
    for utt in read_manifest(manifest, nonempty=True):
        by_speaker.setdefault(utt.speaker, []).append(utt)
    speakers = [s for s, utts in by_speaker.items() for _ in utts[:per_speaker]]
    wavs = [load(u.path, 16000)[0] for utts in by_speaker.values() for u in utts[:per_speaker]]
    name, judge = REFERENCES[reference]
    references = [judge(w) for w in wavs]
    ten = np.concatenate(wavs)[: 10 * 16000]
    print(f"{len(wavs)} utterances of {len(by_speaker)} speakers ({sum(w.size for w in wavs) / 16000:.0f} s), against {name}")
    print("| tracker | GPE 20 % | GPE 50 cents | voicing error | log-F0 correlation | worst speaker: GPE 20 % | s per 10 s |")
    print("|---|---|---|---|---|---|---|")
    for label, track in (("vconv YIN (kind: yin)", yin), ("vconv SwiftF0 (kind: swift)", swift), ("WORLD dio + stonemask", dio)):
        rows = [compare(ref, track(w)) for ref, w in zip(references, wavs)]
        both = sum(r["both"] for r in rows)
        est = np.concatenate([r["log_est"] for r in rows])
        ref = np.concatenate([r["log_ref"] for r in rows])
        shares = {spk: gross_share([r for r, s in zip(rows, speakers) if s == spk]) for spk in by_speaker}
        worst = max(shares, key=lambda spk: shares[spk])
        seconds = best_of(5, lambda track=track: track(ten))
        print(f"| {label} | {sum(r['gross20'] for r in rows) / both:.3f} | {sum(r['gross50'] for r in rows) / both:.3f} | "
              f"{sum(r['voicing_errors'] for r in rows) / sum(r['frames'] for r in rows):.3f} | "
              f"{np.corrcoef(est, ref)[0, 1]:.3f} | {worst}: {shares[worst]:.3f} | {seconds:.3f} |")


def gross_share(rows: list[dict]) -> float:
    """The share of jointly voiced frames off by more than 20 % in ``rows`` (:func:`compare`'s counts)."""
    return sum(r["gross20"] for r in rows) / max(1, sum(r["both"] for r in rows))


JUDGE_FRAME_MS = 5.0  # the judges' own grid (vconv.evaluation.metrics.FRAME_PERIOD_MS)


def judge_candidates() -> dict:
    """The pitch judges compared by ``judges`` (5 ms frames, 60-700 Hz; "Praat" as ``vconv evaluate`` runs it, then
    under each recording's own ceiling)."""
    import librosa
    import pyworld as pw

    from vconv.evaluation.metrics import world_f0
    from vconv.evaluation.pitch_judge import f0_contour

    def pyin(wav: np.ndarray) -> np.ndarray:
        f0, voiced, _ = librosa.pyin(wav.astype(np.float64), fmin=60.0, fmax=700.0, sr=16000, frame_length=1024,
                                     hop_length=int(JUDGE_FRAME_MS * 16))  # centred frames: frame i at i * 5 ms
        return np.where(voiced, np.nan_to_num(f0), 0.0)

    def harvest_5ms(wav: np.ndarray) -> np.ndarray:
        return pw.harvest(wav.astype(np.float64), 16000, f0_floor=60.0, f0_ceil=700.0, frame_period=JUDGE_FRAME_MS)[0]

    return {"Praat": lambda w: f0_contour(w, 16000), "Praat 60-700": lambda w: f0_contour(w, 16000, adaptive=False),
            "pYIN": pyin, "harvest": harvest_5ms, "dio": lambda w: world_f0(w, 16000)}


def judges_report(manifest: Path, per_speaker: int) -> None:
    import itertools

    from vconv.audio.io import load
    from vconv.data.manifest import read_manifest

    trackers = judge_candidates()
    pairs = list(itertools.combinations(trackers, 2))
    by_speaker: dict[str, list] = {}
    passes: list[tuple[str, dict]] = []
    for utt in read_manifest(manifest, nonempty=True):
        by_speaker.setdefault(utt.speaker, []).append(utt)
    print("| speaker | median F0 Hz (" + ", ".join(trackers) + ") | " +
          " | ".join(f"{a}/{b}: within 50 ¢, r" for a, b in pairs) + " |")
    print("|---|---|" + "---|" * len(pairs))
    for speaker, utts in by_speaker.items():
        wavs = [load(u.path, 16000)[0] for u in utts[: max(per_speaker, 1)]]
        tracks = [{name: fn(w) for name, fn in trackers.items()} for w in wavs]
        medians = []
        for name in trackers:
            voiced = np.concatenate([t[name][t[name] > 0] for t in tracks])
            medians.append(f"{np.median(voiced):.0f}" if voiced.size else "–")
        cells = []
        for a, b in pairs:
            rows = [compare(t[a], t[b]) for t in tracks]
            both = sum(r["both"] for r in rows)
            if both < 2:
                cells.append("–")
                continue
            est = np.concatenate([r["log_est"] for r in rows])
            ref = np.concatenate([r["log_ref"] for r in rows])
            cells.append(f"{1 - sum(r['gross50'] for r in rows) / both:.2f}, {np.corrcoef(est, ref)[0, 1]:.2f}")
        print(f"| {speaker} | " + " / ".join(medians) + " | " + " | ".join(cells) + " |")
        passes.append((speaker, where_the_passes_differ(wavs, tracks)))
    print("\nWhere Praat's second pass (under the recording's own ceiling) reads a frame the first voiced otherwise (> 50 ¢ or "
          "unvoiced): the share of the first pass's voiced frames, the median F0 each pass reads there, and the spectrum's "
          "own reading, the median spacing of its harmonics (adjacent peaks under 1.5 kHz, 80 ms window)")
    print("| speaker | frames (share) | first pass Hz | second pass Hz (unvoiced) | harmonic spacing Hz |\n|---|---|---|---|---|")
    for speaker, d in passes:
        print(f"| {speaker} | {d['frames']} ({d['share']:.1%}) | {d['first_hz']:.0f} | {d['second_hz']:.0f} "
              f"({d['unvoiced']}) | {d['spacing_hz']:.0f} |")


def harmonic_spacing(wav: np.ndarray, centre: int, rate: int = 16000) -> float:
    """Median distance in Hz between adjacent spectral peaks under 1.5 kHz in 80 ms of ``wav`` around sample
    ``centre``: a reading of the fundamental that no tracker's search range or voicing rule decides."""
    from scipy.signal import find_peaks

    half = int(0.04 * rate)
    seg = wav[max(0, centre - half) : centre + half].astype(np.float64)
    if seg.size < half:
        return float("nan")
    db = 20 * np.log10(np.abs(np.fft.rfft(seg * np.hanning(seg.size), 16384)) + 1e-9)
    hz = np.fft.rfftfreq(16384, 1 / rate)
    peaks, _ = find_peaks(db[hz < 1500], prominence=6, distance=int(40 / hz[1]))
    return float(np.median(np.diff(hz[peaks]))) if peaks.size > 2 else float("nan")


def where_the_passes_differ(wavs: list[np.ndarray], tracks: list[dict]) -> dict:
    """Frames voiced by Praat's first pass (60-700 Hz) that its second pass reads more than 50 cents away or unvoiced."""
    first, second, spacing, voiced = [], [], [], 0
    for wav, t in zip(wavs, tracks):
        a, b = t["Praat 60-700"], t["Praat"]
        voiced += int((a > 0).sum())
        differ = (a > 0) & ((b <= 0) | (np.abs(np.log2(np.maximum(b, 1e-9) / np.maximum(a, 1e-9))) > 50 / 1200))
        for i in np.flatnonzero(differ):
            first.append(a[i])
            second.append(b[i])
            spacing.append(harmonic_spacing(wav, int(i * JUDGE_FRAME_MS * 16)))
    second_voiced = [x for x in second if x > 0]
    return {"frames": len(first), "share": len(first) / max(voiced, 1),
            "first_hz": float(np.median(first)) if first else float("nan"),
            "second_hz": float(np.median(second_voiced)) if second_voiced else float("nan"),
            "unvoiced": len(second) - len(second_voiced), "spacing_hz": float(np.nanmedian(spacing)) if spacing else float("nan")}


def best_of(repeat: int, fn) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def example_report(model: str | None, shift: float, harmonics: bool | None = None) -> None:
    import vconv
    from vconv.audio.io import load

    source = load(REPO / "examples" / "source.wav", 16000)[0]
    target = load(REPO / "examples" / "target.wav", 16000)[0]
    converter = vconv.load(model, harmonics=harmonics)
    out = converter.convert(source, [target], sr=16000)
    f0_src, f0_tgt, f0_out = harvest(source), harvest(target), harvest(out)
    result = example_scores(f0_src, f0_out)
    result.update(source_hz=median_hz(f0_src), target_hz=median_hz(f0_tgt), output_hz=median_hz(f0_out),
                  model=str(converter.info.path))
    if converter.model.reads_pitch:
        shifted = vconv.load(model, pitch_shift=shift, harmonics=harmonics).convert(source, [target], sr=16000)
        f0_shifted = harvest(shifted)
        result["shift"] = shift
        result["shift_measured"] = 12 * math.log2(median_hz(f0_shifted) / median_hz(f0_out))
    print(json.dumps(result, indent=1))


def median_hz(f0: np.ndarray) -> float:
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else 0.0


def example_scores(f0_src: np.ndarray, f0_out: np.ndarray) -> dict[str, float]:
    n = min(f0_src.size, f0_out.size)
    src, out = f0_src[:n], f0_out[:n]
    both = (src > 0) & (out > 0)
    corr = float(np.corrcoef(np.log(src[both]), np.log(out[both]))[0, 1]) if both.sum() > 2 else float("nan")
    return {"source_voiced_frames": int((src > 0).sum()), "output_voiced_frames": int((out > 0).sum()),
            "voiced_where_source_is": float(both.sum() / max(1, (src > 0).sum())), "f0_correlation": corr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    tracker = sub.add_parser("tracker")
    tracker.add_argument("--manifest", type=Path, required=True)
    tracker.add_argument("--per-speaker", type=int, default=8)
    tracker.add_argument("--reference", choices=sorted(REFERENCES), default="praat")
    example = sub.add_parser("example")
    example.add_argument("--model", default=None)
    example.add_argument("--shift", type=float, default=5.0)
    example.add_argument("--harmonics", action=argparse.BooleanOptionalAction, default=None,
                         help="the harmonic excitation before the vocoder (default: the converter's, on with a pitch path)")
    judges = sub.add_parser("judges")
    judges.add_argument("--manifest", type=Path, required=True)
    judges.add_argument("--per-speaker", type=int, default=8)
    args = parser.parse_args()
    if args.what == "tracker":
        tracker_report(args.manifest, args.per_speaker, args.reference)
    elif args.what == "judges":
        judges_report(args.manifest, args.per_speaker)
    else:
        example_report(args.model, args.shift, args.harmonics)


if __name__ == "__main__":
    main()
