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
from .source import Interactions, duplicate_rows
from .text import VALUE_CLEANERS

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
ITEM_COLUMNS = ("item_id", "text")


class CustomSource:
    def __init__(self, raw_data_path: Path, name: str, cleaning: str):
        self.folder = Path(raw_data_path) / name
        self.clean = VALUE_CLEANERS[cleaning]
        self.interactions_path = self.folder / "interactions.csv"
        self.items_path = self.folder / "items.csv"

    def raw_files(self) -> list[RawFile]:
        return [RawFile(self.interactions_path, None), RawFile(self.items_path, None)]

    def read_interactions(self) -> Interactions:
        frame = _read_csv(self.interactions_path, INTERACTION_COLUMNS)
        interactions = Interactions(frame["user_id"].to_numpy(dtype=object), frame["item_id"].to_numpy(dtype=object),
                                    _timestamps(frame["timestamp"], self.interactions_path))
        keep = duplicate_rows(interactions, frame.index.to_numpy(), self.interactions_path, keep=False)
        return Interactions(interactions.users[keep], interactions.items[keep], interactions.times[keep])

    def read_item_texts(self, raw_items: np.ndarray) -> list[str]:
        frame = _read_csv(self.items_path, ITEM_COLUMNS)
        repeated = frame[frame["item_id"].duplicated(keep=False)]
        conflicting = repeated.groupby("item_id")["text"].nunique() > 1
        if conflicting.any():
            item = conflicting.idxmax()
            lines = ", ".join(map(str, repeated.index[repeated["item_id"] == item]))
            raise RawDataError(f"{self.items_path}, lines {lines}: item {item!r} has rows with different texts "
                               f"({int(conflicting.sum())} item(s) do); keep one row per item")
        texts = dict(zip(frame["item_id"], frame["text"]))
        missing = [item for item in raw_items if item not in texts]
        if missing:
            raise RawDataError(f"{self.items_path}: {len(missing)} item(s) of interactions.csv have no row "
                               f"(e.g. {', '.join(missing[:5])}); add a row 'item_id,text' for each")
        return [self.clean(texts[item]) for item in raw_items]


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """The CSV as strings; the index is the row's line number in the file (header = line 1)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise RawDataError(f"{path}: the file is empty; it needs the header '{','.join(columns)}'") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RawDataError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RawDataError(f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                           f"'{','.join(columns)}' (found {','.join(frame.columns)})")
    frame.index = frame.index + 2
    frame = frame[frame.ne("").any(axis=1)]  # blank lines: skipped, but still counted as lines
    empty = frame[list(columns[:2])].eq("").any(axis=1)
    if empty.any():
        raise RawDataError(f"{path}, line {empty.idxmax()}: empty {' or '.join(columns[:2])}")
    ids = [c for c in columns if c.endswith("_id")]
    padded = frame[ids].ne(frame[ids].apply(lambda column: column.str.strip())).any(axis=1)
    if padded.any():
        line = padded.idxmax()
        raise RawDataError(f"{path}, line {line}: an id has leading or trailing spaces "
                           f"({', '.join(repr(frame.at[line, c]) for c in ids)}); ids are compared exactly, "
                           "so remove the spaces")
    return frame


def _timestamps(column: pd.Series, path: Path) -> np.ndarray:
    """Unix seconds from integers (as given) or ISO dates (UTC unless they carry an offset)."""
    numeric = pd.to_numeric(column, errors="coerce")
    is_int = numeric.notna() & (numeric == numeric.round())
    seconds = pd.Series(np.zeros(len(column), dtype=np.int64), index=column.index)
    seconds[is_int] = numeric[is_int].astype(np.int64)
    dates = pd.to_datetime(column[~is_int], errors="coerce", utc=True, format="ISO8601")
    bad = dates.isna()
    if bad.any():
        line = bad.idxmax()
        raise RawDataError(f"{path}, line {line}: timestamp {column[line]!r} is neither an integer nor an "
                           "ISO date (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS, optionally with a UTC offset)")
    seconds[~is_int] = (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.to_numpy()
