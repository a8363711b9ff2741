"""A learned pitch tracker: our torch port of SwiftF0 (the ``swift-f0`` package's small CNN, MIT).

``SwiftPitchNet()(wav [B, T]) -> (f0 Hz [B, F], confidence [B, F])`` at 16 kHz, one frame per 256 samples,
frame ``k`` centred at sample ``k * 256``, ``F = 1 + T // 256`` (the log-mel's frame grid at hop 256).

What the network does (read from the package's ONNX graph, written here from that reading):

* three magnitude spectra of the same frames (Hann windows of 1024, 2048 and 512 samples, hop 256, centred,
  zero-padded), each mapped by a fixed sparse matrix onto the same 128 log-spaced bands and put on a log
  scale: an image ``[B, 3, 128 bands, F]``;
* a stem and six residual blocks of 12-channel convolutions whose kernels run along the bands with
  dilations 17, 27, 40 and 48 bands (the distances between a harmonic and its neighbours on a log axis),
  and a few frames along time (seven frames of context each way, 2,815 samples with the widest window);
* a pitch head scoring 95 log-spaced pitch classes from 46.9 Hz to 2093.8 Hz per frame; the pitch is the
  softmax-weighted log-frequency of the best class and its two neighbours within ``[fmin, fmax]``;
* a voicing head (the pitch head's features, max-pooled over bands, beside the image's mean level):
  ``confidence`` in [0, 1], a frame being voiced at 0.5 or more; 0 where the best class overall lies
  outside ``[fmin, fmax]``.

Why ours and not ``onnxruntime``: the tracker runs inside the torch graph with the rest of the conversion
(one thread pool, the stream's blocks, no extra runtime in the core install), and its weights travel in the
bundle. :func:`swift_state_from_onnx` converts the package's ``model.onnx`` (``vconv frontend prepare``); the
port reproduces the package's pitch within 1e-5 relative and its confidence within 1e-4 (tests/test_swift_pitch.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
HOP = 256
BANDS = 128  # log-spaced bands of the input image
PITCH_CLASSES = 95  # log-spaced pitch classes, LOWEST_HZ .. HIGHEST_HZ
LOWEST_HZ, HIGHEST_HZ = 46.875, 2093.75
CLASS_RATIO = (HIGHEST_HZ / LOWEST_HZ) ** (1 / (PITCH_CLASSES - 1))  # from one class to the next (x1.041)
WINDOWS = (1024, 2048, 512)  # the image's three channels, in this order
BAND_ENTRIES = {1024: 1032, 2048: 2036, 512: 539}  # nonzero entries of each spectrum's band matrix
SILENCE_PEAK = 1e-3  # a hop whose samples all stay below this is silence: unvoiced whatever the network says
CHANNELS = 12
# the residual blocks: (kernel along bands, kernel along frames, dilation along bands, along frames)
BLOCKS = ((7, 3, 1, 1), (7, 1, 17, 1), (5, 1, 27, 1), (3, 1, 40, 1), (3, 1, 48, 1), (7, 3, 2, 1))


def _conv(kernel: tuple[int, int], dilation: tuple[int, int], channels_in: int = CHANNELS) -> nn.Conv2d:
    """A same-size convolution over ``[bands, frames]``."""
    padding = (dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2)
    return nn.Conv2d(channels_in, CHANNELS, kernel, padding=padding, dilation=dilation)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))``, then ReLU: ``[B, 12, bands, F]`` -> the same."""

    def __init__(self, band_kernel: int, frame_kernel: int, band_dilation: int, frame_dilation: int) -> None:
        super().__init__()
        self.first = _conv((band_kernel, frame_kernel), (band_dilation, frame_dilation))
        self.second = _conv((band_kernel, frame_kernel), (band_dilation, frame_dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.second(F.relu(self.first(x))))


class SwiftPitchNet(nn.Module):
    """The SwiftF0 network (module docstring). Its weights come from :func:`swift_state_from_onnx`."""

    class_hz: torch.Tensor  # [95] each pitch class's frequency (a buffer)
    class_log_hz: torch.Tensor  # [95] its natural log, float64 (a buffer)

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv((3, 3), (1, 1), channels_in=len(WINDOWS))
        self.blocks = nn.Sequential(*(ResidualBlock(*spec) for spec in BLOCKS))
        self.pitch_features = nn.Conv2d(CHANNELS, 4, 3)  # padded by hand: one band below, none above
        self.pitch_logits = nn.Conv2d(4, 1, 1)
        self.voicing_features = nn.Conv2d(4, 4, (5, 1), padding=(2, 0))
        self.voicing_hidden = nn.Conv1d(5, 16, 3, padding=1)
        self.voicing_logit = nn.Conv1d(16, 1, 1)
        for window in WINDOWS:  # each spectrum's bins -> the 128 bands: a sparse matrix, stored as its entries
            self.register_buffer(f"bands{window}_index", torch.zeros(BAND_ENTRIES[window], dtype=torch.int64))
            self.register_buffer(f"bands{window}_weight", torch.zeros(BAND_ENTRIES[window]))
            self.register_buffer(f"hann{window}", torch.hann_window(window, periodic=True), persistent=False)
        self.register_buffer("class_hz", torch.zeros(PITCH_CLASSES))  # each pitch class's frequency
        self.register_buffer("class_log_hz", torch.zeros(PITCH_CLASSES, dtype=torch.float64))

    def band_matrix(self, window: int) -> torch.Tensor:
        """``[window // 2 + 1, 128]``: spectrum bin -> band weights (dense, built from the stored entries)."""
        bins = window // 2 + 1
        dense = torch.zeros(bins * BANDS, device=self.class_hz.device)
        dense[getattr(self, f"bands{window}_index")] = getattr(self, f"bands{window}_weight").float()
        return dense.view(bins, BANDS)

    def image(self, wav: torch.Tensor, frames: int) -> torch.Tensor:
        """``wav [B, T]`` -> the log band image ``[B, 3, 128, frames]`` (frame ``k`` centred at ``k * HOP``)."""
        channels = []
        for window in WINDOWS:
            padded = F.pad(wav, (window // 2, window // 2 + HOP))
            framed = padded.unfold(-1, window, HOP)[:, :frames]  # [B, frames, window]
            magnitude = torch.fft.rfft(framed * getattr(self, f"hann{window}"), dim=-1).abs()
            channels.append(torch.log(magnitude @ self.band_matrix(window) + 1e-8).transpose(1, 2))
        return torch.stack(channels, 1)

    def forward(self, wav: torch.Tensor, fmin: float = 50.0, fmax: float = 550.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [B, T]`` at 16 kHz -> ``(f0 Hz [B, F], confidence [B, F])``, ``F = 1 + T // HOP``."""
        frames = 1 + wav.shape[-1] // HOP
        image = self.image(wav.float(), frames)
        hidden = self.blocks(F.relu(self.stem(image)))[:, :, : PITCH_CLASSES + 1]
        features = F.relu(self.pitch_features(F.pad(hidden, (1, 1, 1, 0))))  # [B, 4, 95, F]
        logits = self.pitch_logits(features)[:, 0].transpose(1, 2)  # [B, F, 95]
        pooled = self.voicing_features(features).amax(2)  # [B, 4, F]
        level = image.mean(dim=(1, 2))[:, None]  # [B, 1, F]
        voicing = self.voicing_logit(F.relu(self.voicing_hidden(torch.cat([pooled, level], 1))))[:, 0]
        in_range = (self.class_hz >= fmin) & (self.class_hz <= fmax)
        f0 = self._decode(logits.masked_fill(~in_range, float("-inf")))
        confidence = torch.where(in_range[logits.argmax(-1)], torch.sigmoid(voicing), torch.zeros_like(voicing))
        return f0.float(), confidence * ~self._silent(wav, frames)

    def _decode(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, F, 95]`` (classes outside the range at -inf) -> Hz ``[B, F]``: the best class and its two
        neighbours, their log-frequencies weighted by a softmax of their scores (in float64, as the package)."""
        best = logits.argmax(-1, keepdim=True)
        neighbours = best + torch.tensor([-1, 0, 1], device=logits.device)
        scores = F.pad(logits, (1, 1), value=float("-inf")).gather(-1, neighbours + 1)
        weights = torch.softmax(scores.double(), -1)
        return torch.exp((weights * self.class_log_hz.double()[neighbours.clamp(0, PITCH_CLASSES - 1)]).sum(-1))

    @staticmethod
    def _silent(wav: torch.Tensor, frames: int) -> torch.Tensor:
        """``[B, F]``: frames whose hop (samples ``k * HOP`` .. ``(k + 1) * HOP``) peaks below :data:`SILENCE_PEAK`:
        on digital silence the network answers with random voiced frames."""
        padded = F.pad(wav.abs(), (0, frames * HOP - wav.shape[-1] + HOP))
        return padded[:, : frames * HOP].view(wav.shape[0], frames, HOP).amax(-1) < SILENCE_PEAK


# ------------------------------------------------------------------------------------- weight conversion

ONNX_SHA256 = "6385e8c2ebc3872e82c9ff5946228de44cd3be77a750ea53698b7dbfe94b0a22"  # swift-f0 0.3.0's model.onnx
# our parameter -> the initializer of that file holding it (the exporter's names, stable for the pinned file)
_ONNX_NAMES = {
    "stem": "v353 v354", "blocks.0.first": "v357 v358", "blocks.0.second": "v361 v362",
    "blocks.1.first": "v366 v367", "blocks.1.second": "v370 v371", "blocks.2.first": "v375 v376",
    "blocks.2.second": "v379 v380", "blocks.3.first": "v384 v385", "blocks.3.second": "v388 v389",
    "blocks.4.first": "v393 v394", "blocks.4.second": "v397 v398", "blocks.5.first": "v402 v403",
    "blocks.5.second": "v406 v407", "pitch_features": "v413 v414", "pitch_logits": "v425 v426",
    "voicing_features": "v417 v418", "voicing_hidden": "v430 v431", "voicing_logit": "v434 v435",
}
_ONNX_BANDS = {1024: "v123 v124", 2048: "v241 v242", 512: "v342 v343"}  # (flat index, weight) of each matrix


def swift_state_from_onnx(initializers: dict) -> dict[str, torch.Tensor]:
    """The pinned ``model.onnx``'s initializers (:func:`vconv.audio.onnx_weights.read_onnx_initializers`) ->
    a :class:`SwiftPitchNet` state dict."""
    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(initializers[name])

    state: dict[str, torch.Tensor] = {}
    for module, names in _ONNX_NAMES.items():
        weight, bias = names.split()
        state[f"{module}.weight"], state[f"{module}.bias"] = tensor(weight).float(), tensor(bias).float()
    for window, names in _ONNX_BANDS.items():
        index, weight = names.split()
        state[f"bands{window}_index"], state[f"bands{window}_weight"] = tensor(index).long(), tensor(weight).float()
    state["class_hz"], state["class_log_hz"] = tensor("v438").float(), tensor("v455").double()
    return state
