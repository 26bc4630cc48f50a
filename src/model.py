"""The recommender (docs/method.md §5): a T5 encoder-decoder over semantic-ID tokens (TIGER), with LIGER's
text-embedding input and dense retrieval head.

Encoder input per token: its embedding, plus — with `flag_add_input_embedding` — its item's text
embedding projected to d_model (the projection MLP), a learned embedding of the item's place in the
history and of the token's level; then LayerNorm and dropout. The dense head scores the encoder's
last hidden state at the final history token, L2-normalised, by cosine / temperature against every
item's projected text embedding (the same projection). The decoder predicts the next item's tokens
(`Vocabulary.tokens_per_item`).
The T5 part is the compact T5 of `src/t5.py` (default; packed batches) or `transformers`'
`T5ForConditionalGeneration` (padded batches), with the same parameter layout
(`dataset.TIGER.T5.implementation`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5LayerNorm

from src.config import MethodConfig, T5Settings
from src.data import Batch
from src.layers import ResidualMLP
from src.t5 import PackedLayout, RMSNorm, T5, T5Config as CompactT5Config
from src.vocabulary import Vocabulary

LAYER_NORM_EPS = 1e-8  # published


@dataclass(frozen=True)
class ModelSpec:
    vocab: Vocabulary         # the token layout (src/vocabulary.py)
    max_items: int            # item-position embedding slots (max_items_per_seq)
    n_positions: int
    t5: T5Settings
    method: MethodConfig


@dataclass
class ModelOutput:
    loss: torch.Tensor                    # () weighted sum of the two losses
    sid_loss: torch.Tensor | None         # () token cross-entropy, when sid_loss_weight > 0
    embedding_loss: torch.Tensor | None   # () the dense head's item cross-entropy, when the head is on
    query: torch.Tensor | None            # (B, d_model) L2-normalised dense query


class Recommender(nn.Module):
    """TIGER / LIGER: the T5 encoder-decoder over item tokens (`spec.vocab`), with — as the method
    asks — item text added to the encoder input and a dense head scoring every item's text; `forward`
    gives the training losses, `encode` / `decoder_logits` / `dense_query` / `dense_scores` serve
    evaluation."""

    def __init__(self, spec: ModelSpec, item_text: torch.Tensor, seen_items: torch.Tensor):
        """item_text: (n_items, text_dim) standardised text embeddings, row i = item i + 1;
        seen_items: 1-based ids of the items seen in training (the others are masked out of the
        dense training softmax)."""
        super().__init__()
        self.spec, method, d_model = spec, spec.method, spec.t5.d_model
        self.t5 = t5_network(spec)
        init_t5(self.t5, spec.t5)
        self.uses_text = method.flag_add_input_embedding or method.flag_use_output_embedding
        if self.uses_text:
            self.text_proj = self._text_projection(item_text.shape[1], d_model)
        if method.flag_add_input_embedding:
            self.item_position = nn.Embedding(spec.max_items, d_model)
            self.level = nn.Embedding(spec.vocab.tokens_per_item, d_model)
            self.input_norm = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
            self.input_dropout = nn.Dropout(method.embedding_head.embd_proj_dropout_rate)
        if method.embedding_head.use_new_init:
            init_new(self)
        self.register_buffer("item_text", item_text.float(), persistent=False)
        unseen = torch.ones(len(item_text), dtype=torch.bool)
        unseen[torch.as_tensor(seen_items, dtype=torch.long) - 1] = False
        self.register_buffer("unseen", unseen, persistent=False)
        if method.embedding_head.embed_target == "ground_truth+item_id":  # each item's own token (item-id vocabulary)
            self.register_buffer("item_id_tokens", spec.vocab.item_tokens()[:, 0], persistent=False)

    def _text_projection(self, text_dim: int, d_model: int) -> nn.Module:
        head = self.spec.method.embedding_head
        if head.embed_proj_type == "linear":
            return nn.Linear(text_dim, d_model)
        return ResidualMLP(text_dim, tuple(reversed(head.hidden_sizes)), d_model,
                           head.embd_proj_in_dropout_rate, ln_eps=LAYER_NORM_EPS)

    # -- encoder ------------------------------------------------------------------------------

    @property
    def packing_groups(self) -> int:
        """Length groups of the packed batches this model takes (`data.batch(..., packing_groups)`):
        `dataset.TIGER.T5.packing_groups` for the compact T5, 0 (padded batches) for `transformers`'."""
        return self.spec.t5.packing_groups if self.spec.t5.implementation == "compact" else 0

    def encode(self, batch: Batch) -> torch.Tensor:
        """Encoder states of the batch's inputs: (B, S, d_model), or (T, d_model) for a packed batch."""
        tokens = batch.tokens if batch.layout is None else batch.tokens[batch.layout.rows, batch.layout.positions]
        embeds = self.input_embeddings(batch) if self.spec.method.flag_add_input_embedding else self.t5.shared(tokens)
        return self.t5.encode(embeds, batch.mask, batch.layout)

    def input_embeddings(self, batch: Batch) -> torch.Tensor:
        """(B, S, d_model), or (T, d_model) for a packed batch: token + projected item text + item
        position (+ level), LayerNorm, dropout. The text projection runs once per history item (for a
        packed batch, on real items only) and is shared by the item's tokens."""
        if batch.layout is None:
            tokens, items, slots, levels = batch.tokens, batch.items, batch.slots, batch.levels
            projected = self.text_proj(self.item_text[batch.history.clamp(min=1) - 1])        # (B, H, d)
            per_token = projected[torch.arange(len(batch), device=tokens.device)[:, None], slots]
        else:
            rows, columns = batch.layout.rows, batch.layout.positions
            tokens, items, slots, levels = (t[rows, columns]
                                            for t in (batch.tokens, batch.items, batch.slots, batch.levels))
            # (N, d); a fixed-width layout's padding slots (item 0) read item 1's text, masked below
            projected = self.text_proj(self.item_text[batch.history_items.clamp(min=1) - 1])
            # a non-item token (the user token, padding) points at its row's first item; masked below
            # index_select: a backward of one index_add (see PackedLayout.padded)
            slot_rows = (batch.history_starts[rows] + slots).clamp(max=max(len(projected) - 1, 0))
            per_token = projected.index_select(0, slot_rows)
        embeds = self.t5.shared(tokens) + (items > 0).unsqueeze(-1) * (per_token + self.item_position(slots))
        if self.spec.vocab.tokens_per_item > 1:  # the published item-id mode adds no level embedding
            embeds = embeds + self.level(levels)
        return self.input_dropout(self.input_norm(embeds))

    # -- dense head ---------------------------------------------------------------------------

    def dense_query(self, encoded: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, d_model) L2-normalised encoder state at each sequence's last input token."""
        if batch.layout is not None:
            return F.normalize(encoded.index_select(0, batch.layout.last).float(), dim=-1)
        return F.normalize(encoded[torch.arange(len(batch), device=encoded.device), batch.last].float(), dim=-1)

    def item_vectors(self) -> torch.Tensor:
        """(n_items, d_model) L2-normalised dense targets: projected text (+ item-id embedding), in
        float32 also under autocast, as published."""
        with torch.autocast(device_type=self.item_text.device.type, enabled=False):
            vectors = self.text_proj(self.item_text)
            if self.spec.method.embedding_head.embed_target == "ground_truth+item_id":  # item-id vocabulary
                vectors = vectors + self.t5.shared(self.item_id_tokens)
            return F.normalize(vectors, dim=-1)

    def dense_scores(self, query: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """(B, n_items) cosine / temperature; column j is item j + 1."""
        head = self.spec.method.embedding_head
        with torch.autocast(device_type=query.device.type, enabled=False):  # cosine logits in float32
            return query.float() @ vectors.float().t() / (head.logits_temperature if head.normalize_logits else 1.0)

    # -- decoder ------------------------------------------------------------------------------

    def decoder_logits(self, encoded: torch.Tensor, mask: torch.Tensor, decoder_inputs: torch.Tensor,
                       layout: PackedLayout | None = None) -> torch.Tensor:
        """(N, t, V) next-token logits for decoder inputs (N, t) (start token first), over encoder states
        as `encode` returns them."""
        return self.t5.decode(decoder_inputs, encoded, mask, layout)

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full_like(labels[:, :1], self.spec.vocab.pad), labels[:, :-1]], dim=1)

    # -- training forward ---------------------------------------------------------------------

    def forward(self, batch: Batch) -> ModelOutput:
        method = self.spec.method
        encoded = self.encode(batch)
        loss = torch.zeros((), device=encoded.device)
        sid_loss = embedding_loss = query = None
        if method.sid_loss_weight > 0:
            logits = self.decoder_logits(encoded, batch.mask, self.shift_right(batch.labels), batch.layout)
            sid_loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten())
            loss = loss + method.sid_loss_weight * sid_loss
        if method.flag_use_output_embedding:
            query = self.dense_query(encoded, batch)
            scores = self.dense_scores(query, self.item_vectors())
            if self.training:  # items never seen in training (cold-start) are kept out of the softmax
                scores = scores.masked_fill(self.unseen, float("-inf"))
            embedding_loss = F.cross_entropy(scores, batch.targets - 1)
            loss = loss + method.embedding_loss_weight * embedding_loss
        return ModelOutput(loss, sid_loss, embedding_loss, query)


