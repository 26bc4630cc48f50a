"""Leave-one-out split, seen items and cold-start sets (docs/method.md §2).

Sequences are cut to their last `max_items_per_seq` items *before* splitting. For a sequence of
length L: the last item is the test target, the second-to-last the validation target, and every
prefix ending before that is a training example (target at position t in 1..L-3, input = items
0..t-1). Seen items are those at any position but the last two; a validation or test target that
is not seen is cold-start. Examples are index pairs into the sequences, never copied histories.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sequences import Sequences, concat_ranges


@dataclass(frozen=True)
class Split:
    """The examples of one dataset, as indices into `sequences`.

    sequences:     the cut (and user-subsampled) sequences
    train_user:    (n_train,) sequence index of each training example
    train_pos:     (n_train,) position of its target; its input is row[:pos]
    val_user:      (n_val,) sequences of length >= 3, target at L-2
    test_user:     (n_test,) sequences of length >= 2, target at L-1
    val_is_cold:   (n_val,) whether that validation target is a cold-start item
    test_is_cold:  (n_test,)
    seen_items:    sorted ids of the items at any position but the last two
    cold_val_items, cold_test_items: sorted unique cold-start target ids
    """
    sequences: Sequences
    train_user: np.ndarray
    train_pos: np.ndarray
    val_user: np.ndarray
    test_user: np.ndarray
    val_is_cold: np.ndarray
    test_is_cold: np.ndarray
    seen_items: np.ndarray
    cold_val_items: np.ndarray
    cold_test_items: np.ndarray

    def val_targets(self) -> np.ndarray:
        return self.sequences.items[self.sequences.offsets[self.val_user + 1] - 2]

    def test_targets(self) -> np.ndarray:
        return self.sequences.items[self.sequences.offsets[self.test_user + 1] - 1]

    def stats(self) -> dict[str, int]:
        return {
            "train_examples": len(self.train_user),
            "val_examples": len(self.val_user),
            "test_examples": len(self.test_user),
            "cold_val_examples": int(self.val_is_cold.sum()),
            "cold_test_examples": int(self.test_is_cold.sum()),
            "seen_items": len(self.seen_items),
            "cold_val_items": len(self.cold_val_items),
            "cold_test_items": len(self.cold_test_items),
        }


def leave_one_out(sequences: Sequences, max_items_per_seq: int, user_stride: int = 1) -> Split:
    """Cut, subsample every `user_stride`-th user, and split as described in the module docstring."""
    seqs = sequences.last(max_items_per_seq).every(user_stride)
    lengths, ends = seqs.lengths, seqs.offsets[1:]
    seen = np.unique(seqs.items[concat_ranges(seqs.offsets[:-1], np.maximum(lengths - 2, 0))])

    # Every example's input holds at least one item (as published: a 2-item user has only a test example).
    test_user = np.flatnonzero(lengths >= 2)
    val_user = np.flatnonzero(lengths >= 3)
    test_targets = seqs.items[ends[test_user] - 1]
    val_targets = seqs.items[ends[val_user] - 2]
    val_is_cold = ~np.isin(val_targets, seen)
    test_is_cold = ~np.isin(test_targets, seen)

    n_train = np.maximum(lengths - 3, 0)  # targets at positions 1..L-3
    train_user = np.repeat(np.arange(len(seqs)), n_train)
    train_pos = concat_ranges(np.ones(len(seqs), dtype=np.int64), n_train)
    return Split(
        sequences=seqs, train_user=train_user, train_pos=train_pos,
        val_user=val_user, test_user=test_user, val_is_cold=val_is_cold, test_is_cold=test_is_cold,
        seen_items=seen,
        cold_val_items=np.unique(val_targets[val_is_cold]),
        cold_test_items=np.unique(test_targets[test_is_cold]),
    )
