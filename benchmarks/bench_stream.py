"""Live conversion (`vc.stream` / `vconv stream`): latency, compute per block, deadline misses, memory, quality.

Usage: python benchmarks/bench_stream.py [--model M] [--threads 1] [--minutes 10] [--realtime] [--target-match off]
                                         [--loads 0 1 2] [--manifest EXP/data/test.jsonl --sources-per-pair 5] [--json OUT]

1. **Latency**: the algorithmic latency, block + look-ahead (the stream's defaults unless --block-ms,
   --lookahead-ms, --context-ms say otherwise).
2. **A long stream**: the fixture speech tiled to ``--minutes``, pushed one block at a time through one
   stream, paced as a microphone would deliver it with ``--realtime`` (then it takes that long), else as
   fast as it goes. Reports the compute per block (p50/p95/p99, and as a fraction of each block's own length),
   the blocks that missed their deadline (their compute took longer than they last), whether and when the block
   grew (``--busy-block-ms``, :mod:`vconv.inference.stream_pace`), and resident memory after the first
   minute and at the end (growth over the stream); once per ``--loads`` count of competing CPU-bound processes
   (benchmarks/loadgen.py: 0 idle, 1 "one hog", 2 "two hogs"), so idle and loaded figures come from one run.
3. **Quality** (with ``--manifest``, e.g. the voices recipe's held-out ``test.jsonl``): every ordered pair of
   different speakers (``--sources-per-pair`` sources each, 5 by default, seed 0: the 100 conversions of
   ``vconv evaluate --sources-per-pair 5``; one source per pair leaves 12 transcripts on the voices recipe, too few
   to tell a stream setting from the judge's noise) converted
   offline and streamed (and, for a model with the pitch path, streamed given its speaker's register from another of
   the speaker's recordings, ``known``: ``vconv stream --source-voice``; and, ``session``, streamed as a live
   session's second utterance: after another recording of its speaker and half a second of silence), judged by Resemblyzer (SIM→target against another utterance of the target,
   SIM→source), Whisper base (CER against the transcript), Praat's pitch (F0 correlation with the source) and DNSMOS
   (overall); and the joins: the largest frame-to-frame
   level step of each streamed output against the offline one's (the measure ``tests/test_convert.py``
   uses for chunk joins), worst over the pairs; and the correlation of each output's log-F0 with its source's
   (Praat's autocorrelation pitch, as ``vconv evaluate``'s F0 column).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from vconv.inference.threads import prepare_threads

prepare_threads()  # before torch loads, as `vconv stream` does: idle OpenMP threads sleep (vconv/inference/threads.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vconv.inference.converter import load  # noqa: E402
from vconv.inference.settings import RECENT_FRONTEND_MODES  # noqa: E402
from vconv.inference.stream_settings import DEFAULTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from loadgen import hogs, load_name  # noqa: E402

QUALITY_ROWS = ("offline", "streamed", "session", "known")  # section 3's rows (--rows); known: a pitch-path model
SESSION_GAP_S = 0.5  # the pause between the session's earlier recording and the utterance judged


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return int(fh.read().split("VmRSS:")[1].split()[0]) / 1024


def long_stream(vc, target, minutes: float, realtime: bool, settings: dict) -> dict:
    """Section 2: one stream of ``minutes`` of speech, block by block."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_convert import source_audio

    minute = source_audio(60.0)
    stream = vc.stream(target, **settings)
    started, fed, pushes = time.perf_counter(), 0.0, 0
    rss_after_minute = None
    for m in range(int(np.ceil(minutes))):
        start = 0
        while start < minute.size:  # one block a push: the block may grow on a busy machine (stream_pace)
            block_s = stream.block / stream.model_rate
            if realtime:
                time.sleep(max(0.0, started + fed + block_s - time.perf_counter()))
            piece = minute[start : start + stream.block]
            stream.push(piece)
            start += piece.size
            fed += piece.size / stream.model_rate
            pushes += 1
        if m == 0:
            rss_after_minute = rss_mb()
    stream.flush()
    times = np.array(stream.times.seconds)
    p50, p95, p99 = (float(np.percentile(times, q)) for q in (50, 95, 99))
    # late: a block whose compute took longer than that block lasts (what a listener hears as a gap)
    return {"minutes": minutes, "realtime": realtime, "blocks": int(times.size), "block_ms": 1000 * stream.first_block / stream.model_rate,
            "p50_ms": 1000 * p50, "p95_ms": 1000 * p95, "p99_ms": 1000 * p99, "p99_of_block": stream.times.share_of_block(99),
            "missed": stream.times.late, "grown_after": stream.grown_after, "last_block_ms": 1000 * stream.block / stream.model_rate,
            "short_blocks": stream.short_blocks, "rss_after_first_minute_mb": rss_after_minute, "rss_end_mb": rss_mb(),
            "rss_growth_mb": rss_mb() - (rss_after_minute or 0.0), "wall_s": time.perf_counter() - started}


