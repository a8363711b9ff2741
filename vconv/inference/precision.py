"""The arithmetic a conversion's networks run in: float32, or bfloat16 where the CPU computes it natively.

Why: on a CPU with native bfloat16 (AVX512-BF16 or AMX tiles: recent Xeons and EPYCs) the convolutions
and matrix products of the conversion network and of the neural vocoder's backbone run ~1.7x faster under
bfloat16 autocast, and on the held-out voices the conversions judge the same within noise
(``benchmarks/compare_reports.py``; the figures in recipes/voices/MODEL_HISTORY.md). On a CPU without it
bfloat16 is emulated and slower, so ``auto`` keeps float32 there.

What runs in bfloat16: only what autocast lowers (convolutions, linear layers, attention) inside the
conversion network, the speaker encoder, the neural vocoder's backbone and, in a stream, the content front-end's
network (Whisper's encoder; its log-mel stays float32). What stays float32: the
content front-end of a file conversion (Whisper's states carry the words; it is the fixed cost a conversion is measured
against; a stream's blocks run its encoder in bfloat16, which kept the stream's words on the held-out pairs and takes
~7.5 ms off a ~50 ms block: docs/STREAMING.md), the content encoder (its rounding in bfloat16 flipped VQ code choices and cost words), the quantiser's distances (``vconv.models.quantize``), every norm's statistics, target-spectrum
matching, and the vocoder's inverse STFT and post-processing passes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, ContextManager

from vconv.errors import VconvError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that use it: the CLI checks --precision (check_precision) before
# anything heavy loads, so a typo fails at once
PRECISIONS = ("auto", "float32", "bfloat16")


def check_precision(precision: str, option: str = "precision") -> str:
    """``precision`` when it is one of :data:`PRECISIONS`; a one-line error naming ``option`` otherwise."""
    if precision not in PRECISIONS:
        raise VconvError(f"{option} {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` is a CPU with bfloat16 in hardware (AVX512-BF16 or AMX); ``False`` when torch cannot tell."""
    import torch

    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch.cpu: absent means "don't know"
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto``/``float32``/``bfloat16`` -> the dtype the networks compute in on ``device``."""
    import torch

    check_precision(precision)
    if precision == "auto":
        return torch.bfloat16 if native_bfloat16(device) else torch.float32
    if precision == "bfloat16" and device.type not in ("cpu", "cuda"):
        raise VconvError(f"bfloat16 needs a CPU or CUDA device, not {device.type}")
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def compute_in(dtype: torch.dtype, device: torch.device) -> ContextManager:
    """The context the networks run in: bfloat16 autocast on ``device``, or nothing for float32."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def store_lowered(network: torch.nn.Module, dtype: torch.dtype, keep: torch.nn.Module | None = None) -> None:
    """Keep the weights and biases of ``network``'s convolutions and linear layers in ``dtype``, in place.

    Why: autocast casts the float32 weights of every convolution and linear layer to bfloat16 at every call
    (it caches casts only for weights that require gradients), ~3 % of a 10 s conversion. Cast once, the
    same products are computed from the same bfloat16 values: the output is identical bit for bit. Only for a
    network that runs under :func:`compute_in` of ``dtype`` and nowhere else (the converter's own, as
    :func:`vconv.inference.converter.load` builds them); the norms, the codebook and every other parameter stay float32,
    and so does the part ``keep`` (a submodule that computes in float32 under that autocast).
    """
    import torch

    if dtype == torch.float32:
        return
    kept = {id(m) for m in keep.modules()} if keep is not None else set()
    for module in network.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)) and id(module) not in kept:
            module.to(dtype)
