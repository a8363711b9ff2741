"""Twins: utterances that are one recording in several voices, frame for frame.

A pitch/formant-warped copy of an utterance (WORLD resynthesis keeps the timing) says the same words on
the same frames in another voice. Training can then feed the content path the *twin's* features while
the decoder rebuilds the original's mel with the original's speaker embedding: whatever of the voice
the content features still carry (pitch register, formants) now points to the wrong speaker, so the
decoder learns to take the voice from the speaker path. This is the information perturbation of
NANSY / FreeVC, done once with the corpus instead of per step, which is what precomputed Whisper
states need (the mel path perturbs on the fly, ``vconv.audio.perturb``).

File format (JSON): ``{"groups": [["spk/u1", "aug_spk_p140_f112/u1", ...], ...]}``, each group the
manifest ids of one recording's versions. Ids missing from the manifest (a held-out or filtered
voice) are ignored; a group with fewer than two ids left has no effect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from vconv.data.manifest import Utterance
from vconv.errors import VconvError
from vconv.fileio import read_text


def load_twin_groups(path: str | Path) -> list[list[str]]:
    """The groups of a twins file (see the module docstring); a malformed file is a clear error."""
    try:
        data = json.loads(read_text(Path(path), "twins file"))
    except json.JSONDecodeError as exc:
        raise VconvError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, list) and all(isinstance(i, str) for i in g) for g in groups):
        raise VconvError(f'{path}: expected {{"groups": [[id, id, ...], ...]}} with manifest ids as strings')
    return groups


def twin_index(groups: Sequence[Sequence[str]], utterances: Sequence[Utterance]) -> dict[int, list[int]]:
    """Utterance index -> the indices of its twins in ``utterances`` (only utterances that have some)."""
    position = {utt.id: i for i, utt in enumerate(utterances)}
    twins: dict[int, list[int]] = {}
    for group in groups:
        present = sorted({position[i] for i in group if i in position})
        if len(present) < 2:
            continue
        for index in present:
            twins.setdefault(index, []).extend(j for j in present if j != index)
    return twins
