"""Semantic IDs on the Beauty files with the offline encoder: the published RQ-VAE, briefly trained,
already uses nearly every level-1 code (slow: ~35 s of training, and ~2.5 min of CPU embedding the
first time on a machine: the embeddings are cached in LIGER_TEST_CACHE, default ~/.cache/liger-tests,
under a key of the encoder and the exact texts)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from conftest import load
from ID_generation.embeddings import item_embeddings
from ID_generation.preprocessing import leave_one_out, preprocess
from ID_generation.rqvae.stage import semantic_ids_stage
from src.vocabulary import Vocabulary

EPOCHS = 20  # level-1 usage on these data (seed 42): 95.3% after 10 epochs, 97.7% after 20, 100% after 60
EMBEDDING_CACHE = Path(os.environ.get("LIGER_TEST_CACHE", Path.home() / ".cache" / "liger-tests"))


@pytest.fixture(scope="module")
def beauty_ids(beauty_raw, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("beauty_sids")
    cfg = load("dataset=amazon", f"dataset.raw_data_path={beauty_raw}", f"dataset.processed_data_path={tmp}",
               "dataset.content_model=all-MiniLM-L6-v2", f"dataset.RQ-VAE.cache_dir={tmp / 'ids'}")
    data = preprocess(cfg.data)
    split = leave_one_out(data.sequences, cfg.data.max_items_per_seq)
    EMBEDDING_CACHE.mkdir(parents=True, exist_ok=True)
    embeddings = item_embeddings(data.item_texts, cfg.data.content_model, EMBEDDING_CACHE,
                                 cfg.data.name, torch.device("cpu"), cfg.data.embedding_batch_size)
    rqvae = dataclasses.replace(cfg.rqvae, epochs=EPOCHS, eval_every=10)
    return semantic_ids_stage(embeddings.vectors, split.seen_items, rqvae, 42, torch.device("cpu"), tag="Beauty")


def test_short_training_uses_at_least_90_percent_of_level1_codes(beauty_ids):
    report = beauty_ids.report
    assert report["sid/usage_l1"] >= 0.9
    assert report["sid/n_items"] == 12101 and beauty_ids.ids.codes.shape == (12101, 4)


def test_every_beauty_item_gets_a_unique_semantic_id(beauty_ids):
    ids = beauty_ids.ids
    assert len({tuple(r) for r in ids.codes.tolist()}) == 12101
    vocab = Vocabulary.of_semantic_ids(ids)
    assert torch.equal(vocab.items_of(vocab.item_tokens()), torch.arange(1, 12102))
    assert vocab.vocab_size == 3 * 256 + max(256, beauty_ids.report["sid/max_collision"]) + 2
