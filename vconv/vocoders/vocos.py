"""A Vocos-style neural vocoder: ConvNeXt backbone at frame rate + inverse-STFT head.

Ideas after Siuzdenko, "Vocos: Closing the gap between time-domain and Fourier-based neural vocoders"
(2023); own implementation.

Why this architecture (and not a HiFi-GAN-class generator): the target is >= 50x real time on a
2-core CPU. A HiFi-GAN generator upsamples 256x with transposed convolutions and runs most of its
convolutions at *sample* rate (16 000 steps per second of audio). Vocos never leaves the *frame* rate
(62.5 frames/s at hop 256): every layer works on ``F`` frames, and the last layer predicts the complex
STFT (log-magnitude and phase of ``n_fft/2+1`` bins) that one ``torch.istft`` turns into samples. So the
compute per second of audio is ~256x smaller for the same width, the work is dense matrix products
(pointwise MLPs) that run well on a CPU, and the inverse STFT is an FFT. Because the vocoder predicts
the same STFT that :class:`~vconv.audio.logmel.LogMel` analyses (same ``n_fft``/hop/win, Hann window,
centred), the output length follows the vocoder protocol exactly: ``F`` frames -> ``(F - 1) * hop``.

Shapes::

    log_mel [B, n_mels, F] -> embed conv (k=7) -> LayerNorm -> N x ConvNeXtBlock -> LayerNorm
        -> Linear(dim, n_fft + 2) -> log|S| [B, n_fft/2+1, F], phase [B, n_fft/2+1, F]
        -> S = exp(log|S|) * e^{i phase} -> istft -> wav [B, (F - 1) * hop]           (training)
        -> (inference) fast Griffin-Lim from (|S|, phase) -> mel-envelope matching -> wav [B, (F - 1) * hop]

At inference two steps without weights make the predicted STFT agree with itself and with the input:
a few fast Griffin-Lim iterations (:class:`~vconv.vocoders.griffinlim.GriffinLim`) keep the predicted
magnitude and start from the predicted phase, so frames that disagree no longer beat at the frame rate;
then mel-envelope matching (:mod:`vconv.vocoders.envelope`) re-analyses the output and corrects each
band's level towards the input mel, which restores the low-band energy that disagreeing phases cancel
in the overlap-add. Both were measured on held-out voices (recipes/voices/MODEL_HISTORY.md).

The input is the natural-log mel exactly as LogMel makes it (un-normalised); a fixed affine
``(log_mel - input_mean) / input_scale`` only brings it near zero mean / unit scale for the first conv.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, cast

import torch
import torch.nn.functional as F
from torch import nn

from vconv.config import FeatureConfig, VocoderConfig
from vconv.errors import VconvError
from vconv.vocoders.base import Vocoder, register_vocoder
from vconv.vocoders.envelope import MelEnvelopeMatch
from vconv.vocoders.griffinlim import GriffinLim

__all__ = ["VocoderConfig", "VocosVocoder", "ConvNeXtBlock", "save_vocoder", "load_vocoder",
           "VOCODER_WEIGHTS", "VOCODER_CONFIG"]

VOCODER_WEIGHTS = "vocoder.safetensors"
VOCODER_CONFIG = "vocoder.json"
VOCODER_FORMAT = "vconv-vocoder"
VOCODER_FORMAT_VERSION = 2  # 2 added the inference-time post-processing settings; 1 still loads (defaults)
READABLE_FORMAT_VERSIONS = (1, 2)


class ConvNeXtBlock(nn.Module):
    """``[B, C, F] -> [B, C, F]``: depthwise conv (k=7) -> LayerNorm -> Linear(C, 3C) -> GELU -> Linear(3C, C),
    scaled by a learned per-channel layer scale, plus the residual."""

    def __init__(self, dim: int, intermediate: int, kernel_size: int = 7, layer_scale: float = 0.125):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate)
        self.pw2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)  # [B, F, C]: LayerNorm and the MLP act on channels
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class VocosVocoder(Vocoder):
    """Log-mel ``[B, n_mels, F]`` -> waveform ``[B, (F - 1) * hop_length]`` (see the module docstring)."""

    name = "vocos"
    mixed_precision = True  # the backbone under autocast; spectrum() returns float32 and the passes stay float32
    post_processing = True  # prematch, phase-consistency and envelope passes (VocoderConfig)

    def __init__(self, feature_config: FeatureConfig, config: VocoderConfig | None = None):
        super().__init__(feature_config)
        self.config = config = config or VocoderConfig()
        fc = feature_config
        self.n_freq = fc.n_fft // 2 + 1
        self.embed = nn.Conv1d(fc.n_mels, config.dim, config.kernel_size, padding=config.kernel_size // 2)
        self.embed_norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(config.dim, config.intermediate, config.kernel_size, config.layer_scale)
            for _ in range(config.blocks)
        )
        self.final_norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.head = nn.Linear(config.dim, 2 * self.n_freq)
        # inference-time post-processing; neither has weights (buffers only, not in the state dict)
        self.envelope = MelEnvelopeMatch(fc)
        self.phase_projection = GriffinLim(fc)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def extra_repr(self) -> str:
        c = self.config
        return f"dim={c.dim}, intermediate={c.intermediate}, blocks={c.blocks}"

    def spectrum(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, n_mels, F]`` -> (log-magnitude, phase), each ``[B, n_fft/2+1, F]`` float32."""
        c = self.config
        x = self.embed((log_mel - c.input_mean) / c.input_scale)
        x = self.embed_norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        out = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2).float()
        log_mag, phase = out.split(self.n_freq, dim=1)
        return log_mag.clamp(max=c.max_log_magnitude), phase

    def forward(self, log_mel: torch.Tensor, return_phase: bool = False,  # type: ignore[override]
                post_process: bool | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        # (return_phase, for the trainer's phase losses, widens what the Vocoder protocol returns)
        """``log_mel [B, n_mels, F]`` (natural log, un-normalised) -> ``wav [B, (F - 1) * hop_length]`` float32.

        ``return_phase`` also returns the predicted phase ``[B, n_fft/2+1, F]`` (for a phase loss in training;
        going through ``forward`` keeps DDP's gradient hooks in the loop). ``post_process`` runs the
        inference-time steps: ``config.envelope_prematch`` steps of mel-envelope matching on the predicted magnitude,
        ``config.consistency_passes`` phase-consistency iterations instead of the plain
        inverse STFT and then ``config.envelope_passes`` of mel-envelope matching; by default it does so in
        eval mode only, so the training losses judge the network's own output. The post-processed
        waveform carries no gradient.
        """
        self.check_input(log_mel)
        log_mag, phase = self.spectrum(log_mel)
        inference = not self.training if post_process is None else post_process
        c = self.config
        if inference and c.envelope_prematch:
            with torch.no_grad():
                log_mag = self.envelope.prematch(log_mag, log_mel, c.envelope_prematch, c.envelope_max_log_gain)
        with torch.autocast(log_mel.device.type, enabled=False):  # istft has no bf16 kernel
            if inference and c.consistency_passes:
                with torch.no_grad():
                    wav = self.phase_projection.from_magnitude(torch.exp(log_mag), c.consistency_passes, phase,
                                                               alpha=c.consistency_momentum)
            else:
                # the phase is an unconstrained angle: cos/sin of it is periodic, so no wrapping problem
                wav = self.phase_projection.logmel.istft(torch.polar(torch.exp(log_mag), phase),
                                                         self.num_samples(log_mel.shape[-1]))
            if inference and c.envelope_passes:
                with torch.no_grad():
                    wav = self.envelope(wav, log_mel, c.envelope_passes, c.envelope_max_log_gain, c.envelope_momentum)
        return (wav, phase) if return_phase else wav

    def render(self, log_mel: torch.Tensor, post_process: bool = True) -> torch.Tensor:
        return cast(torch.Tensor, self(log_mel, post_process=post_process))

    def without_post_processing(self) -> "VocosVocoder":
        self.config = self.config.without_post_processing()
        return self

    def analysis_phase(self, wav: torch.Tensor) -> torch.Tensor:
        """The real phase ``[B, n_fft/2+1, F]`` of ``wav [B, T]``, framed exactly as :meth:`spectrum`'s output."""
        spec = self.phase_projection.logmel.stft(wav)
        return spec.angle()


def _build(feature_config: FeatureConfig, config: VocoderConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> VocosVocoder:
    """Registry factory: an *untrained* vocoder. The normal path is :func:`load_vocoder` / a bundle."""
    if isinstance(config, Mapping):
        config = VocoderConfig.from_dict(config)
    if kwargs:
        config = VocoderConfig.from_dict({**(config or VocoderConfig()).to_dict(), **kwargs})
    return VocosVocoder(feature_config, config)


register_vocoder("vocos", _build, trained=True)


# ----------------------------------------------------------------------------------------- save / load


def save_vocoder(out_dir: str | Path, vocoder: VocosVocoder, extra: dict[str, Any] | None = None,
                 dtype: torch.dtype = torch.float32) -> Path:
    """Write ``vocoder.safetensors`` + ``vocoder.json`` (VocoderConfig, FeatureConfig, sha256) into ``out_dir``.

    Each file is written to a temporary name and renamed; the JSON last, so a folder with a JSON has
    complete weights.
    """
    from safetensors.torch import save_file

    from vconv.fileio import atomic_path, sha256_of, write_text_atomic

    out_dir = Path(out_dir)
    # shipped copies use float16 (half the size); loading always computes in float32
    state = {k: v.detach().to(dtype).contiguous().cpu() for k, v in vocoder.state_dict().items()}
    with atomic_path(out_dir / VOCODER_WEIGHTS) as tmp:
        save_file(state, str(tmp))
    meta = {
        "format": VOCODER_FORMAT,
        "format_version": VOCODER_FORMAT_VERSION,
        "vocoder": vocoder.name,
        "vocoder_config": vocoder.config.to_dict(),
        "feature_config": vocoder.feature_config.to_dict(),
        "sha256": {VOCODER_WEIGHTS: sha256_of(out_dir / VOCODER_WEIGHTS)},
        **(extra or {}),
    }
    write_text_atomic(out_dir / VOCODER_CONFIG, json.dumps(meta, indent=2) + "\n")
    return out_dir


def read_vocoder_meta(folder: str | Path) -> dict[str, Any]:
    """Parse ``vocoder.json`` of a vocoder folder or bundle, with one-line errors."""
    path = Path(folder) / VOCODER_CONFIG
    if not path.is_file():
        raise VconvError(f"{folder}: no {VOCODER_CONFIG}; not a vocoder folder (train one with `vconv train-vocoder`)")
    from vconv.fileio import read_json_object

    meta = read_json_object(path, "vocoder config")
    if meta.get("format") != VOCODER_FORMAT or meta.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise VconvError(f"{path}: not a vconv vocoder config of format version {' or '.join(map(str, READABLE_FORMAT_VERSIONS))}")
    return meta


def _configs(meta: Mapping[str, Any], folder: str | Path) -> tuple[FeatureConfig, VocoderConfig]:
    """The FeatureConfig and VocoderConfig of a ``vocoder.json``, validated; errors name the file."""
    try:
        return FeatureConfig.from_dict(meta.get("feature_config")), VocoderConfig.from_dict(meta.get("vocoder_config"))
    except VconvError as exc:
        raise VconvError(f"{Path(folder) / VOCODER_CONFIG}: {exc}") from None


def load_vocoder(folder: str | Path, sha256: Mapping[str, str] | None = None, device: str | torch.device = "cpu") -> VocosVocoder:
    """Build the vocoder stored in ``folder`` (eval mode, parameters frozen). The weight file's sha256 is checked against
    ``sha256`` (a bundle's config.json records) or else against the one in ``vocoder.json``."""
    from vconv.fileio import load_weights

    meta = read_vocoder_meta(folder)
    if meta.get("vocoder") != VocosVocoder.name:
        raise VconvError(f"{folder}: unknown vocoder kind {meta.get('vocoder')!r}")
    from vconv.models.budget import load_network

    features, config = _configs(meta, folder)
    checks = {"sha256": dict(sha256 if sha256 is not None else meta.get("sha256", {}))}
    state = load_weights(folder, VOCODER_WEIGHTS, checks, float32=True)
    vocoder = load_network(lambda: VocosVocoder(features, config), state, f"{folder}: vocoder config")
    # an inference object: frozen, so callers outside no_grad (e.g. the converter) get plain tensors;
    # to train it further, call requires_grad_(True)
    return vocoder.requires_grad_(False).to(device).eval()
