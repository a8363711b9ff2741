"""Building blocks shared by the vconv models.

* :class:`ConvBlock` - ``Conv1d`` with "same" padding, an activation and an optional residual path.
  ``[B, C_in, T] -> [B, C_out, ceil(T / stride)]``.
* :class:`AdaIN` - adaptive instance normalisation (Huang & Belongie 2017, used by AdaIN-VC): the
  content's per-channel statistics are removed and replaced by a scale γ and a bias β predicted from a
  speaker embedding. ``x [B, C, T], e [B, S] -> [B, C, T]``.
* :class:`GradientReversal` / :func:`grad_reverse` - identity in the forward pass, gradient multiplied
  by ``-weight`` in the backward pass (Ganin & Lempitsky 2015), so one optimiser step trains a
  classifier to find speaker information while it trains the encoder to remove it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBlock", "AdaIN", "GradientReversal", "grad_reverse", "make_activation"]


def make_activation(name: str) -> nn.Module:
    """Activation module by name: ``relu``, ``lrelu`` (slope 0.2), ``gelu``, ``tanh`` or ``none``."""
    table = {
        "relu": lambda: nn.ReLU(),
        "lrelu": lambda: nn.LeakyReLU(0.2),
        "gelu": lambda: nn.GELU(),
        "tanh": lambda: nn.Tanh(),
        "none": lambda: nn.Identity(),
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(table)}")
    return table[name]()


class ConvBlock(nn.Module):
    """Conv1d with "same" padding, activation, dropout and an optional residual connection.

    Shapes: ``x [B, C_in, T] -> y [B, C_out, ceil(T / stride)]``.

    The padding is ``kernel_size - 1`` frames in total (left gets the smaller half for even kernels), so
    the output has exactly ``ceil(T / stride)`` frames for any ``T``; the encoders rely on this to make
    ``T' = ceil(T / prod(strides))`` hold without special cases. Zero padding (not reflect) keeps very
    short inputs legal.

    With ``residual=True`` the input is added back: subsampled by ``stride`` when the block is strided,
    and passed through a 1x1 convolution when the channel counts differ.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        stride: int = 1,
        activation: str = "lrelu",
        residual: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or stride < 1:
            raise ValueError(f"kernel_size and stride must be >= 1, got {kernel_size}, {stride}")
        self.stride = stride
        self.pad_left = (kernel_size - 1) // 2
        self.pad_right = kernel_size - 1 - self.pad_left
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride)
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual
        self.skip: nn.Module | None = None
        if residual and in_channels != out_channels:
            self.skip = nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C_in, T] -> [B, C_out, ceil(T / stride)]``."""
        y = self.conv(F.pad(x, (self.pad_left, self.pad_right)))
        y = self.dropout(self.activation(y))
        if self.residual:
            # Subsampling the skip (rather than pooling) keeps it length-exact: x[..., ::s] has
            # ceil(T / s) frames, the same as the strided convolution.
            skip = x[..., :: self.stride] if self.stride > 1 else x
            if self.skip is not None:
                skip = self.skip(skip)
            y = y + skip
        return y


class AdaIN(nn.Module):
    """Adaptive instance normalisation driven by an embedding.

    Shapes: ``x [B, C, T]``, ``e [B, S]`` -> ``[B, C, T]``.

    ``x`` is normalised per sample and channel over time (biased variance, no affine), then scaled by γ
    and shifted by β, both ``[B, C]`` from one ``Linear(S, 2C)``. The output's per-channel mean over time
    is therefore β and its (biased) standard deviation ``|γ|`` (up to ``eps``): the speaker embedding
    alone sets the channel statistics the decoder sees. γ is parameterised as ``1 + linear(e)`` with the
    linear initialised small, so at the start AdaIN is close to a plain instance norm and training
    does not begin from random scales.
    """

    def __init__(self, channels: int, embed_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.affine = nn.Linear(embed_dim, 2 * channels)
        nn.init.normal_(self.affine.weight, std=0.02)
        nn.init.zeros_(self.affine.bias)

    def style(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and bias for an embedding: ``e [B, S] -> (γ [B, C, 1], β [B, C, 1])``."""
        gamma, beta = self.affine(e).chunk(2, dim=-1)
        return (1.0 + gamma).unsqueeze(-1), beta.unsqueeze(-1)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``x [B, C, T], e [B, S] -> [B, C, T]`` with channel mean β and std ``|γ|``."""
        # two passes (mean, then the mean square of the centred input) rather than Tensor.var: the
        # same biased variance, ~7x faster on a CPU, where var's single-pass Welford loop does not vectorise
        centred = x - x.mean(dim=-1, keepdim=True)
        normed = centred * torch.rsqrt(centred.square().mean(dim=-1, keepdim=True) + self.eps)
        gamma, beta = self.style(e)
        return normed * gamma + beta


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-weight``.

    Shapes: any ``[...]`` -> the same ``[...]``. Use through :func:`grad_reverse`. ``weight`` is a
    Python float and receives no gradient. ``weight = 0`` cuts the gradient to the encoder while the
    module after the reversal (the adversary) still learns.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = float(weight)
        # view_as: a new tensor object is required so autograd records this node.
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.weight * grad_output, None


def grad_reverse(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Gradient reversal: returns ``x`` unchanged; its gradient becomes ``-weight`` times the upstream one."""
    return GradientReversal.apply(x, weight)
