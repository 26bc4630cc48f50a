"""Evaluation (docs/method.md §7): the retrievals of src/retrieval.py, in-set and cold-start groups.

genret decodes by beam search over the item tokens; dense scores every item by the dense head; uni
reranks generated candidates plus every cold-start item by the dense head. Candidates are a per-row
item mask, so duplicates and IDs naming no item drop out. Metric names: `retrieval.metric_name`.

Under several processes each evaluates its share of the batches and the rank histograms are
summed, so the metrics are exactly those of one process evaluating them all.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from src.beam_decoder import BeamDecoder
from src.data import Batch, Examples, SequenceData
from src.decoding import BeamResult, beam_search
from src.distributed import SINGLE, Processes
from src.errors import DeviceMemoryError
from src.metrics import RankHistogram
from src.model import Recommender
from src.retrieval import DENSE, GENRET, GROUPS, UNI, metric_name
from src.vocabulary import Vocabulary

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
    modes: tuple[str, ...]       # the retrievals the method supports (src/retrieval.py)


class Evaluator:
    """Full-ranking Recall@k and NDCG@k of a model's retrievals on the validation or test examples."""

    def __init__(self, model: Recommender, data: SequenceData, vocab: Vocabulary, settings: EvalSettings,
                 cold_items: torch.Tensor, processes: Processes = SINGLE):
        """vocab: the run's vocabulary (decoding); cold_items: 1-based ids of every cold-start item
        (validation and test), the hybrid's pool. processes: the data-parallel processes sharing the
        work (every one must call `evaluate`)."""
        self.model, self.data, self.vocab, self.settings = model, data, vocab, settings
        self.processes = processes
        self.cold_items = torch.as_tensor(cold_items, dtype=torch.long, device=data.device)

    @torch.no_grad()
    def evaluate(self, split: str, groups: tuple[str, ...] = GROUPS,
                 modes: tuple[str, ...] | None = None) -> dict[str, float]:
        """Mean metrics of the `split` (val | test) examples for each group and each of `modes` (None:
        all) that the method supports, named by `retrieval.metric_name`."""
        results: dict[str, float] = {}
        for group in groups:
            means = self.evaluate_examples(self.data.eval_examples(split, cold=(group == "cold")), modes)
            for (mode, generated, measure, k), value in means.items():
                results[metric_name(mode, group, split, measure, k, generated)] = value
        return results

    @torch.no_grad()
    @torch.compiler.set_stance("force_eager")
    def evaluate_examples(self, examples: Examples, modes: tuple[str, ...] | None = None
                          ) -> dict[tuple[str, int | None, str, int], float]:
        """Mean metrics of `examples` for each of `modes` (None: all) that the method supports, keyed
        (mode, hybrid K or None, Recall | NDCG, k). Eager also where training compiled the model's
        blocks (`trainer.compile_scope`): they were compiled for training's shapes, and evaluation's
        would each cost a recompilation."""
        modes = tuple(m for m in self.settings.modes if modes is None or m in modes)
        histograms = {variant: RankHistogram(self.settings.ks, self.data.device) for variant in self._variants(modes)}
        was_training = self.model.training
        self.model.eval()
        vectors = self.model.item_vectors() if (DENSE in modes or UNI in modes) else None
        # Processes share whole batches, the ones a single process would form, so every example is
        # scored in the same batch (same padding) as without sharding: the metrics are identical.
        rows = self.rows_per_batch(modes)
        chunks = list(examples.chunks(rows))
        try:
            for chunk in chunks[self.processes.share(len(chunks))]:
                for variant, candidates, targets in self._batch_rankings(chunk, modes, vectors):
                    histograms[variant].add(candidates, targets)
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
        return {(*variant, measure, k): value for variant, h in histograms.items() if h.count  # none for an empty group
                for (measure, k), value in h.means().items()}

    def rows_per_batch(self, modes: tuple[str, ...]) -> int:
        """Sequences per evaluation batch: `eval_batch_size`, or fewer where the beam search of that
        many would not fit the memory budget (`BEAM_MEMORY_SHARE` of a GPU, `CPU_BEAM_MEMORY` on a
        CPU). Batches are masked or packed, so the metrics do not depend on it."""
        if not ({GENRET, UNI} & set(modes)):
            return self.settings.batch_size
        device = self.data.device
        budget = (torch.cuda.get_device_properties(device).total_memory * BEAM_MEMORY_SHARE
                  if device.type == "cuda" else CPU_BEAM_MEMORY)
        # per sequence: float32 logits, log-probabilities and candidate scores of beams × vocabulary, with
        # the temporaries of softmax and top-k (measured: ~1.7 MB a sequence at Beauty's 1,026 tokens, 100 beams)
        per_row = BEAM_COPIES * self.settings.num_beams * self.vocab.vocab_size * 4
        return max(1, min(self.settings.batch_size, int(budget // per_row)))

    def _variants(self, modes: tuple[str, ...]) -> list[tuple[str, int | None]]:
        """(mode, hybrid K or None) of each ranking of `modes`: the hybrid ranks once per K of `uni_ks`."""
        return ([(m, None) for m in (GENRET, DENSE) if m in modes]
                + ([(UNI, k) for k in self.settings.uni_ks] if UNI in modes else []))

    def _batch_rankings(self, chunk, modes, vectors):
        """((mode, hybrid K or None), ranked candidates (B, C), targets (B,)) for each ranking of one chunk."""
        batch = self.data.batch(chunk, self.model.packing_groups)
        for variant, ranking in self.rankings(batch, modes, vectors, max(self.settings.ks)):
            yield variant, ranking.items, batch.targets

    def rankings(self, batch: Batch, modes: tuple[str, ...], vectors: torch.Tensor | None, k: int
                 ) -> Iterator[tuple[tuple[str, int | None], Ranking]]:
        """((mode, hybrid K or None), ranking) of each ranking of `modes` for one batch: genret's
        `num_beams` beams (scores: summed log-probabilities), dense's and uni's top k (scores: the dense
        head's). vectors: `model.item_vectors()`, needed by dense and uni."""
        with autocast(self.data.device):
            encoded = self.model.encode(batch)
            beams = self._beams(encoded, batch) if (GENRET in modes or UNI in modes) else None
        if GENRET in modes:
            yield (GENRET, None), Ranking(beams.items, beams.scores)
        if DENSE in modes or UNI in modes:
            scores = self.model.dense_scores(self.model.dense_query(encoded, batch), vectors)
            if DENSE in modes:
                yield (DENSE, None), top_scored(scores, k)
            if UNI in modes:
                for k_gen in self.settings.uni_ks:
                    pool = self._hybrid_pool(beams.items[:, :k_gen])
                    yield (UNI, k_gen), top_scored(scores.masked_fill(~pool, float("-inf")), k)

    def _generate(self, encoded: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, num_beams) item ids of the beams, best first; 0 where a beam names no item."""
        return self._beams(encoded, batch).items

    def _beams(self, encoded: torch.Tensor, batch: Batch) -> BeamResult:
        decoder = BeamDecoder(self.model.t5, encoded, batch.mask, batch.layout)
        return beam_search(decoder.next_token_logits, len(batch), self.settings.num_beams, self.vocab, encoded.device,
                           constrained=self.settings.constrained)

    def _hybrid_pool(self, generated: torch.Tensor) -> torch.Tensor:
        """(B, n_items) bool: the generated items of each row (valid ones) plus every cold-start item."""
        n_items = len(self.model.item_text)
        pool = torch.zeros(len(generated), n_items + 1, dtype=torch.bool, device=generated.device)
        pool.scatter_(1, generated, True)
        pool[:, self.cold_items] = True
        return pool[:, 1:]  # column 0 collected the IDs that name no item


@dataclass(frozen=True)
class Ranking:
    """Ranked candidates of each row, best first."""
    items: torch.Tensor    # (B, C) 1-based item ids; 0 where a candidate names no item
    scores: torch.Tensor   # (B, C) what they were ranked by (-inf where no item)


def top_scored(scores: torch.Tensor, k: int) -> Ranking:
    """The k highest of scores (B, n_items) (column j = item j + 1); id 0 where fewer than k are finite."""
    values, index = scores.topk(min(k, scores.shape[1]), dim=1)
    return Ranking(torch.where(torch.isfinite(values), index + 1, torch.zeros_like(index)), values)


def top_items(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) 1-based ids of the highest-scoring items; 0 where fewer than k items are finite."""
    return top_scored(scores, k).items


def autocast(device: torch.device, cache: bool = True):
    """bfloat16 autocast on a GPU that supports it; full precision elsewhere. cache=False: no cached
    weight casts, as a step captured as a CUDA graph needs."""
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=cache)
