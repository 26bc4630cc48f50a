"""Evaluation (SPEC §7): `genret`, `dense` and `uni` retrieval, in-set and cold-start groups.

- genret: beam search over the 4 semantic-ID tokens; the ranked items of the beams (an ID naming no
  item is a miss).
- dense:  every item scored by the dense head (cold-start items included), top k.
- uni:    for each K, the top-K generated items plus all cold-start items, reranked by the dense
  head; top k. Candidates are a per-row item mask, so duplicates and IDs naming no item drop out.

Metric names: `{genret|dense|uni}_{in|cold}_{val|test}/{Recall|NDCG}@k`, and for the hybrid
`uni_{in|cold}_{val|test}/Gen{K}_{Recall|NDCG}@k`.

Under several processes each evaluates its share of the batches and the rank histograms are
summed, so the metrics are exactly those of one process evaluating them all.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ID_generation.semantic_ids import SemanticIds
from src.beam_decoder import BeamDecoder
from src.data import Batch, Examples, SequenceData
from src.decoding import beam_search
from src.distributed import SINGLE, Processes
from src.errors import DeviceMemoryError
from src.metrics import RankHistogram
from src.model import Recommender


BEAM_MEMORY_SHARE = 0.25        # of a GPU's memory, for one evaluation batch's beam search
CPU_BEAM_MEMORY = 2 * 2**30     # bytes, on a CPU
BEAM_COPIES = 8                 # (beams × vocabulary) float32 tensors alive at once, with margin


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
                 cold_items: torch.Tensor, processes: Processes = SINGLE):
        """cold_items: 1-based ids of every cold-start item (validation and test), the hybrid's pool.
        processes: the data-parallel processes sharing the work (every one must call `evaluate`)."""
        self.model, self.data, self.sids, self.settings = model, data, sids, settings
        self.processes = processes
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
        histograms = {prefix: RankHistogram(self.settings.ks, self.data.device) for prefix in self._prefixes(methods)}
        was_training = self.model.training
        self.model.eval()
        vectors = self.model.item_vectors() if ("dense" in methods or "uni" in methods) else None
        # Processes share whole batches, the ones a single process would form, so every example is
        # scored in the same batch (same padding) as without sharding: the metrics are identical.
        rows = self.rows_per_batch(methods)
        chunks = list(examples.chunks(rows))
        try:
            for chunk in chunks[self.processes.share(len(chunks))]:
                for prefix, candidates, targets in self._batch_rankings(chunk, methods, vectors):
                    histograms[prefix].add(candidates, targets)
        except torch.OutOfMemoryError:
            raise DeviceMemoryError(
                f"evaluation ran out of device memory with {rows} sequences per batch and {self.settings.num_beams} "
                f"beams; lower dataset.TIGER.trainer.eval_batch_size (now {self.settings.batch_size}) or "
                "evaluation.num_beams") from None
        self.model.train(was_training)
        if histograms:  # one collective for all of them
            totals = self.processes.sum_(torch.stack([h.counts for h in histograms.values()]))
            for h, counts in zip(histograms.values(), totals):
                h.counts = counts
        return {prefix + metric: value for prefix, h in histograms.items() if h.count  # none for an empty group
                for metric, value in h.means().items()}

    def rows_per_batch(self, methods: tuple[str, ...]) -> int:
        """Sequences per evaluation batch: `eval_batch_size`, or fewer where the beam search of that
        many would not fit the memory budget (`BEAM_MEMORY_SHARE` of a GPU, `CPU_BEAM_MEMORY` on a
        CPU). Batches are masked or packed, so the metrics do not depend on it."""
        if not ({"genret", "uni"} & set(methods)):
            return self.settings.batch_size
        device = self.data.device
        budget = (torch.cuda.get_device_properties(device).total_memory * BEAM_MEMORY_SHARE
                  if device.type == "cuda" else CPU_BEAM_MEMORY)
        # per sequence: float32 logits, log-probabilities and candidate scores of beams × vocabulary, with
        # the temporaries of softmax and top-k (measured: ~1.7 MB a sequence at Beauty's 1,026 tokens, 100 beams)
        per_row = BEAM_COPIES * self.settings.num_beams * self.model.spec.vocab_size * 4
        return max(1, min(self.settings.batch_size, int(budget // per_row)))

    def _prefixes(self, methods: tuple[str, ...]) -> list[str]:
        """Metric-name prefixes of the enabled methods: `genret/`, `dense/`, `uni/Gen{K}_`."""
        return ([f"{m}/" for m in ("genret", "dense") if m in methods]
                + ([f"uni/Gen{k}_" for k in self.settings.uni_ks] if "uni" in methods else []))

    def _batch_rankings(self, chunk, methods, vectors):
        """(prefix, ranked candidates (B, C), targets (B,)) for each metric prefix of one chunk."""
        batch = self.data.batch(chunk, self.model.packing_groups)
        k = max(self.settings.ks)
        with autocast(self.data.device):
            encoded = self.model.encode(batch)
            generated = self._generate(encoded, batch) if ("genret" in methods or "uni" in methods) else None
        if "genret" in methods:
            yield "genret/", generated, batch.targets
        if "dense" in methods or "uni" in methods:
            scores = self.model.dense_scores(self.model.dense_query(encoded, batch), vectors)
            if "dense" in methods:
                yield "dense/", top_items(scores, k), batch.targets
            if "uni" in methods:
                for k_gen in self.settings.uni_ks:
                    pool = self._hybrid_pool(generated[:, :k_gen])
                    yield f"uni/Gen{k_gen}_", top_items(scores.masked_fill(~pool, float("-inf")), k), batch.targets

    def _generate(self, encoded: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, num_beams) item ids of the beams, best first; 0 where a beam names no item."""
        decoder = BeamDecoder(self.model.t5, encoded, batch.mask, batch.layout)
        return beam_search(decoder.next_token_logits, len(batch), self.settings.num_beams, self.sids, encoded.device,
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
