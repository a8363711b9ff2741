"""Flight of the Amazon Queen: real English voice acting, read straight from ``queen.1c``.

The clips are MP3 at 11.025 kHz (band-limited to 5.5 kHz). Speakers: ``J`` clips are Joe King, the
hero; ``P`` clips are the character Joe talks to, grouped by conversation number (the first two
characters of the name); groups with too little speech are dropped. There are no transcripts.
"""

from __future__ import annotations

import collections
import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from corpus_common import MIN_SECONDS, log, trimmed_seconds, write_utterance

QUEEN = Path("/usr/share/scummvm/flight-of-the-amazon-queen/queen.1c")
APT_PACKAGES = ["flight-of-the-amazon-queen"]
FOTAQ_MIN_CLIPS = 40
FOTAQ_MIN_SECONDS = 120.0
FOTAQ_PREFIX_LEN = 2  # the first two digits are the conversation (talk file) number
# Conversations voiced by the same actor (Resemblyzer >= 0.92 between groups, README "Same person
# twice"): merged into the first group's folder so one person is one speaker label.
SAME_ACTOR = {"67": "06", "68": "06", "77": "06", "29": "08", "26": "25", "80": "28", "53": "33", "83": "59"}


def read_queen_table(data: bytes) -> list[tuple[str, int, int, int]]:
    """(name, bundle, offset, size) for each entry of the resource table.

    Header: ``QTBL`` + 6-byte version (``CEM10\\0``) + 1 byte + uint16 BE (bytes 11-12) + uint16 BE
    entry count (bytes 13-14), then 21-byte entries from byte 15.  The count matters: the naive
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
        group = name[:FOTAQ_PREFIX_LEN]
        return SAME_ACTOR.get(group, group)
    return None  # digits / S: other characters, not labelled reliably


def fotaq_groups(data: bytes) -> tuple[list[tuple[str, int, int, int]], dict[str, list[tuple[str, float]]]]:
    """The ``.SB`` entries of ``queen.1c`` and their labelled clips by speaker group, ``{group: [(name, trimmed
    seconds)]}`` (pass 1: decode and trim at the native rate for durations, ~4 s for all clips)."""
    entries = read_queen_table(data)
    clips = [e for e in entries if e[0].upper().endswith(".SB")]
    kinds = collections.Counter(e[0][6] for e in clips)
    log(f"[fotaq] {len(entries)} table entries, {len(clips)} .SB clips; 7th-char kinds: {dict(sorted(kinds.items()))}")
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
        dur = trimmed_seconds(wav, sr)
        if dur < MIN_SECONDS:
            short += 1
            continue
        groups[spk].append((name, dur))
    if failed:
        log(f"[fotaq] {len(failed)} clips failed to decode, e.g. {failed[:3]}")
    log(f"[fotaq] dropped {short} clips shorter than {MIN_SECONDS} s after trimming")
    return clips, groups


def is_kept(group: str, clips: list[tuple[str, float]]) -> bool:
    """Whether a group has enough speech to be a speaker of the ``fotaq`` source on its own."""
    return group == "joe" or (len(clips) >= FOTAQ_MIN_CLIPS and sum(d for _, d in clips) >= FOTAQ_MIN_SECONDS)


def build_fotaq(root: Path, max_per: int | None) -> collections.Counter:
    """Write the kept FOTAQ speakers into ``root/fotaq_<group>/``; returns utterances per speaker."""
    data = QUEEN.read_bytes()
    clips, groups = fotaq_groups(data)
    log(f"[fotaq] candidate groups (J = Joe; P grouped by first {FOTAQ_PREFIX_LEN} chars of the name):")
    log(f"  {'group':>6} {'clips':>6} {'min':>6}  kept")
    keep = []
    for spk in sorted(groups, key=lambda s: (s != "joe", s)):
        n, secs = len(groups[spk]), sum(d for _, d in groups[spk])
        ok = is_kept(spk, groups[spk])
        log(f"  {spk:>6} {n:6d} {secs / 60:6.1f}  {'yes' if ok else ''}")
        if ok:
            keep.append(spk)

    stale = [f"fotaq_{g}" for g in SAME_ACTOR if (root / f"fotaq_{g}").is_dir()]
    if stale:
        log(f"[fotaq] warning: {', '.join(stale)} are now merged into their actor's group; remove those folders")
    counts: collections.Counter = collections.Counter()
    index = {e[0]: e for e in clips}
    for spk in keep:
        folder = root / f"fotaq_{spk}"
        for name, _dur in groups[spk][:max_per]:
            stem = name.rsplit(".", 1)[0]
            if not (folder / f"{stem}.wav").exists():
                _n, _b, off, size = index[name]
                write_utterance(folder, stem, *decode_clip(data[off : off + size]))
            counts[f"fotaq_{spk}"] += 1
        log(f"[fotaq] fotaq_{spk}: {counts[f'fotaq_{spk}']} utterances")
    return counts
