"""The recommender against transformers' T5, the beam decoder's equivalence, the dense head, batching."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import load
from ID_generation.preprocessing.sequences import Sequences
from ID_generation.preprocessing.split import leave_one_out
from ID_generation.semantic_ids import SemanticIds
from src.beam_decoder import BeamDecoder
from src.data import SequenceData
from src.model import ModelSpec, Recommender
from src.t5 import T5
from src.vocabulary import N_USER_TOKENS, Vocabulary

CPU = torch.device("cpu")


def tiny(method_overrides=(), n_items=30, seed=0):
    cfg = load("dataset.TIGER.T5.encoder_layers=2", "dataset.TIGER.T5.decoder_layers=2", "dataset.TIGER.T5.d_model=32",
               "dataset.TIGER.T5.d_ff=64", "dataset.TIGER.T5.num_heads=2", "dataset.TIGER.T5.d_kv=8",
               "method.embedding_head_dict.hidden_sizes=[16,24]", *method_overrides)
    g = torch.Generator().manual_seed(seed)
    sids = SemanticIds.from_rqvae_codes(torch.randint(0, 4, (n_items, 3), generator=g).numpy(), codebook_size=4)
    lengths = torch.randint(3, 9, (12,), generator=g).numpy()
    seqs = Sequences.from_lengths(lengths, torch.randint(1, n_items + 1, (int(lengths.sum()),), generator=g).numpy())
    split = leave_one_out(seqs, 20)
    vocab = Vocabulary.of_semantic_ids(sids)
    spec = ModelSpec(vocab=vocab, max_items=20, n_positions=102, t5=cfg.model.t5, method=cfg.method)
    torch.manual_seed(seed)
    model = Recommender(spec, torch.randn(n_items, 12, generator=g), torch.as_tensor(split.seen_items)).eval()
    return model, SequenceData(split, vocab, CPU), vocab, split


HF = "dataset.TIGER.T5.implementation=transformers"


def test_tiger_forward_is_transformers_t5():
    model, data, _, _ = tiny(("method=base", HF))
    batch = data.batch(data.train_examples())
    reference = model.t5(input_ids=batch.tokens, attention_mask=batch.mask.long(), labels=batch.labels)
    ours = model.decoder_logits(model.encode(batch), batch.mask, model.shift_right(batch.labels))
    torch.testing.assert_close(ours, reference.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(batch).sid_loss, reference.loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("beams, length", [(1, 1), (5, 3), (7, 4)])
def test_beam_decoder_matches_transformers_decoder(beams, length):
    model, data, _, _ = tiny((HF,))
    batch = data.batch(data.eval_examples("test"))
    encoded = model.encode(batch)
    g = torch.Generator().manual_seed(beams)
    prefixes = torch.randint(1, model.spec.vocab.vocab_size, (len(encoded), beams, length), generator=g)
    prefixes[:, :, 0] = 0
    ours = BeamDecoder(model.t5, encoded, batch.mask).next_token_logits(prefixes)
    rows = torch.arange(len(encoded)).repeat_interleave(beams)
    reference = model.decoder_logits(encoded[rows], batch.mask[rows], prefixes.flatten(0, 1))[:, -1]
    torch.testing.assert_close(ours, reference.view_as(ours), rtol=1e-4, atol=1e-4)


def test_beam_decoder_runs_under_bfloat16_autocast_as_on_a_gpu():
    model, data, _, _ = tiny()
    batch = data.batch(data.eval_examples("test"))
    prefixes = torch.zeros(len(batch), 3, 2, dtype=torch.long)
    prefixes[:, :, 1] = torch.tensor([1, 2, 3])
    with torch.no_grad():
        exact = BeamDecoder(model.t5, model.encode(batch), batch.mask).next_token_logits(prefixes)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            encoded = model.encode(batch)
            mixed = BeamDecoder(model.t5, encoded, batch.mask).next_token_logits(prefixes)
    torch.testing.assert_close(mixed.float(), exact, rtol=0.05, atol=0.05)


def test_beam_decoder_attends_more_rows_than_one_kernel_call_takes_in_slices(monkeypatch):
    """Inputs × beams above MAX_ATTENTION_ROWS (a GPU grid limit: 4,096 inputs × 100 beams failed on an
    H200) are attended in slices, with the logits of one call."""
    from src import beam_decoder
    model, data, _, _ = tiny()
    batch = data.batch(data.eval_examples("test"))
    prefixes = torch.randint(1, model.spec.vocab.vocab_size, (len(batch), 5, 3),
                             generator=torch.Generator().manual_seed(4))
    prefixes[:, :, 0] = 0
    with torch.no_grad():
        encoded = model.encode(batch)
    calls = []  # the rows of each fused attention call (the cross-attention's; the encoder ran before)
    sdpa = beam_decoder.F.scaled_dot_product_attention
    monkeypatch.setattr(beam_decoder.F, "scaled_dot_product_attention",
                        lambda q, *args, **kwargs: calls.append(len(q)) or sdpa(q, *args, **kwargs))
    with torch.no_grad():
        whole = BeamDecoder(model.t5, encoded, batch.mask).next_token_logits(prefixes)
        assert max(calls) == len(batch)
        monkeypatch.setattr(beam_decoder, "MAX_ATTENTION_ROWS", 7)
        calls.clear()
        sliced = BeamDecoder(model.t5, encoded, batch.mask).next_token_logits(prefixes)
    assert max(calls) <= 7 < len(batch)
    torch.testing.assert_close(sliced, whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_newest_tokens_attention_is_scaled_dot_product_attention(monkeypatch, dtype):
    """The beam decoder's one-query attention, written out (fused kernels tile 64 queries), in slices:
    `scaled_dot_product_attention` with T5's unscaled scores and bias, in the query's dtype."""
    from src import beam_decoder
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(23, 3, length, 8, generator=g).to(dtype) for length in (1, 4, 4))
    bias = torch.randn(1, 3, 1, 4, generator=g)
    bias[..., 3] = torch.finfo(torch.float32).min  # a masked key
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias, scale=1.0)
    monkeypatch.setattr(beam_decoder, "MAX_ATTENTION_ROWS", 5)
    out = beam_decoder.newest_token_attention(q, k, v, bias.to(dtype))
    assert out.dtype == dtype and out.shape == q.shape
    tolerance = 1e-6 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), expected, rtol=tolerance, atol=tolerance)


def test_dense_query_is_the_last_history_token_and_training_masks_unseen_items():
    model, data, _, split = tiny()
    batch = data.batch(data.train_examples())
    encoded = model.encode(batch)
    query = model.dense_query(encoded, batch)
    last_token = torch.stack([encoded[b, int(batch.mask[b].nonzero().max())] for b in range(len(batch))])
    torch.testing.assert_close(query, torch.nn.functional.normalize(last_token, dim=-1))
    unseen = np.setdiff1d(np.arange(1, 31), split.seen_items)
    assert len(unseen) > 0
    model.train()
    torch.manual_seed(1)
    loss = model(batch).embedding_loss
    model.item_text[unseen - 1] += 100.0  # unseen items' vectors cannot change the training loss
    torch.manual_seed(1)
    assert torch.allclose(model(batch).embedding_loss, loss)
    model.eval()
    scores = model.dense_scores(query, model.item_vectors())
    assert scores.shape == (len(batch), 30) and torch.isfinite(scores).all()  # evaluation scores every item


def test_liger_input_adds_text_position_and_level_only_on_item_tokens():
    model, data, _, _ = tiny()
    batch = data.batch(data.train_examples())
    embeds = model.input_embeddings(batch)
    assert embeds.shape == (*batch.tokens.shape, 32)
    changed = dataclasses.replace(batch, history=batch.history.flip(0))  # other items' texts
    assert not torch.allclose(model.input_embeddings(changed)[batch.mask], embeds[batch.mask])


def test_batch_layout_tokens_positions_levels_and_user_token():
    _, data, sids, split = tiny()
    examples = data.eval_examples("test")
    batch = data.batch(examples)
    u = int(examples.users[0])
    row = split.sequences.row(u)
    history = torch.as_tensor(row[:-1])
    assert batch.targets[0] == row[-1] and torch.equal(batch.labels[0], sids.item_tokens()[row[-1] - 1])
    n = len(history)
    assert torch.equal(batch.tokens[0, :4 * n], sids.item_tokens()[history - 1].flatten())
    assert batch.mask[0].sum() == 4 * n and batch.last[0] == 4 * n - 1
    assert batch.slots[0, :4 * n].tolist() == [i for i in range(n) for _ in range(4)]
    assert batch.levels[0, :4 * n].tolist() == [0, 1, 2, 3] * n
    assert batch.tokens.shape[1] == 4 * int(examples.target_positions.max())  # trimmed to the longest history
    layout = Vocabulary(sids.item_codes, sids.level_sizes, n_user_tokens=N_USER_TOKENS)
    with_users = SequenceData(split, layout, CPU).batch(examples)
    assert with_users.tokens[0, 0] == layout.user_offset + u % N_USER_TOKENS
    assert torch.equal(with_users.tokens[:, 1:], batch.tokens) and with_users.last[0] == 4 * n
    assert with_users.levels[0, 1:5].tolist() == [0, 1, 2, 3] and with_users.items[0, 0] == 0


# -- initialisation at the published size --------------------------------------------------------

DENSE_ID = ("method=setting", "method.sid_loss_weight=0", "method.use_id=item_id",
            "method.embedding_head_dict.embed_target=ground_truth+item_id",
            "method.embedding_head_dict.embed_proj_type=linear", "method.embedding_head_dict.use_new_init=True")
PUBLISHED_METHODS = {"tiger": ("method=base",), "liger": ("method=setting",), "dense_id": DENSE_ID,
                     # use_new_init with LIGER's MLP projection (not a published run; its residual paths)
                     "dense_id_mlp": tuple(o.replace("=linear", "=mlp") for o in DENSE_ID)}


def published_size_model(method: str, seed: int = 42, *overrides: str) -> Recommender:
    """The model at the published Beauty size (12,101 items, 768-d texts, 3×256 codes + 4th level)."""
    cfg = load("dataset=amazon", *PUBLISHED_METHODS[method], *overrides)
    n_items, item_id = 12101, method.startswith("dense_id")
    vocab = Vocabulary.of_item_ids(n_items) if item_id else Vocabulary(torch.zeros(0, 4, dtype=torch.long), (256,) * 4)
    spec = ModelSpec(vocab=vocab, max_items=20, n_positions=102, t5=cfg.model.t5, method=cfg.method)
    torch.manual_seed(seed)
    return Recommender(spec, torch.zeros(n_items, 768), torch.arange(1, n_items + 1))


def assert_normal(param: torch.Tensor, std: float, name: str) -> None:
    """Mean 0 and standard deviation `std` within five standard errors of the sample."""
    n = param.numel()
    assert abs(param.mean().item()) < 5 * std / n ** 0.5, name
    assert abs(param.std().item() / std - 1) < 5 / (2 * n) ** 0.5, (name, param.std().item(), std)


def pytorch_default_std(linear: torch.nn.Linear) -> float:
    return (3 * linear.in_features) ** -0.5  # kaiming_uniform(a=√5): U(±1/√fan_in)


T5_STDS = {"q": 0.02 * (128 * 64) ** -0.5, "k": 0.02 * 128 ** -0.5, "v": 0.02 * 128 ** -0.5,
           "o": 0.02 * (6 * 64) ** -0.5, "relative_attention_bias": 0.02 * 128 ** -0.5,
           "wi": 0.02 * 128 ** -0.5, "wo": 0.02 * 1024 ** -0.5}


@pytest.mark.parametrize("implementation", ["compact", "transformers"])
@pytest.mark.parametrize("method", ["tiger", "liger"])
def test_published_initialisation_is_t5s_own_scheme(method, implementation):
    model = published_size_model(method, 42, f"dataset.TIGER.T5.implementation={implementation}")
    assert isinstance(model.t5, T5) == (implementation == "compact")
    assert T5_STDS["q"] == pytest.approx(2.21e-4, rel=1e-2) and T5_STDS["wo"] == pytest.approx(6.25e-4)
    seen = set()
    for name, param in model.t5.named_parameters():
        leaf = name.split(".")[-2]
        if leaf.endswith("layer_norm"):
            assert (param == 0.02).all(), name
        elif leaf == "shared":
            assert_normal(param, 1.0, name)
        else:
            assert_normal(param, T5_STDS[leaf], name)
        seen.add(leaf)
    assert seen == {*T5_STDS, "shared", "layer_norm", "final_layer_norm"}
    if method == "liger":  # LIGER's added modules keep PyTorch's defaults
        assert (model.input_norm.weight == 1).all() and (model.input_norm.bias == 0).all()
        assert_normal(model.item_position.weight, 1.0, "item_position")
        assert_normal(model.level.weight, 1.0, "level")
        for i, linear in enumerate([*(b[0] for b in model.text_proj.blocks), *model.text_proj.residuals]):
            assert abs(linear.weight.std().item() / pytorch_default_std(linear) - 1) < 0.05, i
            assert linear.weight.abs().max() <= linear.in_features ** -0.5


@pytest.mark.parametrize("method", ["dense_id", "dense_id_mlp"])
def test_dense_id_initialisation_is_normal_everywhere_but_t5_layer_norms(method):
    model = published_size_model(method)
    for name, param in model.named_parameters():
        if name.endswith("layer_norm.weight"):
            assert (param == 0.02).all(), name
        elif name.startswith("input_norm.") or re.search(r"\.blocks\.\d+\.1\.", name):  # nn.LayerNorm
            assert (param == (1.0 if name.endswith("weight") else 0.0)).all(), name
        elif name.endswith(".bias"):
            assert (param == 0).all(), name
        elif ".residuals." not in name:  # every Linear and Embedding, T5's included
            assert_normal(param, 0.02, name)
    # the published projection's residual paths are Conv1d, which `use_new_init` does not touch
    residuals = getattr(model.text_proj, "residuals", [])
    assert len(residuals) == (3 if method == "dense_id_mlp" else 0)
    for linear in residuals:
        assert abs(linear.weight.std().item() / pytorch_default_std(linear) - 1) < 0.05


def test_the_same_seed_gives_the_same_initial_weights():
    first, again, other = (published_size_model("liger", seed).state_dict() for seed in (7, 7, 8))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["t5.shared.weight"], other["t5.shared.weight"])


def test_normal_init_scheme_keeps_the_earlier_initialisation():
    model = published_size_model("tiger", 42, "dataset.TIGER.T5.init_scheme=normal")
    for name, param in model.t5.named_parameters():
        if name.endswith("layer_norm.weight"):
            assert (param == 1).all(), name
        else:
            assert_normal(param, 0.02, name)


def test_item_vectors_are_float32_under_autocast():
    model, _, _, _ = tiny()
    reference = model.item_vectors()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_autocast = model.item_vectors()
        projected = model.text_proj(model.item_text)
    assert projected.dtype == torch.bfloat16  # autocast is on for the projection elsewhere
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, reference, rtol=0, atol=0)


# -- the compact T5 (src/t5.py) inside the recommender -------------------------------------------

@pytest.mark.parametrize("method", [("method=base",), ("method=setting",),
                                    ("method=setting", "method.embedding_head_dict.use_new_init=True")])
def test_compact_t5_recommender_equals_the_transformers_one(method):
    reference, data, sids, split = tiny((*method, HF))
    compact, _, _, _ = tiny(method)  # the default
    assert isinstance(compact.t5, T5) and not isinstance(reference.t5, T5)
    compact.load_state_dict(reference.state_dict())  # strict: the same parameter names throughout
    batch = data.batch(data.train_examples())
    torch.testing.assert_close(compact.encode(batch)[batch.mask], reference.encode(batch)[batch.mask],
                               rtol=1e-5, atol=1e-5)
    ours, theirs = compact(batch), reference(batch)
    for name in ("loss", "sid_loss", "embedding_loss"):
        if getattr(theirs, name) is not None:
            torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=1e-5, atol=1e-6)
    ours.loss.backward()
    theirs.loss.backward()
    grads = dict(reference.named_parameters())
    for name, param in compact.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(param.grad, grads[name].grad, rtol=1e-4, atol=1e-5, msg=name)
    test = data.batch(data.eval_examples("test"))
    prefixes = torch.randint(1, reference.spec.vocab.vocab_size, (len(test), 5, 3),
                             generator=torch.Generator().manual_seed(0))
    prefixes[:, :, 0] = 0
    with torch.no_grad():
        logits = [BeamDecoder(m.t5, m.encode(test), test.mask).next_token_logits(prefixes)
                  for m in (compact, reference)]
    torch.testing.assert_close(*logits, rtol=1e-4, atol=1e-4)


def test_transformers_network_draws_as_the_plain_transformers_class():
    """The interface class must not change how transformers initialises (a seed's weights stay put)."""
    from transformers import T5ForConditionalGeneration

    from src.model import TransformersT5, t5_network
    model, _, _, _ = tiny(("method=base", HF))
    torch.manual_seed(5)
    ours = t5_network(model.spec)
    torch.manual_seed(5)
    plain = T5ForConditionalGeneration(ours.config)
    assert isinstance(ours, TransformersT5)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), plain.state_dict().values()))


