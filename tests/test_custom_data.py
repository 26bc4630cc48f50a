"""Tests of own data in the documented CSV format (ID_generation/preprocessing/custom.py) through
`preprocess`, including its manifest-keyed cache."""
from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest

from ID_generation.preprocessing.custom import CustomSource
from ID_generation.preprocessing.download import MissingRawDataError
from ID_generation.preprocessing.pipeline import preprocess
from ID_generation.preprocessing.raw_io import RawDataError
from src.config import DataConfig

NAME = "shop"
ITEMS = [("apple", "Red Apple"), ("kiwi", "Green &amp; Kiwi"), ("fig", "Fig  <b>fresh</b>"),
         ("plum", "Plum"), ("pear", "Pear")]
# Rows in a deliberately shuffled order: (user, item, time).
ROWS = [("bob", "plum", 30), ("alice", "fig", 20), ("bob", "kiwi", 10), ("alice", "apple", 5),
        ("carol", "pear", 7), ("alice", "kiwi", 40), ("bob", "apple", 20), ("carol", "fig", 3)]
# Users by first appearance: bob, alice, carol. Time-sorted: bob kiwi apple plum; alice apple fig
# kiwi; carol fig pear. Items by first appearance along those: kiwi=1 apple=2 plum=3 fig=4 pear=5.
EXPECTED = [[1, 2, 3], [2, 4, 1], [4, 5]]
EXPECTED_TEXTS = ["Green & Kiwi", "Red Apple", "Plum", "Fig fresh", "Pear"]
DAY0 = dt.date(2011, 1, 1)  # 1293840000 in unix seconds


# --------------------------------------------------------------------------------------------
# Helpers


def iso(t: int) -> str:
    return (DAY0 + dt.timedelta(days=t)).isoformat()


def write_dataset(raw: Path, rows=ROWS, items=ITEMS, name: str = NAME, time_format=str,
                  interactions_header: str = "user_id,item_id,timestamp",
                  items_header: str = "item_id,text") -> Path:
    folder = raw / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interactions.csv").write_text(
        interactions_header + "\n" + "".join(f"{u},{i},{time_format(t)}\n" for u, i, t in rows))
    with open(folder / "items.csv", "w", newline="") as handle:
        handle.write(items_header + "\n")
        csv.writer(handle, lineterminator="\n").writerows(items)
    return folder


def config(tmp_path: Path, user_core: int = 1, item_core: int = 1) -> DataConfig:
    return DataConfig(type="custom", name=NAME, raw_data_path=tmp_path / "raw",
                      processed_data_path=tmp_path / "processed", max_items_per_seq=20,
                      features_needed=("title", "price", "brand", "categories"), prompt_format="amazon",
                      text_cleaning="tidy", user_core=user_core, item_core=item_core, user_stride=1,
                      content_model="all-MiniLM-L6-v2", embedding_batch_size=64, generator=None)


def rows_of(data) -> list[list[int]]:
    return [data.sequences.row(u).tolist() for u in range(len(data.sequences))]


def error_of(tmp_path: Path, exc_type=RawDataError) -> str:
    with pytest.raises(exc_type) as info:
        preprocess(config(tmp_path))
    return str(info.value)


def replace_interaction_row(tmp_path: Path, index: int, row: str, time_format=str) -> Path:
    """Write the standard dataset with line `index` (0 = header) of interactions.csv replaced."""
    path = write_dataset(tmp_path / "raw", time_format=time_format) / "interactions.csv"
    lines = path.read_text().splitlines()
    lines[index] = row
    path.write_text("\n".join(lines) + "\n")
    return path


