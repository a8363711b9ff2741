"""Conversion speed and memory: start-up, end-to-end and memory as ratios, plus RTF per vocoder, load time, bundle size.

Usage: python benchmarks/bench_convert.py [--model NAME_OR_DIR] [--threads 2] [--long-minutes 10] [--runs 7] [--json OUT]
                                          [--loads 0 1 2] [--busy-only]

These machines are noisy, so the headline figures are ratios of two things measured side by side, in
turns (A B A B ...), each pair's ratio taken and the median of those quoted:

(a) **start-up**: the whole process ``vconv convert examples/source.wav --target examples/target.wav``
    against ``python -c "import torch"`` (wall time, ``--runs`` pairs after a warm-up pair): a repeat conversion, whose
    target comes from the CLI's cache of prepared voices (the warm-up fills it; the benchmark's own cache folder, not
    yours), and beside it a first one (``--no-cache``: the target prepared);
(b) **end to end**: in one process, converting 10 s (load the wav -> target -> front-end -> model ->
    vocoder -> write the wav) against the content front-end alone on the same 10 s (``--runs`` pairs), with the
    networks in the converter's default arithmetic (bfloat16 where the CPU has it, vconv.inference.precision; the
    front-end always float32) and, beside it, all in float32; then where the time goes, stage by stage (read,
    target, front-end, conversion network, matching, vocoder network, vocoder passes, write), and what fitting the
    voice to the reference (``--fit-voice 30``) adds, once per target;
(c) **memory**: peak RSS (ru_maxrss) of a fresh process converting a ``--long-minutes`` source, written
    beforehand by this process, beside a fresh process converting the 10 s source and one converting a
    ``--longer-minutes`` source (default 2 hours): a long source is converted a chunk at a time, so its
    peak does not grow with its length.

(d) **a busy machine**: for each ``--loads`` count of competing CPU-bound processes (benchmarks/loadgen.py: 0 idle,
    1 "one hog", 2 "two hogs"), started before and killed after: the start-up ratio of (a) (a repeat conversion, and
    a first one with ``--no-cache``), the same with ``--fit-voice 30 --no-cache`` (the fit paid in full), both against ``python -c "import torch"`` under the same load,
    and what a second conversion to the same target pays for it when the voice comes from the cache of fitted voices
    or a voice file (``target_voice`` in process, median). ``--busy-only`` runs this section alone.

Then, as before: RTF of the 10 s conversion per vocoder and for ``vconv convert --fast`` (the neural vocoder
without its post-processing passes; best of 3 after a warm-up), the best of 3 ``vconv.load`` calls, and
the bundle's size. Without --model it uses the shipped bundle, or, if none is installed, a randomly
initialised model of the default (shipped) size: speed does not depend on the weights' values. ``--json``
also writes the figures (``startup_ratio``, ``first_startup_ratio``, ``end_to_end_ratio``, ``peak_rss_mb``, ``peak_rss_10s_mb``,
``stage_s``, ``fit_voice_s`` (what ``--fit-voice 30`` adds, once per target), ``compute_dtype``, ``end_to_end_ratio_float32``, ``rtf`` per vocoder, ``default_vocoder``, ``load_s``, ``bundle_mb``,
``threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from vconv.inference.threads import prepare_threads

prepare_threads()  # before torch loads, as the CLI does: idle OpenMP threads sleep (vconv/inference/threads.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vconv.audio import io as audio  # noqa: E402
from vconv.errors import VconvError  # noqa: E402
from vconv.inference.batch import convert_paths  # noqa: E402
from vconv.inference.converter import load  # noqa: E402
from vconv.vocoders import VOCODERS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import hogs, load_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]  # the repository: tests/data/corpus


def model_path(name: str | None, tmp: Path) -> str:
    if name:
        return name
    try:
        from vconv.inference.registry import resolve_bundle

        return str(resolve_bundle(None))
    except VconvError:
        from vconv.audio.frontend import FeatureStats, FrontEnd
        from vconv.bundles import save_bundle
        from vconv.config import FeatureConfig, ModelConfig
        from vconv.models import build_model

        cfg = ModelConfig()
        stats = FeatureStats(torch.full((80,), -4.0), torch.full((80,), 2.0), 1)
        return str(save_bundle(tmp / "random-default", build_model(cfg), FrontEnd(FeatureConfig(), stats)))


def source_audio(seconds: float, sr: int = 16000) -> np.ndarray:
    """Fixture speech tiled to ``seconds``."""
    clips = [audio.load(p, sr)[0] for p in sorted((ROOT / "tests/data/corpus").glob("*/*.wav"))]
    joined = np.concatenate(clips)
    return np.tile(joined, int(np.ceil(seconds * sr / joined.size)))[: int(seconds * sr)]


def paired(first: Callable[[], float], second: Callable[[], float], runs: int) -> tuple[float, float, float]:
    """``(median of first, median of second, median of first/second pair by pair)``; the two run in turns
    after one warm-up pair, so drift on a shared machine hits both alike."""
    first(), second()
    pairs = [(first(), second()) for _ in range(runs)]
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(a / b for a, b in pairs))


def timed_process(command: list[str]) -> float:
    """Wall seconds of a whole process (its output discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def startup_ratio(model: str | None, out: Path, runs: int, *extra: str) -> tuple[float, float, float]:
    """(a): the CLI's example conversion (with ``extra`` options) against ``python -c "import torch"``, whole processes."""
    convert = [sys.executable, "-m", "vconv", "convert", str(ROOT / "examples/source.wav"), "--target",
               str(ROOT / "examples/target.wav"), "-o", str(out), "--force", *(["--model", model] if model else []), *extra]
    return paired(lambda: timed_process(convert), lambda: timed_process([sys.executable, "-c", "import torch"]), runs)


def saved_voice_time(model: str, ref: Path, tmp: Path, runs: int) -> tuple[float, float]:
    """What a second conversion pays for its target when the fitted voice is known: (from the cache of fitted
    voices, from a voice file), each the median of ``runs`` ``target_voice`` calls after a warm-up."""
    from vconv.inference.voice_file import VoiceCache, save_voice

    converter = load(model, fit_steps=FIT_STEPS)
    converter.voice_cache = VoiceCache(tmp / "voice-cache")
    voice, source = converter.prepared_target([ref])  # fitted once, and cached
    voice_file = save_voice(tmp / "bench.voice", voice, source, force=True)

    def median_time(target: list) -> float:
        times = []
        for _ in range(runs + 1):
            start = time.perf_counter()
            assert converter.target_voice(target).origin != "computed"
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])

    return median_time([ref]), median_time([voice_file])


