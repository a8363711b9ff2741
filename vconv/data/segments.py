"""Training batches: random fixed-length segments, with the speaker path fed from elsewhere.

For every item the content path gets a random ``segment_frames`` window of an utterance (its
normalised log-mel, or its Whisper states over the same frames), the decoder's target is that window's
log-mel, and the speaker path reads a window of a *different* utterance of the same speaker (for a speaker
with a single utterance, the other half of the same one) - so the decoder cannot copy content through the speaker embedding (AGAIN-VC).

Batches are a pure function of ``(seed, rank, step)``: resuming at step ``s`` draws exactly the batches
an uninterrupted run would have drawn, with no sampler state to save, and each DDP rank draws its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch

from vconv.audio.frontend import FrontEnd
from vconv.audio.perturb import MelPerturber
from vconv.config import FeatureConfig
from vconv.data.extract import ROOM_SUFFIX, Extractor, ExtractSpec
from vconv.data.feature_files import check_part_versions, load_feature_tensors
from vconv.data.manifest import Utterance, feature_path
from vconv.frontends import FrontEndPart


@dataclass
class Batch:
    """One training step's batch: ``[B, C, T]`` tensors and ``[B]`` speaker class ids.

    ``mel`` is the clean target (normalised log-mel ``[B, n_mels, T]``); ``content`` the clean features of
    the content path (the same mel, or Whisper states ``[B, 384, T]``); ``source`` what it is trained on
    (for a mel: ``content`` timbre-perturbed when perturbation is on; for Whisper states: ``content`` itself);
    ``ref`` the speaker path's input (a normalised mel segment ``[B, n_mels, T]``); ``speaker`` the class id of the
    voice (the adversary's label); ``pitch`` the pitch tracker's rows on the same frames as ``mel`` (``[B, 3, T]``: log-F0, voiced, periodicity;
    :mod:`vconv.frontends.pitch`), or None when the model has no pitch path.
    """

    mel: torch.Tensor
    ref: torch.Tensor
    speaker: torch.Tensor
    source: torch.Tensor
    content: torch.Tensor
    pitch: torch.Tensor | None = None

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.mel.to(device), self.ref.to(device), self.speaker.to(device), self.source.to(device),
                     self.content.to(device), self.pitch.to(device) if self.pitch is not None else None)


class FeatureStore:
    """The feature tensors of a manifest (``spec.keys``: mel, Whisper states, pitch rows), from `vconv extract`
    output or computed from the audio; ``get(i)`` is the log-mel ``[n_mels, F]``, ``tensors(i)`` all of them
    as stored (Whisper states in float16). Keeps up to ``cache_size`` utterances in memory.
    """

    def __init__(self, utterances: Sequence[Utterance], spec: ExtractSpec, features_dir: str | Path | None,
                 cache_size: int = 100_000):
        self.utterances = list(utterances)
        self.spec = spec
        self.cfg = FeatureConfig.from_dict(spec.features)
        self.features_dir = Path(features_dir) if features_dir else None
        self._extractor: Extractor | None = None  # only when features are computed on the fly
        # what each item reads, and the parts' output versions: built from the spec's parts once, not per item
        self.keys, self.versions = spec.keys, spec.versions
        if self.features_dir is not None:  # an older tracker's rows fail now, in one line, not when first drawn
            check_part_versions([feature_path(self.features_dir, utt) for utt in self.utterances], self.versions)
        self.tensors = lru_cache(maxsize=cache_size)(self._load)

    def get(self, index: int) -> torch.Tensor:
        return self.tensors(index)["mel"]

    def _load(self, index: int) -> dict[str, torch.Tensor]:
        utt = self.utterances[index]
        if self.features_dir is not None:
            return load_feature_tensors(feature_path(self.features_dir, utt), self.cfg, self.keys, self.versions)
        if self._extractor is None:
            self._extractor = self.spec.extractor()
        mel, extra = self._extractor.compute(utt.path, key=utt.id)
        return {"mel": mel, **extra}


class SegmentBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item ``step`` is the whole batch of that training step.

    Used with ``DataLoader(batch_size=None)`` so worker processes can prepare batches ahead while the
    result stays a deterministic function of the step. ``content`` / ``speaker`` are the model's front-end
    parts (:mod:`vconv.frontends`; None: the log-mel): the two paths read the store's tensors under their
    feature keys. A log-mel path is normalised (and, on the content side, timbre-perturbed); another part's
    output is read as stored, cropped like the mel when it is a sequence, whole when it is one vector.
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
        content: FrontEndPart | None = None,
        speaker: FrontEndPart | None = None,
        pitch: FrontEndPart | None = None,
        room_probability: float = 0.0,
    ):
        self.store = store
        self.content_is_mel = content is None or content.is_log_mel
        self.content_key = "mel" if content is None else content.feature_key
        self.speaker_is_mel = speaker is None or speaker.is_log_mel
        self.speaker_key = "mel" if speaker is None else speaker.feature_key
        self.pitch_key = pitch.feature_key if pitch is not None else None  # the tracker's rows, cropped like the mel
        # timbre perturbation works on mels; a pretrained part's output is precomputed from the clean audio
        self.perturber = MelPerturber(store.cfg) if perturb and self.content_is_mel else None
        # with this probability an item's content, speaker and pitch paths read the recordings in their simulated rooms
        # (the ROOM_SUFFIX tensors, vconv.audio.rooms) while the decoder's target stays the clean mel
        self.room_probability = room_probability
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
        self.log_floor = float(torch.log(torch.tensor(store.cfg.log_floor)))

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
        items = [self._item(index, gen) for index in self._pick_utterances(gen)]
        mels, contents, refs, labels, sources, pitches = (list(column) for column in zip(*items))
        mel = self.frontend.normalize(torch.stack(mels))
        if self.content_is_mel:
            content, source = mel, self.frontend.normalize(torch.stack(sources))
        else:
            content = source = torch.stack(contents)
        ref = self.frontend.normalize(torch.stack(refs)) if self.speaker_is_mel else torch.stack(refs)
        pitch = torch.stack(pitches) if self.pitch_key is not None else None
        return Batch(mel, ref, torch.tensor(labels, dtype=torch.long), source, content, pitch)

    def _item(self, index: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, int,
                                                                torch.Tensor | None, torch.Tensor | None]:
        """One batch item of utterance ``index``: ``(mel window, content window or None for a mel content path, speaker
        input, speaker class, source window or None, pitch window or None)``, unnormalised."""
        utt = self.store.utterances[index]
        tensors = self.store.tensors(index)
        frames = tensors["mel"].shape[1]
        siblings = [j for j in self.by_speaker[utt.speaker] if j != index]
        if siblings:
            other = self.store.tensors(siblings[int(torch.randint(len(siblings), (1,), generator=gen))])
            span = frames
        else:  # a lone utterance: content from one half, speaker from the other
            other, span = {**tensors, "mel": tensors["mel"][:, frames // 2 :]}, frames // 2
        start = self._start(span, gen)
        mel = self._crop(tensors["mel"][:, :span], start, self.log_floor)
        # drawn only when rooms are on, so runs without them keep their batches
        heard = _in_room if self.room_probability and float(torch.rand(1, generator=gen)) < self.room_probability else dict
        tensors = heard(tensors)
        pitch = self._crop_pitch(tensors[self.pitch_key][:, :span].float(), start) if self.pitch_key is not None else None
        ref = self._reference(heard(other), gen)
        content = source = None
        if self.content_is_mel:
            read = self._crop(tensors["mel"][:, :span], start, self.log_floor)
            source = self.perturber(read, gen) if self.perturber else read
        else:
            content = self._crop(tensors[self.content_key][:, :span].float(), start, 0.0)
        return mel, content, ref, self.speaker_index.get(utt.speaker, -1), source, pitch

    def _crop_pitch(self, rows: torch.Tensor, start: int) -> torch.Tensor:
        """The pitch rows ``[3, segment_frames]`` from ``start``; past a short utterance's end (padded with silence in
        the mel) the contour holds its last value and the frames are unvoiced and aperiodic."""
        window = rows[:, start : start + self.segment_frames]
        missing = self.segment_frames - window.shape[1]
        if missing <= 0:
            return window
        pad = window[:, -1:].repeat(1, missing)
        pad[1:] = 0.0
        return torch.cat([window, pad], dim=1)

    def _reference(self, other: dict[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        """What the speaker path reads of utterance ``other``: a random window ``[C, segment_frames]``."""
        x = other[self.speaker_key].float() if not self.speaker_is_mel else other["mel"]
        return self._crop(x, self._start(x.shape[1], gen), self.log_floor if self.speaker_is_mel else 0.0)

    def _start(self, frames: int, gen: torch.Generator) -> int:
        """A random window start in an utterance of ``frames`` frames (0 when it is shorter than a window)."""
        if frames >= self.segment_frames:
            return int(torch.randint(frames - self.segment_frames + 1, (1,), generator=gen))
        return 0

    def _crop(self, x: torch.Tensor, start: int, pad_value: float) -> torch.Tensor:
        """``[C, segment_frames]`` from ``start``; a short utterance is padded with ``pad_value``."""
        window = x[:, start : start + self.segment_frames]
        if window.shape[1] == self.segment_frames:
            return window
        pad = torch.full((x.shape[0], self.segment_frames - window.shape[1]), pad_value, dtype=x.dtype)
        return torch.cat([window, pad], dim=1)


def _in_room(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An utterance's tensors as the paths read it in its simulated room: each key that has a room variant
    (``key + ROOM_SUFFIX``) takes it; a lone utterance's cut mel (the speaker's other half) is cut the same way."""
    heard = dict(tensors)
    for key, value in tensors.items():
        room = tensors.get(key + ROOM_SUFFIX)
        if room is not None and not key.endswith(ROOM_SUFFIX):
            heard[key] = room[:, room.shape[1] - value.shape[1] :] if key == "mel" and room.shape[1] != value.shape[1] else room
    return heard
