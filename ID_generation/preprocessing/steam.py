"""Steam (Kang & McAuley): `steam_reviews.json.gz` (username, product_id, date `YYYY-MM-DD`) and
`steam_games.json.gz` (id, title, genres, tags, specs, price, publisher), Python-literal lines,
looked up in `{raw_data_path}/steam/`.

The published pipeline first drops users with fewer than 5 reviews; the shared k-core filter does
exactly that (and more), so no separate step is needed. Keeping only every 7th user happens at the
split (`dataset.user_stride`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .download import RawFile
from .raw_io import RawDataError, iter_records, key_filter, require_fields
from .source import Interactions, texts_in_order
from .text import steam_item_text

BASE_URL = "https://cseweb.ucsd.edu/~wckang"


class SteamSource:
    def __init__(self, raw_data_path: Path, features: tuple[str, ...], cleaning: str):
        self.folder = Path(raw_data_path) / "steam"
        self.features, self.cleaning = features, cleaning
        self.reviews_path = self.folder / "steam_reviews.json.gz"
        self.games_path = self.folder / "steam_games.json.gz"

    def raw_files(self) -> list[RawFile]:
        return [RawFile(p, f"{BASE_URL}/{p.name}") for p in (self.reviews_path, self.games_path)]

    def read_interactions(self) -> Interactions:
        users, items, dates = [], [], []
        for line_no, record in tqdm(iter_records(self.reviews_path), desc=f"reading {self.reviews_path.name}",
                                    unit=" lines", mininterval=1.0):
            require_fields(record, ("username", "product_id", "date"), self.reviews_path, line_no)
            users.append(record["username"])
            items.append(str(record["product_id"]))
            dates.append(record["date"])
        try:
            parsed = np.array(dates, dtype="datetime64[s]")
        except (ValueError, TypeError):
            raise self._bad_date_error() from None
        if np.isnat(parsed).any() or not all(isinstance(d, str) for d in dates):
            raise self._bad_date_error()
        times = parsed.astype(np.int64)
        return Interactions(np.array(users, dtype=object), np.array(items, dtype=object), times)

    def _bad_date_error(self) -> RawDataError:
        """Find the first unparsable date again (the error path only) to name its line."""
        for line_no, record in iter_records(self.reviews_path):
            try:
                if not isinstance(record["date"], str) or np.isnat(np.datetime64(record["date"], "s")):
                    raise ValueError
            except (ValueError, TypeError):
                return RawDataError(f"{self.reviews_path}, line {line_no}: 'date' must be YYYY-MM-DD, "
                                    f"got {record['date']!r}")
        return RawDataError(f"{self.reviews_path}: a 'date' is not YYYY-MM-DD")

    def read_item_texts(self, raw_items: np.ndarray) -> list[str]:
        wanted = set(raw_items.tolist())
        texts: dict[str, str] = {}
        records = iter_records(self.games_path, keep_line=key_filter("id", wanted))
        for _line_no, game in tqdm(records, desc=f"reading {self.games_path.name}", unit=" games", mininterval=1.0):
            if "id" in game and str(game["id"]) in wanted:
                texts[str(game["id"])] = steam_item_text(game, self.features, self.cleaning)
        return texts_in_order(raw_items, texts, str(self.games_path))