def _grown(run: dict) -> str:
    """The block's growth on a busy machine, for the printed line (nothing when it did not grow)."""
    if run["grown_after"] is None:
        return ""
    return f"the block grew to {run['last_block_ms']:.0f} ms after {run['grown_after']} blocks; "


def quality(vc, manifest: Path, sources_per_pair: int, settings: dict, work: Path,
            rows: tuple[str, ...] = QUALITY_ROWS) -> dict:
    """Section 3: offline against streamed on the held-out pairs, by the independent judges (``rows``: which of
    :data:`QUALITY_ROWS`; offline and streamed always)."""
    rows = ("offline", "streamed", *rows)
    from vconv.data.manifest import read_manifest
    from vconv.evaluation import metrics as M
    from vconv.evaluation.asr_judge import AsrJudge
    from vconv.evaluation.pairs import make_pairs
    from vconv.evaluation.quality_judge import QualityJudge
    from vconv.evaluation.speaker_judge import SpeakerJudge

    utterances = read_manifest(manifest)

    def offline(src: str, refs: list[str]) -> tuple:
        return vc.convert(src, refs), vc.sample_rate

    # streamed as fast as it goes, as `vconv stream` streams a file: no deadline, so the block never grows
    fixed = {**settings, "busy_block_ms": 0.0}

    def streamed(src: str, refs: list[str], source_voice: list[str] | None = None) -> tuple:
        return through(vc.stream(refs, **fixed, source_voice=source_voice), vc.prepare_audio(src, None, src)), vc.sample_rate

    def streamed_known(src: str, refs: list[str]) -> tuple:  # the speaker's register from another of its recordings
        return streamed(src, refs, [another_recording(utterances, src)])

    def streamed_in_session(src: str, refs: list[str]) -> tuple:
        """The utterance as a live session's second: the stream first hears another recording of the same speaker
        and half a second of silence, and only the utterance's own samples are kept (a stream's output is aligned
        with its input, sample for sample)."""
        earlier = vc.prepare_audio(another_recording(utterances, src), None)
        wav = vc.prepare_audio(src, None, src)
        heard = np.concatenate([earlier, np.zeros(int(SESSION_GAP_S * vc.sample_rate), np.float32), wav])
        out = through(vc.stream(refs, **fixed), heard)
        assert out.size == heard.size, (out.size, heard.size)
        return out[heard.size - wav.size :], vc.sample_rate

    named = [("offline", offline), ("streamed", streamed), ("session", streamed_in_session)]
    named += [("known", streamed_known)] if vc.model.reads_pitch else []
    named = [(name, fn) for name, fn in named if name in rows]
    runs = {name: make_pairs(utterances, fn, work / name, max_sources_per_speaker_pair=sources_per_pair, seed=0,
                             progress=False) for name, fn in named}
    speaker, asr, quality_judge = SpeakerJudge(), AsrJudge(), QualityJudge()
    result: dict = {"pairs": len(runs["offline"])}
    for name, pairs in runs.items():
        sim_t = [speaker.similarity(p.converted, p.target_other) for p in pairs]
        sim_s = [speaker.similarity(p.converted, p.source_other) for p in pairs if p.source_other]
        cers = [M.cer(p.text, asr.transcribe(p.converted)) for p in pairs if p.text]
        f0_corr = [c for c in (_f0_correlation(p.source, p.converted) for p in pairs) if np.isfinite(c)]
        result[name] = {"sim_target": statistics.mean(sim_t), "sim_source": statistics.mean(sim_s),
                        "cer": statistics.mean(cers), "success": M.success_rate(sim_t, sim_s) if len(sim_s) == len(sim_t) else None,
                        "f0_corr_with_source": statistics.mean(f0_corr) if f0_corr else None,
                        "dnsmos": statistics.mean(quality_judge.score(p.converted).ovrl for p in pairs)}
    ratios = []
    for o, s in zip(runs["offline"], runs["streamed"]):
        (stream_step, frame), (offline_step, _) = _largest_step(vc, s.converted), _largest_step(vc, o.converted)
        ratios.append((stream_step / offline_step, Path(s.converted).stem, frame))
    result["join_step_ratio"], worst_pair, worst_frame = max(ratios)
    result["join_step_worst"] = {"pair": worst_pair, "frame": worst_frame}  # where the streamed output's largest step is
    # the worst pair's ratio grows with the number of pairs; these two say how the pairs are spread
    result["join_step_ratio_median"] = statistics.median(r for r, _, _ in ratios)
    result["join_step_share_over_1_25"] = sum(r > 1.25 for r, _, _ in ratios) / len(ratios)
    return result


