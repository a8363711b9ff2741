#!/usr/bin/env python3
"""Build a multi-speaker speech corpus from voices available offline.

Layout: ``ROOT/<speaker>/<utt>.wav`` (16 kHz mono PCM_16, peak 0.9, silence trimmed) plus a
same-stem ``.txt`` transcript when the text is known (synthetic voices; none for FOTAQ).

Sources (see DESIGN.md §6):

* ``fotaq``    real English voice acting from Flight of the Amazon Queen (``queen.1c``).
* ``flite``    kal16, awb, rms, slt.
* ``festival`` ked_diphone.
* ``espeak``   six espeak-ng English variants.

Every synthetic voice speaks the same ``sentences.txt`` so parallel pairs exist.
Rerunnable: files that already exist are skipped; writes go to a temp file and are renamed.

    python recipes/voices/build_corpus.py --root /work/data/voices [--sources fotaq,flite,espeak,festival]
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from vconv.audio import resample, save, trim_silence

SR = 16000
PEAK = 0.9
TRIM_DB = 40.0
TRIM_MARGIN = 0.1
MIN_SECONDS = 0.8

QUEEN = Path("/usr/share/scummvm/flight-of-the-amazon-queen/queen.1c")
FOTAQ_MIN_CLIPS = 40
FOTAQ_MIN_SECONDS = 120.0
FOTAQ_PREFIX_LEN = 2  # the first two digits are the conversation (talk file) number

SENTENCES = Path(__file__).with_name("sentences.txt")

FLITE_VOICES = ["kal16", "awb", "rms", "slt"]
FESTIVAL_VOICES = ["ked_diphone"]
ESPEAK_VOICES = ["en-us+m1", "en-us+m3", "en-us+f2", "en-us+f4", "en-gb-x-rp+m2", "en-us+f1"]


def log(msg: str) -> None:
    print(msg, flush=True)


def clean(wav: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at 16 kHz, trimmed and peak-normalised (silent input is returned as is)."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    wav = resample(wav, sr, SR)
    wav = trim_silence(wav, SR, top_db=TRIM_DB, margin_seconds=TRIM_MARGIN)
    top = float(np.max(np.abs(wav))) if wav.size else 0.0
    if top > 1e-4:
        wav = wav * (PEAK / top)
    return wav.astype(np.float32)


def write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text.strip() + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- FOTAQ


def read_queen_table(data: bytes) -> list[tuple[str, int, int, int]]:
    """(name, bundle, offset, size) for each entry of the resource table.

    Header: ``QTBL`` + 6-byte version (``CEM10\\0``) + 1 byte + uint16 BE (bytes 11-12) + uint16 BE
    entry count (bytes 13-14), then 21-byte entries from byte 15.  The count matters: the DESIGN
    rule "stop at the first entry that is not a file" stops at entry ``DATA`` (no extension) and
    misses every later name (``DEATH.ACT`` ... ``Z*``), about 1,100 entries.
    """
    if data[:4] != b"QTBL" or data[4:10] != b"CEM10\0":
        raise SystemExit(f"{QUEEN}: unexpected header {data[:10]!r}")
    count = struct.unpack(">H", data[13:15])[0]
    entries = []
    for i in range(count):
        pos = 15 + 21 * i
        name = data[pos : pos + 12].split(b"\0")[0].decode("ascii", errors="replace")
        bundle = data[pos + 12]
        offset, size = struct.unpack(">II", data[pos + 13 : pos + 21])
        if offset + size > len(data):
            log(f"[fotaq] entry {i} {name!r} points past the end of the file; stopping")
            break
        entries.append((name, bundle, offset, size))
    first = min(e[2] for e in entries)
    if first != 15 + 21 * count:
        log(f"[fotaq] warning: table ends at {15 + 21 * count} but first data offset is {first}")
    return entries


def decode_clip(blob: bytes) -> tuple[np.ndarray, int]:
    """Decode one .SB clip; if it does not start with an MP3 frame, skip to the first sync word."""
    try:
        return sf.read(io.BytesIO(blob), dtype="float32")
    except Exception:
        for i in range(min(len(blob) - 1, 4096)):
            if blob[i] == 0xFF and (blob[i + 1] & 0xE0) == 0xE0:
                return sf.read(io.BytesIO(blob[i:]), dtype="float32")
        raise


def fotaq_speaker_of(name: str) -> str | None:
    if name.startswith("JOE"):  # JOEnnnnk.SB: Joe's object descriptions (past the ``DATA`` entry)
        return "joe"
    if len(name) < 8 or not name[:6].isalnum():
        return None
    kind = name[6]
    if kind == "J":
        return "joe"
    if kind == "P":
        return name[:FOTAQ_PREFIX_LEN]
    return None  # digits / S: other characters, not labelled reliably


def build_fotaq(root: Path, max_per: int | None) -> collections.Counter:
    data = QUEEN.read_bytes()
    entries = read_queen_table(data)
    clips = [e for e in entries if e[0].upper().endswith(".SB")]
    kinds = collections.Counter(e[0][6] for e in clips)
    log(f"[fotaq] {len(entries)} table entries, {len(clips)} .SB clips; 7th-char kinds: {dict(sorted(kinds.items()))}")

    # pass 1: decode + trim at native rate for durations (cheap: ~4 s for all clips)
    groups: dict[str, list[tuple[str, float]]] = collections.defaultdict(list)
    failed, short = [], 0
    for name, _b, off, size in clips:
        spk = fotaq_speaker_of(name)
        if spk is None:
            continue
        try:
            wav, sr = decode_clip(data[off : off + size])
        except Exception as exc:  # noqa: BLE001 - report and go on
            failed.append(f"{name}: {exc}")
            continue
        if wav.ndim == 2:
            wav = wav.mean(axis=1)
        dur = trim_silence(wav, sr, top_db=TRIM_DB, margin_seconds=TRIM_MARGIN).size / sr
        if dur < MIN_SECONDS:
            short += 1
            continue
        groups[spk].append((name, dur))
    if failed:
        log(f"[fotaq] {len(failed)} clips failed to decode, e.g. {failed[:3]}")
    log(f"[fotaq] dropped {short} clips shorter than {MIN_SECONDS} s after trimming")

    log(f"[fotaq] candidate groups (J = Joe; P grouped by first {FOTAQ_PREFIX_LEN} chars of the name):")
    log(f"  {'group':>6} {'clips':>6} {'min':>6}  kept")
    keep = []
    for spk in sorted(groups, key=lambda s: (s != "joe", s)):
        n, secs = len(groups[spk]), sum(d for _, d in groups[spk])
        ok = spk == "joe" or (n >= FOTAQ_MIN_CLIPS and secs >= FOTAQ_MIN_SECONDS)
        log(f"  {spk:>6} {n:6d} {secs / 60:6.1f}  {'yes' if ok else ''}")
        if ok:
            keep.append(spk)

    counts: collections.Counter = collections.Counter()
    index = {e[0]: e for e in clips}
    for spk in keep:
        folder = root / f"fotaq_{spk}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, _dur in groups[spk][:max_per]:
            out = folder / f"{name.rsplit('.', 1)[0]}.wav"
            if not out.exists():
                _n, _b, off, size = index[name]
                wav, sr = decode_clip(data[off : off + size])
                save(out, clean(wav, sr), SR)
            counts[f"fotaq_{spk}"] += 1
        log(f"[fotaq] fotaq_{spk}: {counts[f'fotaq_{spk}']} utterances")
    return counts


# --------------------------------------------------------------------------- synthetic


def synth_flite(voice: str, text: str, out: Path) -> None:
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True, capture_output=True)


def synth_festival(voice: str, text: str, out: Path) -> None:
    subprocess.run(
        ["text2wave", "-eval", f"(voice_{voice})", "-o", str(out)],
        input=text.encode("latin-1", errors="replace"),
        check=True,
        capture_output=True,
    )


def synth_espeak(voice: str, text: str, out: Path) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True, capture_output=True)


SYNTH = {
    "flite": (FLITE_VOICES, synth_flite, lambda v: f"flite_{v}"),
    "festival": (FESTIVAL_VOICES, synth_festival, lambda v: f"festival_{v}"),
    "espeak": (ESPEAK_VOICES, synth_espeak, lambda v: "espeak_" + v.replace("+", "_").replace("-", "_")),
}


def build_synthetic(source: str, root: Path, max_per: int | None) -> collections.Counter:
    voices, fn, folder_of = SYNTH[source]
    sentences = [s.strip() for s in SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]
    counts: collections.Counter = collections.Counter()
    for voice in voices:
        folder = root / folder_of(voice)
        folder.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(sentences[:max_per], start=1):
            wav_path, txt_path = folder / f"s{i:03d}.wav", folder / f"s{i:03d}.txt"
            if not wav_path.exists():
                with tempfile.TemporaryDirectory() as tmp:
                    raw = Path(tmp) / "raw.wav"
                    fn(voice, text, raw)
                    wav, sr = sf.read(raw, dtype="float32")
                save(wav_path, clean(wav, sr), SR)
            if not txt_path.exists():
                write_text(txt_path, text)
            counts[folder.name] += 1
        log(f"[{source}] {folder.name}: {counts[folder.name]} utterances")
    return counts


def summarise(root: Path) -> None:
    log(f"\n{'speaker':28s} {'utts':>6} {'min':>7}")
    total_n, total_s = 0, 0.0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        wavs = sorted(folder.glob("*.wav"))
        secs = sum(sf.info(w).frames for w in wavs) / SR
        total_n, total_s = total_n + len(wavs), total_s + secs
        log(f"{folder.name:28s} {len(wavs):6d} {secs / 60:7.1f}")
    log(f"{'TOTAL':28s} {total_n:6d} {total_s / 60:7.1f}  ({total_s / 3600:.2f} h)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="output folder (ROOT/<speaker>/<utt>.wav)")
    ap.add_argument("--sources", default="fotaq,flite,espeak,festival", help="comma-separated subset")
    ap.add_argument("--max-per-speaker", type=int, default=None, help="cap utterances per speaker")
    args = ap.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = set(sources) - {"fotaq", *SYNTH}
    if unknown:
        ap.error(f"unknown sources: {sorted(unknown)}")
    args.root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for source in sources:
        t = time.time()
        counts = build_fotaq(args.root, args.max_per_speaker) if source == "fotaq" else build_synthetic(
            source, args.root, args.max_per_speaker
        )
        log(f"== {source}: {len(counts)} speakers, {sum(counts.values())} utterances, {time.time() - t:.0f} s")
    summarise(args.root)
    log(f"wall time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
