"""What every raw-data source provides to the shared preprocessing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .download import RawFile


@dataclass(frozen=True)
class Interactions:
    """Raw interactions in file order: (n,) arrays of user ids, item ids and integer times."""
    users: np.ndarray
    items: np.ndarray
    times: np.ndarray


class Source(Protocol):
    def raw_files(self) -> list[RawFile]:
        """The raw files this source reads, with their public addresses (url None: place by hand)."""

    def read_interactions(self) -> Interactions:
        ...

    def read_item_texts(self, raw_items: np.ndarray) -> list[str]:
        """The item text of each raw item id, in the order given."""


def duplicate_rows(interactions: Interactions, lines: np.ndarray, path, keep: bool) -> np.ndarray:
    """(n,) bool mask of the interactions to use: all (keep=True, the published rule for its sources)
    or the first of each set of equal (user, item, time) rows. Duplicates, if any, are reported with
    their count and first lines either way."""
    import pandas as pd

    repeated = pd.DataFrame({"u": interactions.users, "i": interactions.items,
                             "t": interactions.times}).duplicated().to_numpy()
    if repeated.any():
        first = ", ".join(str(int(line)) for line in lines[repeated][:5])
        fate = ("kept: each counts as an interaction, as in the published preprocessing" if keep
                else "each is counted once")
        print(f"Warning: {path}: {int(repeated.sum())} interaction(s) repeat an earlier one (same user, item and "
              f"time), e.g. lines {first}; {fate}")
    return np.ones(len(repeated), dtype=bool) if keep else ~repeated


def texts_in_order(raw_items: np.ndarray, texts: dict[str, str], source_name: str) -> list[str]:
    """Look up each item's text; items without metadata get an empty text, with a warning."""
    missing = [item for item in raw_items if item not in texts]
    if missing:
        print(f"Warning: {len(missing)} of {len(raw_items)} items have no metadata in {source_name} "
              f"(e.g. {', '.join(map(str, missing[:5]))}); their item text is empty.")
    return [texts.get(item, "") for item in raw_items]
