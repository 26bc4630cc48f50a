"""The recommender against transformers' T5, the beam decoder's equivalence, the dense head, batching."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import load
from ID_generation.preprocessing.sequences import Sequences
from ID_generation.preprocessing.split import leave_one_out
from ID_generation.semantic_ids import N_USER_TOKENS, SemanticIds
from src.beam_decoder import BeamDecoder
from src.data import SequenceData
from src.model import ModelSpec, Recommender

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
    spec = ModelSpec(vocab_size=sids.layout.vocab_size, pad=0, eos=sids.layout.eos, tokens_per_item=4, max_items=20,
                     n_positions=102, t5=cfg.model.t5, method=cfg.method)
    torch.manual_seed(seed)
    model = Recommender(spec, torch.randn(n_items, 12, generator=g), torch.as_tensor(split.seen_items)).eval()
    return model, SequenceData(split, sids.tokens(), CPU), sids, split


def test_tiger_forward_is_transformers_t5():
    model, data, _, _ = tiny(("method=base",))
    batch = data.batch(data.train_examples())
    reference = model.t5(input_ids=batch.tokens, attention_mask=batch.mask.long(), labels=batch.labels)
    ours = model.decoder_logits(model.encode(batch), batch.mask, model.shift_right(batch.labels))
    torch.testing.assert_close(ours, reference.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(batch).sid_loss, reference.loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("beams, length", [(1, 1), (5, 3), (7, 4)])
def test_beam_decoder_matches_transformers_decoder(beams, length):
    model, data, _, _ = tiny()
    batch = data.batch(data.eval_examples("test"))
    encoded = model.encode(batch)
    g = torch.Generator().manual_seed(beams)
    prefixes = torch.randint(1, model.spec.vocab_size, (len(encoded), beams, length), generator=g)
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


def test_dense_query_is_the_last_history_token_and_training_masks_unseen_items():
    model, data, _, split = tiny()
    batch = data.batch(data.train_examples())
    encoded = model.encode(batch)
    query = model.dense_query(encoded, batch.last)
    last_token = torch.stack([encoded[b, int(batch.mask[b].nonzero().max())] for b in range(len(batch))])
    torch.testing.assert_close(query, torch.nn.functional.normalize(last_token, dim=-1))
    unseen = np.setdiff1d(np.arange(1, 31), split.seen_items)
    assert len(unseen) > 0
    model.train()
    torch.manual_seed(1)
    loss = model(batch).dense_loss
    model.item_text[unseen - 1] += 100.0  # unseen items' vectors cannot change the training loss
    torch.manual_seed(1)
    assert torch.allclose(model(batch).dense_loss, loss)
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
    assert batch.targets[0] == row[-1] and torch.equal(batch.labels[0], sids.tokens()[row[-1] - 1])
    n = len(history)
    assert torch.equal(batch.tokens[0, :4 * n], sids.tokens()[history - 1].flatten())
    assert batch.mask[0].sum() == 4 * n and batch.last[0] == 4 * n - 1
    assert batch.positions[0, :4 * n].tolist() == [i for i in range(n) for _ in range(4)]
    assert batch.levels[0, :4 * n].tolist() == [0, 1, 2, 3] * n
    assert batch.tokens.shape[1] == 4 * int(examples.positions.max())  # trimmed to the longest history
    layout = SemanticIds(sids.codes, 4, n_user_tokens=N_USER_TOKENS).layout
    with_users = SequenceData(split, sids.tokens(), CPU, layout.user_tokens).batch(examples)
    assert with_users.tokens[0, 0] == layout.user_offset + u % N_USER_TOKENS
    assert torch.equal(with_users.tokens[:, 1:], batch.tokens) and with_users.last[0] == 4 * n
    assert with_users.levels[0, 1:5].tolist() == [0, 1, 2, 3] and with_users.items[0, 0] == 0
