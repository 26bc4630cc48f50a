"""The token vocabulary of a run: the one place token ids are laid out (docs/method.md §4).

An item is written as `tokens_per_item` (T) codes, one per level, and each level's codes have
their own range of tokens, after the pad token and the earlier levels' ranges:

    pad = 0 · level 0 codes · level 1 codes · … · level T-1 codes · [user tokens] · end-of-sequence

so the token of code c at level l is 1 + (sizes of the levels before l) + c. Two forms:

- semantic IDs (`method.use_id=sid`): the RQ-VAE's codes plus the collision code (T = RQ-VAE
  levels + 1). Every level has K = `dataset.RQ-VAE.code_book_size` slots, the collision level
  max(K, most items sharing a prefix), so a token is K·l + c + 1 (published).
- item ids (`method.use_id=item_id`, the published Dense (ID) ablation): one level whose code is
  the item's index, so item i (1-based) is token i.

User tokens (`method.include_user_id`: N_USER_TOKENS of them, the user's index hashed mod
N_USER_TOKENS) are fixed when the vocabulary is built. Everything is vectorised; `items_of` is the
inverse that decoding uses.
"""
from __future__ import annotations

import torch

from ID_generation.semantic_ids import SemanticIds
from src.config import MethodConfig

N_USER_TOKENS = 2000  # the published hashing trick: user index mod 2000
PAD = 0


def code_keys(codes: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """(...,) one int64 per code prefix (..., l): mixed radix over the first l level sizes (0 for l = 0)."""
    key = torch.zeros(codes.shape[:-1], dtype=torch.long, device=codes.device)
    for level in range(codes.shape[-1]):
        key = key * sizes[level] + codes[..., level]
    return key


class Vocabulary:
    """Tokens of items, users, padding and end-of-sequence, and the way back from tokens to items."""

    pad = PAD

    def __init__(self, item_codes: torch.Tensor, level_sizes: tuple[int, ...], n_user_tokens: int = 0):
        """item_codes: (n_items, T) each item's code per level (row i = item i + 1), each within its
        level's size and every row unique; n_user_tokens: 0 (no user tokens) or N_USER_TOKENS."""
        self.item_codes = item_codes.long().cpu()
        self.level_sizes = tuple(int(s) for s in level_sizes)
        self.n_user_tokens = n_user_tokens
        if self.item_codes.ndim != 2 or self.item_codes.shape[1] != len(self.level_sizes):
            raise ValueError(f"item codes must be (n_items, {len(self.level_sizes)}), "
                             f"got {tuple(self.item_codes.shape)}")
        if len(self.item_codes) and bool(((self.item_codes < 0)
                                          | (self.item_codes >= torch.tensor(self.level_sizes))).any()):
            raise ValueError(f"item codes must lie within their level sizes {self.level_sizes}")
        self._sorted_keys, self._key_order = torch.sort(code_keys(self.item_codes, self.level_sizes))
        if len(self._sorted_keys) and bool((self._sorted_keys[1:] == self._sorted_keys[:-1]).any()):
            raise ValueError("two items share a semantic ID; the collision code must make every ID unique")

    @classmethod
    def of_semantic_ids(cls, sids: SemanticIds, n_user_tokens: int = 0) -> Vocabulary:
        """The semantic-ID form: K slots per RQ-VAE level, max(K, collision codes) for the last level."""
        n_collision = int(sids.codes[:, -1].max()) + 1 if len(sids) else 1
        sizes = (sids.codebook_size,) * sids.rq_levels + (max(sids.codebook_size, n_collision),)
        return cls(sids.codes, sizes, n_user_tokens)

    @classmethod
    def of_item_ids(cls, n_items: int, n_user_tokens: int = 0) -> Vocabulary:
        """The item-id form: one token per item, item i = token i."""
        return cls(torch.arange(n_items)[:, None], (n_items,), n_user_tokens)

    @classmethod
    def for_method(cls, method: MethodConfig, sids: SemanticIds) -> Vocabulary:
        """The vocabulary `method.use_id` and `method.include_user_id` ask for."""
        n_user_tokens = N_USER_TOKENS if method.include_user_id else 0
        if method.use_id == "item_id":
            return cls.of_item_ids(len(sids), n_user_tokens)
        return cls.of_semantic_ids(sids, n_user_tokens)

    # -- layout -------------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.item_codes)

    @property
    def tokens_per_item(self) -> int:
        """T: tokens (levels) per item: RQ-VAE levels + 1 for semantic IDs, 1 for item ids."""
        return len(self.level_sizes)

    @property
    def level_offsets(self) -> torch.Tensor:
        """(T,) token of code 0 at each level."""
        return PAD + 1 + torch.cumsum(torch.tensor((0,) + self.level_sizes[:-1]), 0)

    @property
    def user_offset(self) -> int:
        """Token of user index 0 (the first after the item levels)."""
        return PAD + 1 + sum(self.level_sizes)

    @property
    def eos(self) -> int:
        return self.user_offset + self.n_user_tokens

    @property
    def vocab_size(self) -> int:
        return self.eos + 1

    # -- codes, tokens and items --------------------------------------------------------------

    def to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., T) → tokens (..., T)."""
        return codes + self.level_offsets.to(codes.device)

    def to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (..., T) → codes (..., T); a token outside its level's range gives -1."""
        codes = tokens - self.level_offsets.to(tokens.device)
        sizes = torch.tensor(self.level_sizes, device=tokens.device)
        return torch.where((codes >= 0) & (codes < sizes), codes, torch.full_like(codes, -1))

    def item_tokens(self) -> torch.Tensor:
        """(n_items, T) tokens of every item, row i = item i + 1."""
        return self.to_tokens(self.item_codes)

    def token_table(self) -> torch.Tensor:
        """(n_items + 1, T) the lookup from 1-based item ids to tokens: row 0 (no item, an empty
        history slot) is padding."""
        return torch.cat([torch.full((1, self.tokens_per_item), PAD, dtype=torch.long), self.item_tokens()])

    def items_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (..., T) → item ids (...,), 1-based; 0 where the tokens name no item."""
        codes = self.to_codes(tokens)
        valid = (codes >= 0).all(dim=-1)
        keys = code_keys(codes.clamp(min=0), self.level_sizes)
        sorted_keys, order = self._sorted_keys.to(tokens.device), self._key_order.to(tokens.device)
        pos = torch.searchsorted(sorted_keys, keys).clamp(max=max(len(sorted_keys) - 1, 0))
        found = valid & (sorted_keys[pos] == keys)
        return torch.where(found, order[pos] + 1, torch.zeros_like(pos))

    @property
    def has_user_tokens(self) -> bool:
        return self.n_user_tokens > 0

    def user_tokens(self, user_index: torch.Tensor) -> torch.Tensor:
        """(...,) user token of each 0-based user index (hashed mod n_user_tokens)."""
        if not self.has_user_tokens:
            raise ValueError("this vocabulary has no user tokens (method.include_user_id is false)")
        return self.user_offset + user_index % self.n_user_tokens