def through(stream, wav: np.ndarray) -> np.ndarray:
    """``wav [T]`` pushed through ``stream`` one block at a time, then flushed: the whole output ``[T]``."""
    out = [stream.push(wav[i : i + stream.block]) for i in range(0, wav.size, stream.block)]
    return np.concatenate([*out, stream.flush()])


def another_recording(utterances: list, path: str) -> str:
    """The first recording of the manifest by the speaker of ``path`` that is not ``path`` itself: the "speaker's own
    voice" a streamed conversion is given in the ``known`` row (``vc.stream(..., source_voice=...)``)."""
    speaker = next(u.speaker for u in utterances if str(u.path) == str(path))
    return next(str(u.path) for u in utterances if u.speaker == speaker and str(u.path) != str(path))


def _f0_correlation(source: str, converted: str) -> float:
    """The correlation of the converted file's log-F0 with its source's (Praat's autocorrelation pitch, as `vconv evaluate` judges it)."""
    from vconv.audio.io import load as load_audio
    from vconv.evaluation import metrics as M
    from vconv.evaluation.pitch_judge import f0_contour

    rate = 16000
    return M.f0_scores(f0_contour(load_audio(source, rate)[0], rate), f0_contour(load_audio(converted, rate)[0], rate)).corr


def _largest_step(vc, path: str) -> tuple[float, int]:
    """The largest frame-to-frame step of a file's mean log-mel level, and the frame it ends at."""
    from vconv.audio.io import load as load_audio

    steps = np.abs(np.diff(vc.frontend.log_mel(load_audio(path, vc.sample_rate)[0]).numpy().mean(axis=0)))
    return float(steps.max()), int(steps.argmax()) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1, `vconv stream`'s default)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2],
                        help="the long stream beside this many competing CPU-bound processes each (benchmarks/loadgen.py)")
    parser.add_argument("--realtime", action="store_true", help="pace the long stream as a live input (takes --minutes)")
    parser.add_argument("--block-ms", type=float, default=DEFAULTS.block_ms)
    parser.add_argument("--lookahead-ms", type=float, default=DEFAULTS.lookahead_ms)
    parser.add_argument("--context-ms", type=float, default=DEFAULTS.context_ms)
    parser.add_argument("--edge-hold", type=int, default=DEFAULTS.edge_hold_frames, help="StreamSettings.edge_hold_frames (0: zero padding past the window)")
    parser.add_argument("--no-prime-matching", dest="prime_matching", action="store_false",
                        help="leave the stream's first quarter second unmatched (StreamSettings.prime_matching)")
    parser.add_argument("--no-prime", dest="prime", action="store_false",
                        help="start the stream without the target's speech as past context (StreamSettings.prime)")
    parser.add_argument("--no-vocoder-passes", dest="vocoder_passes", action="store_false",
                        help="stream without the vocoder's post-processing passes")
    parser.add_argument("--target-match", default="meanstd",
                        help="target-spectrum matching of both the offline and the streamed conversions (off: the network alone)")
    parser.add_argument("--recent-frontend", choices=RECENT_FRONTEND_MODES, default=DEFAULTS.recent_frontend,
                        help="the content front-end's recent part only: while short of time, always, never (StreamSettings)")
    parser.add_argument("--busy-block-ms", type=float, default=DEFAULTS.busy_block_ms,
                        help="the block a stream grows to when blocks keep missing their deadlines (0: never; StreamSettings)")
    parser.add_argument("--manifest", type=Path, help="held-out manifest for the quality section")
    parser.add_argument("--sources-per-pair", type=int, default=5)
    parser.add_argument("--rows", nargs="+", choices=QUALITY_ROWS, default=list(QUALITY_ROWS),
                        help="the quality section's rows (offline and streamed always)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {"block_ms": args.block_ms, "lookahead_ms": args.lookahead_ms, "context_ms": args.context_ms,
                "vocoder_passes": args.vocoder_passes, "prime": args.prime, "edge_hold_frames": args.edge_hold,
                "prime_matching": args.prime_matching, "recent_frontend": args.recent_frontend, "busy_block_ms": args.busy_block_ms}
    vc = load(args.model, target_match=args.target_match)
    target = vc.target_voice([ROOT / "examples/target.wav"])
    figures: dict = {"threads": args.threads, "settings": settings,
                     "latency_ms": vc.stream(target, **settings).latency_ms}
    print(f"1. latency {figures['latency_ms']:.0f} ms (block + look-ahead); {args.threads} threads")
    figures["stream"] = {}
    for count in args.loads if args.minutes else []:
        with hogs(count):
            run = figures["stream"][load_name(count)] = long_stream(vc, target, args.minutes, args.realtime, settings)
        print(f"2. {load_name(count)}: {run['minutes']:g} min {'in real time' if run['realtime'] else 'as fast as possible'}: "
              f"{run['blocks']} blocks of {run['block_ms']:.0f} ms; compute p50 {run['p50_ms']:.1f} / p95 {run['p95_ms']:.1f} / "
              f"p99 {run['p99_ms']:.1f} ms (p99 {run['p99_of_block']:.2f}x the block); {run['missed']} missed their deadline "
              f"({run['missed'] / max(run['blocks'], 1):.1%}); {_grown(run)}{run['short_blocks']} read the front-end's recent part only; RSS {run['rss_after_first_minute_mb']:.0f} MB after the first minute, "
              f"{run['rss_end_mb']:.0f} MB at the end ({run['rss_growth_mb']:+.1f} MB)", flush=True)
    if args.manifest:
        with tempfile.TemporaryDirectory() as work:
            q = figures["quality"] = quality(vc, args.manifest, args.sources_per_pair, settings, Path(work), tuple(args.rows))
        for name in (n for n in QUALITY_ROWS if n in q):
            r = q[name]
            print(f"3. {name:8s} ({q['pairs']} pairs): SIM→target {r['sim_target']:.3f}, SIM→source {r['sim_source']:.3f}, "
                  f"CER {r['cer']:.3f}, success {r['success']:.0%}, F0 corr. with the source "
                  f"{r['f0_corr_with_source'] if r['f0_corr_with_source'] is None else round(r['f0_corr_with_source'], 3)}, "
                  f"DNSMOS {r['dnsmos']:.2f}")
        print(f"   streamed - offline: SIM→target {q['streamed']['sim_target'] - q['offline']['sim_target']:+.3f}, "
              f"CER {q['streamed']['cer'] - q['offline']['cer']:+.3f}, "
              f"DNSMOS {q['streamed']['dnsmos'] - q['offline']['dnsmos']:+.2f}; largest level step, streamed / offline, worst pair: "
              f"{q['join_step_ratio']:.2f} ({q['join_step_worst']['pair']}, frame {q['join_step_worst']['frame']}); "
              f"median pair {q['join_step_ratio_median']:.2f}, pairs over 1.25: {q['join_step_share_over_1_25']:.0%}")
        if "session" in q:
            print(f"   session - offline (the utterance streamed after another of its speaker's recordings, as a live "
                  f"session's second): CER {q['session']['cer'] - q['offline']['cer']:+.3f}, F0 corr. "
                  f"{q['session']['f0_corr_with_source'] or float('nan'):.3f}")
        if "known" in q:
            print(f"   known - offline (the stream given its speaker's register, --source-voice): CER "
                  f"{q['known']['cer'] - q['offline']['cer']:+.3f}, F0 corr. {q['known']['f0_corr_with_source']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
