"""The RQ-VAE: it learns, restarts dead codes, checks codes as published, and caches by its inputs."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ID_generation.rqvae import training
from ID_generation.rqvae.model import EMACodebooks, ResidualQuantizer, RQVAE, random_order
from ID_generation.rqvae.stage import cache_path, semantic_ids_stage
from ID_generation.rqvae.training import make_optimizer, train_rqvae, within_cluster_cosine
from src.config import RQVAE_OPTIMIZERS, RQVAEConfig

CPU = torch.device("cpu")


def small_config(tmp_path: Path, **overrides) -> RQVAEConfig:
    values = dict(optimizer="AdamW", weight_decay=0.1, batch_size=128, epochs=40, lr=1e-3, beta=0.25, input_dim=None,
                  hidden_dim=(64, 32), latent_dim=16, num_layers=3, dropout=0.1, code_book_size=16, val_ratio=0.05,
                  eval_every=10, cuda_graphs=False, compile=False, float32_matmul_precision="highest",
                  cache_dir=tmp_path / "ids", codes_file=None)
    return RQVAEConfig(**{**values, **overrides})


def clustered(n: int = 600, dim: int = 24, clusters: int = 8, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Points around `clusters` well separated centres, standardised like the text embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(clusters, dim))
    labels = rng.integers(0, clusters, n)
    x = centres[labels] + rng.normal(0, 0.3, size=(n, dim))
    x = (x - x.mean(0)) / x.std(0)
    return torch.tensor(x, dtype=torch.float32), labels


def test_training_lowers_reconstruction_loss_and_codes_follow_clusters(tmp_path):
    x, labels = clustered()
    cfg = small_config(tmp_path)
    trained = train_rqvae(x, cfg, seed=0)
    first, last = trained.history[0], trained.history[-1]
    assert [h["epoch"] for h in trained.history] == [10, 20, 30, 40]
    assert last["train_recon_loss"] < 0.5 * first["train_recon_loss"]
    assert last["val_recon_loss"] < 0.5  # unit-variance data: well below predicting the mean
    codes = trained.model.codes(x)[:, 0].numpy()
    purity = sum(np.bincount(labels[codes == c]).max() for c in np.unique(codes)) / len(x)
    assert purity > 0.9  # level-1 codes split the data along its clusters
    assert last["train_cos_sim@L1"] > 0.8 and last["train_cos_sim@L3"] >= last["train_cos_sim@L1"] - 0.05


def test_same_seed_same_codes_other_seed_other_codes(tmp_path):
    x, _ = clustered(n=300)
    cfg = small_config(tmp_path, epochs=5, eval_every=5)
    a = train_rqvae(x, cfg, seed=3).model.codes(x)
    b = train_rqvae(x, cfg, seed=3).model.codes(x)
    c = train_rqvae(x, cfg, seed=4).model.codes(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unused_codes_are_restarted_at_batch_vectors():
    quantizer = ResidualQuantizer(rq_levels=1, size=8, dim=4)
    books = quantizer.codebooks
    books.weight.fill_(100.0)  # every code far from the data: only one can win
    books.sum_ema.copy_(books.weight)
    x = torch.randn(32, 4)
    quantizer.train()
    quantizer(x)
    assert (books.count_ema >= 1).all()  # dead codes were reset
    distances = torch.cdist(books.weight[0], x).min(dim=1).values
    assert (distances < 1.0).sum() >= 7  # and now sit at (noisy copies of) batch vectors
    codes_before = quantizer(x)[2]
    quantizer.eval()
    assert torch.equal(quantizer(x)[2], codes_before)  # no update outside training
    assert torch.equal(quantizer(x)[2], codes_before)


def test_within_cluster_cosine_matches_brute_force():
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(size=(60, 5)), dtype=torch.float32)
    codes = torch.tensor(rng.integers(0, 3, size=(60, 3)))
    got = within_cluster_cosine(x, codes)
    sim = F.cosine_similarity(x[:, None], x[None], dim=2)
    for level in range(3):
        means = []
        for prefix in {tuple(r) for r in codes[:, :level + 1].tolist()}:
            rows = [i for i, r in enumerate(codes[:, :level + 1].tolist()) if tuple(r) == prefix]
            if len(rows) > 1:
                block = sim[rows][:, rows]
                means.append(float(block.triu(1).sum()) / (len(rows) * (len(rows) - 1) / 2))
        assert got[level] == pytest.approx(np.mean(means), abs=1e-5)


def test_the_periodic_check_line_shows_undefined_figures_as_n_a():
    """A level where no two items share a prefix has no cosine similarity (nan); without a validation split
    the validation figures are missing: both print as n/a, the rest as before."""
    from ID_generation.rqvae.stage import format_check

    line = format_check({"epoch": 50, "train_recon_loss": 0.123456, "train_commitment_loss": 0.5,
                         "val_recon_loss": 0.25, "val_commitment_loss": float("inf"), "val_cos_sim@L1": 0.71234,
                         "val_cos_sim@L2": float("nan"), "val_cos_sim@L3": 0.9})
    assert line == ("  epoch    50: train recon 0.1235 commit 0.5000 | val recon 0.2500 commit n/a "
                    "| val cos-sim per level 0.712 n/a 0.900")
    without_validation = format_check({"epoch": 5, "train_recon_loss": 1.0, "train_commitment_loss": 2.0})
    assert without_validation == ("  epoch     5: train recon 1.0000 commit 2.0000 | val recon n/a commit n/a "
                                  "| val cos-sim per level n/a")


def test_stage_caches_by_embeddings_settings_and_seed(tmp_path):
    x, _ = clustered(n=200, dim=12)
    seen = np.arange(1, 181)  # items 181..200 are unseen: coded, not trained on
    cfg = small_config(tmp_path, epochs=4, eval_every=2)
    checks = []
    first = semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy", on_check=checks.append)
    assert [c["epoch"] for c in checks] == [2, 4] and "val_recon_loss" in checks[-1]
    again = semantic_ids_stage(x, seen, dataclasses.replace(cfg, eval_every=4), 0, CPU, tag="toy")
    assert not first.cached and again.cached and again.path == first.path
    assert torch.equal(first.ids.codes, again.ids.codes) and first.ids.codes.shape == (200, 4)
    assert again.report == {k: v for k, v in first.report.items() if not k.startswith("time/")}
    assert "time/rqvae_epoch" in first.report
    changed = [semantic_ids_stage(x, seen, cfg, 1, CPU, tag="toy"),
               semantic_ids_stage(x, seen, dataclasses.replace(cfg, code_book_size=8), 0, CPU, tag="toy"),
               semantic_ids_stage(x, seen, dataclasses.replace(cfg, beta=0.5), 0, CPU, tag="toy"),
               semantic_ids_stage(x + 0.01, seen, cfg, 0, CPU, tag="toy"),
               semantic_ids_stage(x, seen[:-1], cfg, 0, CPU, tag="toy")]
    assert not any(r.cached for r in changed)
    assert len({first.path, *(r.path for r in changed)}) == 6
    assert max(first.ids.codes[:, :3].max(0).values) < 16 and changed[1].ids.codes[:, :3].max() < 8


@pytest.mark.parametrize("damage", ["truncated", "edited"])
def test_damaged_semantic_id_cache_is_retrained(tmp_path, damage, capsys):
    x, _ = clustered(n=60, dim=12)
    seen = np.arange(1, 51)
    cfg = small_config(tmp_path, epochs=2, eval_every=2)
    first = semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy")
    if damage == "truncated":
        first.path.write_bytes(first.path.read_bytes()[:100])
    else:  # a readable file whose codes were changed
        saved = torch.load(first.path, weights_only=True)
        torch.save({**saved, "codes": saved["codes"].flip(0)}, first.path)
    again = semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy")
    assert not again.cached and torch.equal(again.ids.codes, first.ids.codes)
    out = capsys.readouterr().out
    assert str(first.path) in out and "recomputing" in out
    assert semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy").cached


def test_cached_only_refuses_to_train_instead_of_using_missing_or_damaged_codes(tmp_path):
    """A trained model must keep the IDs it learnt: with cached_only the stage names the cache
    instead of training new codes (a missing file, or a damaged one that would be retrained)."""
    from src.errors import DataError

    x, _ = clustered(n=60, dim=12)
    seen = np.arange(1, 51)
    cfg = small_config(tmp_path, epochs=2, eval_every=2)
    with pytest.raises(DataError, match="not in their cache .*run the run's command again"):
        semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy", cached_only=True)
    first = semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy")
    assert torch.equal(semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy", cached_only=True).ids.codes,
                       first.ids.codes)
    first.path.write_bytes(first.path.read_bytes()[:100])
    with pytest.raises(DataError, match=str(first.path)):
        semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy", cached_only=True)


def _no_training(*args, **kwargs):
    raise AssertionError("the RQ-VAE was trained although the codes file holds its codes")


def test_codes_file_is_written_after_the_stage_then_read_without_training(tmp_path, monkeypatch):
    """`dataset.RQ-VAE.codes_file`: a missing file is written with the codes the stage made (trained, or
    taken from the cache); an existing one gives those codes and the history of checks, without training
    and without the cache."""
    import shutil

    from ID_generation.rqvae import stage

    x, _ = clustered(n=80, dim=12)
    seen = np.arange(1, 71)
    file = tmp_path / "reproduction" / "toy.npz"
    cfg = small_config(tmp_path, epochs=4, eval_every=2, codes_file=file)
    checks = []
    first = semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy", on_check=checks.append)
    assert not first.cached and first.path != file and file.exists()
    assert first.report["sid/codes_file_matches_inputs"] == 1 and [c["epoch"] for c in checks] == [2, 4]
    monkeypatch.setattr(stage, "train_rqvae", _no_training)
    from_cache = semantic_ids_stage(x, seen, dataclasses.replace(cfg, codes_file=tmp_path / "other.npz"), 0, CPU,
                                    tag="toy")  # the cache's codes are written to a new file too
    assert from_cache.cached and (tmp_path / "other.npz").exists()
    shutil.rmtree(cfg.cache_dir)
    again_checks = []
    again = semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy", on_check=again_checks.append)
    assert again.cached and again.path == file
    assert torch.equal(again.ids.codes, first.ids.codes)
    assert json.dumps(again_checks, sort_keys=True) == json.dumps(checks, sort_keys=True)  # NaN != NaN
    assert again.report == {k: v for k, v in first.report.items() if not k.startswith("time/")}
    other = semantic_ids_stage(x, seen, dataclasses.replace(cfg, codes_file=tmp_path / "other.npz"), 0, CPU, tag="toy")
    assert torch.equal(other.ids.codes, first.ids.codes)
    assert not cfg.cache_dir.exists()  # the codes file alone served


def test_codes_file_loads_without_pickle_and_is_small(tmp_path):
    from ID_generation.rqvae.codes_file import FORMAT, write_codes_file

    x, _ = clustered(n=80, dim=12)
    file = tmp_path / "toy.npz"
    semantic_ids_stage(x, np.arange(1, 71), small_config(tmp_path, epochs=2, eval_every=1, codes_file=file), 0, CPU,
                       tag="toy")
    with np.load(file, allow_pickle=False) as saved:
        assert set(saved.files) == {"codes", "meta"}
        codes, meta = saved["codes"], json.loads(str(saved["meta"][()]))
    assert codes.shape == (80, 3) and codes.dtype == np.uint8
    assert meta["format"] == FORMAT and (meta["n_items"], meta["levels"], meta["code_book_size"]) == (80, 3, 16)
    assert meta["tag"] == "toy" and meta["seed"] == 0 and meta["settings"]["beta"] == 0.25
    assert "codes_file" not in meta["settings"] and "cache_dir" not in meta["settings"]
    assert [c["epoch"] for c in meta["history"]] == [1, 2] and meta["seconds_per_epoch"] > 0
    assert file.stat().st_size < 4_000
    # Beauty's size: 12,101 items × 3 levels of 256 codes, 80 checks of 8,000 epochs: tens of KB
    rng = np.random.default_rng(0)
    history = [{"epoch": 100 * i, **{f"val_cos_sim@L{level}": float(rng.random()) for level in (1, 2, 3)},
                "train_recon_loss": float(rng.random()), "val_recon_loss": float(rng.random())} for i in range(80)]
    write_codes_file(tmp_path / "beauty.npz", rng.integers(0, 256, (12_101, 3)), 256,
                     {"recon_loss": 0.1, "history": history, "seconds_per_epoch": 0.01})
    assert (tmp_path / "beauty.npz").stat().st_size < 60_000


def _saved_codes_file(path: Path, codes: np.ndarray, **meta) -> None:
    """A codes file written by hand, to hold what `write_codes_file` refuses to write."""
    from ID_generation.rqvae.codes_file import FORMAT

    meta = {"format": FORMAT, "n_items": len(codes), "levels": codes.shape[1], "code_book_size": 16,
            "recon_loss": 0.1, "history": [], **meta}
    np.savez_compressed(path, codes=codes, meta=np.array(json.dumps(meta)))


@pytest.mark.parametrize("problem, message", [
    ("items", "holds the codes of 80 items, but this dataset has 79 items"),
    ("code_book_size", "was made with 16 codes per level, but dataset.RQ-VAE.code_book_size is 8"),
    ("levels", "holds 3 codes per item, but dataset.RQ-VAE.num_layers is 2"),
    ("out_of_range", "holds codes from 0 to 16, outside 0..15"),
    ("garbage", "is not a semantic-ID codes file .*: unreadable"),
    ("truncated", "is not a semantic-ID codes file .*: unreadable"),
    ("single_array", "is not a semantic-ID codes file .*: it holds a single array"),
    ("other_format", "is not a semantic-ID codes file .*: its format is 'other/1'"),
    ("pickled", "is not a semantic-ID codes file .*: unreadable"),
])
def test_a_codes_file_that_cannot_serve_the_run_is_a_data_error_naming_it(tmp_path, problem, message, monkeypatch):
    from ID_generation.rqvae import stage
    from src.errors import DataError

    x, _ = clustered(n=80, dim=12)
    seen = np.arange(1, 71)
    file = tmp_path / "toy.npz"
    cfg = small_config(tmp_path, epochs=2, eval_every=1, codes_file=file)
    codes = semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy").ids.codes[:, :3].numpy()
    monkeypatch.setattr(stage, "train_rqvae", _no_training)
    if problem == "items":
        x = x[:79]
    elif problem == "code_book_size":
        cfg = dataclasses.replace(cfg, code_book_size=8)
    elif problem == "levels":
        cfg = dataclasses.replace(cfg, num_layers=2)
    elif problem == "out_of_range":
        _saved_codes_file(file, np.where(codes == codes.max(), 16, codes))
    elif problem == "garbage":
        file.write_text("not a codes file\n")
    elif problem == "truncated":
        file.write_bytes(file.read_bytes()[:200])
    elif problem == "single_array":
        np.save(open(file, "wb"), codes)
    elif problem == "other_format":
        _saved_codes_file(file, codes, format="other/1")
    else:
        np.savez(file, codes=codes, meta=np.array({"format": "liger-semantic-ids/1"}, dtype=object))
    with pytest.raises(DataError, match=message) as info:
        semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy")
    assert f"dataset.RQ-VAE.codes_file {file} " in str(info.value) and "set dataset.RQ-VAE." in str(info.value)


@pytest.mark.parametrize("change, warning", [
    ("embeddings", "was made from other embeddings ("),
    ("seen_items", "was made from other seen items ("),
    ("setting", "was made from other RQ-VAE settings (beta: 0.25 in the file, 0.5 here)"),
    ("seed", "was made from other RQ-VAE settings (seed: 0 in the file, 1 here)"),
    ("nothing", None),
])
def test_a_codes_file_of_other_inputs_is_used_with_one_warning_line(tmp_path, change, warning, capsys, monkeypatch):
    from ID_generation.rqvae import stage

    x, _ = clustered(n=80, dim=12)
    seen, seed = np.arange(1, 71), 0
    file = tmp_path / "toy.npz"
    cfg = small_config(tmp_path, epochs=2, eval_every=1, codes_file=file)
    first = semantic_ids_stage(x, seen, cfg, 0, CPU, tag="toy")
    capsys.readouterr()
    monkeypatch.setattr(stage, "train_rqvae", _no_training)
    if change == "embeddings":
        x = x + 0.01
    elif change == "seen_items":
        seen = seen[:-1]
    elif change == "setting":
        cfg = dataclasses.replace(cfg, beta=0.5, eval_every=2)  # eval_every does not shape the codes
    elif change == "seed":
        seed = 1
    result = semantic_ids_stage(x, seen, cfg, seed, CPU, tag="toy")
    assert result.cached and result.path == file and torch.equal(result.ids.codes, first.ids.codes)
    lines = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    if warning is None:
        assert lines == [] and result.report["sid/codes_file_matches_inputs"] == 1
    else:
        assert len(lines) == 1 and lines[0].startswith(f"warning: {file} {warning}")
        assert lines[0].endswith("; the run uses its codes as they are")
        assert result.report["sid/codes_file_matches_inputs"] == 0


def test_the_codes_file_is_not_part_of_the_cache_key(tmp_path):
    x, seen, cfg = torch.ones(6, 4), np.arange(1, 6), small_config(tmp_path)
    with_file = dataclasses.replace(cfg, codes_file=tmp_path / "c.npz")
    assert cache_path(x, seen, cfg, 0, "t") == cache_path(x, seen, with_file, 0, "t")


def test_optimizer_key_chooses_the_optimizer(tmp_path, monkeypatch):
    assert tuple(training.OPTIMIZERS) == RQVAE_OPTIMIZERS  # every accepted value has a class
    model = RQVAE(12, (16,), 8, 3, 4, 0.0)
    default = make_optimizer(model, small_config(tmp_path))
    assert type(default) is torch.optim.AdamW  # published
    adam = make_optimizer(model, small_config(tmp_path, optimizer="Adam", lr=2e-3, weight_decay=0.05))
    assert type(adam) is torch.optim.Adam
    assert (adam.param_groups[0]["lr"], adam.param_groups[0]["weight_decay"]) == (2e-3, 0.05)
    built = []  # the training builds the optimizer the key names
    monkeypatch.setitem(training.OPTIMIZERS, "Adam", lambda *a, **k: built.append(k) or torch.optim.Adam(*a, **k))
    x, _ = clustered(n=40, dim=12)
    train_rqvae(x, small_config(tmp_path, optimizer="Adam", epochs=1, eval_every=1), seed=0)
    assert built == [{"lr": 1e-3, "weight_decay": 0.1, "fused": False}]


def test_semantic_id_cache_is_keyed_by_the_optimizer(tmp_path):
    x, seen = torch.zeros(5, 4), np.arange(1, 5)
    cfg = small_config(tmp_path)
    assert cache_path(x, seen, cfg, 0, "t") != cache_path(x, seen, dataclasses.replace(cfg, optimizer="Adam"), 0, "t")


class OneCodebook:
    """One level's codebook as first written, on its own: the reference for `EMACodebooks`."""

    def __init__(self, weight: torch.Tensor, decay: float = 0.99, eps: float = 1e-5):
        self.weight, self.sum_ema, self.count_ema = weight.clone(), weight.clone(), torch.zeros(len(weight))
        self.size, self.decay, self.eps = len(weight), decay, eps

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        distances = torch.addmm(x.pow(2).sum(1, keepdim=True) + self.weight.pow(2).sum(1), x, self.weight.t(),
                                alpha=-2.0)
        return distances.argmin(dim=1)

    def random_vectors(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) < self.size:
            x = x.repeat(-(-self.size // len(x)), 1)
            x = x + torch.rand_like(x) * (0.01 / x.shape[1] ** 0.5)
        return x[torch.randperm(len(x))[: self.size]]

    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """Counting with torch.bincount (which waits for a GPU)."""
        counts = torch.bincount(codes, minlength=self.size).to(x.dtype)
        sums = torch.zeros_like(self.sum_ema).index_add_(0, codes, x)
        self.count_ema.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.sum_ema.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        used = (self.count_ema >= 1).unsqueeze(1)
        self.sum_ema.copy_(torch.where(used, self.sum_ema, self.random_vectors(x)))
        self.count_ema.copy_(torch.where(used.squeeze(1), self.count_ema, torch.ones_like(self.count_ema)))
        total = self.count_ema.sum()
        smoothed = total * (self.count_ema + self.eps) / (total + self.size * self.eps)
        self.weight.copy_(self.sum_ema / smoothed.unsqueeze(1))


@pytest.mark.parametrize("batch", [40, 5])  # 5 rows: restarts tile the batch with noise
def test_all_levels_updated_at_once_equal_each_level_updated_alone_by_bincount(batch):
    """The quantizer looks up every level's codes, then updates all codebooks in one set of operations,
    counting with an index_add (no host synchronisation, capturable in a CUDA graph): every buffer, the
    codes and the dead-code restarts equal those of one level at a time with torch.bincount's counts,
    drawing the same random numbers in the same order (so the semantic-ID cache key stays)."""
    torch.manual_seed(0)
    quantizer = ResidualQuantizer(rq_levels=3, size=16, dim=4)
    books = quantizer.codebooks
    references = [OneCodebook(weight) for weight in books.weight]
    quantizer.train()
    for step in range(6):
        z = torch.randn(batch, 4) * (1 + step)
        torch.manual_seed(step)
        _, _, codes = quantizer(z)
        torch.manual_seed(step)
        residual, expected = z, []
        for reference in references:
            code = reference.nearest(residual)
            expected.append(code)
            quantised = reference.weight[code]
            reference.update(residual, code)
            residual = residual - quantised
        assert torch.equal(codes, torch.stack(expected, dim=1)), step
        for name in ("weight", "sum_ema", "count_ema"):
            assert torch.equal(getattr(books, name), torch.stack([getattr(r, name) for r in references])), (step, name)


@pytest.mark.parametrize("graph_safe", [False, True])
def test_an_rqvae_epoch_never_makes_the_host_wait_for_the_device(graph_safe):
    """A whole epoch (batches, codebook updates and restarts, AdamW) runs without a host synchronisation,
    eager or with the random draws a CUDA graph replays; the losses come back as a device tensor."""
    from conftest import host_waits

    x, _ = clustered(n=300, dim=12)
    model = RQVAE(12, (16,), 8, 3, 16, 0.1)
    if graph_safe:
        model.use_graph_safe_random()
    optimizer = make_optimizer(model, small_config(Path(".")))
    for group in optimizer.param_groups:  # fused, as on a GPU (the CPU's loop reads each step count)
        group["fused"] = True
    waits, sums = host_waits(lambda: training.train_epoch(model, optimizer, x, 128, 0.25, graph_safe=graph_safe))
    assert not waits, waits
    assert sums.shape == (3,) and torch.isfinite(sums).all()


def test_graph_safe_random_order_is_a_permutation():
    for n in (1, 7, 300):
        for graph_safe in (False, True):
            assert torch.equal(random_order(n, CPU, graph_safe).sort().values, torch.arange(n))
    books = EMACodebooks(levels=2, size=8, dim=4)
    RQVAE(4, (8,), 4, 2, 8, 0.0).use_graph_safe_random()  # another model's codebooks: untouched
    assert not books.graph_safe
    model = RQVAE(4, (8,), 4, 2, 8, 0.0)
    model.use_graph_safe_random()
    assert model.quantizer.codebooks.graph_safe


def test_rqvae_cuda_graphs_need_a_gpu_and_have_their_own_cache_key(tmp_path):
    from src.config import ConfigError

    x, _ = clustered(n=40, dim=12)
    with pytest.raises(ConfigError, match="cuda_graphs' is true, but the RQ-VAE trains on cpu"):
        train_rqvae(x, small_config(tmp_path, cuda_graphs=True, epochs=1, eval_every=1), seed=0)
    seen, cfg = np.arange(1, 40), small_config(tmp_path)
    assert cache_path(x, seen, cfg, 0, "t") != cache_path(x, seen, dataclasses.replace(cfg, cuda_graphs=True), 0, "t")


def test_eager_rqvae_keeps_the_cache_key_of_caches_written_before_cuda_graphs_existed(tmp_path):
    from ID_generation.rqvae import stage

    x, seen, cfg = torch.ones(6, 4), np.arange(1, 6), small_config(tmp_path)
    earlier = {k: v for k, v in dataclasses.asdict(cfg).items()
               if k not in (*stage.NOT_IN_KEY, "cuda_graphs", "compile", "float32_matmul_precision")}
    key = stage.fingerprint(stage.RQVAE_VERSION, stage.digest(x), stage.digest(seen), earlier, 0)
    assert cache_path(x, seen, cfg, 0, "t").name == f"t_0_{key[:16]}.pt"


def test_the_rqvae_precision_holds_while_it_trains_and_codes_and_has_its_own_cache_key(tmp_path, monkeypatch):
    """`dataset.RQ-VAE.float32_matmul_precision`: set for the RQ-VAE's training, its checks and the coding of
    every item (a coded item must see the products its codebooks were learnt with), and the process's
    precision restored after; TF32 codes differ by rounding, so they have a cache file of their own."""
    precisions = []
    codes = RQVAE.codes

    def recording_codes(self, x, *args, **kwargs):
        precisions.append(torch.get_float32_matmul_precision())
        return codes(self, x, *args, **kwargs)

    monkeypatch.setattr(RQVAE, "codes", recording_codes)
    x, _ = clustered(n=60, dim=12)
    seen, cfg = np.arange(1, 55), small_config(tmp_path, epochs=2, eval_every=1, float32_matmul_precision="high")
    before = torch.get_float32_matmul_precision()
    assert before == "highest"
    semantic_ids_stage(x, seen, cfg, 0, CPU, tag="t")
    assert len(precisions) == 5 and set(precisions) == {"high"}  # 2 checks × (train, val), then every item
    assert torch.get_float32_matmul_precision() == before
    published = dataclasses.replace(cfg, float32_matmul_precision="highest")
    assert cache_path(x, seen, cfg, 0, "t") != cache_path(x, seen, published, 0, "t")


def test_a_compiled_rqvae_trains_as_the_eager_one_compiling_once_per_batch_shape(tmp_path, monkeypatch):
    """`dataset.RQ-VAE.compile`: the forward compiled without dynamic shapes, for the full batches and the
    last one (two compilations, in the first epoch; the periodic checks run eager), gives the eager
    run's losses and codes; it has its own cache key."""
    import src.runtime as runtime

    compiled = []

    def counting_backend(graph_module, example_inputs):
        compiled.append([tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)])
        return graph_module.forward

    x, _ = clustered(n=300, dim=12)
    cfg = small_config(tmp_path, epochs=20, eval_every=5)  # 285 training rows: batches of 128, 128 and 29
    eager = train_rqvae(x, cfg, seed=0)
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", counting_backend)
    torch._dynamo.reset()
    try:
        graphed = train_rqvae(x, dataclasses.replace(cfg, compile=True), seed=0)
    finally:
        torch._dynamo.reset()
    assert len(compiled) == 2 and {shapes[0][0] for shapes in compiled} >= {128, 29}
    assert len(graphed.history) == len(eager.history) == 4
    for a, b in zip(eager.history, graphed.history):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    assert torch.equal(graphed.model.codes(x), eager.model.codes(x))
    seen = np.arange(1, 300)
    assert cache_path(x, seen, cfg, 0, "t") != cache_path(x, seen, dataclasses.replace(cfg, compile=True), 0, "t")


def test_a_compiler_failure_in_the_rqvae_names_the_key_that_turns_compiling_off(tmp_path, monkeypatch):
    import src.runtime as runtime
    from src.config import ConfigError

    def failing_backend(graph_module, example_inputs):
        raise AssertionError("tiling analysis")

    monkeypatch.setattr(runtime, "COMPILE_BACKEND", failing_backend)
    torch._dynamo.reset()
    x, _ = clustered(n=60, dim=12)
    try:
        with pytest.raises(ConfigError, match="'dataset.RQ-VAE.compile' is true, but compiling the RQ-VAE failed"):
            train_rqvae(x, small_config(tmp_path, compile=True, epochs=2, eval_every=1), seed=0)
    finally:
        torch._dynamo.reset()


def test_a_failed_capture_of_the_rqvae_epoch_names_the_key_and_the_captured_codes_error(monkeypatch):
    """Eager epochs would draw otherwise than the graph the semantic IDs are keyed by: a failed capture
    stops the stage (no silent fallback), naming the key and the error of the code being captured."""
    from src.config import ConfigError

    def failing_capture(fn, optimizer):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(training, "capture", failing_capture)
    model = RQVAE(8, (8,), 4, 2, 4, 0.0)
    epochs = training.GraphedEpochs.__new__(training.GraphedEpochs)  # past the GPU check: the graph is faked
    epochs.epoch, epochs.device = (lambda: torch.zeros(3)), torch.device("cpu")
    epochs.optimizer = torch.optim.AdamW(model.parameters())
    epochs.warmup_left, epochs.graph, epochs.out, epochs.replays = 0, None, None, 0
    with pytest.raises(ConfigError, match=r"'dataset.RQ-VAE.cuda_graphs' is true, but capturing the RQ-VAE epoch "
                                          r"as a CUDA graph failed \(RuntimeError: operation not permitted"):
        epochs()