def bump_mtime(path: Path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


# --------------------------------------------------------------------------------------------
# Reading and remapping


def test_sequences_are_time_sorted_with_first_appearance_ids(tmp_path):
    write_dataset(tmp_path / "raw")
    data = preprocess(config(tmp_path))
    assert rows_of(data) == EXPECTED
    assert not data.cached


def test_item_texts_are_aligned_with_ids_and_cleaned(tmp_path):
    write_dataset(tmp_path / "raw")
    data = preprocess(config(tmp_path))
    assert data.item_texts == EXPECTED_TEXTS
    assert data.item_texts[1 - 1] == "Green & Kiwi"  # id 1 is kiwi
    assert data.item_texts[5 - 1] == "Pear"          # id 5 is pear


def test_outputs_are_written_to_processed_folder(tmp_path):
    write_dataset(tmp_path / "raw")
    data = preprocess(config(tmp_path))
    assert data.sequence_file.read_text().splitlines() == ["1 1 2 3", "2 2 4 1", "3 4 5"]
    assert sorted(p.name for p in (tmp_path / "raw" / NAME).iterdir()) == ["interactions.csv", "items.csv"]


def test_iso_dates_give_the_same_sequences_as_integers(tmp_path):
    write_dataset(tmp_path / "raw", time_format=iso)
    data = preprocess(config(tmp_path))
    assert rows_of(data) == EXPECTED
    assert data.item_texts == EXPECTED_TEXTS


def test_iso_dates_and_datetimes_become_unix_seconds(tmp_path):
    folder = write_dataset(tmp_path, rows=[("u", "apple", 0), ("u", "kiwi", 1)], time_format=iso)
    assert CustomSource(tmp_path, NAME, "tidy").read_interactions().times.tolist() == [1_293_840_000, 1_293_926_400]
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\nu,apple,2011-01-01T00:00:01\n"
                                             "u,kiwi,2011-01-02T12:00:00\n")
    times = CustomSource(tmp_path, NAME, "tidy").read_interactions().times
    assert times.dtype == np.int64
    assert times.tolist() == [1_293_840_001, 1_293_926_400 + 43_200]


def test_integer_timestamps_are_kept_as_given(tmp_path):
    write_dataset(tmp_path, rows=[("u", "apple", 1_700_000_000), ("u", "kiwi", 3)])
    assert CustomSource(tmp_path, NAME, "tidy").read_interactions().times.tolist() == [1_700_000_000, 3]


def test_equal_timestamps_keep_file_order(tmp_path):
    write_dataset(tmp_path / "raw", rows=[("u", "plum", 5), ("u", "apple", 5), ("u", "kiwi", 1),
                                          ("u", "fig", 5)])
    assert rows_of(preprocess(config(tmp_path))) == [[1, 2, 3, 4]]  # kiwi, plum, apple, fig


def test_ids_are_strings_not_numbers(tmp_path):
    write_dataset(tmp_path / "raw", rows=[("01", "007", 1), ("01", "7", 2), ("1", "007", 3)],
                  items=[("7", "seven"), ("007", "agent")])
    data = preprocess(config(tmp_path))
    assert rows_of(data) == [[1, 2], [1]]
    assert data.item_texts == ["agent", "seven"]


def test_k_core_filtering_applies_to_own_data(tmp_path):
    write_dataset(tmp_path / "raw")
    data = preprocess(config(tmp_path, user_core=3, item_core=1))  # carol has only 2 items
    assert rows_of(data) == [[1, 2, 3], [2, 4, 1]]
    assert data.item_texts == EXPECTED_TEXTS[:4]


# --------------------------------------------------------------------------------------------
# Errors


def test_missing_interaction_column_names_file_and_expected_header(tmp_path):
    folder = write_dataset(tmp_path / "raw", interactions_header="user,item_id,timestamp")
    message = error_of(tmp_path)
    assert str(folder / "interactions.csv") in message
    assert "user_id,item_id,timestamp" in message and "user_id" in message


def test_missing_item_column_names_file_and_expected_header(tmp_path):
    folder = write_dataset(tmp_path / "raw", items_header="item_id,title")
    message = error_of(tmp_path)
    assert str(folder / "items.csv") in message and "item_id,text" in message


def test_bad_iso_timestamp_names_file_and_csv_line(tmp_path):
    path = replace_interaction_row(tmp_path, 3, "bob,kiwi,2011-13-45", time_format=iso)  # CSV line 4
    message = error_of(tmp_path)
    assert str(path) in message and "line 4" in message and "2011-13-45" in message


def test_bad_integer_timestamp_names_its_own_csv_line(tmp_path):
    replace_interaction_row(tmp_path, 3, "bob,kiwi,yesterday")
    message = error_of(tmp_path)
    assert "line 4" in message and "yesterday" in message