def assert_same_losses_and_gradients(*runs) -> None:
    """Each (model, batch) of `runs` gives the first one's losses and parameter gradients."""
    results = []
    for model, batch in runs:
        model.zero_grad()
        out = model(batch)
        out.loss.backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (a, grads_a), *others = results
    for b, grads_b in others:
        for name in ("loss", "sid_loss", "embedding_loss"):
            if getattr(a, name) is not None:
                torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=1e-5, atol=1e-6)
        assert grads_a.keys() == grads_b.keys()
        for name, grad in grads_a.items():
            torch.testing.assert_close(grads_b[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("method", [("method=base",), ("method=setting",),
                                    ("method=setting", "method.include_user_id=True"),
                                    ("method=setting", "method.sid_loss_weight=0")])
def test_packed_batch_gives_the_padded_losses_and_gradients(method):
    model, data, _, _ = tiny((*method, "dataset.TIGER.T5.implementation=compact"))
    assert model.packing_groups == 4  # the default
    examples = data.train_examples()
    packed = data.batch(examples, packing_groups=3)
    assert packed.layout is not None and len(packed.layout.groups) == 3
    # the text projection's input: only the real history items, row by row
    assert torch.equal(packed.history_items, packed.history[packed.history > 0])
    # the same examples, sorted longest history first (ties in their order)
    order = torch.argsort(examples.target_positions, descending=True, stable=True)
    assert torch.equal(packed.targets, data.batch(examples.subset(order)).targets)
    padded = data.batch(examples)
    torch.testing.assert_close(model.encode(packed), model.encode(data.batch(examples.subset(order)))[packed.mask],
                               rtol=1e-5, atol=1e-5)
    assert_same_losses_and_gradients((model, padded), (model, packed))


@pytest.mark.parametrize("method", [("method=base",), ("method=setting",),
                                    ("method=setting", "method.include_user_id=True"),
                                    ("method=setting", "method.sid_loss_weight=0")])
def test_a_fixed_width_batch_gives_the_padded_losses_and_gradients(method):
    """A graphed step's batch: sorted, in length groups padded to fixed widths (wider than needed here)."""
    model, data, vocab, _ = tiny((*method, "dataset.TIGER.T5.implementation=compact"))
    examples = data.train_examples()
    longest = examples.group_longest(3)
    widths = [longest[0] + 2, longest[1] + 1, longest[2]]
    fixed = data.batch(examples, 3, group_widths=widths)
    assert fixed.layout.fixed_width and fixed.history.shape[1] == widths[0]
    # the text projection's input: each row's group width of history slots, 0 past its history
    per_row = torch.repeat_interleave(torch.tensor(widths), torch.tensor(fixed.layout.group_sizes))
    assert len(fixed.history_items) == int(per_row.sum())
    assert torch.equal(fixed.history_items[fixed.history_items > 0], fixed.history[fixed.history > 0])
    tokens = per_row * vocab.tokens_per_item + vocab.has_user_tokens
    assert len(fixed.layout.rows) == int(tokens.sum())
    assert_same_losses_and_gradients((model, data.batch(examples)), (model, fixed))


def test_a_batch_plan_refuses_group_widths_its_histories_exceed_before_anything_reaches_the_device():
    _, data, _, _ = tiny()
    examples = data.train_examples()
    longest = examples.group_longest(3)
    with pytest.raises(ValueError, match=f"length group 1's longest history .{longest[1]}. exceeds its width"):
        data.plan(examples, 3, group_widths=[longest[0], longest[1] - 1, longest[2]])
    with pytest.raises(ValueError, match="of 3 groups needs 3 widths"):
        data.plan(examples, 3, group_widths=longest[:2])
    with pytest.raises(ValueError, match="group_widths need packing_groups"):
        data.plan(examples, 0, group_widths=longest)
    plan = data.plan(examples, 3, group_widths=longest)
    assert plan.shape.group_widths == tuple(longest) and plan.history_len == longest[0]


def test_group_widths_are_each_groups_longest_over_the_full_batches_of_the_first_epochs():
    _, data, _, _ = tiny()
    examples = data.train_examples()
    order = torch.Generator().manual_seed(3)
    copy = torch.Generator()
    copy.set_state(order.get_state())
    widths = data.group_widths(examples, 5, 2, copy, epochs=3)
    expected = [1, 1]
    for _ in range(3):  # the batches these epochs train on, drawn as training draws them
        for chunk in data.shuffled(examples, 5, order):
            if len(chunk) == 5:
                expected = [max(e, n) for e, n in zip(expected, chunk.group_longest(2))]
    assert widths == expected and widths[0] > widths[1]
    assert torch.equal(copy.get_state(), order.get_state())  # it drew exactly those epochs


def test_beam_search_with_the_key_value_cache_equals_recomputing_every_prefix():
    from src.decoding import beam_search
    model, data, sids, _ = tiny()
    batch = data.batch(data.eval_examples("test"))
    with torch.no_grad():
        decoder = BeamDecoder(model.t5, model.encode(batch), batch.mask)
        cached = beam_search(decoder.next_token_logits, len(batch), 9, sids, CPU)
        fresh = BeamDecoder(model.t5, model.encode(batch), batch.mask)
        recomputed = beam_search(lambda prefixes, parents: fresh.next_token_logits(prefixes), len(batch), 9, sids, CPU)
    assert torch.equal(cached.tokens, recomputed.tokens)
    torch.testing.assert_close(cached.scores, recomputed.scores, rtol=1e-5, atol=1e-5)


def test_beam_decoder_over_a_packed_batch_equals_the_padded_one():
    model, data, _, _ = tiny(("dataset.TIGER.T5.implementation=compact",))
    examples = data.eval_examples("test")
    packed = data.batch(examples, packing_groups=3)
    padded = data.batch(examples.subset(torch.argsort(examples.target_positions, descending=True, stable=True)))
    prefixes = torch.randint(1, model.spec.vocab.vocab_size, (len(packed), 5, 3),
                             generator=torch.Generator().manual_seed(2))
    prefixes[:, :, 0] = 0
    with torch.no_grad():
        a = BeamDecoder(model.t5, model.encode(packed), packed.mask, packed.layout).next_token_logits(prefixes)
        b = BeamDecoder(model.t5, model.encode(padded), padded.mask).next_token_logits(prefixes)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scope", ["model", "blocks"])
def test_compiled_forward_and_backward_equal_eager_without_recompiling(monkeypatch, scope):
    """`trainer.compile` (here with the aot_eager backend: the same tracing and autograd as inductor,
    no code generation): packed batches of changing shapes run with eager's losses and gradients and
    no recompilation after the first batch; the whole model as one graph, or (`compile_scope=blocks`)
    each kind of block compiled once and shared by the blocks of its kind."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from src import runtime
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "aot_eager")
    eager, data, _, _ = tiny(("method=setting",))
    compiled, _, _, _ = tiny(("method=setting",))
    torch._dynamo.reset()
    counters.clear()
    runtime.compile_model(compiled, scope=scope)
    import torch._inductor.config as inductor_config
    assert inductor_config.triton.coalesce_tiling_analysis is False  # failed on dynamic shapes (torch 2.11)
    examples = data.train_examples()
    g = torch.Generator().manual_seed(3)
    graphs = []
    for size in (9, 13, 6, 11):  # other batch sizes, other lengths
        batch = data.batch(examples.subset(torch.randperm(len(examples), generator=g)[:size]), 3)
        assert_same_losses_and_gradients((eager, batch), (compiled, batch))
        graphs.append(counters["stats"]["unique_graphs"])
    blocks = runtime.compiled_units(compiled, scope)
    if scope == "model":
        assert blocks == [compiled] and graphs == [1] * 4
    else:
        # encoder self-attention and feed-forward, decoder self-, cross-attention and feed-forward, and
        # the text projection (of the history's items and of every item: one graph, dynamic sizes): 6
        # graphs for 11 blocks
        assert len(blocks) == 11 and graphs == [6] * 4
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints keep their names
    runtime.uncompile_model(compiled)
    assert all(m._compiled_call_impl is None for m in compiled.modules())
    torch._dynamo.reset()


def test_compile_blocks_are_the_outermost_modules_marked_as_blocks():
    """`compile_scope=blocks` compiles each T5 sublayer and LIGER's text projection, not the modules
    inside them; a model without blocks compiles whole; an unknown scope is refused."""
    from src import runtime
    from src.layers import ResidualMLP
    from src.t5 import PreNormResidual
    model, _, _, _ = tiny(("method=setting",))
    blocks = runtime.compiled_units(model, "blocks")
    assert blocks == [m for m in model.modules() if isinstance(m, (PreNormResidual, ResidualMLP))]
    plain = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert runtime.compiled_units(plain, "blocks") == [plain]
    with pytest.raises(ValueError, match="compile scope must be 'model' or 'blocks', got 'layers'"):
        runtime.compiled_units(model, "layers")


@pytest.mark.parametrize("method", ["base", "setting"])
def test_batches_padded_to_a_fixed_history_length_give_the_same_losses_and_gradients(method):
    """`trainer.cuda_graphs` pads every batch to the longest training history (fixed shapes): the extra
    all-padding slots change nothing, for the compact and for `transformers`' T5."""
    for implementation in ("compact", "transformers"):
        model, data, _, _ = tiny((f"method={method}", f"dataset.TIGER.T5.implementation={implementation}"))
        examples = data.train_examples().subset(slice(0, 6))
        longest = int(examples.target_positions.max())
        fixed = data.batch(examples, 0, history_len=longest + 3)
        assert fixed.tokens.shape[1] == data.batch(examples).tokens.shape[1] + 3 * data.vocab.tokens_per_item
        assert_same_losses_and_gradients((model, data.batch(examples)), (model, fixed))
        with pytest.raises(ValueError, match="shorter than the batch's longest history"):
            data.batch(examples, 0, history_len=longest - 1)
