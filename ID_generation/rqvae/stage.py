"""The semantic-ID stage: train the RQ-VAE on the seen items' embeddings (or reuse a cached result),
code every item, append collision codes, and report their quality.

The cache file is keyed by the embeddings' bytes, the seen items, every RQ-VAE setting that shapes
the codes and the seed; changing any of them retrains, the same inputs reuse the file.

`dataset.RQ-VAE.codes_file` (ID_generation/rqvae/codes_file.py) keeps the codes in a small portable
file instead, read before the cache: where it exists its codes are used as they are, without training
(a file made from other inputs prints a warning and reports `sid/codes_file_matches_inputs` 0);
where it does not, the stage runs as without it and then writes the file.
"""
from __future__ import annotations

import dataclasses
import json
import math
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
from .codes_file import KEY as CODES_FILE_KEY, read_codes_file, write_codes_file
from .training import train_rqvae

RQVAE_VERSION = 1  # bump when training or coding changes the codes for equal inputs
NOT_IN_KEY = ("eval_every", "cache_dir", "codes_file")  # settings that do not change the codes
ABSENT = object()  # a setting a codes file does not record


@dataclass(frozen=True)
class SemanticIdResult:
    ids: SemanticIds
    report: dict[str, float]   # sid/... quality metrics (and time/rqvae_epoch when trained now)
    path: Path                 # the cache file, or the codes file the codes were read from
    cached: bool               # the codes were read (from the cache or the codes file), not trained now

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


def code_settings(cfg: RQVAEConfig) -> dict:
    """The RQ-VAE settings that shape the codes: every one but those of NOT_IN_KEY."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}


def cache_path(embeddings: torch.Tensor, seen_items: np.ndarray, cfg: RQVAEConfig, seed: int, tag: str) -> Path:
    """`{cache_dir}/{tag}_{seed}_{key}.pt`, the key covering everything that determines the codes."""
    settings = code_settings(cfg)
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
    of the cached training when the codes come from the cache or the codes file). cached_only:
    DataError instead of training when neither the codes file nor the cache holds usable codes (a
    trained model must keep the IDs it learnt).

    cfg.codes_file: None, the codes come from the cache (or are trained and cached). A file that exists:
    its codes, without training (`cached`, `path` the file; DataError naming it where its codes cannot
    serve this dataset and these settings); a file made from other embeddings, seen items, settings or
    seed prints one warning line for each and reports `sid/codes_file_matches_inputs` 0 (else 1). A
    path that does not exist: as with None, and then the codes are written there."""
    if len(seen_items) < 2:
        raise DataError(f"the RQ-VAE needs the embeddings of at least 2 seen items, got {len(seen_items)}; "
                         "the dataset's sequences are too short (seen items are those before each user's last two)")
    if cfg.codes_file is not None and cfg.codes_file.exists():
        return _from_codes_file(embeddings, seen_items, cfg, seed, tag, on_check)
    path = cache_path(embeddings, seen_items, cfg, seed, tag)
    saved = load_verified(path, "Semantic-ID cache", lambda saved: cached_codes_problem(saved, len(embeddings)))
    if saved is not None:
        for logs in saved.get("history", []) if on_check is not None else ():  # the run records its RQ-VAE's checks
            on_check(logs)
        result = _result(saved["codes"], saved["recon_loss"], cfg, path, cached=True)
        _keep_codes(result, saved["codes"], saved["recon_loss"], saved.get("history", []),
                    saved.get("seconds_per_epoch"), embeddings, seen_items, cfg, seed, tag)
        return result
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
    _keep_codes(result, codes, recon, trained.history, trained.seconds_per_epoch, embeddings, seen_items, cfg, seed,
                tag)
    return result


def codes_file_inputs(embeddings: torch.Tensor, seen_items: np.ndarray, cfg: RQVAEConfig, seed: int,
                      tag: str) -> dict:
    """What a codes file records of the inputs its codes were made from (ID_generation/rqvae/codes_file.py)."""
    return {"tag": tag, "seed": seed, "settings": json.loads(json.dumps(code_settings(cfg), default=str)),
            "embeddings_sha256": digest(embeddings), "seen_items_sha256": digest(np.asarray(seen_items)),
            "rqvae_version": RQVAE_VERSION}


