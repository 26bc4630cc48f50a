"""Batches built on the device from item-id sequences.

The whole dataset is one padded (n_users, max_len) matrix of item ids on the device (a few MB);
an example is a (sequence, target position) pair, its input the items before the target. A batch
gathers item ids, then looks up semantic-ID tokens (and, in the model, text embeddings) per batch:
memory grows with items × width, never with examples × history × width. No Python loop runs over
examples. A packed batch (`packing_groups` > 0, for the compact T5) also carries where its real
tokens lie in one stream (`src/t5.py`, PackedLayout) and its real history items; a fixed-width one
(`group_widths`, for a step captured as a CUDA graph) pads each length group to a fixed width.

A batch is planned on the host (`plan`: examples in batch order, checks, and where the config fixes
every size, its `FixedShape`), then built on the device (`build`). A batch of a fixed shape is built
from its examples' (2, B) index by device operations alone (`fixed_batch`), so that a CUDA graph
captures building it together with the training step.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ID_generation.preprocessing.split import Split
from src.runtime import to_device_async
from src.t5 import FixedWidthGrid, PackedLayout, check_group_widths, group_bounds
from src.vocabulary import Vocabulary


@dataclass(frozen=True)
class Batch:
    """One batch of B examples with S = (user token) + T × H encoder positions (T tokens per item,
    H = history slots).

    history:   (B, H) the input item ids, oldest first, 0 = empty slot
    tokens:    (B, S) encoder input tokens, 0 = padding
    mask:      (B, S) bool, True on real tokens
    items:     (B, S) item id behind each token (0 for padding and the user token)
    slots:     (B, S) index of that item in the history (0 for padding and the user token)
    levels:    (B, S) semantic-ID level (0..T-1) of each token (0 for padding and the user token)
    last:      (B,) index of the last real encoder position
    labels:    (B, T) the target item's tokens
    targets:   (B,) the target item id
    layout:    for a packed batch (examples sorted longest first), where its real encoder tokens lie
               in one stream (src/t5.py, PackedLayout); None: the padded (B, S) layout only
    history_items:  packed batch: (N,) the real history items, row-major (N = Σ history lengths)
    history_starts: packed batch: (B,) where each row's items begin in `history_items`
    """
    history: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    items: torch.Tensor
    slots: torch.Tensor
    levels: torch.Tensor
    last: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor
    layout: PackedLayout | None = None
    history_items: torch.Tensor | None = None
    history_starts: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Examples:
    """Index pairs (on the CPU): example k's target is item `target_positions[k]` of sequence
    `users[k]`, its input the items before it (so `target_positions[k]` is also its history length).
    Kept on the CPU so a batch's longest history is known without waiting for the device."""
    users: torch.Tensor
    target_positions: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)

    @property
    def longest_history(self) -> int:
        """The longest history among the examples (at least 1: a batch has one slot), read on the host."""
        return max(int(self.target_positions.max()), 1)

    def group_longest(self, n_groups: int) -> list[int]:
        """The longest history of each length group of a packed batch of these examples (sorted longest
        first, in min(n_groups, len) equal-count groups)."""
        lengths = self.target_positions.sort(descending=True).values
        return [int(lengths[start]) for start in group_bounds(len(self), n_groups)[:-1]]

    def subset(self, index: torch.Tensor | slice) -> Examples:
        """The examples selected by a boolean mask, an index tensor or a slice."""
        return Examples(self.users[index], self.target_positions[index])

    def chunks(self, size: int) -> Iterator[Examples]:
        for start in range(0, len(self), size):
            yield self.subset(slice(start, start + size))


@dataclass(frozen=True)
class FixedShape:
    """What fixes every size of a batch, so that it is built on the device from its examples' index alone
    (`SequenceData.fixed_batch`): `size` examples padded to `history_len` slots, and with `group_widths`
    in `packing_groups` length groups of those widths (history items)."""
    size: int
    history_len: int
    packing_groups: int = 0
    group_widths: tuple[int, ...] | None = None