class TransformersT5(T5ForConditionalGeneration):
    """`transformers`' T5 with the compact T5's interface (`src/t5.py`): the reference the compact
    one is tested against, and the benchmark's baseline (`dataset.TIGER.T5.implementation`)."""

    @property
    def heads(self) -> int:
        return self.config.num_heads

    @property
    def d_kv(self) -> int:
        return self.config.d_kv

    @property
    def output_scale(self) -> float:
        return self.model_dim ** -0.5 if self.config.scale_decoder_outputs else 1.0

    def encode(self, embeds: torch.Tensor, mask: torch.Tensor, layout: None = None) -> torch.Tensor:
        """Padded batches only (`packing_groups` is 0 for this implementation)."""
        return self.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state

    def decoder_self_bias(self, length: int, device: torch.device) -> torch.Tensor:
        bias = self.decoder.block[0].layer[0].SelfAttention.compute_bias(length, length, device=device).float()
        causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        return bias.masked_fill(~causal, float("-inf"))

    def decode(self, tokens: torch.Tensor, encoded: torch.Tensor, mask: torch.Tensor,
               layout: None = None) -> torch.Tensor:
        hidden = self.decoder(input_ids=tokens, encoder_hidden_states=encoded,
                              encoder_attention_mask=mask).last_hidden_state
        return self.lm_head(hidden * self.output_scale)