def busy_machine(model: str | None, ref: Path, tmp: Path, runs: int, loads: list[int]) -> dict:
    """(d): the start-up ratios idle and beside competing processes, and a known voice's cost."""
    figures = {}
    for count in loads:
        with hogs(count):
            cli, torch_only, plain = startup_ratio(model, tmp / "busy.wav", runs)
            first_cli, _, first = startup_ratio(model, tmp / "busy.wav", runs, "--no-cache")
            fit_cli, _, fitted = startup_ratio(model, tmp / "busy.wav", runs, "--fit-voice", str(FIT_STEPS), "--no-cache")
            cached, from_file = saved_voice_time(model or str(resolve_default()), ref, tmp, runs)
        figures[load_name(count)] = {"startup_ratio": round(plain, 3), "fit_startup_ratio": round(fitted, 3),
                                     "first_startup_ratio": round(first, 3), "first_startup_s": round(first_cli, 3),
                                     "startup_s": round(cli, 3), "fit_startup_s": round(fit_cli, 3), "import_torch_s": round(torch_only, 3),
                                     "cached_voice_s": round(cached, 4), "voice_file_s": round(from_file, 4)}
        print(f"(d) {load_name(count)}: `vconv convert` {cli:.2f} s = {plain:.2f}x `import torch` ({torch_only:.2f} s), "
              f"its target prepared (--no-cache) {first_cli:.2f} s = {first:.2f}x; "
              f"with --fit-voice {FIT_STEPS} {fit_cli:.2f} s = {fitted:.2f}x; a known voice's target: cache {1000 * cached:.1f} ms, "
              f"voice file {1000 * from_file:.1f} ms", flush=True)
    return figures


