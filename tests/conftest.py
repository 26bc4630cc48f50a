"""Shared fixtures: paths to the read-only Beauty files and small config builders."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

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
