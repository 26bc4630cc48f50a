"""The compact T5 (src/t5.py) against `transformers`' T5ForConditionalGeneration with the same
weights: state dicts load both ways; encoder states, logits, loss and gradients agree."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers import T5Config as HFConfig, T5ForConditionalGeneration

from src.t5 import PackedLayout, T5, T5Config, group_bounds, relative_position_bucket

CFG = T5Config(vocab_size=40, d_model=32, d_kv=8, d_ff=64, num_heads=4, encoder_layers=2, decoder_layers=3,
               dropout=0.1)


def pair(seed: int = 0, cfg: T5Config = CFG) -> tuple[T5, T5ForConditionalGeneration]:
    torch.manual_seed(seed)
    reference = T5ForConditionalGeneration(HFConfig(
        vocab_size=CFG.vocab_size, d_model=CFG.d_model, d_kv=CFG.d_kv, d_ff=CFG.d_ff, num_heads=CFG.num_heads,
        num_layers=CFG.encoder_layers, num_decoder_layers=CFG.decoder_layers, dropout_rate=CFG.dropout,
        layer_norm_epsilon=CFG.layer_norm_eps, feed_forward_proj=cfg.feed_forward_proj, pad_token_id=0,
        eos_token_id=CFG.vocab_size - 1, decoder_start_token_id=0))
    with torch.no_grad():  # spread the weights: T5's own scheme starts layer norms at 1 and would hide them
        for p in reference.parameters():
            p.normal_(0.0, 0.3)
    ours = T5(cfg)
    ours.load_state_dict(reference.state_dict())
    return ours.eval(), reference.eval()


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(5, 11, CFG.d_model, generator=g)
    mask = torch.arange(11)[None] < torch.tensor([11, 7, 3, 9, 1])[:, None]
    labels = torch.randint(1, CFG.vocab_size, (5, 4), generator=g)
    decoder_in = torch.cat([torch.zeros(5, 1, dtype=torch.long), labels[:, :-1]], dim=1)
    return embeds, mask, labels, decoder_in


def test_state_dicts_load_both_ways():
    ours, reference = pair()
    assert ours.state_dict().keys() == reference.state_dict().keys()
    back = T5ForConditionalGeneration(reference.config)
    back.load_state_dict(ours.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), reference.state_dict().values()))
    assert ours.lm_head.weight is ours.shared.weight and ours.encoder.embed_tokens is ours.shared


@pytest.mark.parametrize("activation", ["relu", "gelu", "gated-gelu", "gated-relu"])
def test_encoder_states_and_logits_equal_transformers(activation):
    ours, reference = pair(cfg=dataclasses.replace(CFG, feed_forward_proj=activation))
    embeds, mask, labels, decoder_in = inputs()
    with torch.no_grad():
        encoded = ours.encode(embeds, mask)
        expected = reference.encoder(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state
        torch.testing.assert_close(encoded[mask], expected[mask], rtol=1e-5, atol=1e-5)  # real tokens
        logits = ours.decode(decoder_in, encoded, mask)
        ref = reference(inputs_embeds=embeds, attention_mask=mask.long(), decoder_input_ids=decoder_in, labels=labels)
        torch.testing.assert_close(logits, ref.logits, rtol=1e-5, atol=1e-5)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        torch.testing.assert_close(loss, ref.loss, rtol=1e-6, atol=1e-6)


def test_gradients_equal_transformers():
    ours, reference = pair(3)
    embeds, mask, labels, decoder_in = inputs(4)
    loss = F.cross_entropy(ours.decode(decoder_in, ours.encode(embeds, mask), mask).flatten(0, 1), labels.flatten())
    loss.backward()
    reference(inputs_embeds=embeds, attention_mask=mask.long(), decoder_input_ids=decoder_in,
              labels=labels).loss.backward()
    grads = dict(reference.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, grads[name].grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_buckets_equal_transformers(bidirectional):
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-300, 300)[None, :] - torch.arange(0, 5)[:, None]
    expected = T5Attention._relative_position_bucket(relative, bidirectional, 32, 128)
    assert torch.equal(relative_position_bucket(relative, bidirectional, 32, 128), expected)


@pytest.mark.parametrize("length", [1, 7, 128, 150])
def test_the_stored_relative_buckets_give_the_computed_position_bias(length):
    """Each stack keeps the buckets (and the decoder its causal mask) of sequences of up to max_distance
    (128) positions, and a step slices them; the bias equals the one computed from the positions,
    and a longer sequence computes its own."""
    model = T5(T5Config(vocab_size=20, d_model=16, d_kv=4, d_ff=32, num_heads=2, encoder_layers=1,
                        decoder_layers=1))
    position = torch.arange(length)
    for stack in (model.encoder, model.decoder):
        buckets = relative_position_bucket(position[None, :] - position[:, None], not stack.is_decoder, 32, 128)
        expected = stack.block[0].layer[0].SelfAttention.relative_attention_bias(buckets).permute(2, 0, 1)[None]
        if stack.is_decoder:
            expected = expected.masked_fill(position[None, :] > position[:, None], float("-inf"))
        assert len(stack.relative_buckets) == 128
        torch.testing.assert_close(stack.self_bias(length, CPU), expected, rtol=0, atol=0)
    assert "encoder.relative_buckets" not in model.state_dict()  # not saved: checkpoints are unchanged


def test_dropout_is_active_in_training_only():
    ours, _ = pair()
    embeds, mask, _, _ = inputs()
    ours.train()
    a, b = ours.encode(embeds, mask), ours.encode(embeds, mask)
    assert not torch.allclose(a, b)
    ours.eval()
    torch.testing.assert_close(ours.encode(embeds, mask), ours.encode(embeds, mask), rtol=0, atol=0)


# -- packed batches: one stream of real tokens, attention per length group ---------------------------

LENGTHS = torch.tensor([11, 9, 7, 7, 3, 1])
CPU = torch.device("cpu")


def packed_inputs(seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(len(LENGTHS), int(LENGTHS[0]), CFG.d_model, generator=g)
    mask = torch.arange(int(LENGTHS[0]))[None] < LENGTHS[:, None]
    labels = torch.randint(1, CFG.vocab_size, (len(LENGTHS), 4), generator=g)
    decoder_in = torch.cat([torch.zeros(len(LENGTHS), 1, dtype=torch.long), labels[:, :-1]], dim=1)
    return embeds, mask, labels, decoder_in


@pytest.mark.parametrize("groups", [1, 2, 4, 6, 10])
def test_packed_stream_equals_the_padded_computation(groups):
    ours, _ = pair(7)
    embeds, mask, labels, decoder_in = packed_inputs()
    layout = PackedLayout.from_lengths(LENGTHS, groups, torch.device("cpu"))
    assert len(layout.groups) == min(groups, len(LENGTHS)) and layout.max_length == 11
    packed_embeds = embeds[layout.rows, layout.positions].detach().requires_grad_()
    torch.testing.assert_close(packed_embeds, embeds[mask])  # the stream holds the real tokens, row-major

    def loss_and_grads(encoded, logits):
        ours.zero_grad()
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        loss.backward()
        return loss, {n: p.grad.clone() for n, p in ours.named_parameters()}

    padded_embeds = embeds.clone().requires_grad_()
    padded = ours.encode(padded_embeds, mask)
    padded_logits = ours.decode(decoder_in, padded, mask)
    packed = ours.encode(packed_embeds, None, layout)
    packed_logits = ours.decode(decoder_in, packed, None, layout)
    torch.testing.assert_close(packed, padded[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed_logits, padded_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed[layout.last], padded[torch.arange(len(LENGTHS)), LENGTHS - 1])
    padded_loss, padded_grads = loss_and_grads(padded, padded_logits)
    packed_loss, packed_grads = loss_and_grads(packed, packed_logits)
    torch.testing.assert_close(packed_loss, padded_loss)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(packed_embeds.grad, padded_embeds.grad[mask], rtol=1e-4, atol=1e-6)


def test_packed_groups_cover_each_token_once_and_pad_with_zeros():
    layout = PackedLayout.from_lengths(LENGTHS, 3, torch.device("cpu"))
    assert layout.group_sizes == [2, 2, 2] and layout.max_length == 11
    stream = torch.arange(1, int(LENGTHS.sum()) + 1, dtype=torch.float32)[:, None]
    groups = layout.padded(stream)
    for group, padded, lengths in zip(layout.groups, groups, LENGTHS.split(layout.group_sizes)):
        assert padded.shape[:2] == (len(lengths), int(lengths[0]))               # (n_g, the group's longest)
        real = padded[..., 0] > 0
        assert torch.equal(real.sum(1), lengths)                                  # padding is zero
        assert torch.equal(group.key_bias[:, 0, 0] == 0, real)
    assert torch.equal(layout.unpad(groups), stream)                               # back in stream order


@pytest.mark.parametrize("widths", [None, [11, 7, 3]])
def test_padding_every_group_is_one_operation_whose_backward_is_a_few_kernels(widths):
    """`PackedLayout.padded` pads all groups at once: one `index_select` (packed) or one split (fixed
    width), whose backward is a `cat` (and one `index_add`), whatever the number of groups. A slice or a
    gather per group would write a zero gradient of the whole stream for each group and add them up (with
    4 groups, about ten kernels more for each use in a graphed step on a GPU). `unpad`, back to the
    stream, is one operation too. The groups still get their own tokens (the tests above)."""
    from conftest import RecordedOperations as Ops

    layout = PackedLayout.from_lengths(LENGTHS, 3, CPU, widths=widths)
    tokens = sum(g.span[1] * g.span[2] for g in layout.groups) if widths else int(LENGTHS.sum())
    stream = torch.randn(tokens, 4, requires_grad=True)
    forward, backward, unpad_forward, unpad_backward = Ops(), Ops(), Ops(), Ops()
    with forward:
        parts = layout.padded(stream)
    loss = sum((part * torch.arange(part.numel()).view(part.shape)).sum() for part in parts)
    with backward:
        torch.autograd.grad(loss, stream, retain_graph=True)
    with unpad_forward:  # and back: one operation too
        restored = layout.unpad(parts)
    with unpad_backward:
        torch.autograd.grad((restored * torch.arange(restored.numel()).view(restored.shape)).sum(), stream)
    moved = {"index_select", "index_add", "cat", "slice_backward", "copy_", "index", "index_put"}
    assert [n for n in unpad_forward.names if n in moved] == ["cat", *(["index_select"] if widths is None else [])]
    if widths is None:
        assert [n for n in forward.names if n in moved] == ["index_select"]
        assert [n for n in backward.names if n in moved] == ["cat", "index_add"]
        assert [n for n in unpad_backward.names if n in moved] == ["index_add", "cat", "index_add"]
    else:
        assert [n for n in forward.names if n in moved] == []  # views of the stream
        assert [n for n in backward.names if n in moved] == ["cat"]
        assert [n for n in unpad_backward.names if n in moved] == ["cat"]


@pytest.mark.parametrize("groups, extra", [(1, 0), (2, 1), (3, 2), (6, 0)])
def test_a_fixed_width_layout_equals_the_padded_computation_on_real_tokens(groups, extra):
    """Fixed-width groups (a graphed step's layout): each sequence takes its group's width in the stream,
    padding included and masked; the real tokens' states, the logits, the loss and the gradients are
    the padded computation's."""
    ours, _ = pair(7)
    embeds, mask, labels, decoder_in = packed_inputs()
    widths = [int(LENGTHS[start]) + extra for start in group_bounds(len(LENGTHS), groups)[:-1]]
    layout = PackedLayout.from_lengths(LENGTHS, groups, CPU, widths=widths)
    assert layout.fixed_width and len(layout.groups) == min(groups, len(LENGTHS))
    assert len(layout.rows) == sum(n * w for n, w in zip(layout.group_sizes, widths))
    padded_input = F.pad(embeds, (0, 0, 0, extra))  # room for the widest group's padding
    stream_real = layout.positions < LENGTHS[layout.rows]
    stream = padded_input[layout.rows, layout.positions].detach().requires_grad_()
    torch.testing.assert_close(stream[stream_real], embeds[mask])  # the real tokens, row-major, in order

    padded_embeds = embeds.clone().requires_grad_()
    padded = ours.encode(padded_embeds, mask)
    padded_logits = ours.decode(decoder_in, padded, mask)
    fixed = ours.encode(stream, None, layout)
    fixed_logits = ours.decode(decoder_in, fixed, None, layout)
    torch.testing.assert_close(fixed[stream_real], padded[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fixed_logits, padded_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fixed[layout.last], padded[torch.arange(len(LENGTHS)), LENGTHS - 1])
    grads = []
    for logits in (padded_logits, fixed_logits):
        ours.zero_grad()
        F.cross_entropy(logits.flatten(0, 1), labels.flatten()).backward()
        grads.append({n: p.grad.clone() for n, p in ours.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(stream.grad[stream_real], padded_embeds.grad[mask], rtol=1e-4, atol=1e-6)
    assert not stream.grad[~stream_real].any()  # padding reaches nothing


def test_a_fixed_width_layouts_sizes_depend_on_the_widths_alone():
    """Two batches of other lengths, the same widths: every tensor has the same shape, and the stream's
    indices are the same (only the masks and the last tokens differ), as a replayed graph needs."""
    other = torch.tensor([9, 8, 6, 4, 2, 2])
    widths = [11, 7, 3]
    a, b = (PackedLayout.from_lengths(lengths, 3, CPU, widths=widths) for lengths in (LENGTHS, other))
    assert [g.span for g in a.groups] == [g.span for g in b.groups] == [(0, 2, 11), (22, 2, 7), (36, 2, 3)]
    assert torch.equal(a.rows, b.rows) and torch.equal(a.positions, b.positions)
    assert [g.key_bias.shape for g in a.groups] == [g.key_bias.shape for g in b.groups]
    assert not torch.equal(a.last, b.last)
    assert torch.equal(b.groups[1].key_bias[:, 0, 0] == 0, torch.arange(7) < torch.tensor([6, 4])[:, None])


def test_a_fixed_width_layout_refuses_widths_its_groups_exceed():
    with pytest.raises(ValueError, match="length group 1's longest sequence .7. exceeds its width 6"):
        PackedLayout.from_lengths(LENGTHS, 3, CPU, widths=[11, 6, 3])
    with pytest.raises(ValueError, match="of 3 groups needs 3 widths"):
        PackedLayout.from_lengths(LENGTHS, 3, CPU, widths=[11, 9])


@pytest.mark.parametrize("lengths", [[3, 5], [4, 0], []])
def test_packing_refuses_unsorted_or_empty_sequences(lengths):
    with pytest.raises(ValueError, match="sorted longest first"):
        PackedLayout.from_lengths(torch.tensor(lengths, dtype=torch.long), 2, torch.device("cpu"))


def test_dropout_is_active_in_packed_training():
    ours, _ = pair()
    embeds, mask, _, _ = packed_inputs()
    layout = PackedLayout.from_lengths(LENGTHS, 2, torch.device("cpu"))
    ours.train()
    packed = embeds[layout.rows, layout.positions]
    assert not torch.allclose(ours.encode(packed, None, layout), ours.encode(packed, None, layout))


@pytest.mark.parametrize("packed", [False, True])
def test_under_autocast_masks_are_cast_once_and_a_training_steps_position_bias_stays_float32(packed, monkeypatch):
    """The biases reach attention in autocast's dtype, cast once per stack, except the relative position
    bias while gradients flow: its gradient from every block is then summed in float32 (cast in bfloat16
    once, the sum would be rounded to bfloat16 before reaching the float32 table)."""
    from src.t5 import Attention

    ours, _ = pair()
    embeds, mask, labels, decoder_in = inputs()
    layout = PackedLayout.from_lengths(mask.sum(1).sort(descending=True).values, 2, torch.device("cpu")) \
        if packed else None
    order = mask.sum(1).argsort(descending=True, stable=True)
    embeds, mask, decoder_in = embeds[order], mask[order], decoder_in[order]
    stream = embeds[layout.rows, layout.positions] if packed else embeds
    seen: list[torch.dtype] = []  # the bias dtype of each attention call, in order
    attend = Attention.attend
    monkeypatch.setattr(Attention, "attend", lambda self, q, k, v, bias: seen.append(bias.dtype) or attend(
        self, q, k, v, bias))

    def record(grad: bool) -> list[torch.dtype]:
        seen.clear()
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
            ours.decode(decoder_in, ours.encode(stream, mask, layout), mask, layout)
        return seen.copy()

    blocks = CFG.encoder_layers * (2 if packed else 1) + CFG.decoder_layers * (1 + (2 if packed else 1))
    evaluation = record(False)
    assert len(evaluation) == blocks and set(evaluation) == {torch.bfloat16}
    training = record(True)
    # self-attention: the encoder's per group (packed), the decoder's; cross-attention: masks only
    self_count = CFG.encoder_layers * (2 if packed else 1) + CFG.decoder_layers
    assert training.count(torch.float32) == self_count and training.count(torch.bfloat16) == blocks - self_count