def resolve_default() -> Path:
    from vconv.inference.registry import resolve_bundle

    return resolve_bundle(None)


def end_to_end_ratio(converter, src: Path, ref: Path, out: Path, runs: int) -> tuple[float, float, float]:
    """(b): converting the 10 s file end to end against the content front-end alone on the same audio."""
    wav = audio.load(src, converter.sample_rate)[0]

    def whole() -> float:
        start = time.perf_counter()
        convert_paths(converter, src, [ref], out, force=True, progress=False)
        return time.perf_counter() - start

    @torch.no_grad()
    def front_end() -> float:
        start = time.perf_counter()
        converter.frontend.content_input(wav)
        return time.perf_counter() - start

    return paired(whole, front_end, runs)


FIT_STEPS = 30  # what recipes/voices/MODEL_HISTORY.md judges


def fit_time(plain, model: str, ref: Path, runs: int) -> float:
    """What ``--fit-voice`` adds to a conversion: the median over ``runs`` (after a warm-up) of the target prepared with
    the fit less the same target prepared by ``plain`` (the converter of ``model`` without it), in turns, both in the
    converter's default arithmetic."""
    fitting = load(model, fit_steps=FIT_STEPS)
    differences = []
    for number in range(runs + 1):
        start = time.perf_counter()
        fitting.target_voice([ref])
        middle = time.perf_counter()
        plain.target_voice([ref])
        if number:  # the first round warms both up
            differences.append((middle - start) - (time.perf_counter() - middle))
    return statistics.median(differences)


@torch.no_grad()
def stage_times(converter, src: Path, ref: Path, out: Path, runs: int) -> dict[str, float]:
    """Where (b)'s 10 s conversion spends its time: the median of ``runs`` timings of each stage (in turns, after a
    warm-up round) on the inputs ``convert_paths`` gives it, in the converter's arithmetic. ``vocoder passes`` is the
    neural vocoder with its post-processing minus without it; what no stage covers (checks, the plan, copies, the
    peak limit) is the whole conversion's time less their sum."""
    from vconv.inference.target_match import match_spectrum

    vc = converter
    wav = vc.prepare_audio(src, None)
    target = vc.target_voice([ref])
    content = vc.frontend.content_input(wav)
    floor = float(np.log(vc.features.log_floor))
    with_passes = vc.vocoder.post_processing  # the vocoder says whether it has passes (not its name)

    def source_pitch():  # the tracker and the contour, for a model with the pitch path (None without)
        return vc.source_pitch(wav, target.register, None, target.h1_h2)

    pitch = source_pitch()

    def network() -> torch.Tensor:  # the converter's own stages, so the benchmark follows the conversion's path
        return vc.decode_mel(content, target.embedding, pitch)

    def matching() -> torch.Tensor:
        return match_spectrum(converted, target.spectrum, vc.target_match, floor=floor,
                              band_centres=vc.frontend.logmel.band_centres)

    def vocode(post_process: bool) -> np.ndarray:  # the harmonic excitation of the source's F0 included
        return vc.render(log_mel, pitch, post_process=post_process)

    converted = network()
    log_mel = matching()
    output = vocode(True)
    stages: dict[str, Callable[[], object]] = {
        "read source": lambda: vc.prepare_audio(src, None),
        "target (read, embed, spectrum)": lambda: vc.target_voice([ref]),
        "room estimate and enhancer (--enhance)": lambda: vc.heard_cleaned(wav),
        "content front-end": lambda: vc.frontend.content_input(wav),
        "source pitch (tracker, contour)": source_pitch,
        "conversion network": network,
        "matching": matching,
        "vocoder network": lambda: vocode(False),
        "vocoder passes": lambda: vocode(True),
        "write": lambda: audio.save(out, output, vc.sample_rate, force=True),
    }
    if not with_passes:
        del stages["vocoder passes"]
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(runs + 1):
        for name, stage in stages.items():
            start = time.perf_counter()
            stage()
            times[name].append(time.perf_counter() - start)
    result = {name: statistics.median(t[1:]) for name, t in times.items()}
    if with_passes:  # timed as the whole vocoder: the passes are what it adds to the network
        result["vocoder passes"] -= result["vocoder network"]
    return result


