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


class EMACodebooks(nn.Module):
    """The codebooks of all quantisation levels, (levels, size, dim): nearest-code lookup in one level at a
    time; in training, once every level has looked up its codes, EMA updates of all levels' code counts
    and sums, then every code whose EMA count fell below 1 restarted at a random vector of its level's
    batch, all levels in one set of operations (under half the operations of a level at a time: 32 for
    three levels against 72, with the same values and the same random draws).

    Everything stays on the device: no host synchronisation per step (the counts are an index_add,
    not `torch.bincount`, which waits for the device to size its output). `graph_safe`: random
    draws that a CUDA graph can replay (`random_order`).
    """

    def __init__(self, levels: int, size: int, dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.levels, self.size, self.decay, self.eps = levels, size, decay, eps
        self.graph_safe = False
        weight = torch.randn(levels, size, dim)  # as nn.Embedding's default initialisation, level by level
        self.register_buffer("weight", weight)
        self.register_buffer("count_ema", torch.zeros(levels, size))
        self.register_buffer("sum_ema", weight.clone())

    def squared_norms(self) -> torch.Tensor:
        """(levels, size) each code's squared length, for `nearest`."""
        return self.weight.pow(2).sum(-1)

    def nearest(self, x: torch.Tensor, level: int, squared_norms: torch.Tensor) -> torch.Tensor:
        """(B,) index of the closest code of `level` (squared Euclidean distance) for x (B, dim)."""
        distances = torch.addmm(x.pow(2).sum(1, keepdim=True) + squared_norms[level], x, self.weight[level].t(),
                                alpha=-2.0)
        return distances.argmin(dim=1)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """The EMA update of every level from its inputs x (levels, B, dim) and their codes (levels, B)."""
        levels, size = self.levels, self.size
        rows = (codes + torch.arange(levels, device=codes.device)[:, None] * size).flatten()  # (levels·B,)
        counts = torch.zeros(levels * size, dtype=x.dtype, device=x.device).index_add_(
            0, rows, torch.ones_like(rows, dtype=x.dtype))  # exact integers, as bincount's
        sums = torch.zeros(levels * size, x.shape[-1], dtype=x.dtype, device=x.device).index_add_(
            0, rows, x.flatten(0, 1))
        self.count_ema.mul_(self.decay).add_(counts.view(levels, size), alpha=1 - self.decay)
        self.sum_ema.mul_(self.decay).add_(sums.view(levels, size, -1), alpha=1 - self.decay)
        used = (self.count_ema >= 1).unsqueeze(-1)
        self.sum_ema.copy_(torch.where(used, self.sum_ema, self._random_vectors(x)))
        self.count_ema.copy_(torch.where(used.squeeze(-1), self.count_ema, torch.ones_like(self.count_ema)))
        total = self.count_ema.sum(1, keepdim=True)
        smoothed = total * (self.count_ema + self.eps) / (total + size * self.eps)
        self.weight.copy_(self.sum_ema / smoothed.unsqueeze(-1))

    def _random_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """(levels, size, dim): per level, `size` random rows of its x (levels, B, dim), tiled with small
        noise when the batch is smaller than the codebook; drawn level after level."""
        picked = []
        for rows in x:
            if len(rows) < self.size:
                rows = rows.repeat(-(-self.size // len(rows)), 1)
                rows = rows + torch.rand_like(rows) * (0.01 / rows.shape[1] ** 0.5)
            picked.append(rows[random_order(len(rows), rows.device, self.graph_safe)[: self.size]])
        return torch.stack(picked)


class ResidualQuantizer(nn.Module):
    """Levels of EMA codebooks, each quantising what the previous levels left over."""

    def __init__(self, rq_levels: int, size: int, dim: int, decay: float = 0.99):
        super().__init__()
        self.codebooks = EMACodebooks(rq_levels, size, dim, decay)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through quantised z (B, dim), commitment loss (), codes (B, rq_levels)).

        The commitment loss is the mean over levels of the squared error of the cumulative
        quantisation up to that level. Every level looks its codes up before any codebook is updated
        (a level's update never touched another level's codes, so this is the order of one level at a
        time).
        """
        books = self.codebooks
        residual, cumulative = z.detach(), torch.zeros_like(z)
        norms = books.squared_norms()
        inputs, codes, errors = [], [], []
        for level in range(books.levels):
            code = books.nearest(residual, level, norms)
            quantised = books.weight[level][code]
            inputs.append(residual)
            codes.append(code)
            residual = residual - quantised
            cumulative = cumulative + quantised
            errors.append((z - cumulative.detach()).pow(2).mean())
        codes = torch.stack(codes)                                                         # (rq_levels, B)
        if self.training:
            books.update(torch.stack(inputs), codes)
        return z + (cumulative - z).detach(), torch.stack(errors).mean(), codes.t()


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
            if isinstance(module, EMACodebooks):
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
