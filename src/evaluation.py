"""Evaluation (SPEC §7): `genret`, `dense` and `uni` retrieval, in-set and cold-start groups.

- genret: beam search over the 4 semantic-ID tokens; the ranked items of the beams (an ID naming no
  item is a miss).
- dense:  every item scored by the dense head (cold-start items included), top k.
- uni:    for each K, the top-K generated items plus all cold-start items, reranked by the dense
  head; top k. Candidates are a per-row item mask, so duplicates and IDs naming no item drop out.

Metric names: `{genret|dense|uni}_{in|cold}_{val|test}/{Recall|NDCG}@k`, and for the hybrid
`uni_{in|cold}_{val|test}/Gen{K}_{Recall|NDCG}@k`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ID_generation.semantic_ids import SemanticIds
from src.beam_decoder import BeamDecoder
from src.data import Examples, SequenceData
from src.decoding import beam_search
from src.metrics import MetricAccumulator, recall_ndcg
from src.model import Recommender


@dataclass(frozen=True)
class EvalSettings:
    ks: tuple[int, ...]          # cut-offs of the metrics (published: 10)
    uni_ks: tuple[int, ...]      # generated candidates kept by the hybrid (published: 20..100)
    num_beams: int
    constrained: bool
    batch_size: int
    genret: bool                 # which retrievals the method supports
    dense: bool
    uni: bool


class Evaluator:
    def __init__(self, model: Recommender, data: SequenceData, sids: SemanticIds | None, settings: EvalSettings,
                 cold_items: torch.Tensor):
        """cold_items: 1-based ids of every cold-start item (validation and test), the hybrid's pool."""
        self.model, self.data, self.sids, self.settings = model, data, sids, settings
        self.cold_items = torch.as_tensor(cold_items, dtype=torch.long, device=data.device)

    @torch.no_grad()
    def evaluate(self, which: str, groups: tuple[str, ...] = ("in", "cold"),
                 methods: tuple[str, ...] = ("genret", "dense", "uni")) -> dict[str, float]:
        """Mean metrics of the `which` (val | test) examples for each group and enabled method."""
        results: dict[str, float] = {}
        for group in groups:
            means = self.evaluate_examples(self.data.eval_examples(which, cold=(group == "cold")), methods)
            for name, value in means.items():
                method, _, rest = name.partition("/")
                results[f"{method}_{group}_{which}/{rest}"] = value
        return results

    @torch.no_grad()
    def evaluate_examples(self, examples: Examples, methods: tuple[str, ...]) -> dict[str, float]:
        """Mean metrics of `examples` per enabled method: `{method}/{metric}` (uni: `uni/Gen{K}_{metric}`)."""
        methods = tuple(m for m in methods if getattr(self.settings, m))
        was_training = self.model.training
        self.model.eval()
        vectors = self.model.item_vectors() if ("dense" in methods or "uni" in methods) else None
        accumulators: dict[str, MetricAccumulator] = {}
        for chunk in examples.chunks(self.settings.batch_size):
            for prefix, per_example in self._batch_metrics(chunk, methods, vectors).items():
                accumulators.setdefault(prefix, MetricAccumulator()).add(per_example)
        self.model.train(was_training)
        return {prefix + metric: value for prefix, acc in accumulators.items() for metric, value in acc.means().items()}

    def _batch_metrics(self, chunk, methods, vectors) -> dict[str, dict[str, torch.Tensor]]:
        """Per-example metrics of one chunk, keyed by name prefix (`genret/`, `dense/`, `uni/Gen{K}_`)."""
        batch = self.data.batch(chunk)
        ks = self.settings.ks
        with autocast(self.data.device):
            encoded = self.model.encode(batch)
            generated = self._generate(encoded, batch.mask) if ("genret" in methods or "uni" in methods) else None
        out: dict[str, dict[str, torch.Tensor]] = {}
        if "genret" in methods:
            out["genret/"] = recall_ndcg(generated, batch.targets, ks)
        if "dense" in methods or "uni" in methods:
            scores = self.model.dense_scores(self.model.dense_query(encoded, batch.last), vectors)
            if "dense" in methods:
                out["dense/"] = recall_ndcg(top_items(scores, max(ks)), batch.targets, ks)
            if "uni" in methods:
                for k_gen in self.settings.uni_ks:
                    ranked = top_items(scores.masked_fill(~self._hybrid_pool(generated[:, :k_gen]), float("-inf")), max(ks))
                    out[f"uni/Gen{k_gen}_"] = recall_ndcg(ranked, batch.targets, ks)
        return out

    def _generate(self, encoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, num_beams) item ids of the beams, best first; 0 where a beam names no item."""
        decoder = BeamDecoder(self.model.t5, encoded, mask)
        return beam_search(decoder.next_token_logits, len(encoded), self.settings.num_beams, self.sids, encoded.device,
                           start_token=self.model.spec.pad, constrained=self.settings.constrained).items

    def _hybrid_pool(self, generated: torch.Tensor) -> torch.Tensor:
        """(B, n_items) bool: the generated items of each row (valid ones) plus every cold-start item."""
        n_items = len(self.model.item_text)
        pool = torch.zeros(len(generated), n_items + 1, dtype=torch.bool, device=generated.device)
        pool.scatter_(1, generated, True)
        pool[:, self.cold_items] = True
        return pool[:, 1:]  # column 0 collected the IDs that name no item


def top_items(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) 1-based ids of the highest-scoring items; 0 where fewer than k items are finite."""
    values, index = scores.topk(min(k, scores.shape[1]), dim=1)
    return torch.where(torch.isfinite(values), index + 1, torch.zeros_like(index))


def autocast(device: torch.device):
    """bfloat16 autocast on a GPU that supports it; full precision elsewhere."""
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
