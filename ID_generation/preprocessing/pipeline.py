"""The preprocessing stage: raw files → `{name}.txt` + `..._id2meta.json` (docs/method.md §2), cached.

Outputs keep the published names in `dataset.processed_data_path`; a manifest beside them records
the cache key (the raw files' content digests + every setting that shapes the output); each output
has its digest beside it (`src/cache.py`, `record_digest`). Same key and unchanged outputs: the
files are read back; otherwise (an edited or truncated output included) they are rebuilt. Raw
folders are only read.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from src.cache import (
    content_stamp,
    file_lock,
    fingerprint,
    read_json,
    record_digest,
    remove_file,
    unverified_reason,
    write_json,
)
from src.config import DataConfig

from .amazon import AmazonSource
from .custom import CustomSource
from .download import ensure_raw_files
from .generated import write_generated_dataset
from .raw_io import RawDataError
from .sequences import Sequences, build_sequences, read_sequence_file, write_sequence_file
from .source import Source
from .split import Split
from .steam import SteamSource

PREPROCESS_VERSION = 1  # bump when the processing below changes its output


@dataclass(frozen=True)
class ProcessedData:
    """The processed dataset: sequences of 1-based item ids and each item's text (index id - 1)."""
    sequences: Sequences
    item_texts: list[str]
    sequence_file: Path
    id2meta_file: Path
    cached: bool

    @property
    def id_maps_file(self) -> Path:
        """`{name}_id_maps.json`: the dataset's own user and item ids, index = project id - 1."""
        return id_maps_path(self.sequence_file)

    def raw_item_ids(self) -> list[str]:
        """The dataset's own id of each item (ASIN, Steam product id, your data's id), index = item id - 1."""
        try:
            ids = read_json(self.id_maps_file)["item"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RawDataError(f"{self.id_maps_file} holds no item id map ({type(exc).__name__}: {exc}); delete "
                               f"{self.sequence_file} to rebuild the processed files") from None
        if len(ids) != len(self.item_texts):
            raise RawDataError(f"{self.id_maps_file} maps {len(ids)} items, {self.id2meta_file} has "
                               f"{len(self.item_texts)}; delete both to rebuild them")
        return [str(i) for i in ids]

    def stats(self) -> dict[str, float]:
        lengths = self.sequences.lengths
        return {"users": len(self.sequences), "items": len(self.item_texts),
                "interactions": int(lengths.sum()), "mean_seq_len": round(float(lengths.mean()), 4)}


def make_source(cfg: DataConfig) -> Source:
    """The raw-data reader for `dataset.type` (the generated dataset is written first)."""
    if cfg.type == "Amazon":
        return AmazonSource(cfg.raw_data_path, cfg.name, cfg.features_needed, cfg.text_cleaning)
    if cfg.type == "steam":
        return SteamSource(cfg.raw_data_path, cfg.features_needed, cfg.text_cleaning)
    if cfg.type == "custom":
        return CustomSource(cfg.raw_data_path, cfg.name, cfg.text_cleaning)
    if cfg.type == "generated":
        write_generated_dataset(cfg.raw_data_path, cfg.name, cfg.generator)
        return AmazonSource(cfg.raw_data_path, cfg.name, cfg.features_needed, cfg.text_cleaning, downloadable=False)
    raise ValueError(f"unknown dataset.type {cfg.type!r}")


def output_paths(cfg: DataConfig) -> tuple[Path, Path, Path]:
    """(sequence file, id2meta file, manifest) under `dataset.processed_data_path`."""
    folder = cfg.processed_data_path
    features = "_".join(cfg.features_needed)
    return (folder / f"{cfg.name}.txt", folder / f"{cfg.name}_{features}_{cfg.prompt_format}_id2meta.json",
            folder / f"{cfg.name}.manifest.json")


def preprocess(cfg: DataConfig) -> ProcessedData:
    """Run (or reuse) preprocessing for one dataset config. Concurrent runs sharing the processed
    folder (the jobs of a sweep) take turns, the writing of generated raw files included."""
    lock = file_lock(Path(cfg.processed_data_path) / f".{cfg.name}.lock")
    if cfg.type == "generated":  # make_source writes the raw files: part of the turn
        with lock:
            return _preprocess(cfg, make_source(cfg))
    source = make_source(cfg)
    ensure_raw_files(source.raw_files())  # downloaded (atomically) or reported before the folder is touched
    with lock:
        return _preprocess(cfg, source)


def _preprocess(cfg: DataConfig, source: Source) -> ProcessedData:
    files = source.raw_files()
    key = fingerprint(PREPROCESS_VERSION, cfg.type, cfg.name, cfg.features_needed, cfg.prompt_format,
                      cfg.text_cleaning, cfg.user_core, cfg.item_core, [content_stamp(f.path) for f in files])
    seq_path, meta_path, manifest_path = output_paths(cfg)
    maps_path = id_maps_path(seq_path)
    manifest = _read_manifest(manifest_path)
    if manifest.get("key") == key:
        changed = [f"{p} ({reason})" for p in (seq_path, meta_path, maps_path) if (reason := unverified_reason(p))]
        if not changed:
            return _load(seq_path, meta_path)
        print(f"Processed files not as written: {'; '.join(changed)}; rebuilding them")
    start = time.perf_counter()
    # The old manifest must not vouch for outputs that are about to be (partly) replaced.
    remove_file(manifest_path)
    interactions = source.read_interactions()
    if len(interactions.users) == 0:
        raise RawDataError(f"{files[0].path}: no interaction could be read (the file is empty); "
                           "restore the file or point dataset.raw_data_path at the data")
    remapped = build_sequences(interactions.users, interactions.items, interactions.times,
                               cfg.user_core, cfg.item_core)
    if len(remapped.sequences) == 0:
        raise RawDataError(f"no user is left after {cfg.user_core}-core / {cfg.item_core}-core filtering of "
                           f"{[str(f.path) for f in files]}; lower dataset.user_core / dataset.item_core")
    texts = source.read_item_texts(remapped.item_raw_ids)
    write_sequence_file(seq_path, remapped.sequences)
    write_json(meta_path, {str(i + 1): text for i, text in enumerate(texts)}, indent=None)
    write_json(maps_path, {"user": remapped.user_raw_ids.tolist(), "item": remapped.item_raw_ids.tolist()}, indent=None)
    for output in (seq_path, meta_path, maps_path):
        record_digest(output)
    write_json(manifest_path, {"key": key, "seconds": round(time.perf_counter() - start, 3)})
    return ProcessedData(remapped.sequences, texts, seq_path, meta_path, cached=False)


def id_maps_path(sequence_file: Path) -> Path:
    """The id map written beside the sequence file `{name}.txt`."""
    return sequence_file.with_name(f"{sequence_file.stem}_id_maps.json")


def _read_manifest(path: Path) -> dict:
    try:
        manifest = read_json(path)
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _load(seq_path: Path, meta_path: Path) -> ProcessedData:
    sequences = read_sequence_file(seq_path)
    try:
        id2meta = read_json(meta_path)
        texts = [id2meta[str(i)] for i in range(1, len(id2meta) + 1)]
    except (ValueError, KeyError, TypeError) as exc:
        raise RawDataError(f"{meta_path} is not an item-id -> text map with ids 1..N ({type(exc).__name__}: {exc}); "
                           "delete it to rebuild it") from None
    if sequences.n_items > len(texts):
        raise RawDataError(f"{meta_path} has {len(texts)} items but {seq_path} uses item id "
                           f"{sequences.n_items}; delete both files to rebuild them")
    return ProcessedData(sequences, texts, seq_path, meta_path, cached=True)


def dataset_stats(data: ProcessedData, split: Split) -> dict[str, float]:
    """The dataset's statistics under the `data/...` keys of metrics.json."""
    stats = {**data.stats(), **split.stats()}
    return {f"data/{k}": v for k, v in stats.items()}


def describe_dataset(cfg: DataConfig, data: ProcessedData, split: Split) -> str:
    """A few readable lines of dataset statistics for the console."""
    d, s = data.stats(), split.stats()
    kept = f", every {cfg.user_stride}th user kept" if cfg.user_stride > 1 else ""
    return "\n".join([
        f"Dataset {cfg.name} ({cfg.type}{', cached' if data.cached else ''}): {d['users']:,} users, "
        f"{d['items']:,} items, {d['interactions']:,} interactions, mean length {d['mean_seq_len']:.2f}",
        f"  split (last {cfg.max_items_per_seq} items{kept}): {s['train_examples']:,} train / "
        f"{s['val_examples']:,} val / {s['test_examples']:,} test examples; {s['seen_items']:,} seen items",
        f"  cold-start: {s['cold_val_items']:,} val items ({s['cold_val_examples']:,} examples), "
        f"{s['cold_test_items']:,} test items ({s['cold_test_examples']:,} examples)",
    ])
