"""Dense ranking and the hybrid candidate set against brute force; metric names per group."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import host_waits
from src.evaluation import EvalSettings, Evaluator, top_items
from test_model import tiny


def settings(**kw) -> EvalSettings:
    values = dict(ks=(10,), uni_ks=(3, 6), num_beams=6, constrained=False, batch_size=5,
                  modes=("genret", "dense", "uni"))
    return EvalSettings(**{**values, **kw})


def reference_metrics(ranked: list[int], target: int) -> tuple[float, float]:
    for rank, item in enumerate(ranked[:10], start=1):
        if item == target:
            return 1.0, 1 / math.log2(rank + 1)
    return 0.0, 0.0


def test_dense_and_hybrid_match_brute_force():
    model, data, sids, split = tiny()
    cold = torch.tensor([3, 7, 11])
    evaluator = Evaluator(model, data, sids, settings(), cold)
    got = evaluator.evaluate("test", groups=("in",))
    examples = data.eval_examples("test", cold=False)
    batch = data.batch(examples)
    with torch.no_grad():
        encoded = model.encode(batch)
        scores = model.dense_scores(model.dense_query(encoded, batch), model.item_vectors())
        generated = evaluator._generate(encoded, batch)
    dense, uni = [], {3: [], 6: []}
    for b in range(len(batch)):
        order = sorted(range(scores.shape[1]), key=lambda j: -float(scores[b, j]))
        dense.append(reference_metrics([j + 1 for j in order], int(batch.targets[b])))
        for k in (3, 6):
            pool = {int(i) for i in generated[b, :k] if i > 0} | set(cold.tolist())
            ranked = sorted(pool, key=lambda i: -float(scores[b, i - 1]))
            uni[k].append(reference_metrics(ranked, int(batch.targets[b])))

    def mean(rows, i):
        return sum(r[i] for r in rows) / len(rows)

    assert math.isclose(got["dense_in_test/Recall@10"], mean(dense, 0), abs_tol=1e-6)
    assert math.isclose(got["dense_in_test/NDCG@10"], mean(dense, 1), abs_tol=1e-6)
    for k in (3, 6):
        assert math.isclose(got[f"uni_in_test/Gen{k}_Recall@10"], mean(uni[k], 0), abs_tol=1e-6)
        assert math.isclose(got[f"uni_in_test/Gen{k}_NDCG@10"], mean(uni[k], 1), abs_tol=1e-6)


@pytest.mark.parametrize("packed", [True, False])
def test_an_evaluation_batch_never_makes_the_host_wait_for_the_device(packed):
    """Once a batch is laid out (from host-side lengths), its encoder pass, beam search, dense and hybrid
    rankings and metric counts run without a host synchronisation, so a GPU evaluates batch after batch
    without idling while the host catches up (the counts were a `bincount`, a wait per ranking)."""
    from src.metrics import RankHistogram

    model, data, sids, _ = tiny()
    evaluator = Evaluator(model, data, sids, settings(), torch.tensor([3, 7, 11]))
    batch = data.batch(data.eval_examples("test", cold=False), model.packing_groups if packed else 0)
    assert (batch.layout is not None) == packed
    vectors = model.item_vectors()
    histogram = RankHistogram((10,))

    def evaluate_batch():
        with torch.no_grad():
            for _, ranking in evaluator.rankings(batch, ("genret", "dense", "uni"), vectors, 10):
                histogram.add(ranking.items, batch.targets)

    waits, _ = host_waits(evaluate_batch)
    assert not waits, waits
    assert histogram.count == 4 * len(batch)  # genret, dense, uni at 3 and 6 generated


def test_hybrid_pool_is_generated_items_plus_cold_items_without_misses():
    model, data, sids, _ = tiny()
    evaluator = Evaluator(model, data, sids, settings(), torch.tensor([2, 9]))
    generated = torch.tensor([[5, 0, 5, 9], [0, 0, 0, 0]])  # a duplicate, IDs naming no item, a cold item
    pool = evaluator._hybrid_pool(generated)
    assert pool.shape == (2, 30)
    assert (pool[0].nonzero().flatten() + 1).tolist() == [2, 5, 9]
    assert (pool[1].nonzero().flatten() + 1).tolist() == [2, 9]
    ranked = top_items(torch.randn(2, 30).masked_fill(~pool, float("-inf")), 10)
    assert set(ranked[1].tolist()) == {2, 9, 0} and (ranked[1, 2:] == 0).all()  # fewer than 10: padded misses


def test_metric_names_cover_groups_methods_and_hybrid_ks():
    model, data, sids, _ = tiny()
    names = set(Evaluator(model, data, sids, settings(), torch.tensor([1])).evaluate("test"))
    expected = {f"{m}_{g}_test/{x}@10" for m in ("genret", "dense") for g in ("in", "cold") for x in ("Recall", "NDCG")}
    expected |= {f"uni_{g}_test/Gen{k}_{x}@10" for g in ("in", "cold") for k in (3, 6) for x in ("Recall", "NDCG")}
    assert names == expected
    only_dense = Evaluator(model, data, sids, settings(modes=("dense",)), torch.tensor([1]))
    assert set(only_dense.evaluate("val", groups=("in",))) == {"dense_in_val/Recall@10", "dense_in_val/NDCG@10"}


def test_packed_evaluation_equals_padded_with_the_transformers_t5():
    """Packed batches (sorted, packed encoder, packed cross-attention) give the padded metrics."""
    reference, data, sids, _ = tiny(("dataset.TIGER.T5.implementation=transformers",))
    compact, _, _, _ = tiny()  # the default
    compact.load_state_dict(reference.state_dict())
    assert compact.packing_groups > 0 and reference.packing_groups == 0
    cold = torch.tensor([3, 7, 11])
    got, expected = (Evaluator(m, data, sids, settings(batch_size=7), cold).evaluate("test")
                     for m in (compact, reference))
    assert got.keys() == expected.keys() and len(got) > 10
    for name, value in expected.items():
        assert math.isclose(got[name], value, abs_tol=1e-9), name


def test_evaluation_batches_are_bounded_by_memory_with_the_same_metrics(monkeypatch):
    """A huge eval_batch_size: the beam search still works in batches that fit the memory budget."""
    import src.evaluation as evaluation

    model, data, sids, _ = tiny()
    cold = torch.tensor([3, 7, 11])
    small = Evaluator(model, data, sids, settings(batch_size=4), cold).evaluate("test")
    huge = Evaluator(model, data, sids, settings(batch_size=1_000_000), cold)
    per_row = evaluation.BEAM_COPIES * huge.settings.num_beams * model.spec.vocab.vocab_size * 4
    monkeypatch.setattr(evaluation, "CPU_BEAM_MEMORY", 3 * per_row)
    assert huge.rows_per_batch(("genret",)) == 3 and huge.rows_per_batch(("dense",)) == 1_000_000
    sizes = []
    real = huge._batch_rankings
    monkeypatch.setattr(huge, "_batch_rankings", lambda chunk, *a: (sizes.append(len(chunk)), real(chunk, *a))[1])
    got = huge.evaluate("test")
    assert sizes and max(sizes) == 3
    assert got.keys() == small.keys()
    for name, value in small.items():
        assert math.isclose(got[name], value, abs_tol=1e-9), name


def test_running_out_of_device_memory_names_the_setting(monkeypatch):
    from src.errors import DeviceMemoryError

    model, data, sids, _ = tiny()
    evaluator = Evaluator(model, data, sids, settings(batch_size=5), torch.tensor([3]))

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(evaluator, "_batch_rankings", out_of_memory)
    with pytest.raises(DeviceMemoryError, match="lower dataset.TIGER.trainer.eval_batch_size \\(now 5\\)"):
        evaluator.evaluate("test")
