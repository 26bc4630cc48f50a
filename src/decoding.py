"""Batched beam search over the semantic-ID tokens of the next item (docs/method.md §7, `genret`).

Written for this fixed, short decode (`Vocabulary.tokens_per_item` steps): the encoder runs once per
sequence, beams and candidates are tensors (B, n_beams, ...), and every step is one batched decoder
call. By default the search is the published, unconstrained one (any vocabulary token at any step;
an ID that names no item is a miss); with `constrained=True` a prefix mask keeps only tokens that
extend some item's ID. Returned candidates are distinct (distinct token sequences; valid ones name
distinct items).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from src.vocabulary import Vocabulary, code_keys

# next_token_logits(prefixes (B, k, t), parents (B, k) | None) -> (B, k, V): logits of the token after
# each of the k decoder prefixes of each of the B inputs (the callable holds the inputs' encoder
# states). parents: which beam of the previous call each prefix extends by one token (None on the
# first call), for a decoder that caches the earlier tokens.
NextTokenLogits = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class BeamResult:
    tokens: torch.Tensor   # (B, n_beams, T) generated item tokens (T = tokens_per_item), best first
    scores: torch.Tensor   # (B, n_beams) summed log-probabilities (-inf for impossible beams)
    items: torch.Tensor    # (B, n_beams) item ids, 0 where the tokens name no item


def beam_search(next_token_logits: NextTokenLogits, batch_size: int, n_beams: int, vocab: Vocabulary,
                device: torch.device, constrained: bool = False) -> BeamResult:
    """Top `n_beams` item token sequences (`vocab.tokens_per_item` long) for each of `batch_size`
    encoder inputs; the decoder starts from the pad token."""
    prefixes = torch.full((batch_size, 1, 1), vocab.pad, dtype=torch.long, device=device)   # (B, k, t)
    scores = torch.zeros(batch_size, 1, device=device)
    prefix_mask = PrefixMask(vocab, device) if constrained else None
    parent = None
    for step in range(vocab.tokens_per_item):
        logp = torch.log_softmax(next_token_logits(prefixes, parent).float(), dim=-1)         # (B, k, V)
        k, n_tokens = logp.shape[1], logp.shape[2]
        if prefix_mask is not None:
            allowed = prefix_mask.allowed(prefixes[:, :, 1:].flatten(0, 1), step).view(batch_size, k, n_tokens)
            logp = logp.masked_fill(~allowed, float("-inf"))
        total = (scores.unsqueeze(-1) + logp).view(batch_size, k * n_tokens)
        scores, flat = total.topk(min(n_beams, k * n_tokens), dim=1)                              # sorted
        parent, token = flat // n_tokens, flat % n_tokens
        kept = prefixes.gather(1, parent.unsqueeze(-1).expand(-1, -1, prefixes.shape[2]))
        prefixes = torch.cat([kept, token.unsqueeze(-1)], dim=2)
    tokens = prefixes[:, :, 1:]
    items = vocab.items_of(tokens)
    return BeamResult(tokens, scores, torch.where(torch.isfinite(scores), items, torch.zeros_like(items)))


class PrefixMask:
    """Which token may follow a decoded prefix so that the sequence stays some item's tokens."""

    def __init__(self, vocab: Vocabulary, device: torch.device):
        self.vocabulary = vocab
        self.vocab_size = vocab.vocab_size
        codes = vocab.item_codes.to(device)
        self.sizes = vocab.level_sizes
        # For each level l: sorted unique keys of the items' (l+1)-code prefixes (mixed radix).
        self.keys = [torch.unique(code_keys(codes[:, :level + 1], self.sizes)) for level in range(len(self.sizes))]

    def allowed(self, decoded: torch.Tensor, level: int) -> torch.Tensor:
        """(N, V) bool: tokens allowed after the decoded tokens (N, level)."""
        n = len(decoded)
        mask = torch.zeros(n, self.vocab_size, dtype=torch.bool, device=decoded.device)
        codes = self.vocabulary.to_codes(torch.cat([decoded, torch.zeros(n, len(self.sizes) - level, dtype=torch.long,
                                                                        device=decoded.device)], 1))[:, :level]
        valid = (codes >= 0).all(dim=1)
        size = self.sizes[level]
        lo_key = code_keys(codes.clamp(min=0), self.sizes) * size           # first (level+1)-key with this prefix
        keys = self.keys[level]
        lo = torch.searchsorted(keys, lo_key)
        hi = torch.searchsorted(keys, lo_key + size)
        counts = torch.where(valid, hi - lo, torch.zeros_like(lo))
        row = torch.repeat_interleave(torch.arange(n, device=decoded.device), counts)
        within = (torch.arange(int(counts.sum()), device=decoded.device)
                  - torch.repeat_interleave(counts.cumsum(0) - counts, counts))
        next_codes = keys[torch.repeat_interleave(lo, counts) + within] % size
        mask[row, next_codes + int(self.vocabulary.level_offsets[level])] = True
        return mask

