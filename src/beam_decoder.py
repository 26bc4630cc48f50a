"""A T5 decoder forward written for beam search over a few tokens with many beams per input.

- Cross-attention: `transformers`' decoder projects the encoder states to keys and values for every
  beam copy of an input. Here they are projected once per input (on the real tokens only, for a
  packed batch), and the queries of all its beams attend to them together (beams folded into the
  query length).
- Self-attention: a key/value cache. Each step feeds only the newest token of every beam; the cache
  of the earlier tokens is reordered by the beams' parents (`parents`), so no prefix is recomputed.
  That one query's attention is written out (`newest_token_attention`), not a fused kernel's.

It uses the weights of either T5 implementation (`src/t5.py`, or `transformers`' through
`src/model.py`'s `TransformersT5`; the parameter names are the same) unchanged, in evaluation mode
(no dropout); tests check it gives `transformers`' logits, padded and packed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from src.t5 import PackedLayout, as_dtype, attention_dtype, key_padding_bias

# The most rows (inputs × beams) one fused attention call takes. The GPU kernels put the batch on a
# grid dimension of at most 65,535 blocks: on an H200, cuDNN's attention failed at 4,096 inputs × 100
# beams (409,600 rows) and ran at 4,096 × 10; so larger batches are attended in slices.
MAX_ATTENTION_ROWS = 32768


def attention_in_chunks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """T5's attention (unscaled scores, float bias (1 or N, h or 1, Lq or 1, Lk), in q's dtype) of q
    (N, h, Lq, d) over k, v (N, h, Lk, d): (N, h, Lq, d), in slices of at most MAX_ATTENTION_ROWS rows."""
    if len(q) <= MAX_ATTENTION_ROWS:  # one call, no copy
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
    biases = bias.split(MAX_ATTENTION_ROWS) if len(bias) > 1 else [bias] * math.ceil(len(q) / MAX_ATTENTION_ROWS)
    return torch.cat([F.scaled_dot_product_attention(*parts, attn_mask=b, scale=1.0)
                      for *parts, b in zip(*(t.split(MAX_ATTENTION_ROWS) for t in (q, k, v)), biases)])


def newest_token_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """T5's attention of one query per row, q (N, h, 1, d), over its few cached keys and values
    k, v (N, h, t, d), with the float bias (1, h, 1, t): (N, h, 1, d) in q's dtype, in slices of
    MAX_ATTENTION_ROWS rows (which bound the float32 temporaries). Written out in float32 (exact
    products and sums, as a fused kernel keeps them), not through `scaled_dot_product_attention`:
    its GPU kernels tile 64 queries, so with one query they spent 439 of LIGER's 683 ms of GPU time
    in a 100-beam evaluation of 4,096 inputs (H200)."""
    out = []
    for q_part, k_part, v_part in zip(*(t.split(MAX_ATTENTION_ROWS) for t in (q, k, v))):
        scores = (q_part.float() * k_part).sum(-1) + bias[:, :, 0].float()               # (n, h, t)
        out.append((scores.softmax(-1).unsqueeze(-1) * v_part).sum(-2, keepdim=True).to(q.dtype))
    return out[0] if len(out) == 1 else torch.cat(out)


class BeamDecoder:
    def __init__(self, t5: nn.Module, encoded: torch.Tensor, mask: torch.Tensor | None,
                 layout: PackedLayout | None = None):
        """t5: the recommender's T5 (`heads`, `d_kv`, `output_scale`, `decoder_self_bias`, and the
        state-dict layout); encoded: the encoder states, padded (B, S, d_model) with mask (B, S) bool
        (True on real tokens), or a packed stream (T, d_model) with its layout."""
        self.t5, self.heads, self.d_kv = t5, t5.heads, t5.d_kv
        # spans of inputs that share one padded key length, with their key biases (n, 1, 1, S):
        # all of them, or each length group
        if layout is None:
            self.span_sizes, key_biases = [len(mask)], [key_padding_bias(mask)]
        else:
            self.span_sizes, key_biases = layout.group_sizes, [g.key_bias for g in layout.groups]
        self.dtype = attention_dtype(encoded)  # the queries' (autocast's), for the biases cast once
        self.key_biases = as_dtype(key_biases, self.dtype)
        self.cross_kv = []  # per block, per span: keys and values (n, h, S, d_kv)
        for block in t5.decoder.block:
            attn = block.layer[1].EncDecAttention
            kv = F.linear(encoded, torch.cat([attn.k.weight, attn.v.weight]))
            parts = [kv] if layout is None else layout.padded(kv)
            self.cross_kv.append([tuple(self._split(p) for p in part.chunk(2, dim=-1)) for part in parts])
        self.cache: list[tuple[torch.Tensor, torch.Tensor]] = []  # per block: (B, k, h, t, d_kv) keys, values

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, h·d_kv) → (B, h, L, d_kv)."""
        return x.view(*x.shape[:2], self.heads, self.d_kv).transpose(1, 2)

    def next_token_logits(self, prefixes: torch.Tensor, parents: torch.Tensor | None = None) -> torch.Tensor:
        """(B, k, V) logits of the token after each of the k decoder prefixes (B, k, t) of each input.
        parents (B, k): the beam of the previous call each prefix extends (its prefix plus one token),
        so only the newest token is computed; None: the prefixes are computed from scratch."""
        if parents is None:
            self.cache = []
            for position in range(prefixes.shape[2]):
                logits = self._step(prefixes[:, :, position])
            return logits
        # each beam's rows of the cache, (B·k_prev, ...) → (B·k, ...): index_select reads one index per row
        # (a gather read one per element: 35 ms of a 100-beam evaluation of 4,096 inputs on an H200)
        rows = (parents + torch.arange(len(parents), device=parents.device)[:, None] * self.cache[0][0].shape[1])
        self.cache = [tuple(t.flatten(0, 1).index_select(0, rows.flatten()).view(*parents.shape, *t.shape[2:])
                            for t in layer) for layer in self.cache]
        return self._step(prefixes[:, :, -1])

    def _step(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, k, V) next-token logits after feeding `tokens` (B, k) at the next position."""
        batch, beams = tokens.shape
        position = self.cache[0][0].shape[3] if self.cache else 0
        x = self.t5.decoder.embed_tokens(tokens.flatten())[:, None]                          # (B·k, 1, d)
        bias = self.t5.decoder_self_bias(position + 1, x.device)[:, :, position:].to(self.dtype)  # (1, h, 1, t+1)
        cache = []
        for i, (block, cross) in enumerate(zip(self.t5.decoder.block, self.cross_kv)):
            out, keys, values = self._self_attention(block.layer[0], x, bias, self.cache[i] if self.cache else None,
                                                     batch, beams)
            cache.append((keys, values))
            x = x + out
            x = x + self._cross_attention(block.layer[1], x, cross, batch, beams)
            x = block.layer[2](x)
        self.cache = cache
        x = self.t5.decoder.final_layer_norm(x[:, -1]) * self.t5.output_scale
        with torch.autocast(device_type=x.device.type, enabled=False):  # beams are ranked on these: float32
            logits = F.linear(x.float(), self.t5.lm_head.weight.float())
        return logits.view(batch, beams, -1)

    def _self_attention(self, layer, x: torch.Tensor, bias: torch.Tensor, cached, batch: int, beams: int):
        """The self-attention output (B·k, 1, d) of the newest token, and the cache with its keys and
        values appended ((B, k, h, t+1, d_kv) each)."""
        attn, normed = layer.SelfAttention, layer.layer_norm(x)
        q, k, v = (self._split(proj(normed)) for proj in (attn.q, attn.k, attn.v))          # (B·k, h, 1, d_kv)
        k, v = (t.view(batch, beams, *t.shape[1:]) for t in (k, v))
        if cached is not None:
            k, v = (torch.cat([cached[0], k.to(cached[0].dtype)], dim=3),
                    torch.cat([cached[1], v.to(cached[1].dtype)], dim=3))
        out = newest_token_attention(q, k.flatten(0, 1), v.flatten(0, 1), bias)
        return attn.o(out.transpose(1, 2).flatten(2)), k, v

    def _cross_attention(self, layer, x: torch.Tensor, cross, batch: int, beams: int) -> torch.Tensor:
        attn, normed = layer.EncDecAttention, layer.layer_norm(x)
        q = self._split(attn.q(normed).view(batch, -1, self.heads * self.d_kv))               # (B, h, k, d_kv)
        out = torch.cat([attention_in_chunks(q_span, keys.to(q.dtype), values.to(q.dtype), bias.to(q.dtype))
                         for q_span, bias, (keys, values) in zip(q.split(self.span_sizes), self.key_biases, cross)])
        return attn.o(out.transpose(1, 2).flatten(2)).view(x.shape)
