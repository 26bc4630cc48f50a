"""Amazon 2014 review data: `reviews_{name}_5.json.gz` (JSON lines) and `meta_{name}.json.gz`
(Python-literal lines), looked up in `{raw_data_path}/amazon/`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .download import RawFile
from .raw_io import int_field, iter_records, key_filter, require_fields
from .source import Interactions, duplicate_rows, texts_in_order
from .text import READ_FIXES, amazon_item_text

BASE_URL = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"


class AmazonSource:
    def __init__(self, raw_data_path: Path, name: str, features: tuple[str, ...], cleaning: str,
                 downloadable: bool = True):
        self.folder = Path(raw_data_path) / "amazon"
        self.name, self.features, self.cleaning, self.downloadable = name, features, cleaning, downloadable

    @property
    def reviews_path(self) -> Path:
        return self.folder / f"reviews_{self.name}_5.json.gz"

    @property
    def meta_path(self) -> Path:
        return self.folder / f"meta_{self.name}.json.gz"

    def raw_files(self) -> list[RawFile]:
        url = (lambda p: f"{BASE_URL}/{p.name}") if self.downloadable else (lambda p: None)
        return [RawFile(self.reviews_path, url(self.reviews_path)), RawFile(self.meta_path, url(self.meta_path))]

    def read_interactions(self) -> Interactions:
        users, items, times, lines = [], [], [], []
        fields = ("reviewerID", "asin", "unixReviewTime")
        for line_no, record in tqdm(iter_records(self.reviews_path), desc=f"reading {self.reviews_path.name}",
                                    unit=" lines", mininterval=1.0):
            require_fields(record, fields, self.reviews_path, line_no)
            users.append(record["reviewerID"])
            items.append(record["asin"])
            times.append(int_field(record, "unixReviewTime", self.reviews_path, line_no))
            lines.append(line_no)
        interactions = Interactions(np.array(users, dtype=object), np.array(items, dtype=object),
                                    np.array(times, dtype=np.int64))
        duplicate_rows(interactions, np.array(lines), self.reviews_path, keep=True)  # reported, kept as published
        return interactions

    def read_item_texts(self, raw_items: np.ndarray) -> list[str]:
        wanted = set(raw_items.tolist())
        texts: dict[str, str] = {}
        records = iter_records(self.meta_path, keep_line=key_filter("asin", wanted), fix_line=READ_FIXES[self.cleaning])
        for line_no, meta in tqdm(records, desc=f"reading {self.meta_path.name}", unit=" items", mininterval=1.0):
            require_fields(meta, ("asin",), self.meta_path, line_no)
            if meta["asin"] in wanted:
                texts[meta["asin"]] = amazon_item_text(meta, self.features, self.cleaning)
        return texts_in_order(raw_items, texts, str(self.meta_path))
