"""Collision codes, the vocabulary (both forms) and its inverse, the item lookup, the quality report."""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from ID_generation.semantic_ids import SemanticIds, collision_codes, quality_report, with_collision_codes
from src.vocabulary import N_USER_TOKENS, Vocabulary


def layout(codebook_size: int, last_level_size: int, n_user_tokens: int = 0) -> Vocabulary:
    """A semantic-ID vocabulary with these level sizes (no items needed for the layout)."""
    return Vocabulary(torch.zeros(0, 4, dtype=torch.long), (codebook_size,) * 3 + (last_level_size,), n_user_tokens)


def _reference_collisions(prefix: np.ndarray) -> list[int]:
    seen: dict[tuple, int] = {}
    out = []
    for row in map(tuple, prefix.tolist()):  # item-id order
        out.append(seen.get(row, 0))
        seen[row] = seen.get(row, 0) + 1
    return out


def test_collision_codes_rank_items_sharing_a_prefix_in_id_order():
    prefix = np.array([[1, 2, 3], [0, 0, 0], [1, 2, 3], [1, 2, 4], [1, 2, 3], [0, 0, 0]])
    assert collision_codes(prefix).tolist() == [0, 0, 1, 0, 2, 1]
    rng = np.random.default_rng(0)
    prefix = rng.integers(0, 3, size=(500, 3))  # many collisions
    codes = with_collision_codes(prefix)
    assert codes[:, 3].tolist() == _reference_collisions(prefix)
    assert len({tuple(r) for r in codes.tolist()}) == 500  # every item's 4 codes unique


def test_token_layout_matches_the_published_formula():
    vocab = layout(codebook_size=256, last_level_size=256)
    codes = torch.tensor([[0, 0, 0, 0], [255, 255, 255, 255], [7, 8, 9, 10]])
    expected = torch.tensor([[256 * level + c + 1 for level, c in enumerate(row)] for row in codes.tolist()])
    assert torch.equal(vocab.to_tokens(codes), expected)
    assert vocab.pad == 0 and vocab.vocab_size == 3 * 256 + 256 + 2 and vocab.eos == vocab.vocab_size - 1
    big = layout(codebook_size=256, last_level_size=300)
    assert big.vocab_size == 3 * 256 + 300 + 2 and big.eos == big.vocab_size - 1
    users = layout(256, 256, n_user_tokens=N_USER_TOKENS)
    assert users.vocab_size == 3 * 256 + 256 + 2000 + 2
    assert users.user_tokens(torch.tensor([0, 1999, 2000])).tolist() == [1025, 3024, 1025]


@pytest.mark.parametrize("codebook_size, n_collisions", [(256, 1), (8, 20)])
def test_tokens_round_trip_and_all_token_ranges_disjoint(codebook_size, n_collisions):
    vocab = layout(codebook_size, max(codebook_size, n_collisions))
    rng = np.random.default_rng(1)
    codes = torch.from_numpy(np.stack([rng.integers(0, s, 1000) for s in vocab.level_sizes], axis=1))
    assert torch.equal(vocab.to_codes(vocab.to_tokens(codes)), codes)
    ranges = [set(range(o, o + s)) for o, s in zip(vocab.level_offsets.tolist(), vocab.level_sizes)]
    assert all(not (a & b) for a, b in itertools.combinations(ranges, 2))
    assert 0 not in set().union(*ranges) and vocab.eos not in set().union(*ranges)
    wrong_level = vocab.to_tokens(codes)[:, [1, 0, 2, 3]]  # level-1 tokens in the level-0 slot
    assert (vocab.to_codes(wrong_level)[:, :2] == -1).all()


def test_items_of_inverts_tokens_and_rejects_unknown_ids():
    prefix = np.random.default_rng(2).integers(0, 4, size=(300, 3))
    ids = Vocabulary.of_semantic_ids(SemanticIds.from_rqvae_codes(prefix, codebook_size=4))
    tokens = ids.item_tokens()
    assert torch.equal(ids.items_of(tokens), torch.arange(1, 301))
    assert torch.equal(ids.items_of(tokens.view(30, 10, 4)), torch.arange(1, 301).view(30, 10))
    # a prefix's next fourth code is inside the level's range but names no item
    counts = Counter(map(tuple, prefix.tolist()))
    sparse_prefix, n = min(counts.items(), key=lambda kv: kv[1])
    assert n < ids.level_sizes[-1]
    assert ids.items_of(ids.to_tokens(torch.tensor([[*sparse_prefix, n]]))).tolist() == [0]
    assert ids.items_of(ids.to_tokens(torch.tensor([[*sparse_prefix, n - 1]]))).item() > 0
    assert ids.items_of(torch.tensor([[0, 0, 0, 0], [1, 1, 1, ids.eos]])).tolist() == [0, 0]


def test_duplicate_semantic_ids_are_refused():
    with pytest.raises(ValueError, match="share a semantic ID"):
        SemanticIds(torch.tensor([[1, 2, 3, 0], [1, 2, 3, 0]]), codebook_size=4)


def test_quality_report():
    prefix = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 3], [3, 3, 3]])
    report = quality_report(torch.from_numpy(with_collision_codes(prefix)), codebook_size=4)
    assert report["sid/usage_l1"] == 0.5 and report["sid/usage_l2"] == 0.5 and report["sid/usage_l3"] == 0.5
    assert report["sid/unique_prefix_share"] == 0.5 and report["sid/max_collision"] == 2 and report["sid/n_items"] == 4


def test_item_id_vocabulary_is_the_published_layout():
    """Dense (ID): pad 0, item i = token i, [user tokens,] end-of-sequence last; tokens invert to items."""
    vocab = Vocabulary.of_item_ids(25)
    assert vocab.tokens_per_item == 1 and vocab.vocab_size == 25 + 2 and vocab.eos == 26
    assert torch.equal(vocab.item_tokens()[:, 0], torch.arange(1, 26))
    assert torch.equal(vocab.token_table()[:, 0], torch.arange(26))  # row 0: the empty slot is padding
    assert vocab.items_of(torch.tensor([[0], [1], [25], [26]])).tolist() == [0, 1, 25, 0]
    users = Vocabulary.of_item_ids(25, N_USER_TOKENS)
    assert users.vocab_size == 25 + 2000 + 2 and users.user_tokens(torch.tensor([0, 2001])).tolist() == [26, 27]
