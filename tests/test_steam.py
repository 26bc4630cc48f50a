"""The Steam loader on small files in the original formats (Python-literal lines, gzip)."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ID_generation.preprocessing import leave_one_out, preprocess
from ID_generation.preprocessing.raw_io import RawDataError
from src.config import STEAM_FEATURES, DataConfig


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.writelines(repr(r) + "\n" for r in records)


def _config(tmp_path: Path, **overrides) -> DataConfig:
    values = dict(type="steam", name="steam", raw_data_path=tmp_path / "raw", processed_data_path=tmp_path / "out",
                  max_items_per_seq=20, features_needed=STEAM_FEATURES, prompt_format="steam",
                  text_cleaning="published", user_core=2, item_core=2, user_stride=1, content_model="all-MiniLM-L6-v2",
                  embedding_batch_size=8, generator=None)
    return DataConfig(**{**values, **overrides})


@pytest.fixture
def steam_files(tmp_path):
    reviews = [  # file order is not time order
        {"username": "ann", "product_id": "20", "date": "2015-03-01", "text": "fun"},
        {"username": "ann", "product_id": "10", "date": "2014-01-05", "text": "ok"},
        {"username": "bob", "product_id": "10", "date": "2016-07-07", "text": "meh"},
        {"username": "bob", "product_id": "20", "date": "2016-07-08", "text": "good"},
        {"username": "bob", "product_id": "30", "date": "2016-07-09", "text": "rare"},  # item with 1 user
        {"username": "cy", "product_id": "10", "date": "2017-01-01", "text": "solo"},  # user with 1 item
    ]
    games = [
        {"id": "10", "title": "Portal", "publisher": "Valve", "price": 9.99, "specs": ["Single-player"],
         "tags": ["Puzzle", "Sci-fi"], "genres": ["Action"]},
        {"id": "20", "title": "Chess", "price": "Free To Play"},
        {"id": "99", "title": "Unrelated"},
    ]
    _write(tmp_path / "raw" / "steam" / "steam_reviews.json.gz", reviews)
    _write(tmp_path / "raw" / "steam" / "steam_games.json.gz", games)
    return tmp_path


def test_steam_sequences_are_time_sorted_k_cored_and_texts_templated(steam_files):
    data = preprocess(_config(steam_files))
    assert len(data.sequences) == 2  # cy drops out (one review), then 30 (one user)
    assert [data.sequences.row(u).tolist() for u in range(2)] == [[1, 2], [1, 2]]  # 10 before 20 for ann
    assert data.item_texts[0].startswith("This game is called 'Portal'. Developed by Valve, "
                                         "this game is priced at 9.99.")
    assert "including Single-player." in data.item_texts[0] and "include: Puzzle Sci-fi." in data.item_texts[0]
    assert data.item_texts[1] == ("This game is called 'Chess'. Developed by Unknown, this game is priced at "
                                  "Free To Play. This game features a variety of gameplay modes including Unknown. "
                                  "Tags of the game include: Unknown. ")


def test_every_seventh_user_is_kept_at_the_split(steam_files):
    data = preprocess(_config(steam_files))
    assert len(leave_one_out(data.sequences, 20, user_stride=7).sequences) == 1  # users 0 of 2
    assert len(leave_one_out(data.sequences, 20, user_stride=1).sequences) == 2


def test_bad_date_names_file_and_line(steam_files):
    path = steam_files / "raw" / "steam" / "steam_reviews.json.gz"
    _write(path, [{"username": "a", "product_id": "1", "date": "2015-01-01"},
                  {"username": "a", "product_id": "2", "date": "01/02/2015"}])
    with pytest.raises(RawDataError, match=r"steam_reviews.json.gz, line 2: 'date'.*01/02/2015"):
        preprocess(_config(steam_files))


@pytest.mark.parametrize("bad", ["", None, "NaT", 20170102])
def test_missing_or_non_string_dates_are_rejected_not_sorted_first(steam_files, bad):
    path = steam_files / "raw" / "steam" / "steam_reviews.json.gz"
    _write(path, [{"username": "a", "product_id": "1", "date": "2015-01-01"},
                  {"username": "a", "product_id": "2", "date": bad}])
    with pytest.raises(RawDataError, match="line 2: 'date'"):
        preprocess(_config(steam_files))
