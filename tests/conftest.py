"""Shared fixtures: paths to the read-only Beauty files, small config builders, and the operations that
would make the host wait for a GPU."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
SHARED_RAW = Path(os.environ.get("LIGER_SHARED_RAW", REPO.parent / "shared" / "data" / "raw"))


@pytest.fixture(scope="session")
def beauty_raw() -> Path:
    """`shared/data/raw` (published layout: amazon/reviews_Beauty_5.json.gz, amazon/meta_Beauty.json.gz)."""
    if not (SHARED_RAW / "amazon" / "reviews_Beauty_5.json.gz").exists():
        pytest.skip(f"Beauty raw files not found under {SHARED_RAW} (set LIGER_SHARED_RAW)")
    return SHARED_RAW


def compose(*overrides: str):
    """The composed Hydra config of run.py for these overrides (as the command line would give)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    import src.config  # noqa: F401  registers the run_dir resolver

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return hydra_compose(config_name="main", overrides=list(overrides))


def load(*overrides: str):
    """The typed RunConfig for these overrides."""
    from src.config import load_config

    return load_config(compose(*overrides))


def small_generated(tmp_path, *extra: str) -> tuple[str, ...]:
    """Overrides for a small generated dataset (300 users, 36 items) with data, caches (the semantic IDs'
    too: nothing is written into the checkout) and the run folder under tmp_path, W&B off; `extra`
    overrides come last and win."""
    return (f"dataset.raw_data_path={tmp_path}/raw", f"dataset.processed_data_path={tmp_path}/processed",
            f"dataset.RQ-VAE.cache_dir={tmp_path}/ids", f"output_path={tmp_path}/run",
            "dataset.generator.n_users=300", "dataset.generator.n_groups=4",
            "dataset.generator.items_per_group=8", "dataset.generator.cold_items_per_group=1",
            "logging.mode=disabled", *extra)


# Operations that make the host wait for a GPU: a value read back, or an output sized by the data.
HOST_WAITS = frozenset({"_local_scalar_dense", "nonzero", "bincount", "unique_dim", "_unique2", "masked_select",
                        "is_nonzero", "equal"})


class RecordedOperations(TorchDispatchMode):
    """The operators called while it is entered, by name in call order (`names`), recorded at the
    dispatcher; with `keep`, only the calls whose (args, kwargs) it accepts."""

    def __init__(self, keep=None):
        super().__init__()
        self.names: list[str] = []
        self.keep = keep

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.keep is None or self.keep(args, kwargs):
            self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def host_waits(fn) -> tuple[set[str], object]:
    """(the operations of HOST_WAITS that fn() called, its result), recorded at the dispatcher, so that a
    CPU test shows what would synchronise a GPU; raises if fn called no operation at all."""
    with RecordedOperations() as recorder:
        result = fn()
    if not recorder.names:
        raise AssertionError("no operation was recorded")
    return set(recorder.names) & HOST_WAITS, result


class RunsCode:
    """Unpickling it calls `Path.touch(marker)`: what a checkpoint from elsewhere could make a loader run
    (the checkpoint tests check that no loader ever does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)