def t5_network(spec: ModelSpec) -> nn.Module:
    """The T5 encoder-decoder of `dataset.TIGER.T5.implementation`; both have the same parameter names."""
    t5 = spec.t5
    if t5.implementation == "compact":
        return T5(CompactT5Config(
            vocab_size=spec.vocab.vocab_size, d_model=t5.d_model, d_kv=t5.d_kv, d_ff=t5.d_ff, num_heads=t5.num_heads,
            encoder_layers=t5.encoder_layers, decoder_layers=t5.decoder_layers, dropout=t5.dropout_rate,
            feed_forward_proj=t5.feed_forward_proj, layer_norm_eps=LAYER_NORM_EPS))
    network = T5ForConditionalGeneration(T5Config(
        vocab_size=spec.vocab.vocab_size, d_model=t5.d_model, d_kv=t5.d_kv, d_ff=t5.d_ff, num_layers=t5.encoder_layers,
        num_decoder_layers=t5.decoder_layers, num_heads=t5.num_heads, dropout_rate=t5.dropout_rate,
        feed_forward_proj=t5.feed_forward_proj, initializer_factor=t5.initializer_factor,
        layer_norm_epsilon=LAYER_NORM_EPS, pad_token_id=spec.vocab.pad, eos_token_id=spec.vocab.eos,
        decoder_start_token_id=spec.vocab.pad, n_positions=spec.n_positions))
    # Built as the base class, then given the interface: transformers initialises a subclass
    # differently, which would move the random stream and so change every later draw for a seed.
    network.__class__ = TransformersT5
    return network


