"""Recall@k and NDCG@k against a brute-force reference; the rank histogram is exact under any
batching."""
from __future__ import annotations

import math

import pytest
import torch

from src.metrics import RankHistogram


def reference(candidates: list[int], target: int, k: int) -> tuple[float, float]:
    for rank, item in enumerate(candidates[:k], start=1):
        if item == target and item != 0:
            return 1.0, 1.0 / math.log2(rank + 1)
    return 0.0, 0.0


def means_of(candidates: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    histogram = RankHistogram(ks)
    histogram.add(candidates, targets)
    return histogram.means()


def test_matches_brute_force_for_several_k():
    g = torch.Generator().manual_seed(0)
    candidates = torch.randint(0, 30, (200, 20), generator=g)
    targets = torch.randint(1, 30, (200,), generator=g)
    ks = (1, 5, 10, 20)
    got = means_of(candidates, targets, ks)
    for k in ks:
        expected = [reference(c, t, k) for c, t in zip(candidates.tolist(), targets.tolist())]
        assert got["Recall", k] == pytest.approx(sum(r for r, _ in expected) / 200, abs=1e-12)
        assert got["NDCG", k] == pytest.approx(sum(n for _, n in expected) / 200, abs=1e-12)


def test_first_occurrence_counts_and_zero_slots_never_hit():
    candidates = torch.tensor([[0, 0, 5, 5], [3, 1, 2, 4], [0, 0, 0, 0]])
    targets = torch.tensor([5, 9, 7])
    got = means_of(candidates, targets, (2, 4))
    assert got["Recall", 2] == 0 and got["Recall", 4] == pytest.approx(1 / 3)
    assert got["NDCG", 4] == pytest.approx(1 / math.log2(4) / 3)  # the first 5, at rank 3


def test_histogram_is_the_same_whatever_the_batching():
    g = torch.Generator().manual_seed(1)
    candidates = torch.randint(0, 12, (97, 10), generator=g)
    targets = torch.randint(1, 12, (97,), generator=g)
    whole, batched = RankHistogram((5, 10)), RankHistogram((5, 10))
    whole.add(candidates, targets)
    for part in torch.arange(97).tensor_split(7):
        batched.add(candidates[part], targets[part])
    assert torch.equal(whole.counts, batched.counts) and whole.count == 97
    assert whole.means() == batched.means()  # exactly: computed from the same integer counts


def test_candidates_shorter_than_k_and_empty_histogram():
    got = means_of(torch.tensor([[4, 2], [4, 2]]), torch.tensor([2, 7]), (10,))  # fewer candidates than k
    assert got == {("Recall", 10): 0.5, ("NDCG", 10): pytest.approx(1 / math.log2(3) / 2)}
    assert RankHistogram((10,)).count == 0 and RankHistogram((10,)).means() == {("Recall", 10): 0.0, ("NDCG", 10): 0.0}
