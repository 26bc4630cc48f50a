"""Recall@k and NDCG@k for one target per example (SPEC §7), vectorised, for any list of k.

Candidates are ranked item ids (1-based); 0 marks a slot with no item (e.g. a generated semantic ID
that names no item), which never counts as a hit. Recall@k is the hit rate; NDCG@k is
1 / log2(rank + 1) for a hit at 1-based rank ≤ k, else 0.
"""
from __future__ import annotations

import torch


def headline_k(ks: tuple[int, ...]) -> int:
    """The cut-off reported in tables and used for model selection: 10 (published), else the largest."""
    return 10 if 10 in ks else max(ks)


def hit_ranks(candidates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) 1-based rank of each target among its candidates (B, C); C + 1 where absent."""
    hits = (candidates == targets.unsqueeze(1)) & (targets.unsqueeze(1) > 0)
    first = torch.where(hits.any(dim=1), hits.int().argmax(dim=1) + 1, torch.full_like(targets, candidates.shape[1] + 1))
    return first


def recall_ndcg(candidates: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-example `Recall@k` and `NDCG@k` (each (B,) float) for every k in ks."""
    ranks = hit_ranks(candidates, targets).float()
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"Recall@{k}"] = hit.float()
        out[f"NDCG@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks))
    return out


class MetricAccumulator:
    """Sums per-example metrics over batches; `means()` gives the averages (NaN-free: empty → 0)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, per_example: dict[str, torch.Tensor]) -> None:
        for name, values in per_example.items():
            self.sums[name] = self.sums.get(name, 0) + values.sum()
        self.count += len(next(iter(per_example.values()))) if per_example else 0

    def means(self) -> dict[str, float]:
        return {name: float(total) / self.count if self.count else 0.0 for name, total in self.sums.items()}
