"""The RQ-VAE of docs/method.md §4: residual-MLP encoder and decoder around a residual quantiser whose
codebooks are updated by exponential moving averages, with unused codes restarted from batch
vectors (as in the published implementation).

Shapes: x (B, input_dim) → z (B, latent_dim) → codes (B, rq_levels) → x̂ (B, input_dim).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from src.layers import ResidualMLP


def random_order(n: int, device: torch.device, graph_safe: bool = False) -> torch.Tensor:
    """(n,) a uniformly random permutation of range(n): `torch.randperm`, or, for a step captured in a
    CUDA graph, the order of n uniform draws: plain philox draws and a sort, which replay with fresh
    numbers (older torch drew a CUDA randperm of under 30,000 on the host; this does not depend on it)."""
    return torch.rand(n, device=device).argsort() if graph_safe else torch.randperm(n, device=device)


class EMACodebook(nn.Module):
    """One quantisation level: nearest-code lookup; in training, EMA updates of code counts and
    sums, then every code whose EMA count fell below 1 is restarted at a random batch vector.

    Everything stays on the device: no host synchronisation per step (the counts are an index_add,
    not `torch.bincount`, which waits for the device to size its output). `graph_safe`: random
    draws that a CUDA graph can replay (`random_order`).
    """

    def __init__(self, size: int, dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.size, self.decay, self.eps = size, decay, eps
        self.graph_safe = False
        weight = torch.randn(size, dim)  # as nn.Embedding's default initialisation
        self.register_buffer("weight", weight)
        self.register_buffer("count_ema", torch.zeros(size))
        self.register_buffer("sum_ema", weight.clone())

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) index of the closest code (squared Euclidean distance) for x (B, dim)."""
        distances = torch.addmm(x.pow(2).sum(1, keepdim=True) + self.weight.pow(2).sum(1), x, self.weight.t(),
                                alpha=-2.0)
        return distances.argmin(dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(quantised x (B, dim), codes (B,)); codes are looked up before this step's update."""
        codes = self.nearest(x)
        quantised = self.weight[codes]
        if self.training:
            self._update(x, codes)
        return quantised, codes

    @torch.no_grad()
    def _update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        counts = torch.zeros(self.size, dtype=x.dtype, device=x.device).index_add_(
            0, codes, torch.ones_like(codes, dtype=x.dtype))  # exact integers, as bincount's
        sums = torch.zeros_like(self.sum_ema).index_add_(0, codes, x)
        self.count_ema.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.sum_ema.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        used = (self.count_ema >= 1).unsqueeze(1)
        self.sum_ema.copy_(torch.where(used, self.sum_ema, self._random_vectors(x)))
        self.count_ema.copy_(torch.where(used.squeeze(1), self.count_ema, torch.ones_like(self.count_ema)))
        total = self.count_ema.sum()
        smoothed = total * (self.count_ema + self.eps) / (total + self.size * self.eps)
        self.weight.copy_(self.sum_ema / smoothed.unsqueeze(1))

    def _random_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """`size` random rows of x (tiled with small noise when the batch is smaller than the codebook)."""
        if len(x) < self.size:
            repeats = -(-self.size // len(x))
            x = x.repeat(repeats, 1)
            x = x + torch.rand_like(x) * (0.01 / x.shape[1] ** 0.5)
        return x[random_order(len(x), x.device, self.graph_safe)[: self.size]]


class ResidualQuantizer(nn.Module):
    """Levels of EMA codebooks, each quantising what the previous levels left over."""

    def __init__(self, rq_levels: int, size: int, dim: int, decay: float = 0.99):
        super().__init__()
        self.levels = nn.ModuleList(EMACodebook(size, dim, decay) for _ in range(rq_levels))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through quantised z (B, dim), commitment loss (), codes (B, rq_levels)).

        The commitment loss is the mean over levels of the squared error of the cumulative
        quantisation up to that level.
        """
        residual, cumulative = z.detach(), torch.zeros_like(z)
        codes, errors = [], []
        for level in self.levels:
            quantised, code = level(residual)
            residual = residual - quantised
            cumulative = cumulative + quantised
            codes.append(code)
            errors.append((z - cumulative.detach()).pow(2).mean())
        return z + (cumulative - z).detach(), torch.stack(errors).mean(), torch.stack(codes, dim=1)


@dataclass(frozen=True)
class RQVAEOutput:
    reconstruction: torch.Tensor  # (B, input_dim)
    commitment: torch.Tensor      # ()
    codes: torch.Tensor           # (B, rq_levels)


class RQVAE(nn.Module):
    """Residual-quantised autoencoder of item text embeddings: x (B, input_dim) is encoded to z
    (B, latent_dim), quantised level by level (each level codes the residual the previous ones left,
    `rq_levels` codebooks of `codebook_size` EMA-updated vectors), and decoded back; an item's codes
    are the first `rq_levels` codes of its semantic ID."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...], latent_dim: int, rq_levels: int,
                 codebook_size: int, dropout: float, decay: float = 0.99):
        super().__init__()
        self.encoder = ResidualMLP(input_dim, hidden, latent_dim, dropout)
        self.quantizer = ResidualQuantizer(rq_levels, codebook_size, latent_dim, decay)
        self.decoder = ResidualMLP(latent_dim, tuple(reversed(hidden)), input_dim, dropout)

    def use_graph_safe_random(self) -> None:
        """Draw the codebooks' restart vectors as a CUDA graph can replay them (`random_order`)."""
        for module in self.modules():
            if isinstance(module, EMACodebook):
                module.graph_safe = True

    def forward(self, x: torch.Tensor) -> RQVAEOutput:
        z_q, commitment, codes = self.quantizer(self.encoder(x))
        return RQVAEOutput(self.decoder(z_q), commitment, codes)

    @torch.no_grad()
    def codes(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """(N, rq_levels) codes of x (N, input_dim), without updating the codebooks."""
        was_training = self.training
        self.eval()
        out = torch.cat([self.quantizer(self.encoder(x[i:i + batch_size]))[2] for i in range(0, len(x), batch_size)])
        self.train(was_training)
        return out

    def loss(self, x: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, reconstruction MSE, commitment) for a batch x (B, input_dim)."""
        out = self(x)
        reconstruction = F.mse_loss(out.reconstruction, x)
        return reconstruction + beta * out.commitment, reconstruction, out.commitment
