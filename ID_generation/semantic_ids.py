"""Semantic IDs (docs/method.md §4): an item's RQ-VAE codes plus a collision code.

An item's semantic ID is its RQ-VAE codes (one per quantisation level, `dataset.RQ-VAE.num_layers`)
plus one more, collision-removing code: the item's index among the items that share its RQ-VAE
codes, in item-id order. How the codes become tokens is `src/vocabulary.py`'s business.
"""
from __future__ import annotations

import numpy as np
import torch


def collision_codes(prefix_codes: np.ndarray) -> np.ndarray:
    """(N,) collision code for prefix_codes (N, L), the RQ-VAE codes: each row's rank among the rows
    with the same codes, counted in row (item-id) order."""
    n = len(prefix_codes)
    order = np.lexsort((np.arange(n), *prefix_codes.T[::-1]))
    sorted_codes = prefix_codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (sorted_codes[1:] != sorted_codes[:-1]).any(axis=1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - group_start
    return ranks


def with_collision_codes(prefix_codes: np.ndarray) -> np.ndarray:
    """(N, L + 1): the RQ-VAE codes with the collision code appended; every row unique."""
    return np.concatenate([prefix_codes, collision_codes(prefix_codes)[:, None]], axis=1).astype(np.int64)


class SemanticIds:
    """The semantic IDs of all items: codes (n_items, rq_levels + 1), row i = item id i + 1."""

    def __init__(self, codes: torch.Tensor, codebook_size: int):
        self.codes = codes.long().cpu()
        self.codebook_size = codebook_size  # K, codes per RQ-VAE level
        if len(self.codes) and len(torch.unique(self.codes, dim=0)) < len(self.codes):
            raise ValueError("two items share a semantic ID; the collision code must make every ID unique")

    @classmethod
    def from_rqvae_codes(cls, prefix_codes: np.ndarray, codebook_size: int) -> SemanticIds:
        """prefix_codes: (n_items, rq_levels) the RQ-VAE's codes; the collision code is appended."""
        return cls(torch.from_numpy(with_collision_codes(np.asarray(prefix_codes))), codebook_size)

    @property
    def rq_levels(self) -> int:
        """Quantisation levels of the RQ-VAE (the codes before the collision code)."""
        return self.codes.shape[1] - 1

    def __len__(self) -> int:
        return len(self.codes)


def quality_report(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Usage and collision statistics of semantic IDs (n_items, rq_levels + 1) under the `sid/` keys."""
    codes = codes.cpu()
    prefix = codes[:, :-1]
    report = {f"sid/usage_l{level + 1}": round(len(torch.unique(prefix[:, level])) / codebook_size, 6)
              for level in range(prefix.shape[1])}
    _, inverse, counts = torch.unique(prefix, dim=0, return_inverse=True, return_counts=True)
    report["sid/unique_prefix_share"] = round(float((counts[inverse] == 1).float().mean()), 6)
    report["sid/max_collision"] = int(codes[:, -1].max()) + 1
    report["sid/n_items"] = len(codes)
    return report
