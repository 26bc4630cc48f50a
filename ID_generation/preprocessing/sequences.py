"""Interactions → time-ordered user sequences: stable time sort, iterative k-core, id remapping.

Sequences are held as one flat item array plus row offsets (CSR), so a dataset of any size is two
integer arrays; no per-user Python lists are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from src.cache import atomic_write

from .raw_io import RawDataError


@dataclass(frozen=True)
class Sequences:
    """User sequences of 1-based item ids, in time order.

    offsets: (n_users + 1,) int64 — user u's items are items[offsets[u]:offsets[u + 1]]
    items:   (n_interactions,) int64 — item ids in 1..n_items
    """
    offsets: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_items(self) -> int:
        return int(self.items.max()) if len(self.items) else 0

    def row(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user]:self.offsets[user + 1]]

    @classmethod
    def from_lengths(cls, lengths: np.ndarray, items: np.ndarray) -> Sequences:
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(offsets=offsets, items=np.asarray(items, dtype=np.int64))

    def last(self, k: int) -> Sequences:
        """Every sequence cut to its last `k` items."""
        lengths = np.minimum(self.lengths, k)
        starts = self.offsets[1:] - lengths
        return Sequences.from_lengths(lengths, self.items[concat_ranges(starts, lengths)])

    def every(self, stride: int) -> Sequences:
        """Every `stride`-th user, starting with the first."""
        users = np.arange(0, len(self), stride)
        lengths = self.lengths[users]
        return Sequences.from_lengths(lengths, self.items[concat_ranges(self.offsets[users], lengths)])


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), vectorised."""
    total = int(lengths.sum())
    row_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + (np.arange(total) - row_start)


@dataclass(frozen=True)
class RemappedSequences:
    """Sequences with 1..N ids, and the raw id of each user (index u) and item (index id - 1)."""
    sequences: Sequences
    user_raw_ids: np.ndarray
    item_raw_ids: np.ndarray


def build_sequences(users: np.ndarray, items: np.ndarray, times: np.ndarray,
                    user_core: int, item_core: int) -> RemappedSequences:
    """Sort each user's interactions by time (stably), filter to the (user_core, item_core)-core,
    and remap ids to 1..N: users in order of first appearance in the input, items in order of
    first appearance when reading the users' sequences in that order."""
    user_codes, user_uniques = pd.factorize(pd.Series(users), sort=False)
    order = np.lexsort((np.asarray(times), user_codes))  # lexsort is stable: file order breaks ties
    user_codes, items = user_codes[order], np.asarray(items)[order]
    item_codes, item_uniques = pd.factorize(pd.Series(items), sort=False)
    keep = k_core_mask(user_codes, item_codes, user_core, item_core)
    user_codes, item_codes = user_codes[keep], item_codes[keep]
    # After filtering, rows are still grouped by user in first-appearance order.
    new_users, user_index = pd.factorize(pd.Series(user_codes), sort=False)
    new_items, item_index = pd.factorize(pd.Series(item_codes), sort=False)
    lengths = np.bincount(new_users, minlength=len(user_index))
    return RemappedSequences(
        sequences=Sequences.from_lengths(lengths, new_items.astype(np.int64) + 1),
        user_raw_ids=np.asarray(user_uniques)[np.asarray(user_index)],
        item_raw_ids=np.asarray(item_uniques)[np.asarray(item_index)],
    )


def k_core_mask(user_codes: np.ndarray, item_codes: np.ndarray, user_core: int, item_core: int) -> np.ndarray:
    """Rows that survive iterative removal of users with < user_core and items with < item_core rows."""
    keep = np.ones(len(user_codes), dtype=bool)
    while True:
        user_counts = np.bincount(user_codes[keep], minlength=user_codes.max(initial=-1) + 1)
        item_counts = np.bincount(item_codes[keep], minlength=item_codes.max(initial=-1) + 1)
        drop = keep & ((user_counts[user_codes] < user_core) | (item_counts[item_codes] < item_core))
        if not drop.any():
            return keep
        keep &= ~drop


def write_sequence_file(path: Path, sequences: Sequences) -> None:
    """`{name}.txt`: one line a user, `user_id item_id item_id ...`, 1-based, in time order."""
    with atomic_write(path) as handle:
        for user in range(len(sequences)):
            handle.write(f"{user + 1} " + " ".join(map(str, sequences.row(user).tolist())) + "\n")


def read_sequence_file(path: Path) -> Sequences:
    """Inverse of write_sequence_file (user ids must be 1..N in order)."""
    lengths, items = [], []
    with open(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if not all(f.isdigit() for f in fields) or int(fields[0]) != len(lengths) + 1 or len(fields) < 2:
                raise RawDataError(f"{path}, line {line_no}: expected 'user_id item_id ...' with user "
                                 f"id {len(lengths) + 1}; delete the file to rebuild it")
            lengths.append(len(fields) - 1)
            items.extend(fields[1:])
    return Sequences.from_lengths(np.array(lengths, dtype=np.int64), np.array(items, dtype=np.int64))
