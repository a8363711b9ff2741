"""Flight of the Amazon Queen's minor actors: the conversation partners with too little speech to be a speaker alone.

The ``fotaq`` source keeps a conversation group (``??????P?.SB`` clips by talk number) only with >= 40 clips and
>= 2 min. Below that bar are ~37 more groups of 15-42 clips, ~45 min in all, and most of them are actors who also
voice a kept group (the game gives one actor several characters). This source keeps the *new* actors among them:

1. each group's voice is the mean Resemblyzer embedding of up to ``CLIPS_PER_GROUP`` of its clips (the criterion
   the ``fotaq`` source's ``SAME_ACTOR`` merges were made with);
2. the minor groups are clustered (average linkage, cosine) at ``SAME_ACTOR_SIMILARITY``: one cluster, one actor;
3. an actor is dropped when any of its groups is within ``GUARD_SIMILARITY`` of a held-out or validation voice of
   the recipe (here: talk groups 62 and 41 are fotaq_61's and fotaq_39's actors, at 0.985 and 0.972, so without
   this the judged voices would leak into training), or within ``SAME_ACTOR_SIMILARITY`` of a kept training
   group (that actor is a speaker already);
4. what is left with at least ``MIN_SECONDS_PER_ACTOR`` of speech becomes ``fotaq_m<first talk number>``.

The build prints every minor group's nearest voices and the fate of every cluster, so a wrong merge shows.
Counted as real voices. Needs the ``fotaq`` source's package and Resemblyzer (``vconv[eval]``).
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from corpus_common import clean, log, write_utterance
from corpus_fotaq import QUEEN, SAME_ACTOR, decode_clip, fotaq_groups, is_kept

MIN_CLIPS = 15  # a group below this is too little to tell its voice
CLIPS_PER_GROUP = 24  # clips embedded per group (its voice: their mean)
SAME_ACTOR_SIMILARITY = 0.95  # between-actor centroids reach 0.93-0.94 over this game's shared channel; same actor 0.97+
GUARD_SIMILARITY = 0.92  # stricter toward the judged voices: the recipe's same-actor criterion
MIN_SECONDS_PER_ACTOR = 60.0


def group_voices(data: bytes, index: dict[str, tuple[str, int, int, int]], groups: dict[str, list[tuple[str, float]]],
                 names: list[str]) -> np.ndarray:
    """Unit-norm mean Resemblyzer embedding ``[len(names), 256]`` of each group's first clips (``index``: clip name ->
    its table entry)."""
    from vconv.evaluation.speaker_judge import SpeakerJudge

    judge = SpeakerJudge()
    voices = []
    for group in names:
        embeddings = []
        for clip, _dur in groups[group][:CLIPS_PER_GROUP]:
            _n, _b, off, size = index[clip]
            embeddings.append(judge.embed_wav(clean(*decode_clip(data[off : off + size])), 16000))
        mean = np.mean(embeddings, axis=0)
        voices.append(mean / np.linalg.norm(mean))
    return np.stack(voices)


def actors_of(voices: np.ndarray) -> np.ndarray:
    """Cluster labels ``[N]`` of unit-norm group voices ``[N, D]``: average linkage cut at the same-actor similarity."""
    if len(voices) == 1:
        return np.ones(1, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage

    return fcluster(linkage(voices, method="average", metric="cosine"), t=1 - SAME_ACTOR_SIMILARITY, criterion="distance")


def why_dropped(members: list[str], voices: dict[str, np.ndarray], judged: list[str], training: list[str],
                seconds: float) -> str | None:
    """Why the actor of the minor groups ``members`` is not written (None: it is a new voice to keep). ``voices``
    holds every group's unit-norm voice; ``judged`` and ``training`` are kept groups (held-out or validation, and
    training speakers)."""
    def nearest(others: list[str]) -> tuple[float, str]:
        return max(((float(voices[m] @ voices[g]), g) for m in members for g in others), default=(0.0, "-"))

    (to_judged, judged_group), (to_training, training_group) = nearest(judged), nearest(training)
    if to_judged >= GUARD_SIMILARITY:
        return f"dropped: the actor of judged fotaq_{judged_group} ({to_judged:.3f})"
    if to_training >= SAME_ACTOR_SIMILARITY:
        return f"dropped: already training speaker fotaq_{training_group} ({to_training:.3f})"
    if seconds < MIN_SECONDS_PER_ACTOR:
        return f"dropped: {seconds:.0f} s of speech"
    return None


def build_fotaq_minor(root: Path, max_per: int | None, judged: set[str]) -> collections.Counter:
    """Write the new minor actors into ``root/fotaq_m<NN>/``; ``judged`` names the recipe's held-out and validation
    speakers (``fotaq_NN``), whose actors are never written. Returns utterances per speaker."""
    data = QUEEN.read_bytes()
    clips, groups = fotaq_groups(data)
    groups = {g: items for g, items in groups.items() if g not in SAME_ACTOR}  # merged groups are in their actor's
    kept = sorted(g for g in groups if is_kept(g, groups[g]))
    minor = sorted(g for g in groups if not is_kept(g, groups[g]) and len(groups[g]) >= MIN_CLIPS)
    guarded = [g for g in kept if f"fotaq_{g}" in judged]
    training = [g for g in kept if g not in guarded]
    index = {e[0]: e for e in clips}
    voices = dict(zip(kept + minor, group_voices(data, index, groups, kept + minor)))
    actors: dict[int, list[str]] = {}  # cluster -> its groups, in the order of each cluster's first group
    for group, label in zip(minor, actors_of(np.stack([voices[g] for g in minor]))):
        actors.setdefault(int(label), []).append(group)
    log(f"[fotaq-minor] {len(minor)} groups of {MIN_CLIPS}+ clips below the fotaq bar; {len(actors)} actors at "
        f"similarity {SAME_ACTOR_SIMILARITY}; judged voices guarded: {', '.join(guarded) or 'none'}")
    counts: collections.Counter = collections.Counter()
    for members in actors.values():
        seconds = sum(d for m in members for _, d in groups[m])
        reason = why_dropped(members, voices, guarded, training, seconds)
        if reason is None:
            speaker = f"fotaq_m{members[0]}"
            for group in members:
                for name, _dur in groups[group]:
                    if max_per is not None and counts[speaker] >= max_per:
                        break
                    stem = name.rsplit(".", 1)[0]
                    if not (root / speaker / f"{stem}.wav").exists():
                        _n, _b, off, size = index[name]
                        write_utterance(root / speaker, stem, *decode_clip(data[off : off + size]))
                    counts[speaker] += 1
        log(f"  groups {'+'.join(members):14s} {seconds / 60:5.1f} min: "
            + (reason or f"kept as fotaq_m{members[0]}, {counts[f'fotaq_m{members[0]}']} utterances"))
    return counts
