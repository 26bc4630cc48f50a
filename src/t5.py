"""A compact T5 encoder-decoder, trained at the speed of the hardware: one file with a
dataclass config, as nanoGPT keeps its model.

Its parameters carry the names of `transformers`' `T5ForConditionalGeneration`, so state dicts load
both ways; `transformers`' T5 stays the test oracle. Attention goes through PyTorch's fused
`scaled_dot_product_attention` (T5 does not scale scores; the relative position bias and the masks
are one additive float bias). Pre-norm residual blocks with RMS layer norms, ReLU feed-forward,
relative position bias in the first block of each stack shared by the others, the LM head tied to
the shared embedding with the decoder output scaled by d_model^-½.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from src.runtime import to_device_async


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
    """T5's layer norm: scale only, no mean subtracted, in float32. Through `F.rms_norm`, which on a GPU
    is one fused kernel forward and one backward instead of about fifteen (on a CPU it decomposes into
    T5's own arithmetic, with equal results)."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), self.weight.shape, self.weight, self.eps)


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

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """(B, L, h·d_kv) attention of q (B, h, L, d_kv) over k, v (B, h, S, d_kv) with an additive float
        bias (B|1, h|1, L, S) (relative position and masks; T5 does not scale the scores)."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0,
                                             dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).flatten(2)

    def forward(self, x: torch.Tensor, bias, source: torch.Tensor | None = None,
                layout: PackedLayout | None = None) -> torch.Tensor:
        """Padded (layout None): x (B, L, d) queries, source (B, S, d) keys and values (None: x), bias
        (B|1, h|1, L, S). Packed: `packed_self` (source None) or `packed_cross`, bias one per length
        group."""
        if layout is not None:
            return (self.packed_self(x, layout, bias) if source is None
                    else self.packed_cross(x, source, layout, bias))
        # fused projections, as packed: one product (and one autocast cast of the input) instead of three
        if source is None:
            q, k, v = F.linear(x, torch.cat([self.q.weight, self.k.weight, self.v.weight])).chunk(3, dim=-1)
        else:
            q, (k, v) = self.q(x), F.linear(source, torch.cat([self.k.weight, self.v.weight])).chunk(2, dim=-1)
        return self.o(self.attend(self.split(q), self.split(k), self.split(v), bias))

    def packed_self(self, x: torch.Tensor, layout: PackedLayout, biases: list[torch.Tensor]) -> torch.Tensor:
        """Self-attention within each sequence of a packed stream x (T, d): (T, d). One fused q/k/v
        projection over the real tokens; attention per length group, padded to the group's longest,
        with the group's bias (n_g, h, L_g, L_g)."""
        qkv = F.linear(x, torch.cat([self.q.weight, self.k.weight, self.v.weight]))          # (T, 3·h·d_kv)
        outs = []
        for padded, bias in zip(layout.padded(qkv), biases):
            q, k, v = (self.split(part) for part in padded.chunk(3, dim=-1))
            outs.append(self.attend(q, k, v, bias))
        return self.o(layout.unpad(outs))

    def packed_cross(self, x: torch.Tensor, source: torch.Tensor, layout: PackedLayout,
                     key_biases: list[torch.Tensor]) -> torch.Tensor:
        """Attention of padded queries x (B, t, d), row i over sequence i of the packed stream source
        (T, d): (B, t, d), with each group's key padding bias (n_g, 1, 1, L_g). Keys and values are
        projected on the real tokens only."""
        queries = self.split(self.q(x)).split(layout.group_sizes)                            # (n_g, h, t, d_kv)
        kv = F.linear(source, torch.cat([self.k.weight, self.v.weight]))                      # (T, 2·h·d_kv)
        outs = []
        for q, padded, bias in zip(queries, layout.padded(kv), key_biases):
            k, v = (self.split(part) for part in padded.chunk(2, dim=-1))
            outs.append(self.attend(q, k, v, bias))
        return self.o(torch.cat(outs))


class PreNormResidual(nn.Module):
    """x + dropout(sublayer(layer_norm(x), ...)), the sublayer kept under `transformers`' attribute
    name (`SelfAttention`, `EncDecAttention` or `DenseReluDense`), so the state dicts match. A compile
    block (`trainer.compile_scope=blocks`): norm, casts, dropout and residual fused around the products."""

    compile_block = True

    def __init__(self, cfg: T5Config, name: str, sublayer: nn.Module):
        super().__init__()
        self.sublayer_name = name
        setattr(self, name, sublayer)  # registered first, before the norm, as in transformers
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return x + self.dropout(getattr(self, self.sublayer_name)(self.layer_norm(x), *args, **kwargs))


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
        # each position pair's bucket (and in the decoder, whether the key comes after the query) for
        # sequences of up to max_distance positions: a step takes their top-left (L, L) block instead of
        # computing it (about twenty kernels a stack)
        cpu, n = torch.device("cpu"), cfg.max_distance
        self.register_buffer("relative_buckets", self.buckets(n, cpu), persistent=False)
        self.register_buffer("future", self.future_keys(n, cpu) if decoder else None, persistent=False)

    def buckets(self, length: int, device: torch.device) -> torch.Tensor:
        """(L, L) T5's relative position bucket of each (query, key) pair of a sequence of `length`."""
        position = torch.arange(length, device=device)
        return relative_position_bucket(position[None, :] - position[:, None], not self.is_decoder,
                                        self.cfg.num_buckets, self.cfg.max_distance)

    @staticmethod
    def future_keys(length: int, device: torch.device) -> torch.Tensor:
        """(L, L) bool: True where the key comes after the query (masked in the decoder)."""
        return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)

    def self_bias(self, length: int, device: torch.device) -> torch.Tensor:
        """(1, h, L, L) float32 self-attention bias: the first block's relative position bias (shared
        by all blocks), and in the decoder the causal mask."""
        stored = length <= len(self.relative_buckets)
        buckets = self.relative_buckets[:length, :length] if stored else self.buckets(length, device)
        table = self.block[0].layer[0].SelfAttention.relative_attention_bias
        bias = table(buckets).permute(2, 0, 1)[None].float()
        if self.is_decoder:
            future = self.future[:length, :length] if stored else self.future_keys(length, device)
            bias = bias.masked_fill(future, float("-inf"))
        return bias

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, encoded: torch.Tensor | None = None,
                encoded_mask: torch.Tensor | None = None, layout: PackedLayout | None = None) -> torch.Tensor:
        """Padded: x (B, L, d) input embeddings; mask (B, L) bool, True on real tokens (encoder; the
        decoder is causal); encoded, encoded_mask: the encoder's states (B, S, d) and mask (B, S).
        Packed (`layout`): the encoder's x and the decoder's `encoded` are streams (T, d) of real tokens.
        Returns states shaped as x."""
        if layout is not None and not self.is_decoder:
            self_bias = layout.self_biases(self.self_bias(layout.max_length, x.device))
        else:
            self_bias = self.self_bias(x.shape[1], x.device)
            if not self.is_decoder and mask is not None:
                self_bias = self_bias + key_padding_bias(mask)
        cross_bias = None
        if encoded is not None and layout is None:
            real = (encoded_mask if encoded_mask is not None
                    else torch.ones(encoded.shape[:2], dtype=torch.bool, device=x.device))
            cross_bias = key_padding_bias(real)
        elif encoded is not None:
            cross_bias = [group.key_bias for group in layout.groups]
        # Cast once to the dtype of the attention's queries, not in each block, where no gradient flows
        # back: the masks, and everything in evaluation. In a training step the relative position bias
        # stays float32, so its gradient from the blocks is summed in float32.
        dtype = attention_dtype(x)
        cross_bias = as_dtype(cross_bias, dtype)
        if not torch.is_grad_enabled():
            self_bias = as_dtype(self_bias, dtype)
        self_layout = None if self.is_decoder else layout
        x = self.dropout(x)
        for block in self.block:
            x = block.layer[0](x, self_bias, layout=self_layout)
            if self.is_decoder:
                x = block.layer[1](x, cross_bias, encoded, layout=layout)
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

    def encode(self, embeds: torch.Tensor, mask: torch.Tensor | None,
               layout: PackedLayout | None = None) -> torch.Tensor:
        """Encoder states shaped as the input embeddings: padded (B, S, d) with mask (B, S) bool, or a
        packed stream (T, d) of real tokens with its layout (mask unused)."""
        return self.encoder(embeds, mask, layout=layout)

    def decode(self, tokens: torch.Tensor, encoded: torch.Tensor, mask: torch.Tensor | None,
               layout: PackedLayout | None = None) -> torch.Tensor:
        """(N, t, V) next-token logits of decoder inputs (N, t) (start token first), over encoder states
        as `encode` returns them (packed with `layout`: decoder row i reads sequence i)."""
        hidden = self.decoder(self.shared(tokens), encoded=encoded, encoded_mask=mask, layout=layout)
        return self.lm_head(hidden * self.output_scale)


