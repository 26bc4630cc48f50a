"""Semantic IDs and their token layout (SPEC §4) — the one place token ids are laid out.

An item's semantic ID is its three RQ-VAE codes plus a fourth, collision-removing code: the item's
index among the items that share its first three codes, in item-id order. Tokens:

    pad = 0 · code c at level l (0..3) → K·l + c + 1 · optional user tokens · end-of-sequence last

with K the codebook size; the fourth level has max(K, number of fourth codes) slots, so
vocab_size = 3K + max(K, n_fourth) + n_user_tokens + 2 (user tokens: 2000 when enabled).
Everything is vectorised; `SemanticIds.items_of` is the inverse used by decoding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

N_USER_TOKENS = 2000  # the published hashing trick: user index mod 2000


def code_keys(codes: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """(...,) one int64 per code prefix (..., l): mixed radix over the first l level sizes (0 for l = 0)."""
    key = torch.zeros(codes.shape[:-1], dtype=torch.long, device=codes.device)
    for level in range(codes.shape[-1]):
        key = key * sizes[level] + codes[..., level]
    return key


def collision_codes(prefix_codes: np.ndarray) -> np.ndarray:
    """(N,) fourth code for prefix_codes (N, L): each row's rank among the rows with the same
    prefix, counted in row (item-id) order."""
    n = len(prefix_codes)
    order = np.lexsort((np.arange(n), *prefix_codes.T[::-1]))
    sorted_codes = prefix_codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (sorted_codes[1:] != sorted_codes[:-1]).any(axis=1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - group_start
    return ranks


def with_collision_codes(prefix_codes: np.ndarray) -> np.ndarray:
    """(N, L + 1): the RQ-VAE codes with the collision code appended; every row unique."""
    return np.concatenate([prefix_codes, collision_codes(prefix_codes)[:, None]], axis=1).astype(np.int64)


@dataclass(frozen=True)
class TokenLayout:
    """Where each semantic-ID level, the user tokens and end-of-sequence sit in the vocabulary."""
    codebook_size: int        # K, codes per RQ-VAE level
    last_level_size: int      # slots of the collision level: max(K, number of fourth codes)
    n_rq_levels: int = 3
    n_user_tokens: int = 0    # N_USER_TOKENS when user ids are included, else 0
    pad: int = 0

    @property
    def n_levels(self) -> int:
        return self.n_rq_levels + 1

    @property
    def level_offsets(self) -> torch.Tensor:
        """(n_levels,) token of code 0 at each level: K·l + 1."""
        return torch.arange(self.n_levels) * self.codebook_size + 1

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return (self.codebook_size,) * self.n_rq_levels + (self.last_level_size,)

    @property
    def user_offset(self) -> int:
        return 1 + self.n_rq_levels * self.codebook_size + self.last_level_size

    @property
    def eos(self) -> int:
        return self.user_offset + self.n_user_tokens

    @property
    def vocab_size(self) -> int:
        return self.eos + 1

    def to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., n_levels) → tokens (..., n_levels)."""
        return codes + self.level_offsets.to(codes.device)

    def to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (..., n_levels) → codes (..., n_levels); a token outside its level's range gives -1."""
        codes = tokens - self.level_offsets.to(tokens.device)
        sizes = torch.tensor(self.level_sizes, device=tokens.device)
        return torch.where((codes >= 0) & (codes < sizes), codes, torch.full_like(codes, -1))

    def user_tokens(self, user_index: torch.Tensor) -> torch.Tensor:
        """(...,) user token of each 0-based user index (hashed mod n_user_tokens)."""
        if self.n_user_tokens == 0:
            raise ValueError("this layout has no user tokens (method.include_user_id is false)")
        return self.user_offset + user_index % self.n_user_tokens


class SemanticIds:
    """The semantic IDs of all items: codes (n_items, 4), row i = item id i + 1, and their tokens."""

    def __init__(self, codes: torch.Tensor, codebook_size: int, n_user_tokens: int = 0):
        self.codes = codes.long().cpu()
        n_fourth = int(self.codes[:, -1].max()) + 1 if len(self.codes) else 1
        self.layout = TokenLayout(codebook_size, max(codebook_size, n_fourth), self.codes.shape[1] - 1, n_user_tokens)
        keys = code_keys(self.codes, self.layout.level_sizes)
        self._sorted_keys, self._key_order = torch.sort(keys)
        if len(keys) and bool((self._sorted_keys[1:] == self._sorted_keys[:-1]).any()):
            raise ValueError("two items share a semantic ID; the collision code must make every ID unique")

    @classmethod
    def from_rqvae_codes(cls, prefix_codes: np.ndarray, codebook_size: int, n_user_tokens: int = 0) -> "SemanticIds":
        return cls(torch.from_numpy(with_collision_codes(np.asarray(prefix_codes))), codebook_size, n_user_tokens)

    def __len__(self) -> int:
        return len(self.codes)

    def tokens(self) -> torch.Tensor:
        """(n_items, 4) tokens of every item."""
        return self.layout.to_tokens(self.codes)

    def items_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (..., 4) → item ids (...,), 1-based; 0 where the tokens name no item."""
        codes = self.layout.to_codes(tokens)
        valid = (codes >= 0).all(dim=-1)
        keys = code_keys(codes.clamp(min=0), self.layout.level_sizes)
        sorted_keys, order = self._sorted_keys.to(tokens.device), self._key_order.to(tokens.device)
        pos = torch.searchsorted(sorted_keys, keys).clamp(max=max(len(sorted_keys) - 1, 0))
        found = valid & (sorted_keys[pos] == keys)
        return torch.where(found, order[pos] + 1, torch.zeros_like(pos))


def quality_report(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Usage and collision statistics of semantic IDs (n_items, 4) under the `sid/` keys."""
    codes = codes.cpu()
    prefix = codes[:, :-1]
    report = {f"sid/usage_l{level + 1}": round(len(torch.unique(prefix[:, level])) / codebook_size, 6)
              for level in range(prefix.shape[1])}
    _, inverse, counts = torch.unique(prefix, dim=0, return_inverse=True, return_counts=True)
    report["sid/unique_prefix_share"] = round(float((counts[inverse] == 1).float().mean()), 6)
    report["sid/max_collision"] = int(codes[:, -1].max()) + 1
    report["sid/n_items"] = len(codes)
    return report