def test_bad_timestamp_line_number_counts_blank_lines(tmp_path):
    folder = write_dataset(tmp_path / "raw")
    path = folder / "interactions.csv"
    path.write_text("user_id,item_id,timestamp\nbob,plum,2011-01-01\n\nbob,kiwi,2011-13-45\n")
    assert "line 4" in error_of(tmp_path)


def test_timezone_aware_iso_timestamps_are_converted_to_utc(tmp_path):
    folder = write_dataset(tmp_path, rows=[("u", "apple", 0)])
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\nu,apple,2020-01-01T00:00:00Z\n")
    assert CustomSource(tmp_path, NAME, "tidy").read_interactions().times.tolist() == [1_577_836_800]
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\nu,apple,2020-01-01T02:00:00+02:00\n")
    assert CustomSource(tmp_path, NAME, "tidy").read_interactions().times.tolist() == [1_577_836_800]


def test_empty_interactions_file_names_file_and_expected_header(tmp_path):
    folder = write_dataset(tmp_path / "raw")
    (folder / "interactions.csv").write_text("")
    message = error_of(tmp_path)
    assert "interactions.csv" in message and "user_id,item_id,timestamp" in message


def test_empty_item_id_names_csv_line(tmp_path):
    path = replace_interaction_row(tmp_path, 2, "alice,,20")
    message = error_of(tmp_path)
    assert str(path) in message and "line 3" in message


def test_item_without_text_row_is_named(tmp_path):
    folder = write_dataset(tmp_path / "raw", items=[item for item in ITEMS if item[0] != "pear"])
    message = error_of(tmp_path)
    assert str(folder / "items.csv") in message and "pear" in message
    assert "apple" not in message


def test_missing_items_file_says_where_to_put_it(tmp_path):
    folder = write_dataset(tmp_path / "raw")
    (folder / "items.csv").unlink()
    message = error_of(tmp_path, MissingRawDataError)
    assert "items.csv" in message and str(folder.resolve()) in message
    assert "by hand" in message
    assert "interactions.csv" not in message


def test_missing_dataset_folder_names_both_files(tmp_path):
    (tmp_path / "raw").mkdir()
    message = error_of(tmp_path, MissingRawDataError)
    assert "interactions.csv" in message and "items.csv" in message
    assert str((tmp_path / "raw" / NAME).resolve()) in message
    assert not (tmp_path / "raw" / NAME).exists()


# --------------------------------------------------------------------------------------------
# The cache


def test_second_call_is_cached_with_identical_data(tmp_path):
    write_dataset(tmp_path / "raw")
    first = preprocess(config(tmp_path))
    second = preprocess(config(tmp_path))
    assert not first.cached and second.cached
    assert np.array_equal(first.sequences.offsets, second.sequences.offsets)
    assert np.array_equal(first.sequences.items, second.sequences.items)
    assert second.item_texts == first.item_texts


def test_changed_interactions_file_is_rebuilt(tmp_path):
    folder = write_dataset(tmp_path / "raw")
    preprocess(config(tmp_path))
    path = folder / "interactions.csv"
    path.write_text(path.read_text() + "carol,apple,50\n")
    bump_mtime(path)
    rebuilt = preprocess(config(tmp_path))
    assert not rebuilt.cached
    assert rows_of(rebuilt) == [[1, 2, 3], [2, 4, 1], [4, 5, 2]]
    assert preprocess(config(tmp_path)).cached


def test_changed_items_file_is_rebuilt(tmp_path):
    folder = write_dataset(tmp_path / "raw")
    preprocess(config(tmp_path))
    write_dataset(tmp_path / "raw", items=[(i, "Pear, ripe" if i == "pear" else t) for i, t in ITEMS])
    bump_mtime(folder / "items.csv")
    rebuilt = preprocess(config(tmp_path))
    assert not rebuilt.cached and rebuilt.item_texts[-1] == "Pear, ripe"


def test_changed_core_setting_is_rebuilt(tmp_path):
    write_dataset(tmp_path / "raw")
    preprocess(config(tmp_path))
    rebuilt = preprocess(config(tmp_path, user_core=3))
    assert not rebuilt.cached and len(rebuilt.sequences) == 2


def test_touched_interactions_file_is_not_rebuilt(tmp_path):
    """The raw files' identity is their content: a new mtime alone changes nothing."""
    folder = write_dataset(tmp_path / "raw")
    first = preprocess(config(tmp_path))
    bump_mtime(folder / "interactions.csv")
    again = preprocess(config(tmp_path))
    assert again.cached and rows_of(again) == rows_of(first) == EXPECTED


