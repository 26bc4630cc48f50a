"""Recall@k and NDCG@k for one target per example (docs/method.md §7), vectorised, for any list of k.

Candidates are ranked item ids (1-based); 0 marks a slot with no item (e.g. a generated semantic ID
that names no item), which never counts as a hit. Recall@k is the hit rate; NDCG@k is
1 / log2(rank + 1) for a hit at 1-based rank ≤ k, else 0.

Means are computed from a histogram of hit ranks (integer counts), so they are exactly the same
whatever the batching, and whether the examples were evaluated by one process or shared by several.
"""
from __future__ import annotations

import torch


def headline_k(ks: tuple[int, ...]) -> int:
    """The cut-off reported in tables and used for model selection: 10 (published), else the largest."""
    return 10 if 10 in ks else max(ks)


def hit_ranks(candidates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) 1-based rank of each target among its candidates (B, C); 0 where absent."""
    hits = (candidates == targets.unsqueeze(1)) & (targets.unsqueeze(1) > 0)
    return torch.where(hits.any(dim=1), hits.int().argmax(dim=1) + 1, torch.zeros_like(targets))


class RankHistogram:
    """Counts of examples by the rank of their target: `counts[r]` for r = 1..max(ks), `counts[0]`
    the misses (absent, or ranked below max(ks))."""

    def __init__(self, ks: tuple[int, ...], device: torch.device | str = "cpu"):
        self.ks = ks
        self.counts = torch.zeros(max(ks) + 1, dtype=torch.long, device=device)

    def add(self, candidates: torch.Tensor, targets: torch.Tensor) -> None:
        """Count a batch: candidates (B, C) ranked item ids, targets (B,). An index_add, not
        `torch.bincount`, which makes the host wait for a GPU (to size its output) after every batch."""
        ranks = hit_ranks(candidates, targets)
        ranks = ranks.masked_fill(ranks >= len(self.counts), 0)
        self.counts.index_add_(0, ranks, torch.ones_like(ranks))

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def means(self) -> dict[tuple[str, int], float]:
        """Recall and NDCG at each k, keyed ("Recall" | "NDCG", k), averaged over the counted examples
        (0 when none)."""
        hits = self.counts[1:].double().cpu()                                 # ranks 1..max(ks)
        gains = 1.0 / torch.log2(torch.arange(2, len(hits) + 2, dtype=torch.double))
        n = max(float(self.counts.sum()), 1.0)
        out = {}
        for k in self.ks:
            out["Recall", k] = float(hits[:k].sum()) / n
            out["NDCG", k] = float((hits[:k] * gains[:k]).sum()) / n
        return out