def write_long_source(path: Path, minutes: float) -> None:
    """``minutes`` of the fixture speech as 16-bit 16 kHz PCM, written a minute at a time (a 2-hour source
    held in memory here would be 460 MB)."""
    import soundfile as sf

    minute = source_audio(60.0)
    with sf.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as fh:
        for _ in range(int(np.ceil(minutes))):
            fh.write(minute)


def peak_rss(model: str, src: Path, ref: Path, out: Path, threads: int) -> float:
    """(c): peak RSS in MB of a fresh process that loads ``model`` and converts ``src``."""
    proc = subprocess.run(
        [sys.executable, __file__, "--threads", str(threads), "--child-peak", model, str(src), str(ref), str(out)],
        capture_output=True, text=True, check=True,
    )
    return float(proc.stdout.strip().splitlines()[-1])


def peak_rss_child(model: str, src: str, ref: str, out: str) -> None:
    """Run in a fresh process: convert ``src``, print peak RSS in MB."""
    convert_paths(load(model), src, [ref], out, force=True, progress=False)
    print(own_peak_rss_mb())


def own_peak_rss_mb() -> float:
    """This process's peak resident size in MB since its program started: ``VmHWM`` on Linux. Not ``ru_maxrss``: Linux
    carries that over ``exec`` from the process that forked (subprocess forks this benchmark, already holding several
    converters), so it reported the parent's peak whenever that was higher (the last run before this was read: 471 MB
    for a 10 s source and a 10-minute one alike, where the conversion itself peaks at ~375 MB and ~450 MB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vocoder_rtfs(model: str, src: Path, ref: Path, out: Path) -> dict[str, float]:
    """RTF of the 10 s conversion per vocoder (best of 3 after a warm-up)."""
    rtf = {}
    for name in (*VOCODERS, "vocos --fast"):
        try:
            converter = load(model, vocoder=name.split()[0], fast=name.endswith("--fast"))
        except VconvError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        convert_paths(converter, src, [ref], out, force=True, progress=False)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            convert_paths(converter, src, [ref], out, force=True, progress=False)
            times.append(time.perf_counter() - start)
        rtf[name] = round(min(times) / 10, 5)
        print(f"vocoder {name:12s}: 10 s of audio in {min(times):.3f} s -> RTF {min(times) / 10:.4f} ({10 / min(times):.0f}x real time)")
    return rtf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--longer-minutes", type=float, default=120.0,
                        help="a second long source, to show that the peak does not grow with the length (0: skip)")
    parser.add_argument("--runs", type=int, default=7, help="pairs for the start-up and end-to-end ratios")
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    parser.add_argument("--child-peak", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2], help="competing processes for (d)")
    parser.add_argument("--busy-only", action="store_true", help="run (d) alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_peak:
        peak_rss_child(*args.child_peak)
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmpdir) / "cache-home")  # the CLI's cache of voices: ours, not the user's
        ref = sorted((ROOT / "tests/data/corpus/flite_slt").glob("*.wav"))[0]
        figures = {} if args.busy_only else measure(args, Path(tmpdir))
        figures["busy"] = busy_machine(args.model, ref, Path(tmpdir), args.runs, args.loads)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")


def measure(args: argparse.Namespace, tmp: Path) -> dict:
    from vconv.inference.registry import resolve_bundle

    model = model_path(args.model, tmp)
    src, long_src, longer_src = tmp / "src10.wav", tmp / "long.wav", tmp / "longer.wav"
    audio.save(src, source_audio(10.0), 16000)
    audio.save(long_src, source_audio(args.long_minutes * 60), 16000)
    ref = sorted((ROOT / "tests/data/corpus/flite_slt").glob("*.wav"))[0]
    bundle = resolve_bundle(model)
    size = sum(f.stat().st_size for f in bundle.iterdir() if f.is_file() and f.suffix != ".md")
    print(f"model: {model}; {args.threads} threads; bundle size (weights and configs): {size / 1e6:.1f} MB")
    cli, torch_only, startup = startup_ratio(args.model or (None if model == str(resolve_bundle(None)) else model),
                                             tmp / "cli.wav", args.runs)
    first_cli, _, first = startup_ratio(args.model or (None if model == str(resolve_bundle(None)) else model),
                                        tmp / "cli.wav", args.runs, "--no-cache")
    print(f"(a) start-up: `vconv convert` of the example {cli:.2f} s, `python -c \"import torch\"` {torch_only:.2f} s "
          f"-> ratio {startup:.2f}; its target prepared (--no-cache) {first_cli:.2f} s -> {first:.2f} (medians of {args.runs} pairs)")
    converter = load(model)
    whole, front, e2e = end_to_end_ratio(converter, src, ref, tmp / "out.wav", args.runs)
    dtype = str(converter.compute_dtype).removeprefix("torch.")
    print(f"(b) end to end: 10 s converted in {whole:.3f} s, the content front-end alone {front:.3f} s "
          f"-> ratio {e2e:.2f} (median of {args.runs} pairs; networks in {dtype}, the front-end in float32)")
    stages = stage_times(converter, src, ref, tmp / "out.wav", args.runs)
    print("    where the time goes: " + ", ".join(f"{name} {1000 * t:.1f} ms" for name, t in stages.items())
          + f"; the rest (checks, the plan, copies) {1000 * (whole - sum(stages.values())):.1f} ms")
    e2e_float32 = None
    if converter.compute_dtype != torch.float32:  # what the same conversion costs without bfloat16, side by side
        whole32, front32, e2e_float32 = end_to_end_ratio(load(model, precision="float32"), src, ref, tmp / "out.wav", args.runs)
        print(f"    all in float32: {whole32:.3f} s against {front32:.3f} s -> ratio {e2e_float32:.2f}")
    peak, peak10 = (peak_rss(model, s, ref, tmp / "peak.wav", args.threads) for s in (long_src, src))
    print(f"(c) peak RSS converting a {args.long_minutes:g}-minute source: {peak:.0f} MB (a 10 s source: {peak10:.0f} MB)")
    longer = None
    if args.longer_minutes:
        write_long_source(longer_src, args.longer_minutes)
        longer = peak_rss(model, longer_src, ref, tmp / "peak.wav", args.threads)
        longer_src.unlink()
        print(f"    a {args.longer_minutes:g}-minute source: {longer:.0f} MB ({longer / peak:.2f}x the {args.long_minutes:g}-minute one's)")
    fit_s = fit_time(converter, model, ref, args.runs)
    print(f"--fit-voice {FIT_STEPS}: the target takes {fit_s:.2f} s more, once per target (the 10 s conversion "
          f"{whole + fit_s:.2f} s, RTF {(whole + fit_s) / 10:.3f} against {whole / 10:.4f})")
    loads = []
    for _ in range(3):
        start = time.perf_counter()
        load(model)
        loads.append(time.perf_counter() - start)
    print(f"model load: {min(loads):.2f} s (best of 3)")
    return {"model": str(bundle), "threads": args.threads, "bundle_mb": round(size / 1e6, 1),
            "startup_ratio": round(startup, 3), "startup_s": round(cli, 3), "import_torch_s": round(torch_only, 3),
            "first_startup_ratio": round(first, 3), "first_startup_s": round(first_cli, 3),
            "end_to_end_ratio": round(e2e, 3), "end_to_end_s": round(whole, 4), "front_end_s": round(front, 4),
            "stage_s": {name: round(t, 4) for name, t in stages.items()},
            "compute_dtype": dtype, "end_to_end_ratio_float32": None if e2e_float32 is None else round(e2e_float32, 3),
            "peak_rss_mb": round(peak), "peak_rss_10s_mb": round(peak10), "long_minutes": args.long_minutes,
            "peak_rss_longer_mb": None if longer is None else round(longer), "longer_minutes": args.longer_minutes,
            "fit_voice_s": round(fit_s, 3), "fit_voice_steps": FIT_STEPS, "load_s": round(min(loads), 3), "default_vocoder": converter.vocoder.name,
            "rtf": vocoder_rtfs(model, src, ref, tmp / "out.wav")}


if __name__ == "__main__":
    main()
