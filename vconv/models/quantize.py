"""Vector quantisation bottleneck (VQ-VAE, van den Oord et al. 2017; VQVC / VQVC+, Wu & Lee 2020).

``VectorQuantizer``: ``z [B, G*D, T] -> QuantizerOutput(quantized [B, G*D, T], codes [B, T] (one code per frame,
G = 1) or [B, T, G] (G codes per frame, as the shipped model has), loss, perplexity)``.

Each frame of the content encoder's output is replaced by its nearest code (L2). The discrete code keeps
*what* is said; whatever it cannot represent - mostly the speaker - has to come from the speaker path.

Training details that matter:

* straight-through estimator: the decoder's gradient is copied onto ``z`` unchanged;
* commitment loss ``β·||z - sg(q)||²`` keeps the encoder near its codes;
* codebook update by exponential moving averages (counts and sums, Laplace-smoothed) in training mode
  only, or, with ``ema=False``, an ordinary codebook loss ``||sg(z) - q||²`` for the optimiser;
* codebook initialised from the first training batch (``data_init``) and dead codes (unused for
  ``dead_after`` consecutive training forwards) re-seeded from current encoder outputs, so the
  codebook is used rather than collapsing onto a few entries;
* DDP: EMA statistics are all-reduced and new code vectors are broadcast from rank 0, so every replica
  keeps an identical codebook;
* distances are computed in float32 even under bf16 autocast (argmin over nearly equal bf16 distances
  is noisy and flips codes between steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["PassThroughQuantizer", "Quantizer", "QuantizerOutput", "VectorQuantizer", "squared_distances"]


@dataclass
class QuantizerOutput:
    """What :class:`VectorQuantizer` returns.

    Attributes:
        quantized: ``[B, D, T]`` code vectors, carrying the straight-through gradient to the encoder.
        codes: ``[B, T]`` long, indices in ``[0, codebook_size)``.
        loss: scalar float32 tensor: commitment loss (plus the codebook loss when ``ema=False``).
        perplexity: scalar float32 tensor, ``exp(entropy)`` of the batch's average code usage, in
            ``[1, codebook_size]``; 1 means one code for everything, ``codebook_size`` uniform use.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor


