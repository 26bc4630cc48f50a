"""Interactions → sequences (time sort, k-core, id remap) and the leave-one-out split."""
from __future__ import annotations

import numpy as np
import pytest

from ID_generation.preprocessing.sequences import (
    Sequences,
    build_sequences,
    k_core_mask,
    read_sequence_file,
    write_sequence_file,
)
from ID_generation.preprocessing.split import leave_one_out


def _rows(seqs: Sequences) -> list[list[int]]:
    return [seqs.row(u).tolist() for u in range(len(seqs))]


def test_time_sort_is_stable_and_ids_follow_first_appearance():
    users = np.array(["u2", "u1", "u2", "u1", "u2"], dtype=object)
    items = np.array(["c", "a", "b", "b", "a"], dtype=object)
    times = np.array([5, 3, 1, 3, 5])  # u2: b@1, then c@5 and a@5 in file order; u1: a@3, b@3
    out = build_sequences(users, items, times, user_core=1, item_core=1)
    assert out.user_raw_ids.tolist() == ["u2", "u1"]  # users in file order
    assert out.item_raw_ids.tolist() == ["b", "c", "a"]  # items in order of first appearance
    assert _rows(out.sequences) == [[1, 2, 3], [3, 1]]


def test_k_core_is_iterative():
    # z has one user (B): dropping it leaves B with one item, dropping B leaves y with one user (C),
    # and dropping y leaves C with x and w, which survive; each step only shows after the previous.
    users = np.array(["A", "A", "B", "B", "C", "C", "C"])
    items = np.array(["x", "w", "z", "y", "x", "w", "y"])
    user_codes = np.unique(users, return_inverse=True)[1]
    item_codes = np.unique(items, return_inverse=True)[1]
    keep = k_core_mask(user_codes, item_codes, user_core=2, item_core=2)
    kept = sorted(zip(users[keep].tolist(), items[keep].tolist()))
    assert kept == [("A", "w"), ("A", "x"), ("C", "w"), ("C", "x")]


def test_sequences_cut_stride_and_file_round_trip(tmp_path):
    seqs = Sequences.from_lengths(np.array([3, 1, 4]), np.array([1, 2, 3, 4, 5, 6, 7, 8]))
    assert _rows(seqs.last(2)) == [[2, 3], [4], [7, 8]]
    assert _rows(seqs.every(2)) == [[1, 2, 3], [5, 6, 7, 8]]
    write_sequence_file(tmp_path / "d.txt", seqs)
    assert (tmp_path / "d.txt").read_text().splitlines()[0] == "1 1 2 3"
    back = read_sequence_file(tmp_path / "d.txt")
    assert _rows(back) == _rows(seqs)


def _reference_split(rows: list[list[int]], max_len: int, stride: int):
    """Brute force, written from the words of docs/method.md §2."""
    rows = [r[-max_len:] for r in rows][::stride]
    seen = sorted({i for r in rows for i in r[:-2]})
    train = [(u, t) for u, r in enumerate(rows) for t in range(1, len(r) - 2)]
    val = [(u, r[-2]) for u, r in enumerate(rows) if len(r) >= 3]  # input: at least one item
    test = [(u, r[-1]) for u, r in enumerate(rows) if len(r) >= 2]
    return rows, seen, train, val, test


@pytest.mark.parametrize("max_len, stride", [(20, 1), (5, 1), (6, 3)])
def test_leave_one_out_matches_brute_force(max_len, stride):
    rng = np.random.default_rng(max_len + stride)
    lengths = rng.integers(1, 12, size=60)
    seqs = Sequences.from_lengths(lengths, rng.integers(1, 40, size=lengths.sum()))
    split = leave_one_out(seqs, max_len, stride)
    rows, seen, train, val, test = _reference_split(_rows(seqs), max_len, stride)
    assert _rows(split.sequences) == rows
    assert split.seen_items.tolist() == seen
    assert list(zip(split.train_user.tolist(), split.train_pos.tolist())) == train
    assert list(zip(split.val_user.tolist(), split.val_targets().tolist())) == [(u, i) for u, i in val]
    assert list(zip(split.test_user.tolist(), split.test_targets().tolist())) == test
    assert split.val_is_cold.tolist() == [i not in seen for _, i in val]
    assert split.test_is_cold.tolist() == [i not in seen for _, i in test]
    assert split.cold_test_items.tolist() == sorted({i for _, i in test if i not in seen})
    assert split.cold_val_items.tolist() == sorted({i for _, i in val if i not in seen})