def init_t5(network: nn.Module, t5: T5Settings) -> None:
    """Initialise the T5 network as `dataset.TIGER.T5.init_scheme` says (README, "Initialisation")."""
    if t5.init_scheme == "normal":
        init_normal(network, t5.initializer_factor, norm_modules=(T5LayerNorm, RMSNorm))
    else:
        init_t5_published(network, t5)


def init_new(model: Recommender) -> None:
    """`use_new_init` (Dense (ID)): every Linear and Embedding N(0, factor), biases 0, LayerNorms 1.
    Published: T5's layer norms stay as they are, and so do the MLP's residual paths (`Conv1d`
    there); under `init_scheme=normal` every layer norm is set to 1 and every Linear redrawn."""
    t5 = model.spec.t5
    if t5.init_scheme == "normal":
        init_normal(model, t5.initializer_factor, norm_modules=(nn.LayerNorm, T5LayerNorm, RMSNorm))
    else:
        init_normal(model, t5.initializer_factor, norm_modules=(nn.LayerNorm,),
                    skip=[m for mlp in model.modules() if isinstance(mlp, ResidualMLP) for m in mlp.residuals])


def t5_published_std(name: str, t5: T5Settings) -> float | None:
    """The standard deviation T5's own scheme draws parameter `name` from (`transformers`' state-dict
    names); None for a layer norm, which is filled with the factor. The shared token embedding is
    N(0, 1): in the published runs T5's `post_init` never reaches it (it belongs to the outer model,
    whose `_init_weights` is overridden and only ever sees the `lm_head` tied to it)."""
    f, leaf = t5.initializer_factor, name.rsplit(".", 2)[-2]
    per_model = f * t5.d_model ** -0.5
    stds = {"shared": 1.0, "q": f * (t5.d_model * t5.d_kv) ** -0.5, "k": per_model, "v": per_model,
            "o": f * (t5.num_heads * t5.d_kv) ** -0.5, "relative_attention_bias": per_model,
            "wi": per_model, "wi_0": per_model, "wi_1": per_model, "wo": f * t5.d_ff ** -0.5}
    if leaf in ("layer_norm", "final_layer_norm"):
        return None
    if leaf not in stds or not name.endswith(".weight"):
        raise ValueError(f"no published initialisation is known for T5 parameter {name!r}")
    return stds[leaf]


@torch.no_grad()
def init_t5_published(network: nn.Module, t5: T5Settings) -> None:
    """T5's own scheme with `initializer_factor`, as the published runs start (transformers 4.39.3):
    layer norms = factor, q ~ N(0, f·(d_model·d_kv)^-½), k, v, relative bias, wi ~ N(0, f·d_model^-½),
    o ~ N(0, f·(heads·d_kv)^-½), wo ~ N(0, f·d_ff^-½), the shared (tied) embedding N(0, 1)."""
    for name, param in network.named_parameters():
        std = t5_published_std(name, t5)
        if std is None:
            param.fill_(t5.initializer_factor)
        else:
            param.normal_(0.0, std)


@torch.no_grad()
def init_normal(module: nn.Module, std: float, norm_modules: tuple[type, ...], skip=()) -> None:
    """Linear and embedding weights ~ N(0, std), biases 0, the weights of `norm_modules` 1 (biases 0);
    modules in `skip` are left as they are."""
    skipped = {id(m) for m in skip}
    for m in module.modules():
        if id(m) in skipped:
            continue
        if isinstance(m, (nn.Linear, nn.Embedding)):
            m.weight.normal_(0.0, std)
        elif isinstance(m, norm_modules):
            m.weight.fill_(1.0)
        else:
            continue
        if getattr(m, "bias", None) is not None:
            m.bias.zero_()
