"""A T5 decoder forward written for beam search over a few tokens with many beams per input.

`transformers`' decoder projects the encoder states to cross-attention keys and values for every
beam copy of an input. Here they are projected once per input, and the queries of all its beams
attend to them together (beams folded into the query length). Self-attention runs over the whole
prefix, at most 4 tokens, so no cache is needed. It uses the weights of either T5 implementation
(`src/t5.py`, or `transformers`' through `src/model.py`'s `TransformersT5`; the parameter names are
the same) unchanged, in evaluation mode (no dropout); a test checks it gives `transformers`' logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BeamDecoder:
    def __init__(self, t5: nn.Module, encoded: torch.Tensor, mask: torch.Tensor):
        """t5: the recommender's T5 (`heads`, `d_kv`, `output_scale`, `decoder_self_bias`, and the
        state-dict layout); encoded: (B, S, d_model) encoder states; mask: (B, S) bool, True on real tokens."""
        self.t5, self.heads, self.d_kv = t5, t5.heads, t5.d_kv
        blocks = t5.decoder.block
        self.cross_kv = [(self._split(block.layer[1].EncDecAttention.k(encoded)),
                          self._split(block.layer[1].EncDecAttention.v(encoded))) for block in blocks]
        self.cross_mask = mask[:, None, None, :]                                              # (B, 1, 1, S) bool

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, h·d_kv) → (B, h, L, d_kv)."""
        return x.view(*x.shape[:2], self.heads, self.d_kv).transpose(1, 2)

    def next_token_logits(self, prefixes: torch.Tensor) -> torch.Tensor:
        """(B, k, V) logits of the token after each of the k decoder prefixes (B, k, t) of each input."""
        batch, beams, length = prefixes.shape
        x = self.t5.decoder.embed_tokens(prefixes.flatten(0, 1))                              # (B·k, t, d)
        self_bias = self.t5.decoder_self_bias(length, x.device)
        for block, (keys, values) in zip(self.t5.decoder.block, self.cross_kv):
            x = x + self._self_attention(block.layer[0], x, self_bias)
            x = x + self._cross_attention(block.layer[1], x, keys, values, batch, beams)
            x = block.layer[2](x)
        x = self.t5.decoder.final_layer_norm(x[:, -1]) * self.t5.output_scale
        with torch.autocast(device_type=x.device.type, enabled=False):  # beams are ranked on these: float32
            logits = F.linear(x.float(), self.t5.lm_head.weight.float())
        return logits.view(batch, beams, -1)

    def _self_attention(self, layer, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        attn, normed = layer.SelfAttention, layer.layer_norm(x)
        q, k, v = (self._split(proj(normed)) for proj in (attn.q, attn.k, attn.v))
        # T5 does not scale attention scores; a float mask must match the query's dtype (autocast)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
        return attn.o(out.transpose(1, 2).flatten(2))

    def _cross_attention(self, layer, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                         batch: int, beams: int) -> torch.Tensor:
        attn, normed = layer.EncDecAttention, layer.layer_norm(x)
        q = self._split(attn.q(normed).view(batch, -1, self.heads * self.d_kv))                # (B, h, k·t, d_kv)
        out = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=self.cross_mask, scale=1.0)
        return attn.o(out.transpose(1, 2).flatten(2)).view(x.shape)
