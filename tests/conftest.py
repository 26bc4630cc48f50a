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
