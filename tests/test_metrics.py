"""Recall@k and NDCG@k against a brute-force reference."""
from __future__ import annotations

import math

import torch

from src.metrics import MetricAccumulator, recall_ndcg


def reference(candidates: list[int], target: int, k: int) -> tuple[float, float]:
    for rank, item in enumerate(candidates[:k], start=1):
        if item == target and item != 0:
            return 1.0, 1.0 / math.log2(rank + 1)
    return 0.0, 0.0


def test_matches_brute_force_for_several_k():
    g = torch.Generator().manual_seed(0)
    candidates = torch.randint(0, 30, (200, 20), generator=g)
    targets = torch.randint(1, 30, (200,), generator=g)
    ks = (1, 5, 10, 20)
    got = recall_ndcg(candidates, targets, ks)
    for k in ks:
        expected = [reference(c, t, k) for c, t in zip(candidates.tolist(), targets.tolist())]
        assert got[f"Recall@{k}"].tolist() == [r for r, _ in expected]
        torch.testing.assert_close(got[f"NDCG@{k}"], torch.tensor([n for _, n in expected]))


def test_first_occurrence_counts_and_zero_slots_never_hit():
    candidates = torch.tensor([[0, 0, 5, 5], [3, 1, 2, 4], [0, 0, 0, 0]])
    targets = torch.tensor([5, 9, 7])
    got = recall_ndcg(candidates, targets, (2, 4))
    assert got["Recall@2"].tolist() == [0, 0, 0] and got["Recall@4"].tolist() == [1, 0, 0]
    assert got["NDCG@4"][0].item() == 1 / math.log2(4)


def test_accumulator_averages_over_batches():
    acc = MetricAccumulator()
    acc.add({"Recall@10": torch.tensor([1.0, 0.0, 1.0])})
    acc.add({"Recall@10": torch.tensor([0.0])})
    assert acc.means() == {"Recall@10": 0.5} and acc.count == 4
    assert MetricAccumulator().means() == {}