def test_edit_keeping_size_and_mtime_is_rebuilt(tmp_path):
    folder = write_dataset(tmp_path / "raw")
    preprocess(config(tmp_path))
    path = folder / "interactions.csv"
    stat, text = path.stat(), path.read_text()
    edited = text.replace("carol", "carl_")  # the same number of bytes
    assert edited != text and len(edited) == len(text)
    path.write_text(edited)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert not preprocess(config(tmp_path)).cached


@pytest.mark.parametrize("damage", ["truncate", "empty", "edit"])
def test_damaged_processed_output_is_rebuilt_not_trusted(tmp_path, damage, capsys):
    write_dataset(tmp_path / "raw")
    first = preprocess(config(tmp_path))
    lines = first.sequence_file.read_text().splitlines(keepends=True)
    damaged = {"truncate": "".join(lines[:len(lines) // 2]), "empty": "",
               "edit": "".join(lines).replace(" 1", " 2", 1)}[damage]
    assert damaged != first.sequence_file.read_text()
    first.sequence_file.write_text(damaged)
    rebuilt = preprocess(config(tmp_path))
    assert not rebuilt.cached and rows_of(rebuilt) == EXPECTED
    assert str(first.sequence_file) in capsys.readouterr().out  # the message names the file
    assert preprocess(config(tmp_path)).cached


def test_deleted_output_is_rebuilt(tmp_path):
    write_dataset(tmp_path / "raw")
    first = preprocess(config(tmp_path))
    first.sequence_file.unlink()
    rebuilt = preprocess(config(tmp_path))
    assert not rebuilt.cached and rebuilt.sequence_file.exists() and rows_of(rebuilt) == EXPECTED


def test_interrupted_rebuild_is_never_served_from_the_old_manifest(tmp_path, monkeypatch):
    import ID_generation.preprocessing.pipeline as pipeline

    write_dataset(tmp_path / "raw")
    first = preprocess(config(tmp_path))
    real_write_json = pipeline.write_json

    def crash_on_id2meta(path, obj, indent=2):
        if "id2meta" in str(path):
            raise KeyboardInterrupt
        real_write_json(path, obj, indent)

    monkeypatch.setattr(pipeline, "write_json", crash_on_id2meta)
    with pytest.raises(KeyboardInterrupt):  # a rebuild under other settings stops half-way
        preprocess(config(tmp_path, user_core=2, item_core=2))
    monkeypatch.setattr(pipeline, "write_json", real_write_json)
    again = preprocess(config(tmp_path))
    assert not again.cached and rows_of(again) == rows_of(first) and again.item_texts == first.item_texts


# --------------------------------------------------------------------------------------------
# Duplicates and look-alike ids


def test_duplicated_interaction_row_counts_once_with_a_warning(tmp_path, capsys):
    write_dataset(tmp_path / "raw", rows=ROWS + [ROWS[1], ROWS[1]])  # lines 10, 11 repeat line 3
    data = preprocess(config(tmp_path))
    assert rows_of(data) == EXPECTED
    out = capsys.readouterr().out
    assert "2 interaction(s) repeat an earlier one" in out and "lines 10, 11" in out and "counted once" in out


def test_item_listed_twice_with_other_texts_is_refused_naming_the_lines(tmp_path):
    write_dataset(tmp_path / "raw", items=ITEMS + [("plum", "Sour plum")])
    message = error_of(tmp_path)
    assert "items.csv, lines 5, 7" in message and "'plum'" in message and "different texts" in message


def test_item_listed_twice_with_the_same_text_is_accepted(tmp_path):
    write_dataset(tmp_path / "raw", items=ITEMS + [("plum", "Plum")])
    assert preprocess(config(tmp_path)).item_texts == EXPECTED_TEXTS


def test_id_with_trailing_spaces_is_refused_naming_the_line(tmp_path):
    write_dataset(tmp_path / "raw", rows=ROWS[:3] + [("alice ", "apple", 5)] + ROWS[4:])
    message = error_of(tmp_path)
    assert "interactions.csv, line 5" in message and "'alice '" in message and "remove the spaces" in message
