"""Your own data, in a simple documented format (README, "Your own dataset"):

`{raw_data_path}/{name}/interactions.csv` — header `user_id,item_id,timestamp`, one interaction a
row; ids are any strings, timestamps integers (e.g. unix seconds) or ISO dates.
`{raw_data_path}/{name}/items.csv` — header `item_id,text`, the text used to embed each item.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .download import RawFile
from .raw_io import RawDataError
from .text import clean_text
from .source import Interactions

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
ITEM_COLUMNS = ("item_id", "text")


class CustomSource:
    def __init__(self, raw_data_path: Path, name: str):
        self.folder = Path(raw_data_path) / name
        self.interactions_path = self.folder / "interactions.csv"
        self.items_path = self.folder / "items.csv"

    def raw_files(self) -> list[RawFile]:
        return [RawFile(self.interactions_path, None), RawFile(self.items_path, None)]

    def read_interactions(self) -> Interactions:
        frame = _read_csv(self.interactions_path, INTERACTION_COLUMNS)
        return Interactions(frame["user_id"].to_numpy(dtype=object), frame["item_id"].to_numpy(dtype=object),
                            _timestamps(frame["timestamp"], self.interactions_path))

    def read_item_texts(self, raw_items: np.ndarray) -> list[str]:
        frame = _read_csv(self.items_path, ITEM_COLUMNS)
        texts = dict(zip(frame["item_id"], frame["text"]))
        missing = [item for item in raw_items if item not in texts]
        if missing:
            raise RawDataError(f"{self.items_path}: {len(missing)} item(s) of interactions.csv have no row "
                               f"(e.g. {', '.join(missing[:5])}); add a row 'item_id,text' for each")
        return [clean_text(texts[item]) for item in raw_items]


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RawDataError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RawDataError(f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                           f"'{','.join(columns)}' (found {','.join(frame.columns)})")
    empty = frame[list(columns[:2])].eq("").any(axis=1).to_numpy()
    if empty.any():
        raise RawDataError(f"{path}, line {int(np.argmax(empty)) + 2}: empty {' or '.join(columns[:2])}")
    return frame


def _timestamps(column: pd.Series, path: Path) -> np.ndarray:
    """Integer timestamps as given, or ISO dates converted to unix seconds."""
    numeric = pd.to_numeric(column, errors="coerce")
    if not numeric.isna().any():
        return numeric.to_numpy(dtype=np.int64)
    dates = pd.to_datetime(column, errors="coerce", format="ISO8601")
    bad = dates.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise RawDataError(f"{path}, line {row + 2}: timestamp {column.iloc[row]!r} is neither an integer "
                           "nor an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)")
    return (dates.astype("datetime64[s]").astype(np.int64)).to_numpy()
