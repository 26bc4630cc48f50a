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


def texts_in_order(raw_items: np.ndarray, texts: dict[str, str], source_name: str) -> list[str]:
    """Look up each item's text; items without metadata get an empty text, with a warning."""
    missing = [item for item in raw_items if item not in texts]
    if missing:
        print(f"Warning: {len(missing)} of {len(raw_items)} items have no metadata in {source_name} "
              f"(e.g. {', '.join(map(str, missing[:5]))}); their item text is empty.")
    return [texts.get(item, "") for item in raw_items]
