"""Which voice each utterance of a corpus gets: the manifest line's own target, one target for all, a voice per source
speaker from a pool, or (anonymisation) a pseudo-voice per source speaker mixed from the pool's voices farthest from
the speaker's own.

A pseudo-voice is a seeded convex mix of :data:`MIX` pool voices (their speaker embeddings, spectrum statistics and pitch
registers, weighted alike), drawn from the half of the pool least like the speaker (by the model's own speaker
encoder, on the speaker's first utterance): the same speaker always gets the same voice under one seed, different
speakers different ones, and no one is given a voice close to their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vconv.audio.rooms import stable_seed
from vconv.errors import VconvError

MIX = 3  # pool voices per pseudo-voice


@dataclass(frozen=True)
class TargetPolicy:
    """How an item without a target of its own gets one: ``default`` (references for every item), else a voice of
    ``pool`` per source speaker: assigned by ``seed`` (``anonymise`` false), or a pseudo-voice (``anonymise``).
    ``first_utterance``: each speaker's first source (what the speaker's own voice is measured on)."""

    default: tuple[str, ...] = ()
    pool: tuple[str, ...] = ()
    seed: int = 0
    anonymise: bool = False
    first_utterance: dict[str, str] = field(default_factory=dict)

    def check(self) -> "TargetPolicy":
        if self.anonymise and len(self.pool) < 2:
            raise VconvError("--anonymise mixes voices of --targets: give a file of at least 2 voices")
        return self

    def files(self, speaker: str, own: Sequence[str]) -> tuple[str, ...]:
        """The files an item's output depends on: its own target, the default, the pool voice it is assigned, or
        (anonymised) the whole pool and the speaker's first utterance."""
        if own:
            return tuple(own)
        if self.default:
            return self.default
        if not self.pool:
            raise VconvError("no target for this utterance: give --target, --targets, or a target in the manifest line")
        if self.anonymise:
            return (*self.pool, self.first_utterance[speaker])
        return (self.pool[stable_seed(self.seed, speaker, bits=63) % len(self.pool)],)

    def describe(self) -> str:
        """What the settings part of an item's key says of the policy."""
        return f"anonymise={self.anonymise},seed={self.seed}"


def read_voice_list(path: str | Path) -> tuple[str, ...]:
    """The references or voice files of ``--targets FILE`` (one per line, relative to the file; # comments)."""
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: voice list not found (one reference or voice file per line)")
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    voices = tuple(str(p if Path(p).is_absolute() else (path.parent / p).resolve()) for p in lines if p)
    missing = [v for v in voices if not Path(v).is_file()]
    if not voices or missing:
        raise VconvError(f"{path}: {'no voices listed' if not voices else 'missing ' + ', '.join(missing[:3])}")
    return voices


def pseudo_voice(converter: Any, pool: Sequence[Any], own_embedding: Any, seed: int, speaker: str) -> tuple[Any, list[int]]:
    """The speaker's pseudo-voice (a :class:`~vconv.inference.target.TargetVoice`): :data:`MIX` of the ``pool`` voices
    (prepared TargetVoices) drawn from the half least like ``own_embedding`` ``[1, S]``, mixed with seeded weights;
    and the indices into ``pool`` of the voices mixed, heaviest first."""
    import torch

    from vconv.inference.target import TargetVoice
    from vconv.inference.target_match import SpectrumStats
    from vconv.models.contour import Register

    embeddings = torch.cat([v.embedding for v in pool]).float()
    likeness = torch.nn.functional.cosine_similarity(embeddings, own_embedding.float().expand_as(embeddings)).tolist()
    far = sorted(range(len(pool)), key=lambda i: likeness[i])[: max(2, len(pool) // 2)]
    rng = np.random.default_rng(stable_seed(seed, speaker, bits=63))
    chosen = rng.choice(far, size=min(MIX, len(far)), replace=False).tolist()
    weights = rng.dirichlet(np.ones(len(chosen))).tolist()
    voices = [pool[i] for i in chosen]
    mix = lambda values: sum(w * v for w, v in zip(weights, values))  # noqa: E731
    voiced = [v.spectrum.voiced_bands for v in voices if v.spectrum.voiced_bands is not None]
    spectrum = SpectrumStats(mix([v.spectrum.mean for v in voices]), mix([v.spectrum.std for v in voices]),
                             min(v.spectrum.frames for v in voices),  # a band is the mix's voice where it is every voice's
                             torch.stack(voiced).all(0) if len(voiced) == len(voices) else None)
    registers = [v.register for v in voices if v.register is not None]
    register = Register(mix([r.mean for r in registers]), mix([r.spread for r in registers]),
                        min(r.frames for r in registers)) if len(registers) == len(voices) else None
    fundamentals = [v.h1_h2 for v in voices if v.h1_h2 is not None]
    h1_h2 = mix(fundamentals) if len(fundamentals) == len(voices) else None
    voice = TargetVoice(embedding=mix([v.embedding for v in voices]), spectrum=spectrum, primer=voices[0].primer,
                        register=register, h1_h2=h1_h2)
    return voice, [i for _, i in sorted(zip(weights, chosen), reverse=True)]
