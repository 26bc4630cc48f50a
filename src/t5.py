"""A compact T5 encoder-decoder (issue: train at the speed of the hardware), one file with a
dataclass config, as nanoGPT keeps its model.

Its parameters carry the names of `transformers`' `T5ForConditionalGeneration`, so state dicts load
both ways; `transformers`' T5 stays the test oracle. Attention goes through PyTorch's fused
`scaled_dot_product_attention` (T5 does not scale scores; the relative position bias and the masks
are one additive float bias). Pre-norm residual blocks with RMS layer norms, ReLU feed-forward,
relative position bias in the first block of each stack shared by the others, the LM head tied to
the shared embedding with the decoder output scaled by d_model^-½.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class T5Config:
    vocab_size: int
    d_model: int = 128
    d_kv: int = 64
    d_ff: int = 1024
    num_heads: int = 6
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.2
    feed_forward_proj: str = "relu"   # relu | gelu | gated-gelu | gated-relu, as transformers names them
    layer_norm_eps: float = 1e-8
    num_buckets: int = 32
    max_distance: int = 128


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtracted, variance accumulated in float32."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


class Attention(nn.Module):
    def __init__(self, cfg: T5Config, relative_bias: bool = False):
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.heads, self.d_kv, self.dropout = cfg.num_heads, cfg.d_kv, cfg.dropout
        self.q, self.k, self.v = (nn.Linear(cfg.d_model, inner, bias=False) for _ in range(3))
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        if relative_bias:
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, cfg.num_heads)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, h·d_kv) → (B, h, L, d_kv)."""
        return x.view(*x.shape[:2], self.heads, self.d_kv).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, d) queries; source: (B, S, d) keys and values (None: x); bias: (B|1, h|1, L, S)
        additive float (relative position and masks)."""
        source = x if source is None else source
        q, k, v = self.split(self.q(x)), self.split(self.k(source)), self.split(self.v(source))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.o(out.transpose(1, 2).flatten(2))


class PreNormResidual(nn.Module):
    """x + dropout(sublayer(layer_norm(x), ...)), the sublayer kept under `transformers`' attribute
    name (`SelfAttention`, `EncDecAttention` or `DenseReluDense`), so the state dicts match."""

    def __init__(self, cfg: T5Config, name: str, sublayer: nn.Module):
        super().__init__()
        self.sublayer_name = name
        setattr(self, name, sublayer)  # registered first, before the norm, as in transformers
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(getattr(self, self.sublayer_name)(self.layer_norm(x), *args))


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gated-relu": F.relu,
               "gated-gelu": lambda x: F.gelu(x, approximate="tanh")}


class DenseReluDense(nn.Module):
    """The feed-forward network (T5's name for it, whatever the activation): wi, activation, dropout,
    wo; the gated variants multiply the activation of wi_0 by wi_1."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.act, self.gated = ACTIVATIONS[cfg.feed_forward_proj], cfg.feed_forward_proj.startswith("gated")
        if self.gated:
            self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
            self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        else:
            self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.wi_0(x)) * self.wi_1(x) if self.gated else self.act(self.wi(x))
        return self.wo(self.dropout(hidden))


class Block(nn.Module):
    def __init__(self, cfg: T5Config, decoder: bool, first: bool):
        super().__init__()
        layers = [PreNormResidual(cfg, "SelfAttention", Attention(cfg, relative_bias=first))]
        if decoder:
            layers.append(PreNormResidual(cfg, "EncDecAttention", Attention(cfg)))
        self.layer = nn.ModuleList([*layers, PreNormResidual(cfg, "DenseReluDense", DenseReluDense(cfg))])


class Stack(nn.Module):
    """Encoder or decoder: blocks between an input dropout and a final layer norm + dropout."""

    def __init__(self, cfg: T5Config, embed_tokens: nn.Embedding, decoder: bool):
        super().__init__()
        self.cfg, self.is_decoder, self.embed_tokens = cfg, decoder, embed_tokens
        n = cfg.decoder_layers if decoder else cfg.encoder_layers
        self.block = nn.ModuleList(Block(cfg, decoder, first=i == 0) for i in range(n))
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def self_bias(self, length: int, device: torch.device) -> torch.Tensor:
        """(1, h, L, L) float32 self-attention bias: the first block's relative position bias (shared
        by all blocks), and in the decoder the causal mask."""
        position = torch.arange(length, device=device)
        buckets = relative_position_bucket(position[None, :] - position[:, None], not self.is_decoder,
                                           self.cfg.num_buckets, self.cfg.max_distance)
        table = self.block[0].layer[0].SelfAttention.relative_attention_bias
        bias = table(buckets).permute(2, 0, 1)[None].float()
        if self.is_decoder:
            causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
            bias = bias.masked_fill(~causal, float("-inf"))
        return bias

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, encoded: torch.Tensor | None = None,
                encoded_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, d) input embeddings; mask: (B, L) bool, True on real tokens (encoder; the decoder is
        causal); encoded, encoded_mask: the encoder's states (B, S, d) and mask (B, S). (B, L, d)."""
        bias = self.self_bias(x.shape[1], x.device)
        if not self.is_decoder and mask is not None:
            bias = bias.masked_fill(~mask[:, None, None, :], torch.finfo(torch.float32).min)
        cross_bias = None
        if encoded is not None:
            cross_bias = torch.zeros(len(encoded), 1, 1, encoded.shape[1], device=x.device)
            if encoded_mask is not None:
                cross_bias = cross_bias.masked_fill(~encoded_mask[:, None, None, :], torch.finfo(torch.float32).min)
        x = self.dropout(x)
        for block in self.block:
            x = block.layer[0](x, bias)
            if self.is_decoder:
                x = block.layer[1](x, cross_bias, encoded)
            x = block.layer[-1](x)
        return self.dropout(self.final_layer_norm(x))


class T5(nn.Module):
    """Encoder-decoder with a tied LM head; the state dict is `T5ForConditionalGeneration`'s.
    `heads`, `d_kv`, `output_scale` and `decoder_self_bias` serve the beam decoder."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.cfg, self.heads, self.d_kv = cfg, cfg.num_heads, cfg.d_kv
        self.output_scale = cfg.d_model ** -0.5  # tied LM head: T5 rescales the decoder output
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = Stack(cfg, self.shared, decoder=False)
        self.decoder = Stack(cfg, self.shared, decoder=True)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.shared.weight

    def decoder_self_bias(self, length: int, device: torch.device) -> torch.Tensor:
        """(1, h, L, L) float32: the decoder's relative position bias and causal mask."""
        return self.decoder.self_bias(length, device)

    def encode(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, S, d) encoder states of input embeddings (B, S, d) with mask (B, S) bool."""
        return self.encoder(embeds, mask)

    def decode(self, tokens: torch.Tensor, encoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, t, V) next-token logits of decoder inputs (N, t) (start token first)."""
        hidden = self.decoder(self.shared(tokens), encoded=encoded, encoded_mask=mask)
        return self.lm_head(hidden * self.output_scale)


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """T5's bucket of each relative position (key − query): exact for small distances, logarithmic
    up to `max_distance`; the decoder (not bidirectional) only looks back."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        relative = relative.abs()
    else:
        relative = -relative.clamp(max=0)
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(relative.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(relative < max_exact, relative, large)