def squared_distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance of every vector ``z [..., D]`` to every code ``codebook [K, D]``: ``[..., K]``,
    as ``|z|^2 - 2 z.c + |c|^2`` (one matrix product; the nearest code is the argmin)."""
    return z.pow(2).sum(-1, keepdim=True) - 2.0 * z @ codebook.t() + codebook.pow(2).sum(-1)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class Quantizer(nn.Module):
    """What the model needs of a bottleneck: ``forward(z [B, C, T]) -> QuantizerOutput`` (``quantized`` of
    ``z``'s shape). :class:`VectorQuantizer` and :class:`PassThroughQuantizer` are the two."""

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        raise NotImplementedError


class VectorQuantizer(Quantizer):
    """Nearest-neighbour vector quantiser with EMA codebook and dead-code re-initialisation.

    Shapes: ``z [B, G*D, T] -> QuantizerOutput(quantized [B, G*D, T], codes [B, T] (G = 1) or [B, T, G],
    loss [], perplexity [])``.

    Args:
        dim: code dimension ``D`` (of one group).
        codebook_size: number of codes ``K``.
        beta: commitment weight β.
        ema: update the codebook by moving averages (no gradient); otherwise it is a parameter
            trained through the codebook loss.
        decay: EMA decay.
        dead_after: training forwards without any use after which a code is re-initialised
            (0 disables re-initialisation).
        data_init: initialise the whole codebook from encoder outputs of the first training batch.
        eps: Laplace smoothing of the EMA counts.
        groups: ``G`` sub-vectors per frame, each quantised with the same codebook (product
            quantisation). One code per frame carries at most ``log2 K`` bits; ``G`` codes carry ``G``
            times as many, which widens the content bottleneck without a bigger (slower, sparser) codebook.
    """

    embedding: torch.Tensor  # [K, D] (a buffer with EMA, else a parameter)
    cluster_size: torch.Tensor  # [K], EMA buffers
    embed_sum: torch.Tensor  # [K, D]
    unused_steps: torch.Tensor  # [K]
    initialized: torch.Tensor  # [] bool

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        dead_after: int = 200,
        data_init: bool = True,
        eps: float = 1e-5,
        groups: int = 1,
    ) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.dim = dim
        self.groups = groups
        self.codebook_size = codebook_size
        self.beta = beta
        self.ema = ema
        self.decay = decay
        self.dead_after = dead_after
        self.eps = eps
        init = torch.randn(codebook_size, dim)
        if ema:
            self.register_buffer("embedding", init)
            # Counts start at one and sums at the codes themselves, so the first EMA step is a proper
            # weighted average instead of dividing a biased sum by a tiny count.
            self.register_buffer("cluster_size", torch.ones(codebook_size))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.embedding = nn.Parameter(init)
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))
        # Saved with the weights: a resumed or loaded model must not be re-initialised from data.
        self.register_buffer("initialized", torch.tensor(not data_init))

    @property
    def codebook(self) -> torch.Tensor:
        """The code vectors, ``[K, D]`` (detached)."""
        return self.embedding.detach()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantise ``z [B, G*D, T]``; in training mode also update the codebook."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            z32 = z.float()
            flat = self._rows(z32)
            if self.training and not bool(self.initialized):
                self._data_init(flat.detach())
            codebook = self.embedding.float()
            distances = squared_distances(flat.detach(), codebook.detach())  # [B*T, K]
            codes = distances.argmin(dim=1)
            if self.training:  # the EMA update sums the rows per code through the one-hot matrix
                one_hot = F.one_hot(codes, self.codebook_size).to(flat.dtype)  # [B*T, K]
                counts = one_hot.sum(0)  # [K]
            else:  # the same counts without a [B*T, K] matrix (a conversion of 10 s: 1252 x 512)
                counts = torch.bincount(codes, minlength=self.codebook_size).to(flat.dtype)

            q = self._code_vectors(codebook, codes, z.shape)
            loss = self.beta * F.mse_loss(z32, q.detach())
            if not self.ema:
                loss = loss + F.mse_loss(q, z32.detach())

            if self.training:
                self._update(flat.detach(), one_hot, counts)

            probs = counts / counts.sum().clamp_min(1.0)
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            # Straight-through: forward value q, gradient of the identity onto z. Without a gradient to pass, q
            # itself: z + (q - z) is q only up to float32 rounding, and that residue of z made two inputs with the
            # same codes decode differently once the decoder rounds to bfloat16.
            quantized = z32 + (q - z32).detach() if z32.requires_grad else q
        return QuantizerOutput(
            quantized=quantized.to(z.dtype),
            codes=codes.view(z.shape[0], z.shape[2]) if self.groups == 1 else codes.view(z.shape[0], z.shape[2], self.groups),
            loss=loss,
            perplexity=perplexity,
        )

    def _rows(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, G*D, T] -> [B*T*G, D]``: one row per (frame, group); for G = 1 simply ``[B*T, D]``."""
        width = self.dim * self.groups
        if z.dim() != 3 or z.shape[1] != width:
            raise ValueError(f"expected z of shape [B, {width}, T], got {tuple(z.shape)}")
        batch, _, frames = z.shape
        return z.reshape(batch, self.groups, self.dim, frames).permute(0, 3, 1, 2).reshape(-1, self.dim)

    @staticmethod
    def _code_vectors(codebook: torch.Tensor, codes: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """The vectors of ``codes [B*T*G]`` (rows of :meth:`_rows`) back in ``z``'s ``shape [B, G*D, T]``."""
        batch, width, frames = shape
        return codebook[codes].view(batch, frames, width).transpose(1, 2)

    # ----------------------------------------------------------------------------------------------
    # codebook maintenance (training mode only)

    @torch.no_grad()
    def _sample(self, flat: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` random rows of ``flat [N, D]`` (with replacement if ``N < n``), identical on all ranks."""
        if flat.shape[0] >= n:
            picked = flat[torch.randperm(flat.shape[0], device=flat.device)[:n]]
        else:
            picked = flat[torch.randint(flat.shape[0], (n,), device=flat.device)]
        picked = picked.contiguous()
        if _distributed():
            dist.broadcast(picked, src=0)
        return picked

    @torch.no_grad()
    def _set_codes(self, index: torch.Tensor, vectors: torch.Tensor) -> None:
        self.embedding.data[index] = vectors.to(self.embedding.dtype)
        if self.ema:
            self.cluster_size[index] = 1.0
            self.embed_sum[index] = vectors.to(self.embed_sum.dtype)
        self.unused_steps[index] = 0

    @torch.no_grad()
    def _data_init(self, flat: torch.Tensor) -> None:
        index = torch.arange(self.codebook_size, device=flat.device)
        self._set_codes(index, self._sample(flat, self.codebook_size))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, one_hot: torch.Tensor, counts: torch.Tensor) -> None:
        sums = one_hot.t() @ flat  # [K, D]
        if _distributed():
            # One all-reduce for both statistics: every replica then applies the same update.
            packed = torch.cat([counts[:, None], sums], dim=1)
            dist.all_reduce(packed)
            counts, sums = packed[:, 0], packed[:, 1:]
        if self.ema:
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
            self.embed_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
            # Laplace smoothing keeps a code with a vanishing count from dividing by ~0.
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
            self.embedding.copy_(self.embed_sum / smoothed[:, None])
        # The usage counter is derived from the (all-reduced) counts, so all ranks agree on dead codes.
        self.unused_steps.add_(1)
        self.unused_steps[counts > 0] = 0
        if self.dead_after > 0:
            dead = torch.nonzero(self.unused_steps >= self.dead_after).flatten()
            if dead.numel() > 0:
                self._set_codes(dead, self._sample(flat, dead.numel()))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, groups={self.groups}, codebook_size={self.codebook_size}, beta={self.beta}, ema={self.ema}, "
            f"decay={self.decay}, dead_after={self.dead_after}"
        )


class PassThroughQuantizer(Quantizer):
    """No bottleneck: returns the encoder output unchanged (the "no VQ" ablation, ``model.quantizer: {kind: none}``).

    Keeps the :class:`QuantizerOutput` contract so the rest of the model and the trainer need no
    special case: codes are all zero, loss 0, perplexity 1.
    """

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        zero = z.new_zeros((), dtype=torch.float32)
        codes = torch.zeros(z.shape[0], z.shape[-1], dtype=torch.long, device=z.device)
        return QuantizerOutput(quantized=z, codes=codes, loss=zero, perplexity=zero + 1.0)
