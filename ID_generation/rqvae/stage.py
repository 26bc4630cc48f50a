"""The semantic-ID stage: train the RQ-VAE on the seen items' embeddings (or reuse a cached result),
code every item, append collision codes, and report their quality.

The cache file is keyed by the embeddings' bytes, the seen items, every RQ-VAE setting that shapes
the codes and the seed; changing any of them retrains, the same inputs reuse the file.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from src.cache import digest, fingerprint, load_verified, safe_name, verified_write
from src.config import DataConfig, RQVAEConfig
from src.errors import DataError
from src.runtime import float32_matmul_precision

from ..semantic_ids import SemanticIds, quality_report
from .training import train_rqvae

RQVAE_VERSION = 1  # bump when training or coding changes the codes for equal inputs
NOT_IN_KEY = ("eval_every", "cache_dir")  # settings that do not change the codes


@dataclass(frozen=True)
class SemanticIdResult:
    ids: SemanticIds
    report: dict[str, float]   # sid/... quality metrics (and time/rqvae_epoch when trained now)
    path: Path
    cached: bool

    def describe(self) -> str:
        """One readable paragraph of the quality report."""
        r = self.report
        usage = ", ".join(f"{100 * r[f'sid/usage_l{level}']:.1f}%" for level in range(1, self.ids.rq_levels + 1))
        return (f"Semantic IDs ({'cached' if self.cached else 'trained'}: {self.path}): {r['sid/n_items']:,} items; "
                f"codes used per level {usage}; {100 * r['sid/unique_prefix_share']:.1f}% of items have a unique "
                f"{self.ids.rq_levels}-code prefix; up to {r['sid/max_collision']} items share one; "
                f"validation reconstruction MSE {r['sid/recon_loss']:.4f}")


def semantic_ids_tag(data: DataConfig) -> str:
    """The cache file's readable prefix for a dataset: its name and text encoder."""
    return f"{data.name}_{data.content_model}"


def cache_path(embeddings: torch.Tensor, seen_items: np.ndarray, cfg: RQVAEConfig, seed: int, tag: str) -> Path:
    """`{cache_dir}/{tag}_{seed}_{key}.pt`, the key covering everything that determines the codes."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}
    # at their defaults (the published behaviour), these keep the key caches had before they existed
    for option, default in (("cuda_graphs", False), ("compile", False), ("float32_matmul_precision", "highest")):
        if settings[option] == default:
            del settings[option]
    key = fingerprint(RQVAE_VERSION, digest(embeddings), digest(np.asarray(seen_items)), settings, seed)
    return cfg.cache_dir / f"{safe_name(tag)}_{seed}_{key[:16]}.pt"


def semantic_ids_stage(embeddings: torch.Tensor, seen_items: np.ndarray, cfg: RQVAEConfig, seed: int,
                       device: torch.device, tag: str,
                       on_check: Callable[[dict[str, float]], None] | None = None,
                       cached_only: bool = False) -> SemanticIdResult:
    """Semantic IDs of all items from embeddings (n_items, d) (row i = item id i + 1), the RQ-VAE
    trained on the rows of `seen_items` (1-based ids). `on_check` receives each periodic check (those
    of the cached training when the codes come from the cache). cached_only: DataError instead of
    training when the cache holds no usable codes (a trained model must keep the IDs it learnt)."""
    if len(seen_items) < 2:
        raise DataError(f"the RQ-VAE needs the embeddings of at least 2 seen items, got {len(seen_items)}; "
                         "the dataset's sequences are too short (seen items are those before each user's last two)")
    path = cache_path(embeddings, seen_items, cfg, seed, tag)
    saved = load_verified(path, "Semantic-ID cache", lambda saved: cached_codes_problem(saved, len(embeddings)))
    if saved is not None:
        for logs in saved.get("history", []) if on_check is not None else ():  # the run records its RQ-VAE's checks
            on_check(logs)
        return _result(saved["codes"], saved["recon_loss"], cfg, path, cached=True)
    if cached_only:
        raise DataError(f"the semantic IDs these settings and embeddings give are not in their cache ({path}); "
                        "run the run's command again (it recomputes only what is missing), then ask again")
    x = embeddings.to(device)
    with float32_matmul_precision(cfg.float32_matmul_precision):  # training and coding alike
        trained = train_rqvae(x[torch.as_tensor(np.asarray(seen_items) - 1, device=device)], cfg, seed,
                              on_check=lambda logs: _report_check(logs, on_check))
        codes = trained.model.codes(x).cpu()
    recon = trained.final.get("val_recon_loss", trained.final["train_recon_loss"])
    with verified_write(path, "wb") as handle:
        torch.save({"codes": codes, "recon_loss": recon, "history": trained.history,
                    "seconds_per_epoch": trained.seconds_per_epoch}, handle)
    result = _result(codes, recon, cfg, path, cached=False)
    result.report["time/rqvae_epoch"] = round(trained.seconds_per_epoch, 5)
    return result


def cached_codes_problem(saved, n_items: int) -> str | None:
    """What is wrong with a loaded RQ-VAE result for `n_items` items, or None."""
    codes = saved.get("codes") if isinstance(saved, dict) else None
    if not hasattr(codes, "ndim") or codes.ndim != 2 or len(codes) != n_items:
        return f"holds no codes of {n_items} items"
    return None if isinstance(saved.get("recon_loss"), (int, float)) else "holds no reconstruction loss"


def _report_check(logs: dict[str, float], on_check: Callable[[dict[str, float]], None] | None) -> None:
    tqdm.write(format_check(logs))
    if on_check is not None:
        on_check(logs)


def format_check(logs: dict[str, float]) -> str:
    """One console line for a periodic RQ-VAE check."""
    cos = " ".join(f"{logs[k]:.3f}" for k in sorted(logs) if k.startswith("val_cos_sim@"))
    return (f"  epoch {logs['epoch']:>5}: train recon {logs['train_recon_loss']:.4f} commit "
            f"{logs['train_commitment_loss']:.4f} | val recon {logs.get('val_recon_loss', float('nan')):.4f} "
            f"commit {logs.get('val_commitment_loss', float('nan')):.4f} | val cos-sim per level {cos}")


def _result(codes: torch.Tensor, recon_loss: float, cfg: RQVAEConfig, path: Path, cached: bool) -> SemanticIdResult:
    ids = SemanticIds.from_rqvae_codes(codes.numpy(), cfg.code_book_size)
    report = {"sid/recon_loss": round(float(recon_loss), 6), **quality_report(ids.codes, cfg.code_book_size)}
    return SemanticIdResult(ids, report, path, cached)

