"""Beam search against exhaustive enumeration of all 4-token sequences, constrained and not."""
from __future__ import annotations

import itertools

import pytest
import torch

from ID_generation.semantic_ids import SemanticIds
from src.decoding import PrefixMask, beam_search
from src.vocabulary import Vocabulary

CPU = torch.device("cpu")
# codebook 2 -> vocabulary 3*2 + max(2, 3) + 2 = 11 tokens
CODES = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 2], [0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0]])


class TableModel:
    """Random next-token logits for every (input row, decoder prefix): an exhaustively checkable model."""

    def __init__(self, batch: int, vocab: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.tables = [torch.randn(batch, *([vocab] * (t + 1)), generator=g) * 3 for t in range(4)]
        self.calls = []

    def __call__(self, prefixes: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
        if parents is None:
            assert not self.calls  # only the first call has no parents
        else:  # each prefix extends its parent's by one token (a caching decoder relies on it)
            assert torch.equal(prefixes[:, :, :-1],
                               self.previous.gather(1, parents[..., None].expand(-1, -1, prefixes.shape[2] - 1)))
        self.previous = prefixes
        self.calls.append(tuple(prefixes.shape))
        batch, beams, length = prefixes.shape
        rows = torch.arange(batch).repeat_interleave(beams)
        decoded = prefixes[:, :, 1:].flatten(0, 1)
        return self.tables[length - 1][(rows, *decoded.T)].view(batch, beams, -1)

    def sequence_logp(self, row: int, tokens: tuple[int, ...]) -> float:
        return sum(float(torch.log_softmax(self.tables[t][(row, *tokens[:t])], dim=-1)[tokens[t]]) for t in range(4))


@pytest.fixture
def setup():
    sids = Vocabulary.of_semantic_ids(SemanticIds(CODES, codebook_size=2))
    vocab = sids.vocab_size
    return sids, vocab, TableModel(batch=3, vocab=vocab)


def exhaustive(model: TableModel, row: int, vocab: int, allowed=None) -> list[tuple[float, tuple[int, ...]]]:
    sequences = allowed if allowed is not None else itertools.product(range(vocab), repeat=4)
    return sorted(((model.sequence_logp(row, s), tuple(s)) for s in sequences), reverse=True)


def test_wide_unconstrained_search_equals_exhaustive_top(setup):
    sids, vocab, model = setup
    n = 25
    result = beam_search(model, 3, n_beams=vocab ** 3, vocab=sids, device=CPU)  # wide enough to be exact
    for row in range(3):
        best = exhaustive(model, row, vocab)[:n]
        assert [tuple(t) for t in result.tokens[row, :n].tolist()] == [s for _, s in best]
        torch.testing.assert_close(result.scores[row, :n], torch.tensor([p for p, _ in best]), rtol=0, atol=1e-4)


def test_narrow_search_scores_are_exact_sorted_and_distinct(setup):
    sids, vocab, model = setup
    result = beam_search(model, 3, n_beams=7, vocab=sids, device=CPU)
    assert result.tokens.shape == (3, 7, 4) and result.items.shape == (3, 7)
    assert len(model.calls) == 4 and model.calls[0] == (3, 1, 1) and model.calls[-1] == (3, 7, 4)  # one call per step
    for row in range(3):
        seqs = [tuple(t) for t in result.tokens[row].tolist()]
        assert len(set(seqs)) == 7
        expected = torch.tensor([model.sequence_logp(row, s) for s in seqs])
        torch.testing.assert_close(result.scores[row], expected, rtol=0, atol=1e-4)
        assert (result.scores[row][:-1] >= result.scores[row][1:]).all()
        valid = sids.items_of(result.tokens[row])
        assert torch.equal(result.items[row], valid)  # a sequence naming no item is 0 (a miss)


def test_constrained_search_returns_only_items_best_first(setup):
    sids, vocab, model = setup
    item_tokens = [tuple(t) for t in sids.item_tokens().tolist()]
    result = beam_search(model, 3, n_beams=4, vocab=sids, device=CPU, constrained=True)
    for row in range(3):
        best = exhaustive(model, row, vocab, allowed=item_tokens)[:4]
        assert [tuple(t) for t in result.tokens[row].tolist()] == [s for _, s in best]
        assert sorted(result.items[row].tolist()) == sorted(item_tokens.index(s) + 1 for _, s in best)
        torch.testing.assert_close(result.scores[row], torch.tensor([p for p, _ in best]), rtol=0, atol=1e-4)


def test_constrained_search_with_more_beams_than_items_pads_with_misses(setup):
    sids, _, model = setup
    result = beam_search(model, 3, n_beams=10, vocab=sids, device=CPU, constrained=True)
    for row in range(3):
        assert sorted(i for i in result.items[row].tolist() if i) == list(range(1, 7))
        assert (result.items[row, 6:] == 0).all() and torch.isinf(result.scores[row, 6:]).all()


def test_prefix_mask_allows_exactly_the_item_continuations(setup):
    sids, _, _ = setup
    mask = PrefixMask(sids, CPU)
    tokens = sids.item_tokens()
    off = sids.level_offsets.tolist()
    first = mask.allowed(torch.zeros(1, 0, dtype=torch.long), 0)[0]
    assert first.nonzero().flatten().tolist() == [off[0], off[0] + 1]
    after_000 = mask.allowed(tokens[:1, :3], 3)[0]  # prefix (0,0,0) -> fourth codes 0,1,2
    assert after_000.nonzero().flatten().tolist() == [off[3], off[3] + 1, off[3] + 2]
    nowhere = mask.allowed(torch.tensor([[off[0] + 1, off[1] + 0, off[2] + 0]]), 3)[0]  # (1,0,0): no item
    assert not nowhere.any()
