"""Item text embeddings: the offline encoder, standardisation, the cache and its key."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ID_generation.embeddings as emb
from conftest import REPO

CPU = torch.device("cpu")


class CountingEncoder:
    """Stands in for a SentenceTransformer: deterministic vectors from the text, counts calls."""

    def __init__(self, width: int = 6):
        self.width, self.calls = width, 0

    def encode(self, texts, batch_size, show_progress_bar, convert_to_numpy):
        self.calls += 1
        return np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=self.width) for t in texts])


@pytest.fixture
def fake_encoder(monkeypatch):
    encoder = CountingEncoder()
    loads = []
    monkeypatch.setattr(emb, "load_encoder", lambda model, device: loads.append(model) or encoder)
    return encoder, loads


def test_cache_reused_for_same_model_and_texts(tmp_path, fake_encoder):
    encoder, loads = fake_encoder
    texts = ["red lipstick", "blue mascara", "green shampoo"]
    first = emb.item_embeddings(texts, "fake-model", tmp_path, "ds", CPU)
    second = emb.item_embeddings(texts, "fake-model", tmp_path, "ds", CPU)
    assert not first.cached and second.cached and len(loads) == 1
    assert torch.equal(first.vectors, second.vectors)
    assert emb.cached_width(tmp_path, "ds", "fake-model") == 6 and emb.cached_width(tmp_path, "ds", "other") is None


def test_cache_invalidated_by_any_text_or_model_change(tmp_path, fake_encoder):
    encoder, loads = fake_encoder
    texts = ["red lipstick", "blue mascara", "green shampoo"]
    base = emb.item_embeddings(texts, "fake-model", tmp_path, "ds", CPU)
    edited = emb.item_embeddings(texts[:2] + ["green shampoo!"], "fake-model", tmp_path, "ds", CPU)
    reordered = emb.item_embeddings(texts[::-1], "fake-model", tmp_path, "ds", CPU)
    other_model = emb.item_embeddings(texts, "fake-model-2", tmp_path, "ds", CPU)
    assert not (edited.cached or reordered.cached or other_model.cached) and len(loads) == 4
    assert len({base.path, edited.path, reordered.path, other_model.path}) == 4
    assert torch.allclose(reordered.vectors, base.vectors.flip(0), atol=1e-6)


def test_standardize_per_dimension():
    x = np.random.default_rng(0).normal(3.0, 5.0, size=(50, 4))
    x[:, 2] = 7.0  # a constant dimension stays finite
    z = emb.standardize(x)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, [0, 1, 3]].std(0), 1, atol=1e-5)


def test_offline_default_encoder_loads_without_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ["This item is called 'Matte Lipstick'.", "This item is called 'Volumizing Mascara'.",
             "This item is called 'Hydrating Shampoo'.", "This item is called 'Matte Lip Liner'."]
    out = emb.item_embeddings(texts, "all-MiniLM-L6-v2", tmp_path, "ds", CPU, batch_size=2)
    assert out.width == 384 and out.vectors.shape == (4, 384)  # the encoder's width, not 768
    np.testing.assert_allclose(out.vectors.mean(0).numpy(), 0, atol=1e-5)
    raw = emb.encode_texts(emb.load_encoder("all-MiniLM-L6-v2", CPU), texts, 4)
    sim = raw @ raw.T / np.outer(np.linalg.norm(raw, axis=1), np.linalg.norm(raw, axis=1))
    assert sim[0, 3] > sim[0, 1] and sim[0, 3] > sim[0, 2]  # a real encoder: lipstick ~ lip liner


def test_unloadable_model_names_offline_default():
    code = ("import torch, ID_generation.embeddings as e\n"
            "try:\n    e.load_encoder('no-such-encoder-xyz', torch.device('cpu'))\n"
            "except e.EncoderUnavailableError as exc:\n    print('ERR', exc)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "ERR" in out.stdout, out.stderr[-2000:]
    assert "dataset.content_model=no-such-encoder-xyz" in out.stdout and "all-MiniLM-L6-v2" in out.stdout


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "edited", "digest deleted"])
def test_damaged_embedding_cache_is_recomputed(tmp_path, fake_encoder, damage, capsys):
    from src.cache import digest_path
    encoder, loads = fake_encoder
    texts = ["red lipstick", "blue mascara", "green shampoo"]
    first = emb.item_embeddings(texts, "fake-model", tmp_path, "ds", CPU)
    data = first.path.read_bytes()
    if damage == "edited":  # a valid tensor file with other values
        torch.save(first.vectors + 1.0, first.path)
    elif damage == "digest deleted":
        digest_path(first.path).unlink()
    else:
        first.path.write_bytes({"garbage": b"not a tensor" * 10, "truncated": data[:len(data) // 2],
                                "empty": b""}[damage])
    again = emb.item_embeddings(texts, "fake-model", tmp_path, "ds", CPU)
    assert not again.cached and len(loads) == 2 and torch.equal(again.vectors, first.vectors)
    out = capsys.readouterr().out
    assert str(first.path) in out and "recomputing" in out  # the message names the file
    assert emb.item_embeddings(texts, "fake-model", tmp_path, "ds", CPU).cached
