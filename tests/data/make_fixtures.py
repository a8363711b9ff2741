#!/usr/bin/env python3
"""Regenerate the committed speech fixtures of vconv, bit-exactly.

Writes (paths relative to the repository root):

* ``tests/data/corpus/<speaker>/<speaker>_<nn>.wav`` and a same-stem ``.txt``
  transcript: a tiny *parallel* corpus, 6 distinct people x 4 shared sentences.
* ``tests/data/corpus/SHA256SUMS``: sha256 of every corpus file (sha256sum format).

(The README demo pair in ``examples/`` comes from held-out voices of the training corpus:
``recipes/voices/local/make_examples.py``.)

Usage::

    python tests/data/make_fixtures.py            # (re)write the files in place
    python tests/data/make_fixtures.py --check    # regenerate into a temp dir and
                                                  # compare sha256 with the committed
                                                  # files; exit 1 on any difference

Needs the Debian TTS programs ``flite``, ``text2wave`` (festival with
festvox-kdlpc16k) and ``espeak-ng`` on PATH; exit status 2 if one is missing.
Python dependencies: stdlib + numpy + soundfile + soxr (deliberately no vconv
import, so the fixtures do not depend on the code they test).

Processing of every utterance (identical for all voices):
synthesise to a temp wav -> read as float64 -> downmix to mono (mean of channels)
-> resample to 16 kHz with soxr quality 'HQ' (only if the engine's rate differs;
flite and festival already give 16 kHz, espeak-ng gives 22.05 kHz) -> peak-
normalise to 0.9 full scale -> quantise with round(x * 32767) to int16 -> write
16 kHz mono PCM_16 wav. Nothing is trimmed: the engines' own leading/trailing
silence is kept. Peak normalisation makes levels comparable across engines
(their raw peaks differ by more than 10 dB) and leaves 1 dB headroom, so no
sample can clip.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000
PEAK = 0.9

# Four shared sentences (Harvard sentences), chosen short so that every
# utterance is 1.5-3 s and the corpus stays under 2 MB.
SENTENCES = [
    "The sky that morning was clear.",
    "Steam hissed from the broken valve.",
    "Help the woman get back to her feet.",
    "Mend the coat before you go out.",
]

# speaker folder -> (engine, voice). Six distinct people. Same-person pairs
# that must never both appear: flite slt = festival cmu_us_slt_arctic_hts,
# flite kal16 = festival kal_diphone (and flite kal, its 8 kHz version).
SPEAKERS = {
    "flite_awb": ("flite", "awb"),             # Alan W Black, male, Scottish English
    "flite_rms": ("flite", "rms"),             # male, US English (CMU ARCTIC rms)
    "flite_slt": ("flite", "slt"),             # female, US English (CMU ARCTIC slt)
    "flite_kal16": ("flite", "kal16"),         # Kevin A. Lenzo, male, US English (diphone)
    "festival_ked": ("festival", "ked_diphone"),  # male, US English (CSTR ked diphone)
    "espeak_f3": ("espeak", "en-us+f3"),       # espeak-ng formant synth, female variant
}

ROOT = Path(__file__).resolve().parents[2]
CORPUS_REL = Path("tests/data/corpus")


class MissingTool(RuntimeError):
    pass


def _run(cmd: list[str]) -> None:
    if shutil.which(cmd[0]) is None:
        raise MissingTool(f"'{cmd[0]}' not found on PATH (apt install flite festival "
                          "festvox-kdlpc16k espeak-ng)")
    env = dict(os.environ, LC_ALL="C")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def synthesise(engine: str, voice: str, text: str, tmp: Path) -> tuple[np.ndarray, int]:
    """Raw engine output as float64 mono + its sample rate."""
    out = tmp / "synth.wav"
    if out.exists():
        out.unlink()
    if engine == "flite":
        _run(["flite", "-voice", voice, "-t", text, "-o", str(out)])
    elif engine == "festival":
        txt = tmp / "in.txt"
        txt.write_bytes((text + "\n").encode("latin-1"))  # festival reads latin-1
        _run(["text2wave", "-o", str(out), "-eval", f"(voice_{voice})", str(txt)])
    elif engine == "espeak":
        _run(["espeak-ng", "-v", voice, "-w", str(out), text])
    else:
        raise ValueError(engine)
    x, sr = sf.read(str(out), dtype="float64", always_2d=True)
    return x.mean(axis=1), sr


def process(x: np.ndarray, sr: int) -> np.ndarray:
    """Mono float64 at sr -> int16 at 16 kHz, peak 0.9."""
    if sr != SR:
        x = soxr.resample(x, sr, SR, quality="HQ")
    peak = float(np.max(np.abs(x)))
    if peak <= 0:
        raise RuntimeError("silent synthesis output")
    y = x * (PEAK / peak)
    return np.round(y * 32767.0).astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, SR, subtype="PCM_16", format="WAV")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(root: Path) -> list[Path]:
    """Write all fixtures under root; return their paths relative to root."""
    written: list[Path] = []
    corpus = root / CORPUS_REL
    with tempfile.TemporaryDirectory(prefix="vconv_fx_") as t:
        tmp = Path(t)
        for spk, (engine, voice) in SPEAKERS.items():
            for i, text in enumerate(SENTENCES, start=1):
                stem = corpus / spk / f"{spk}_{i:02d}"
                x, sr = synthesise(engine, voice, text, tmp)
                write_wav(stem.with_suffix(".wav"), process(x, sr))
                stem.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
                written += [stem.with_suffix(".wav").relative_to(root),
                            stem.with_suffix(".txt").relative_to(root)]
        sums = "".join(f"{sha256(root / p)}  {p.relative_to(CORPUS_REL).as_posix()}\n"
                       for p in sorted(written))
        (corpus / "SHA256SUMS").write_text(sums, encoding="utf-8")
        written.append(CORPUS_REL / "SHA256SUMS")
    return written


def check() -> int:
    bad = 0
    with tempfile.TemporaryDirectory(prefix="vconv_fx_check_") as t:
        fresh = Path(t)
        rels = generate(fresh)
        for rel in rels:
            new, old = fresh / rel, ROOT / rel
            if not old.exists():
                print(f"MISSING  {rel}")
                bad += 1
            elif sha256(new) != sha256(old):
                print(f"DIFFERS  {rel}")
                bad += 1
        # committed corpus files that the script would not produce
        expected = {r.as_posix() for r in rels}
        for p in sorted((ROOT / CORPUS_REL).rglob("*")):
            if p.is_file() and p.relative_to(ROOT).as_posix() not in expected:
                print(f"EXTRA    {p.relative_to(ROOT)}")
                bad += 1
        # the committed SHA256SUMS must describe the committed files
        sums = ROOT / CORPUS_REL / "SHA256SUMS"
        if sums.exists():
            for line in sums.read_text(encoding="utf-8").splitlines():
                digest, name = line.split("  ", 1)
                f = ROOT / CORPUS_REL / name
                if not f.exists() or sha256(f) != digest:
                    print(f"SHA256SUMS mismatch  {name}")
                    bad += 1
        print(f"checked {len(rels)} files: {'OK' if bad == 0 else f'{bad} problem(s)'}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare sha256 with the "
                         "committed files; exit 1 on any difference")
    ap.add_argument("--out", type=Path, default=ROOT,
                    help="repository root to write into (default: this checkout)")
    args = ap.parse_args(argv)
    try:
        if args.check:
            return check()
        rels = generate(args.out)
        print(f"wrote {len(rels)} files under {args.out}")
        return 0
    except MissingTool as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