@dataclass(frozen=True)
class BatchPlan:
    """A batch before anything of it reaches the device (`SequenceData.plan`): its examples in batch order
    (longest history first when packed), its layout's settings, and where the config fixes its sizes (a
    history length, and group widths where packed), its `shape`: a step captured as a CUDA graph replays
    for every batch of that shape, building it from `index()` alone."""
    examples: Examples
    packing_groups: int
    history_len: int          # slots of its padded tensors
    shape: FixedShape | None

    def __len__(self) -> int:
        return len(self.examples)

    def index(self) -> torch.Tensor:
        """(2, B) the examples' users and history lengths, on the host."""
        return torch.stack([self.examples.users, self.examples.target_positions])


class SequenceData:
    """The split's sequences on `device`, with the item → tokens table of `vocab`, making batches.

    vocab: the run's vocabulary (src/vocabulary.py): T tokens per item (its semantic ID, or its own
    id for the published item-id ablation) and, when it has them, a user token before each history.
    """

    def __init__(self, split: Split, vocab: Vocabulary, device: torch.device):
        seqs = split.sequences
        lengths = torch.as_tensor(seqs.lengths, dtype=torch.long)
        self.max_len = int(lengths.max())
        rows = torch.repeat_interleave(torch.arange(len(seqs)), lengths)
        cols = torch.arange(len(seqs.items)) - torch.repeat_interleave(torch.as_tensor(seqs.offsets[:-1]), lengths)
        matrix = torch.zeros(len(seqs), self.max_len, dtype=torch.long)
        matrix[rows, cols] = torch.as_tensor(seqs.items, dtype=torch.long)
        self.matrix, self.lengths_cpu = matrix.to(device), lengths
        self.vocab = vocab
        self.token_table = vocab.token_table().to(device)  # (n_items + 1, T), row 0 (no item) = padding
        self.device = device
        self.split = split
        self._fixed: dict[FixedShape, tuple[FixedWidthGrid, FixedWidthGrid]] = {}  # fixed_parts, by shape

    # -- examples of each split -------------------------------------------------------------

    def train_examples(self) -> Examples:
        return self._examples(self.split.train_user, self.split.train_pos)

    def eval_examples(self, which: str, cold: bool | None = None) -> Examples:
        """Validation (`val`) or test examples; cold=True/False keeps the cold-start / in-set group."""
        users = self.split.val_user if which == "val" else self.split.test_user
        is_cold = self.split.val_is_cold if which == "val" else self.split.test_is_cold
        users_t = torch.as_tensor(users, dtype=torch.long)
        targets_at = self.lengths_cpu[users_t] - (2 if which == "val" else 1)
        examples = Examples(users_t, targets_at)
        return examples if cold is None else examples.subset(torch.as_tensor(is_cold == cold))

    def _examples(self, users, target_positions) -> Examples:
        return Examples(torch.as_tensor(users, dtype=torch.long), torch.as_tensor(target_positions, dtype=torch.long))

    def shuffled(self, examples: Examples, batch_size: int, generator: torch.Generator) -> Iterator[Examples]:
        """One epoch of `examples` in random batches (the permutation drawn on the CPU generator)."""
        return examples.subset(torch.randperm(len(examples), generator=generator)).chunks(batch_size)

    def group_widths(self, examples: Examples, batch_size: int, n_groups: int, generator: torch.Generator,
                     epochs: int) -> list[int]:
        """(n_groups,) history lengths: each length group's longest over the full batches of `epochs`
        epochs drawn as `shuffled` draws them from `generator` (which this advances; pass a copy), the
        fixed widths of a graphed step's batches (`batch(..., group_widths=...)`), non-increasing."""
        n_full = len(examples) // batch_size
        if n_full == 0:
            return [examples.longest_history] * n_groups
        starts = torch.tensor(group_bounds(batch_size, n_groups)[:-1])
        widths = torch.ones(len(starts), dtype=torch.long)
        for _ in range(epochs):
            order = torch.randperm(len(examples), generator=generator)[:n_full * batch_size]
            lengths = examples.target_positions[order].view(n_full, batch_size).sort(dim=1, descending=True).values
            widths = torch.maximum(widths, lengths[:, starts].amax(dim=0))
        return widths.tolist()

    # -- batches ------------------------------------------------------------------------------

    def batch(self, examples: Examples, packing_groups: int = 0, history_len: int | None = None,
              group_widths: Sequence[int] | None = None) -> Batch:
        """Gather histories and targets of `examples` and lay out their encoder inputs, trimmed to the
        batch's longest history (padding beyond it would only cost compute), or padded to `history_len`
        slots (fixed shapes, for a step captured as a CUDA graph). With `packing_groups` > 0 the examples
        are sorted longest history first (stable) and the batch also carries their packed layout
        (attention in that many length groups): the same examples, whose losses are means. With
        `group_widths` (history lengths, one per group, each at least its group's longest) the layout is
        fixed-width: group g's histories padded to group_widths[g] items, so that the batch's sizes depend
        on its size and the widths alone (`Examples.group_longest` says whether its histories fit)."""
        return self.build(self.plan(examples, packing_groups, history_len, group_widths))

    def plan(self, examples: Examples, packing_groups: int = 0, history_len: int | None = None,
             group_widths: Sequence[int] | None = None) -> BatchPlan:
        """The batch `batch` builds from these arguments, before anything reaches the device (see `batch`)."""
        if packing_groups > 0:
            examples = examples.subset(torch.argsort(examples.target_positions, descending=True, stable=True))
        longest = examples.longest_history
        if history_len is not None and history_len < longest:
            raise ValueError(f"history_len={history_len} is shorter than the batch's longest history ({longest})")
        if group_widths is not None:
            if packing_groups <= 0:
                raise ValueError("group_widths need packing_groups > 0")
            group_widths = tuple(int(w) for w in group_widths)
            check_group_widths(examples.group_longest(packing_groups), group_widths, "history")
            history_len = max(history_len or 0, longest, *group_widths)  # the padded tensors hold the widest
        fixed = history_len is not None and (packing_groups == 0 or group_widths is not None)
        shape = FixedShape(len(examples), history_len, packing_groups, group_widths) if fixed else None
        return BatchPlan(examples, packing_groups, longest if history_len is None else history_len, shape)

    def build(self, plan: BatchPlan) -> Batch:
        """The batch of `plan`, on the device: its index copied there without waiting, then laid out (a
        fixed shape by `fixed_batch`, from the index alone)."""
        index = to_device_async(plan.index(), self.device)                            # (2, B): one copy
        if plan.shape is not None:
            return self.fixed_batch(index, plan.shape)
        users, lengths = index
        batch = self._laid_out(self._histories(users, lengths, plan.history_len), users, self.matrix[users, lengths])
        if plan.packing_groups > 0:
            batch = self._packed(batch, plan.examples.target_positions, plan.packing_groups)
        return batch

    def fixed_batch(self, index: torch.Tensor, shape: FixedShape) -> Batch:
        """The batch of `shape` whose examples' index (2, B) (users, history lengths; on the device, in
        batch order, fitting the shape) is `index`: device operations alone, on sizes the shape fixes, so
        that a CUDA graph can capture building it with the step (`src/cuda_graph.py`). The parts the shape
        alone determines are built once (`fixed_parts`, before any capture)."""
        users, lengths = index
        batch = self._laid_out(self._histories(users, lengths, shape.history_len), users, self.matrix[users, lengths])
        if shape.group_widths is None:
            return batch
        tokens, items = self.fixed_parts(shape)
        layout = tokens.layout(lengths * self.vocab.tokens_per_item + self.vocab.has_user_tokens)
        return dataclasses.replace(batch, layout=layout, history_items=batch.history[items.rows, items.positions],
                                   history_starts=items.starts)

    def fixed_parts(self, shape: FixedShape) -> tuple[FixedWidthGrid, FixedWidthGrid]:
        """What a fixed-width `shape` alone determines, on the device, built at its first use: the grid of
        the encoder tokens' layout and that of the history item stream (each row's first W_g slots; its
        `positions` are the slots), src/t5.py. Building them copies from the host, which a CUDA graph's
        capture cannot do."""
        if shape not in self._fixed:
            if self.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
                raise RuntimeError(f"the fixed parts of {shape} are built while a CUDA graph is being captured; "
                                   "build a batch of this shape before capturing")
            per_item, user = self.vocab.tokens_per_item, self.vocab.has_user_tokens
            sizes = [b - a for a, b in itertools.pairwise(group_bounds(shape.size, shape.packing_groups))]
            self._fixed[shape] = (FixedWidthGrid.of(sizes, [w * per_item + user for w in shape.group_widths],
                                                    self.device),
                                  FixedWidthGrid.of(sizes, shape.group_widths, self.device))
        return self._fixed[shape]

    def history_batch(self, history: torch.Tensor, user: int = 0, packing_groups: int = 0) -> Batch:
        """A batch of one input that is no example of the split: `history` (H,) 1-based item ids, oldest
        first, of user index `user` (read only when the vocabulary has user tokens). It has no target
        (0, padding labels); laid out as `batch` lays out an example with that history."""
        history = torch.as_tensor(history, dtype=torch.long)
        users = torch.tensor([user], device=self.device)
        no_target = torch.zeros(1, dtype=torch.long, device=self.device)
        batch = self._laid_out(history.to(self.device)[None], users, no_target)
        return self._packed(batch, torch.tensor([len(history)]), packing_groups) if packing_groups > 0 else batch

    def _histories(self, users: torch.Tensor, lengths: torch.Tensor, history_len: int) -> torch.Tensor:
        """(B, history_len) the first `lengths` items of each user's sequence, 0 after them."""
        hist = self.matrix[users, :history_len]
        return torch.where(torch.arange(history_len, device=self.device) < lengths[:, None], hist, 0)

    def _laid_out(self, hist: torch.Tensor, users: torch.Tensor, targets: torch.Tensor) -> Batch:
        """The padded batch of histories hist (B, H) (0 after each history's end) of `users` (B,) with
        `targets` (B,)."""
        history_len, per_item = hist.shape[1], self.vocab.tokens_per_item
        tokens = self.token_table[hist].flatten(1)                                     # (B, T·H)
        items = hist.repeat_interleave(per_item, dim=1)
        slots = torch.arange(history_len, device=self.device).repeat_interleave(per_item).expand_as(tokens)
        levels = torch.arange(per_item, device=self.device).repeat(history_len).expand_as(tokens)
        real = items > 0
        if self.vocab.has_user_tokens:
            user = self.vocab.user_tokens(users)[:, None]
            tokens = torch.cat([user, tokens], dim=1)
            zero = torch.zeros_like(user)
            items, slots, levels = (torch.cat([zero, t], 1) for t in (items, slots, levels))
            real = torch.cat([torch.ones_like(user, dtype=torch.bool), real], dim=1)
        return Batch(history=hist, tokens=tokens, mask=real, items=items, slots=slots * real, levels=levels * real,
                     last=real.sum(dim=1) - 1, labels=self.token_table[targets], targets=targets)

    def _packed(self, batch: Batch, host_lengths: torch.Tensor, groups: int) -> Batch:
        """The batch (sorted longest history first) with its packed layout and its real history items as
        one stream. Sizes come from the history lengths `host_lengths` (B,) on the host, so nothing waits
        for the device."""
        per_item, user = self.vocab.tokens_per_item, self.vocab.has_user_tokens
        layout = PackedLayout.from_lengths(host_lengths * per_item + user, groups, self.device)
        n_items = int(host_lengths.sum())
        taken = to_device_async(host_lengths, self.device)
        starts = taken.cumsum(0) - taken
        rows = torch.repeat_interleave(torch.arange(len(taken), device=self.device), taken, output_size=n_items)
        slots = torch.arange(n_items, device=self.device) - starts.repeat_interleave(taken, output_size=n_items)
        return dataclasses.replace(batch, layout=layout, history_items=batch.history[rows, slots],
                                   history_starts=starts)
