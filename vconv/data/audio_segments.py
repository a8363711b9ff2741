"""The vocoder's training batches: random fixed-length windows of the manifest's audio.

Each step draws ``batch_size`` windows of ``segment_samples`` samples (loaded at the FeatureConfig's
rate, kept in an LRU cache); the trainer computes their log-mel with the model's front-end. Batches
are a pure function of ``(seed, rank, step)``, so a resumed run draws what an uninterrupted one would have.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch

from vconv.audio.io import load, resample
from vconv.config import FeatureConfig
from vconv.data.manifest import Utterance
from vconv.errors import VconvError


class AudioSegments(torch.utils.data.Dataset):
    """Map-style dataset whose item ``step`` is that step's batch of waveforms ``[B, segment_samples]``.

    Utterances shorter than a segment are zero-padded at the end. With ``speed_perturb = r > 0``, each
    segment is, with probability ``speed_probability``, cut ``speed`` times longer from its utterance and
    resampled (soxr) to ``segment_samples``: played ``speed`` times faster, ``speed`` log-uniform in
    ``[1/(1+r), 1+r]``.
    """

    def __init__(self, utterances: Sequence[Utterance], cfg: FeatureConfig, *, batch_size: int, segment_samples: int,
                 seed: int = 0, rank: int = 0, steps: int = 0, cache_size: int = 2048,
                 speed_perturb: float = 0.0, speed_probability: float = 0.5):
        if segment_samples % cfg.hop_length:
            raise VconvError(f"train.segment_samples {segment_samples} must be a multiple of hop_length {cfg.hop_length}")
        self.utterances = list(utterances)
        self.cfg = cfg
        self.batch_size, self.segment_samples = batch_size, segment_samples
        self.seed, self.rank, self.steps = seed, rank, steps
        self.speed_perturb, self.speed_probability = speed_perturb, speed_probability
        self.wave = lru_cache(maxsize=cache_size)(self._load)

    def _load(self, index: int) -> torch.Tensor:
        wav, _ = load(self.utterances[index].path, self.cfg.sample_rate, allow_silent=True)
        return torch.from_numpy(wav)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(hash((self.seed, self.rank, int(step))) & 0x7FFF_FFFF_FFFF)
        picks = torch.randint(len(self.utterances), (self.batch_size,), generator=gen).tolist()
        n = self.segment_samples
        out = torch.zeros(self.batch_size, n)
        for row, index in enumerate(picks):
            wav = self.wave(index)
            speed = self._draw_speed(gen)
            span = math.ceil(n * speed)  # source samples that become n samples at this speed
            start = int(torch.randint(wav.numel() - span + 1, (1,), generator=gen)) if wav.numel() > span else 0
            piece = wav[start : start + span]
            if speed != 1.0:
                piece = torch.from_numpy(resample(piece.numpy(), self.cfg.sample_rate * speed, self.cfg.sample_rate))[:n]
            out[row, : piece.numel()] = piece
        return out

    def _draw_speed(self, gen: torch.Generator) -> float:
        """1.0, or a log-uniform factor in [1/(1+r), 1+r] with probability ``speed_probability``.

        Nothing is drawn when perturbation is off, so such runs keep their exact batches."""
        if self.speed_perturb <= 0:
            return 1.0
        coin, u = torch.rand(2, generator=gen).tolist()
        if coin >= self.speed_probability:
            return 1.0
        return math.exp((2 * u - 1) * math.log1p(self.speed_perturb))
