"""The Whisper content front-end: frozen states of one block of Whisper tiny.en's encoder, at the mel frame rate.

The encoder is our torch port (:mod:`vconv.audio.whisper`); its weights are converted once by
``vconv frontend prepare`` (:mod:`vconv.audio.pretrained`), and a bundle carries the encoder cut after
the block it reads. Whisper's 50 frames/s meet the mel's ``sample_rate / hop_length`` frames/s (62.5 at
hop 256) in one place, :func:`align_to_mel_frames`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from vconv.audio.pretrained import WHISPER_FILE
from vconv.audio.whisper import FRAME_RATE, SAMPLE_RATE, WhisperEncoder, WhisperEncoderConfig, WhisperLogMel
from vconv.errors import VconvError
from vconv.frontends.base import FrontEndPart, check_int, register_frontend

WHISPER_BLOCKS = WhisperEncoderConfig().layers  # tiny.en: 4


def align_to_mel_frames(states: torch.Tensor, frames: int, mel_frame_rate: float, offset: float = 0.0) -> torch.Tensor:
    """Whisper states ``[B, C, N]`` at 50 frames/s -> ``[B, C, frames]`` at ``mel_frame_rate`` frames/s.

    Mel frame ``k`` is centred at ``k / mel_frame_rate`` s and Whisper state ``j`` at ``j / 50`` s (its
    mel frames are centred STFT frames, the stride-2 conv keeps every other one), so frame ``k`` reads
    position ``k * 50 / mel_frame_rate``, linearly interpolated; past the last state it repeats it.
    ``offset``: the first mel frame's position in states when it is not state 0's (a stream's window on the
    20 ms grid, :mod:`vconv.audio.whisper_stream`; before state 0 it repeats state 0).
    """
    position = offset + torch.arange(frames, dtype=torch.float32, device=states.device) * (FRAME_RATE / mel_frame_rate)
    position = position.clamp(min=0, max=states.shape[-1] - 1)
    left = position.floor().long()
    right = (left + 1).clamp(max=states.shape[-1] - 1)
    weight = (position - left).to(states.dtype)
    return states[..., left] * (1 - weight) + states[..., right] * weight


@register_frontend
class WhisperContent(FrontEndPart):
    """Content path: Whisper tiny.en encoder states of block ``layer`` (1-4), ``[384, F]`` at the mel frame rate."""

    role = "content"
    kind = "whisper"
    weight_files = (WHISPER_FILE,)
    sample_rate = SAMPLE_RATE
    pretrained = "whisper-tiny.en"
    storage_dtype = torch.float16  # half the disk of float32; plenty of precision for frozen states

    def __init__(self, layer: int = WHISPER_BLOCKS) -> None:
        super().__init__()
        self.layer = check_int("layer", layer, 1, WHISPER_BLOCKS)
        self.encoder: WhisperEncoder | None = None
        self.log_mel = WhisperLogMel()

    def channels(self, n_mels: int) -> int:
        return WhisperEncoderConfig().width

    @property
    def feature_key(self) -> str:
        return f"whisper{self.layer}"

    def load_weights(self, folder: str | Path, config: Mapping[str, Any]) -> "WhisperContent":
        from vconv.audio.pretrained import load_whisper_encoder

        self.encoder = load_whisper_encoder(folder, dict(config)).requires_grad_(False)
        if self.encoder.config.layers < self.layer:
            raise VconvError(f"{folder}: the Whisper encoder there stops at block {self.encoder.config.layers}; "
                             f"this model reads block {self.layer}")
        return self

    def save_weights(self, folder: Path, dtype: torch.dtype) -> list[str]:
        from vconv.audio.pretrained import save_whisper_encoder

        encoder = self._encoder()
        # the converted weights are float16 to begin with (CTranslate2's model.bin): storing them wider
        # only doubles the bundle, so float16 unless an even narrower dtype is asked for
        stored = dtype if dtype in (torch.float16, torch.bfloat16) else torch.float16
        save_whisper_encoder(encoder.truncated(self.layer), folder / WHISPER_FILE, stored)
        return [WHISPER_FILE]

    @torch.no_grad()
    def compute(self, wav: np.ndarray, frontend: Any) -> torch.Tensor:
        """Mono ``[T]`` at 16 kHz -> encoder states ``[384, F]`` at the mel frame rate (``F = 1 + T // hop``)."""
        encoder = self._encoder()
        device = next(encoder.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).to(device)
        with torch.autocast(device.type, enabled=False):  # the log-mel in float32 even inside a stream's bfloat16
            log_mel = self.log_mel(x[None])
        states = encoder(log_mel, self.layer).transpose(1, 2)  # [1, C, N/2]
        frames = 1 + wav.shape[-1] // frontend.cfg.hop_length
        return align_to_mel_frames(states, frames, frontend.cfg.sample_rate / frontend.cfg.hop_length)[0]

    def window_states(self, frontend: Any) -> Callable[[np.ndarray, int, int], tuple[torch.Tensor, bool]]:
        """For one stream: ``(window [T], window_start, fresh) -> (states [384, F], reused)``, :meth:`compute`'s states
        of each of its consecutive windows with only the last ``fresh`` samples recomputed (0: all of it), attending
        over the whole window (:class:`vconv.audio.whisper_stream.WindowEncoder`); ``reused``: whether any states were
        kept from the window before."""
        from vconv.audio.whisper_stream import GRID, MIN_WINDOW, WindowEncoder

        encoder = WindowEncoder(self._encoder(), self.log_mel, self.layer)
        mel_frame_rate = frontend.cfg.sample_rate / frontend.cfg.hop_length

        def states(wav: np.ndarray, window_start: int, fresh: int) -> tuple[torch.Tensor, bool]:
            if wav.shape[-1] < MIN_WINDOW:  # (almost no context) read whole, as a file
                return self.compute(wav, frontend), False
            grid_states, first = encoder.states(wav, window_start, fresh)  # [N, C] from grid point `first`
            frames = 1 + wav.shape[-1] // frontend.cfg.hop_length
            aligned = align_to_mel_frames(grid_states.T[None], frames, mel_frame_rate, window_start / GRID - first)[0]
            return aligned, encoder.reused
        return states

    def describe(self, bundle: Path) -> str:
        size = _size(bundle / self.weight_files[0])
        return (f"frozen Whisper tiny.en encoder states of block {self.layer} "
                f"(`{self.weight_files[0]}`, {size}, converted by `vconv frontend prepare`)")

    def _encoder(self) -> WhisperEncoder:
        if self.encoder is None:
            raise VconvError("the Whisper content front-end has no encoder weights loaded "
                             "(train.frontends_dir or a bundle that carries them)")
        return self.encoder


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "missing"