def attention_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype attention's queries will have for inputs like x: autocast's where it is on."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def as_dtype(bias, dtype: torch.dtype):
    """An attention bias (a tensor, a list of them, or None) in `dtype`."""
    return [b.to(dtype) for b in bias] if isinstance(bias, list) else None if bias is None else bias.to(dtype)


def key_padding_bias(real: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, S) float32 additive attention bias of keys (B, S) bool, True on real tokens: 0 there,
    float32's minimum on padding (as `transformers`' T5 masks)."""
    return torch.zeros(real.shape, device=real.device).masked_fill(~real,
                                                                   torch.finfo(torch.float32).min)[:, None, None, :]


@dataclass(frozen=True)
class LengthGroup:
    """Consecutive sequences of a packed batch whose attention runs together, padded to one width L_g.
    Its sizes are those of its tensors (n_g sequences, L_g positions), never Python numbers, so a
    compiled step sees them as dynamic shapes instead of recompiling for each batch; except in a
    fixed-width layout (`span`), whose sizes are fixed for a step captured as a CUDA graph."""
    key_bias: torch.Tensor               # (n_g, 1, 1, L_g) float32: 0 on real keys, float32's minimum on padding
    gather: torch.Tensor | None = None   # (n_g, L_g) each padded position's token in the stream; T (a zero row)
                                         # for padding. None in a fixed-width layout
    span: tuple[int, int, int] | None = None  # fixed width: (start, n_g, L_g), the group is stream[start:start+n_g·L_g]


@dataclass(frozen=True)
class PackedLayout:
    """A batch of B sequences, sorted longest first, as one stream of tokens (row-major: sequence 0's
    tokens, then sequence 1's, ...), so that dense layers compute on few or no padding tokens.
    Attention runs per group of consecutive sequences (equal-count groups over the sorted lengths, so
    the padding left is small); on real tokens the results equal the padded computation's. Built on
    the host from host-side lengths, so no step waits for the device.

    Two kinds (`from_lengths`): packed, the stream holds the T real tokens and each group is padded to
    its longest (sizes vary by batch); fixed-width (`widths`), sequence i of group g takes W_g stream
    positions, its padding masked, so that every size depends on B and the widths alone and a step
    can be captured as a CUDA graph (`trainer.cuda_graphs`).

    rows, positions: (T,) each stream token's sequence and its position within it (to gather a padded
    (B, S) tensor's entries: `x[rows, positions]`); last: (B,) each sequence's last real token. Packed
    only: gather (Σ n_g·L_g,) every group's `gather`, flattened one after another (the groups' are its
    views), so that one `index_select` pads all groups; real (T,) each stream token's index in the groups'
    padded positions, flattened one after another, so that one `index_select` unpads them.
    """
    groups: tuple[LengthGroup, ...]
    rows: torch.Tensor
    positions: torch.Tensor
    last: torch.Tensor
    gather: torch.Tensor | None = None
    real: torch.Tensor | None = None

    @property
    def max_length(self) -> int:
        return max(g.key_bias.shape[-1] for g in self.groups)

    @property
    def group_sizes(self) -> list[int]:
        """Sequences per group (n_g), to split a (B, ...) tensor by group."""
        return [g.key_bias.shape[0] for g in self.groups]

    @property
    def fixed_width(self) -> bool:
        return self.groups[0].span is not None

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor, n_groups: int, device: torch.device,
                     widths: Sequence[int] | None = None) -> PackedLayout:
        """The layout of sequences of `lengths` (B,) (host tensor, non-increasing, each ≥ 1) in
        min(n_groups, B) groups: packed, or with `widths` (one per group, each at least its group's
        longest) fixed-width."""
        lengths = lengths.long().cpu()
        if len(lengths) == 0 or int(lengths.min()) < 1 or bool((lengths[1:] > lengths[:-1]).any()):
            raise ValueError(f"packing needs non-empty sequences sorted longest first, got lengths {lengths.tolist()}")
        bounds = group_bounds(len(lengths), n_groups)
        if widths is None:
            return cls._packed(lengths, bounds, device)
        return cls._fixed_width(lengths, bounds, [int(w) for w in widths], device)

    @classmethod
    def _packed(cls, lengths: torch.Tensor, bounds: list[int], device: torch.device) -> PackedLayout:
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        n, total = len(lengths), int(offsets[-1])
        gathers = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            width = int(lengths[start])
            real = torch.arange(width) < lengths[start:stop, None]                         # (n_g, L_g)
            gathers.append(torch.where(real, offsets[start:stop, None] + torch.arange(width), total))
        flat_gather = torch.cat([g.flatten() for g in gathers])
        host = [torch.repeat_interleave(torch.arange(n), lengths),                         # rows
                torch.arange(total) - torch.repeat_interleave(offsets[:-1], lengths),      # positions
                offsets[1:] - 1,                                                           # last
                flat_gather, (flat_gather != total).nonzero().squeeze(1)]                  # gather, real
        # one host-to-device copy for all the index tensors
        rows, positions, last, gather, real = to_device_async(torch.cat(host), device).split(
            [t.numel() for t in host])
        views = [part.view(g.shape) for part, g in zip(gather.split([g.numel() for g in gathers]), gathers)]
        groups = tuple(LengthGroup(key_padding_bias(view != total), view) for view in views)
        return cls(groups, rows, positions, last, gather, real)

    @classmethod
    def _fixed_width(cls, lengths: torch.Tensor, bounds: list[int], widths: list[int],
                     device: torch.device) -> PackedLayout:
        sizes = [stop - start for start, stop in zip(bounds[:-1], bounds[1:])]
        check_group_widths(lengths[bounds[:-1]].tolist(), widths, "sequence")
        return FixedWidthGrid.of(sizes, widths, device).layout(to_device_async(lengths, device))

    def padded(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per group (n_g, L_g, C): its sequences' tokens of a stream x (T, C), zeros (packed) or the
        stream's padding tokens (fixed-width) on padding. One operation for all groups, whose backward
        is a cat (and an index_add): a slice or a gather per group would write a zero gradient of the
        whole stream per group, and add them up."""
        if self.fixed_width:  # the groups tile the stream in order: views of one split, no copy
            spans = [g.span for g in self.groups]
            parts = x.split([n * width for _, n, width in spans])
            return [part.view(n, width, x.shape[-1]) for part, (_, n, width) in zip(parts, spans)]
        stream = F.pad(x, (0, 0, 0, 1))  # the zero row that padding positions point at
        # index_select, not stream[gather]: its backward is one index_add, where indexing's sorts the
        # indices and sums the padding positions' many repeats of row T serially (on an H200: 25 of a
        # TIGER step's 36 ms of GPU time)
        parts = stream.index_select(0, self.gather).split([g.gather.numel() for g in self.groups])
        return [part.view(*g.gather.shape, x.shape[-1]) for part, g in zip(parts, self.groups)]

    def unpad(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """(T, C): the groups' padded (n_g, L_g, C), as `padded` gives them, as one stream, by one
        operation (and its backward by one)."""
        flat = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])
        return flat if self.real is None else flat.index_select(0, self.real)

    def self_biases(self, relative: torch.Tensor) -> list[torch.Tensor]:
        """Per group (n_g, h, L_g, L_g) float32: the relative position bias (1, h, L, L) of the longest
        sequence, cut to the group's length, with its padding keys masked."""
        return [relative[:, :, :g.key_bias.shape[-1], :g.key_bias.shape[-1]] + g.key_bias for g in self.groups]


