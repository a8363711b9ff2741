"""Neural-network building blocks: conv blocks, AdaIN, gradient reversal and the vector quantiser."""

from __future__ import annotations

from vconv.nn.layers import AdaIN, ConvBlock, GradientReversal, grad_reverse, make_activation
from vconv.nn.quantize import QuantizerOutput, VectorQuantizer

__all__ = [
    "AdaIN",
    "ConvBlock",
    "GradientReversal",
    "QuantizerOutput",
    "VectorQuantizer",
    "grad_reverse",
    "make_activation",
]
