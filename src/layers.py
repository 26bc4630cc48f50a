"""Layers shared by the RQ-VAE and the recommender's text-embedding projection."""
from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    """Input dropout, then blocks Linear → LayerNorm → ReLU → Dropout, each plus a bias-free linear
    path from its input, then a linear output layer. A compile block (`trainer.compile_scope=blocks`):
    LIGER's text projection."""

    compile_block = True

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, dropout: float, ln_eps: float = 1e-5):
        super().__init__()
        sizes = (in_dim, *hidden)
        self.in_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.LayerNorm(b, eps=ln_eps), nn.ReLU(), nn.Dropout(dropout))
            for a, b in zip(sizes[:-1], sizes[1:]))
        self.residuals = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_dropout(x)
        for block, residual in zip(self.blocks, self.residuals):
            x = block(x) + residual(x)
        return self.out(x)