@dataclass(frozen=True)
class FixedWidthGrid:
    """What a fixed-width layout's sizes alone determine (n_g sequences of W_g positions per group), built
    once on the device; `layout` adds a batch's lengths by device operations alone (no copy from the host),
    so that a CUDA graph can capture laying out its batch with the step.

    rows, positions: (Σ n_g·W_g,) as PackedLayout's; starts: (B,) each sequence's first stream position;
    spans: each group's (start, n_g, W_g), as LengthGroup's."""
    rows: torch.Tensor
    positions: torch.Tensor
    starts: torch.Tensor
    spans: tuple[tuple[int, int, int], ...]

    @classmethod
    def of(cls, sizes: Sequence[int], widths: Sequence[int], device: torch.device) -> FixedWidthGrid:
        """The grid of groups of `sizes` sequences (n_g) of `widths` positions (W_g)."""
        taken = torch.repeat_interleave(torch.tensor(widths), torch.tensor(sizes))        # (B,) W_g of each row
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), taken.cumsum(0)])
        host = [torch.repeat_interleave(torch.arange(len(taken)), taken),                  # rows
                torch.arange(int(offsets[-1])) - torch.repeat_interleave(offsets[:-1], taken),  # positions
                offsets[:-1]]                                                              # starts
        rows, positions, starts = to_device_async(torch.cat(host), device).split([t.numel() for t in host])
        first_rows = [0, *itertools.accumulate(sizes)]
        spans = tuple((int(offsets[first]), n, w) for first, n, w in zip(first_rows, sizes, widths))
        return cls(rows, positions, starts, spans)

    def layout(self, lengths: torch.Tensor) -> PackedLayout:
        """The layout of sequences of `lengths` (B,) (on the device, non-increasing, each at most its
        group's width; not checked here, as that would read them back)."""
        groups, first = [], 0
        for span in self.spans:
            _, n, width = span
            real = torch.arange(width, device=lengths.device) < lengths[first:first + n, None]
            groups.append(LengthGroup(key_padding_bias(real), span=span))
            first += n
        return PackedLayout(tuple(groups), self.rows, self.positions, self.starts + lengths - 1)


def check_group_widths(longest: Sequence[int], widths: Sequence[int], what: str) -> None:
    """Raise ValueError unless a fixed-width layout's `widths` (one per group) hold each group's `longest`
    (its longest `what`)."""
    if len(widths) != len(longest):
        raise ValueError(f"a fixed-width layout of {len(longest)} groups needs {len(longest)} widths, "
                         f"got {list(widths)}")
    for g, (n, width) in enumerate(zip(longest, widths)):
        if n > width:
            raise ValueError(f"length group {g}'s longest {what} ({n}) exceeds its width {width}")


def group_bounds(n: int, n_groups: int) -> list[int]:
    """The first sequence of each of min(n_groups, n) equal-count groups of n sequences, then n: group g
    is sequences bounds[g]:bounds[g + 1] (sizes differ by at most one)."""
    n_groups = min(n_groups, n)
    return [i * n // n_groups for i in range(n_groups + 1)]


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
