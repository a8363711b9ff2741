"""Training batches: random fixed-length mel segments, with the speaker path fed from elsewhere.

For every item the content path gets a random ``segment_frames`` window of an utterance, and the
speaker path a window of a *different* utterance of the same speaker (or, for a speaker with a single
utterance, the other half of the same one), so the decoder cannot copy content through the speaker
embedding (AGAIN-VC).

Batches are a pure function of ``(seed, rank, step)``: resuming at step ``s`` draws exactly the batches
an uninterrupted run would have drawn, with no sampler state to save, and each DDP rank draws its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch

from vconv.config import FeatureConfig
from vconv.data.manifest import Utterance, feature_path
from vconv.audio.frontend import FrontEnd
from vconv.data.feature_files import load_features
from vconv.audio.perturb import MelPerturber


@dataclass
class Batch:
    """Normalised log-mels ``[B, n_mels, T]`` and ``[B]`` speaker class ids.

    ``mel`` is the clean target, ``source`` what the content path sees (a timbre-perturbed copy of
    ``mel`` when perturbation is on, else ``mel`` itself), ``ref`` the speaker path's segment.
    """

    mel: torch.Tensor
    ref: torch.Tensor
    speaker: torch.Tensor
    source: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.mel.to(device), self.ref.to(device), self.speaker.to(device), self.source.to(device))


class FeatureStore:
    """Log-mels ``[n_mels, F]`` of a manifest, read from `vconv extract` output or computed from audio.

    Keeps up to ``cache_size`` utterances in memory (the fixture corpus and small corpora fit whole).
    """

    def __init__(self, utterances: Sequence[Utterance], cfg: FeatureConfig, features_dir: str | Path | None, cache_size: int = 100_000):
        self.utterances = list(utterances)
        self.cfg = cfg
        self.features_dir = Path(features_dir) if features_dir else None
        self._frontend: FrontEnd | None = None  # only when features are computed on the fly
        self.get = lru_cache(maxsize=cache_size)(self._load)

    def _load(self, index: int) -> torch.Tensor:
        utt = self.utterances[index]
        if self.features_dir is not None:
            return load_features(feature_path(self.features_dir, utt), self.cfg)
        if self._frontend is None:
            self._frontend = FrontEnd(self.cfg)
        return self._frontend.load_log_mel(utt.path)


class SegmentBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item ``step`` is the whole batch of that training step.

    Used with ``DataLoader(batch_size=None)`` so worker processes can prepare batches ahead while the
    result stays a deterministic function of the step.
    """

    def __init__(
        self,
        store: FeatureStore,
        speakers: Sequence[str],
        frontend: FrontEnd,
        *,
        batch_size: int,
        segment_frames: int,
        seed: int = 0,
        rank: int = 0,
        steps: int = 0,
        perturb: bool = False,
        speaker_sampling_power: float = 1.0,
    ):
        self.store = store
        self.perturber = MelPerturber(store.cfg) if perturb else None
        self.frontend = frontend  # normalises every segment (on the CPU, where batches are made)
        self.batch_size = batch_size
        self.segment_frames = segment_frames
        self.seed, self.rank, self.steps = seed, rank, steps
        self.speaker_index = {s: i for i, s in enumerate(speakers)}
        self.by_speaker: dict[str, list[int]] = {}
        for i, utt in enumerate(store.utterances):
            self.by_speaker.setdefault(utt.speaker, []).append(i)
        self.speaker_sampling_power = speaker_sampling_power
        self._speaker_order = sorted(self.by_speaker)
        sizes = torch.tensor([len(self.by_speaker[s]) for s in self._speaker_order], dtype=torch.float64)
        self.speaker_probs = sizes.pow(speaker_sampling_power) / sizes.pow(speaker_sampling_power).sum()

    def _pick_utterances(self, gen: torch.Generator) -> list[int]:
        """``batch_size`` utterance indices: uniform over utterances (power 1) or speaker-tempered."""
        if self.speaker_sampling_power == 1.0:  # the original draw, so older runs resume bit-exactly
            return torch.randint(len(self.store.utterances), (self.batch_size,), generator=gen).tolist()
        speakers = torch.multinomial(self.speaker_probs, self.batch_size, replacement=True, generator=gen).tolist()
        picks = []
        for s in speakers:
            members = self.by_speaker[self._speaker_order[s]]
            picks.append(members[int(torch.randint(len(members), (1,), generator=gen))])
        return picks

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> Batch:
        gen = torch.Generator().manual_seed(hash((self.seed, self.rank, int(step))) & 0x7FFF_FFFF_FFFF)
        picks = self._pick_utterances(gen)
        mels, refs, labels, sources = [], [], [], []
        for index in picks:
            utt = self.store.utterances[index]
            mel = self.store.get(index)
            siblings = [j for j in self.by_speaker[utt.speaker] if j != index]
            if siblings:
                other = self.store.get(siblings[int(torch.randint(len(siblings), (1,), generator=gen))])
                content, ref = self._crop(mel, gen), self._crop(other, gen)
            else:  # a lone utterance: content from one half, speaker from the other
                half = mel.shape[1] // 2
                content, ref = self._crop(mel[:, :half], gen), self._crop(mel[:, half:], gen)
            mels.append(content)
            sources.append(self.perturber(content, gen) if self.perturber else content)
            refs.append(ref)
            labels.append(self.speaker_index.get(utt.speaker, -1))
        return Batch(
            self.frontend.normalize(torch.stack(mels)),
            self.frontend.normalize(torch.stack(refs)),
            torch.tensor(labels, dtype=torch.long),
            self.frontend.normalize(torch.stack(sources)),
        )

    def _crop(self, mel: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A random ``[n_mels, segment_frames]`` window; short utterances are padded with the log floor."""
        frames = mel.shape[1]
        if frames >= self.segment_frames:
            start = int(torch.randint(frames - self.segment_frames + 1, (1,), generator=gen))
            return mel[:, start : start + self.segment_frames]
        pad = torch.full((mel.shape[0], self.segment_frames - frames), float(torch.log(torch.tensor(self.store.cfg.log_floor))))
        return torch.cat([mel, pad], dim=1)
