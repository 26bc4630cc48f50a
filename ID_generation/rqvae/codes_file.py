"""A portable file of semantic IDs (`dataset.RQ-VAE.codes_file`): the RQ-VAE's codes of every item,
kept so that later runs use exactly those codes on any machine, without training.

The file is `numpy.savez_compressed` output, readable with `numpy.load(path, allow_pickle=False)`:
- `codes`: (n_items, levels), the RQ-VAE codes (before the collision code), row i = item id i + 1,
  in the smallest unsigned integer type that holds code_book_size - 1;
- `meta`: a 0-d unicode string of JSON: `format` (FORMAT), `tag` (the dataset, `semantic_ids_tag`),
  `n_items`, `levels`, `code_book_size`, `seed`, `settings` (the RQ-VAE settings that shape the codes),
  `embeddings_sha256` and `seen_items_sha256` (`src.cache.digest`), `rqvae_version`, `recon_loss`,
  `history` (the RQ-VAE's periodic checks) and `seconds_per_epoch` (null where not known).

`write_codes_file` writes it atomically; `read_codes_file` reads it and raises DataError, naming the
file and what to do, when its codes cannot serve the run (unreadable, another number of items, levels
or code-book size, codes out of range). Whether the file was made from the run's own inputs is the
stage's question (ID_generation/rqvae/stage.py): other inputs only warn.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from src.cache import atomic_write
from src.errors import DataError, first_line

FORMAT = "liger-semantic-ids/1"
KEY = "dataset.RQ-VAE.codes_file"


@dataclass(frozen=True)
class CodesFile:
    codes: np.ndarray      # (n_items, levels) int64
    meta: dict[str, Any]   # as written (see the module's docstring)

    @property
    def recon_loss(self) -> float:
        return float(self.meta["recon_loss"])

    @property
    def history(self) -> list[dict[str, float]]:
        return list(self.meta.get("history") or [])


def write_codes_file(path: str | Path, codes: np.ndarray, code_book_size: int, meta: dict[str, Any]) -> None:
    """Write `codes` (n_items, levels) and `meta` (the fields of the module's docstring besides format,
    n_items, levels and code_book_size, which are taken from the codes) to `path`, atomically."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) == 0 or codes.min() < 0 or codes.max() >= code_book_size:
        raise ValueError(f"codes of shape {codes.shape} are not RQ-VAE codes below {code_book_size}")
    meta = {"format": FORMAT, "n_items": int(codes.shape[0]), "levels": int(codes.shape[1]),
            "code_book_size": int(code_book_size), **meta}
    text = json.dumps(meta, sort_keys=True, default=_plain)
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, codes=codes.astype(np.min_scalar_type(code_book_size - 1)), meta=np.array(text))


def read_codes_file(path: str | Path, n_items: int, code_book_size: int, levels: int) -> CodesFile:
    """The codes file at `path` for a dataset of `n_items` items and an RQ-VAE of `levels` levels of
    `code_book_size` codes; DataError naming the file and the fix when its codes cannot serve."""
    path = Path(path)
    remedy = (f"set {KEY} to a codes file made for this dataset and these settings, or to a path that does not "
              "exist yet (the run then trains the RQ-VAE, or takes its cache, and writes the file there)")
    codes, meta = _load(path, remedy)
    if len(codes) != n_items:
        raise DataError(f"{KEY} {path} holds the codes of {len(codes):,} items, but this dataset has {n_items:,} "
                        f"items (its embeddings); {remedy}")
    if meta["code_book_size"] != code_book_size:
        raise DataError(f"{KEY} {path} was made with {meta['code_book_size']} codes per level, but "
                        f"dataset.RQ-VAE.code_book_size is {code_book_size}; set "
                        f"dataset.RQ-VAE.code_book_size={meta['code_book_size']}, or {remedy}")
    if codes.shape[1] != levels:
        raise DataError(f"{KEY} {path} holds {codes.shape[1]} codes per item, but dataset.RQ-VAE.num_layers is "
                        f"{levels}; set dataset.RQ-VAE.num_layers={codes.shape[1]}, or {remedy}")
    if len(codes) and (codes.min() < 0 or codes.max() >= code_book_size):
        raise DataError(f"{KEY} {path} holds codes from {codes.min()} to {codes.max()}, outside "
                        f"0..{code_book_size - 1} (dataset.RQ-VAE.code_book_size {code_book_size}): it is damaged; "
                        f"restore it, or {remedy}")
    return CodesFile(codes.astype(np.int64), meta)


def _load(path: Path, remedy: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The codes and meta of `path`, checked for the format alone."""
    def unusable(reason: str) -> DataError:
        return DataError(f"{KEY} {path} is not a semantic-ID codes file ({FORMAT}): {reason}; restore it (e.g. from "
                         f"the repository), or {remedy}")

    try:
        saved = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001  any unreadable file is the user's to fix
        # numpy takes any file that is neither .npz nor .npy for a pickle, and refuses it
        raise unusable("unreadable (not a .npz or .npy file)" if "pickle" in str(exc)
                       else f"unreadable ({first_line(exc)})") from exc
    if not isinstance(saved, np.lib.npyio.NpzFile):
        raise unusable("it holds a single array, not the `codes` and `meta` arrays")
    try:
        with saved:
            if {"codes", "meta"} - set(saved.files):
                raise unusable(f"it holds the arrays {', '.join(saved.files) or '(none)'}, not `codes` and `meta`")
            codes, meta_array = saved["codes"], saved["meta"]
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001  a damaged member (bad zip data, a pickled array)
        raise unusable(f"unreadable ({first_line(exc)})") from exc
    if meta_array.ndim != 0 or meta_array.dtype.kind != "U":
        raise unusable("its `meta` is not a JSON string")
    try:
        meta = json.loads(str(meta_array[()]))
    except ValueError as exc:
        raise unusable(f"its `meta` is not JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise unusable(f"its format is {found!r}")
    if codes.ndim != 2 or codes.dtype.kind not in "ui":
        raise unusable(f"its `codes` are not a 2-d integer array (shape {codes.shape}, {codes.dtype})")
    fields = {"n_items": int, "levels": int, "code_book_size": int, "recon_loss": (int, float), "history": list}
    for name, kind in fields.items():
        if isinstance(meta.get(name), bool) or not isinstance(meta.get(name), kind):
            raise unusable(f"its `meta` has no valid `{name}`")
    if (meta["n_items"], meta["levels"]) != codes.shape:
        raise unusable(f"its `meta` describes {meta['n_items']} × {meta['levels']} codes, its `codes` are "
                       f"{codes.shape[0]} × {codes.shape[1]}")
    if not all(isinstance(check, dict) for check in meta["history"]):
        raise unusable("its `meta` has no valid `history`")
    return codes, meta


def _plain(value: Any) -> Any:
    """JSON for the numpy and torch scalars a history may hold."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
