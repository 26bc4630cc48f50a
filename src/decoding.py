"""Batched beam search over the 4 semantic-ID tokens of the next item (SPEC §7, `genret`).

Written for this fixed, short decode: the encoder runs once per sequence, beams and candidates are
tensors (B, n_beams, ...), and every step is one batched decoder call. By default the search is the
published, unconstrained one (any vocabulary token at any step; an ID that names no item is a
miss); with `constrained=True` a prefix mask keeps only tokens that extend some item's ID.
Returned candidates are distinct (distinct token sequences; valid ones name distinct items).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ID_generation.semantic_ids import SemanticIds, code_keys

# next_token_logits(prefixes (B, k, t), parents (B, k) | None) -> (B, k, V): logits of the token after
# each of the k decoder prefixes of each of the B inputs (the callable holds the inputs' encoder
# states). parents: which beam of the previous call each prefix extends by one token (None on the
# first call), for a decoder that caches the earlier tokens.
NextTokenLogits = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class BeamResult:
    tokens: torch.Tensor   # (B, n_beams, 4) generated semantic-ID tokens, best first
    scores: torch.Tensor   # (B, n_beams) summed log-probabilities (-inf for impossible beams)
    items: torch.Tensor    # (B, n_beams) item ids, 0 where the tokens name no item


def beam_search(next_token_logits: NextTokenLogits, batch_size: int, n_beams: int, sids: SemanticIds,
                device: torch.device, start_token: int = 0, constrained: bool = False) -> BeamResult:
    """Top `n_beams` 4-token sequences for each of `batch_size` encoder inputs."""
    n_levels = sids.layout.n_levels
    prefixes = torch.full((batch_size, 1, 1), start_token, dtype=torch.long, device=device)   # (B, k, t)
    scores = torch.zeros(batch_size, 1, device=device)
    prefix_mask = PrefixMask(sids, device) if constrained else None
    parent = None
    for step in range(n_levels):
        logp = torch.log_softmax(next_token_logits(prefixes, parent).float(), dim=-1)         # (B, k, V)
        k, vocab = logp.shape[1], logp.shape[2]
        if prefix_mask is not None:
            allowed = prefix_mask.allowed(prefixes[:, :, 1:].flatten(0, 1), step).view(batch_size, k, vocab)
            logp = logp.masked_fill(~allowed, float("-inf"))
        total = (scores.unsqueeze(-1) + logp).view(batch_size, k * vocab)
        scores, flat = total.topk(min(n_beams, k * vocab), dim=1)                              # sorted
        parent, token = flat // vocab, flat % vocab
        kept = prefixes.gather(1, parent.unsqueeze(-1).expand(-1, -1, prefixes.shape[2]))
        prefixes = torch.cat([kept, token.unsqueeze(-1)], dim=2)
    tokens = prefixes[:, :, 1:]
    items = sids.items_of(tokens)
    return BeamResult(tokens, scores, torch.where(torch.isfinite(scores), items, torch.zeros_like(items)))


class PrefixMask:
    """Which token may follow a decoded prefix so that the sequence stays some item's semantic ID."""

    def __init__(self, sids: SemanticIds, device: torch.device):
        self.layout = sids.layout
        self.vocab = sids.layout.vocab_size
        codes = sids.codes.to(device)
        self.sizes = sids.layout.level_sizes
        # For each level l: sorted unique keys of the items' (l+1)-code prefixes (mixed radix).
        self.keys = [torch.unique(code_keys(codes[:, :level + 1], self.sizes)) for level in range(len(self.sizes))]

    def allowed(self, decoded: torch.Tensor, level: int) -> torch.Tensor:
        """(N, V) bool: tokens allowed after the decoded tokens (N, level)."""
        n = len(decoded)
        mask = torch.zeros(n, self.vocab, dtype=torch.bool, device=decoded.device)
        codes = self.layout.to_codes(torch.cat([decoded, torch.zeros(n, len(self.sizes) - level, dtype=torch.long,
                                                                        device=decoded.device)], 1))[:, :level]
        valid = (codes >= 0).all(dim=1)
        size = self.sizes[level]
        lo_key = code_keys(codes.clamp(min=0), self.sizes) * size           # first (level+1)-key with this prefix
        keys = self.keys[level]
        lo = torch.searchsorted(keys, lo_key)
        hi = torch.searchsorted(keys, lo_key + size)
        counts = torch.where(valid, hi - lo, torch.zeros_like(lo))
        row = torch.repeat_interleave(torch.arange(n, device=decoded.device), counts)
        within = torch.arange(int(counts.sum()), device=decoded.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        next_codes = keys[torch.repeat_interleave(lo, counts) + within] % size
        mask[row, next_codes + int(self.layout.level_offsets[level])] = True
        return mask