def _keep_codes(result: SemanticIdResult, codes, recon_loss: float, history: list, seconds_per_epoch: float | None,
                embeddings: torch.Tensor, seen_items: np.ndarray, cfg: RQVAEConfig, seed: int, tag: str) -> None:
    """Where cfg.codes_file names a file, write the codes there (they were just made from these inputs)."""
    if cfg.codes_file is None:
        return
    write_codes_file(cfg.codes_file, np.asarray(codes), cfg.code_book_size,
                     {**codes_file_inputs(embeddings, seen_items, cfg, seed, tag), "recon_loss": float(recon_loss),
                      "history": list(history), "seconds_per_epoch": seconds_per_epoch})
    print(f"Semantic IDs written to {cfg.codes_file} ({CODES_FILE_KEY})")
    result.report["sid/codes_file_matches_inputs"] = 1


def _from_codes_file(embeddings: torch.Tensor, seen_items: np.ndarray, cfg: RQVAEConfig, seed: int, tag: str,
                     on_check: Callable[[dict[str, float]], None] | None) -> SemanticIdResult:
    """The result of the codes in cfg.codes_file; one warning line for each input it was not made from."""
    path = cfg.codes_file
    saved = read_codes_file(path, len(embeddings), cfg.code_book_size, cfg.num_layers)
    here, made = codes_file_inputs(embeddings, seen_items, cfg, seed, tag), saved.meta
    differences = []
    for key, what in (("embeddings_sha256", "other embeddings"), ("seen_items_sha256", "other seen items")):
        if made.get(key) != here[key]:
            differences.append(f"{what} ({_short(made.get(key))} in the file, {_short(here[key])} here)")
    file_settings = {**(made.get("settings") if isinstance(made.get("settings"), dict) else {}),
                     "seed": made.get("seed")}
    settings = {**here["settings"], "seed": seed}
    changed = [f"{k}: {_setting(file_settings, k)} in the file, {_setting(settings, k)} here"
               for k in sorted(set(file_settings) | set(settings))
               if file_settings.get(k, ABSENT) != settings.get(k, ABSENT)]
    if changed:
        differences.append(f"other RQ-VAE settings ({'; '.join(changed)})")
    for difference in differences:
        print(f"warning: {path} was made from {difference}; the run uses its codes as they are")
    for logs in saved.history if on_check is not None else ():
        on_check(logs)
    result = _result(torch.from_numpy(saved.codes), saved.recon_loss, cfg, path, cached=True)
    result.report["sid/codes_file_matches_inputs"] = int(not differences)
    return result


def _setting(settings: dict, key: str) -> str:
    return json.dumps(settings[key]) if key in settings else "(absent)"


def _short(digest_text) -> str:
    """A digest of src.cache.digest, shortened for a message: 12 hex digits, shape and dtype."""
    if not isinstance(digest_text, str):
        return "(absent)"
    return digest_text[:12] + "…" + digest_text[64:]


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
    """One console line for a periodic RQ-VAE check; `n/a` for a figure that is missing or not finite
    (a cosine similarity at a level where no two items share a prefix, no validation split)."""
    cos = " ".join(_figure(logs[k], 3) for k in sorted(logs) if k.startswith("val_cos_sim@")) or "n/a"
    return (f"  epoch {logs['epoch']:>5}: train recon {_figure(logs.get('train_recon_loss'), 4)} commit "
            f"{_figure(logs.get('train_commitment_loss'), 4)} | val recon {_figure(logs.get('val_recon_loss'), 4)} "
            f"commit {_figure(logs.get('val_commitment_loss'), 4)} | val cos-sim per level {cos}")


def _figure(value, digits: int) -> str:
    """`value` with `digits` decimals, or `n/a` where it is missing or not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{number:.{digits}f}" if math.isfinite(number) else "n/a"


def _result(codes: torch.Tensor, recon_loss: float, cfg: RQVAEConfig, path: Path, cached: bool) -> SemanticIdResult:
    ids = SemanticIds.from_rqvae_codes(codes.numpy(), cfg.code_book_size)
    report = {"sid/recon_loss": round(float(recon_loss), 6), **quality_report(ids.codes, cfg.code_book_size)}
    return SemanticIdResult(ids, report, path, cached)

