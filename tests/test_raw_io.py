"""Tests of raw record reading (ID_generation/preprocessing/raw_io.py) and its use by AmazonSource."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ID_generation.preprocessing.amazon import AmazonSource
from ID_generation.preprocessing.raw_io import RawDataError, iter_records, key_filter, parse_line, require_fields

GOOD_JSON = json.dumps({"reviewerID": "U1", "asin": "A", "unixReviewTime": 100})
GOOD_LITERAL = repr({"asin": "B", "title": "Nail Lacquer", "price": 4.5, "categories": [["Beauty", "Nails"]]})
MALFORMED = "{'asin': 'C', 'title': 'unterminated"


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write `lines` (newline-terminated) to `path`, gzipped when the name ends in .gz."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def review(user: str, asin: str, time: int | None = 1_300_000_000) -> str:
    record = {"reviewerID": user, "asin": asin, "overall": 5.0}
    if time is not None:
        record["unixReviewTime"] = time
    return json.dumps(record)


# --------------------------------------------------------------------------------------------
# parse_line


def test_python_literal_line_with_single_quotes_nested_lists_and_floats_parses():
    line = "{'asin': 'B0001', 'price': 12.5, 'categories': [['Beauty', 'Makeup', 'Nails']], 'rank': {'Beauty': 3}}"
    assert parse_line(line, Path("meta.json.gz"), 1) == {
        "asin": "B0001", "price": 12.5, "categories": [["Beauty", "Makeup", "Nails"]], "rank": {"Beauty": 3}}


def test_python_literal_with_python_booleans_and_none_parses():
    assert parse_line("{'a': True, 'b': None, 'c': (1, 2)}", Path("f"), 1) == {"a": True, "b": None, "c": (1, 2)}


def test_json_line_parses():
    line = '{"reviewerID": "U1", "asin": "A", "overall": 4.0, "helpful": [0, 1], "verified": false}'
    assert parse_line(line, Path("reviews.json"), 1) == {
        "reviewerID": "U1", "asin": "A", "overall": 4.0, "helpful": [0, 1], "verified": False}


def test_json_line_not_starting_with_brace_quote_and_json_literals_parses():
    # Not the '{"' prefix, so it first goes to literal_eval, which fails on `true`; JSON must take over.
    assert parse_line('{ "a": true, "b": false, "c": null }', Path("f"), 1) == {"a": True, "b": False, "c": None}


def test_single_quoted_literal_line_with_json_boolean_parses():
    assert parse_line("{'asin': 'A', 'in_stock': true}", Path("f"), 1) == {"asin": "A", "in_stock": True}


def test_python_literal_starting_with_double_quoted_key_parses():
    assert parse_line("{\"it's\": True, 'b': 'x'}", Path("f"), 1) == {"it's": True, "b": "x"}


@pytest.mark.parametrize("line", [
    "__import__('os').system('echo hi')",
    "{'a': 1 + 1}",
    "{'a': open('/etc/passwd').read()}",
    "{'a': [x for x in range(3)]}",
])
def test_eval_only_lines_are_rejected_not_evaluated(line):
    with pytest.raises(RawDataError, match="line 5"):
        parse_line(line, Path("meta.json"), 5)


def test_non_dict_record_is_rejected():
    with pytest.raises(RawDataError, match=r"line 2: expected a dict record, got list"):
        parse_line("[1, 2, 3]", Path("f"), 2)


def test_literal_with_unhashable_key_fails_with_file_and_line():
    with pytest.raises(RawDataError, match=r"meta\.json, line 9"):
        parse_line("{[1]: 2}", Path("meta.json"), 9)


# --------------------------------------------------------------------------------------------
# iter_records: line numbers, blank lines, broken files


@pytest.mark.parametrize("suffix", [".json.gz", ".json"])
def test_malformed_third_line_names_file_and_line(tmp_path, suffix):
    path = write_lines(tmp_path / f"meta{suffix}", [GOOD_LITERAL, GOOD_JSON, MALFORMED, GOOD_JSON])
    with pytest.raises(RawDataError) as info:
        list(iter_records(path))
    assert str(path) in str(info.value)
    assert "line 3" in str(info.value)


@pytest.mark.parametrize("suffix", [".json.gz", ".json"])
def test_blank_lines_are_skipped_but_counted(tmp_path, suffix):
    path = write_lines(tmp_path / f"meta{suffix}", [GOOD_JSON, "", "   ", GOOD_LITERAL])
    assert list(iter_records(path)) == [(1, json.loads(GOOD_JSON)), (4, parse_line(GOOD_LITERAL, path, 4))]
    bad = write_lines(tmp_path / f"bad{suffix}", [GOOD_JSON, "", MALFORMED])
    with pytest.raises(RawDataError, match="line 3"):
        list(iter_records(bad))


def test_records_before_a_malformed_line_are_yielded_in_order(tmp_path):
    path = write_lines(tmp_path / "r.json", [GOOD_JSON, GOOD_LITERAL, MALFORMED])
    records = iter_records(path)
    assert next(records)[0] == 1
    assert next(records)[0] == 2
    with pytest.raises(RawDataError, match="line 3"):
        next(records)


def test_truncated_gzip_gives_raw_data_error_naming_file(tmp_path):
    lines = [review(f"U{i}", f"A{i % 50}", 1_300_000_000 + i) for i in range(3000)]
    full = gzip.compress("".join(line + "\n" for line in lines).encode())
    path = tmp_path / "reviews_X_5.json.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(RawDataError) as info:
        list(iter_records(path))
    assert str(path) in str(info.value)
    assert not isinstance(info.value, EOFError)


def test_plain_text_with_gz_name_gives_raw_data_error_naming_file(tmp_path):
    path = tmp_path / "meta_X.json.gz"
    path.write_text(GOOD_JSON + "\n")
    with pytest.raises(RawDataError, match="meta_X.json.gz"):
        list(iter_records(path))


def test_corrupted_gzip_gives_raw_data_error_naming_file(tmp_path):
    lines = [review(f"U{i}", f"A{i % 50}", 1_300_000_000 + i) for i in range(3000)]
    data = bytearray(gzip.compress("".join(line + "\n" for line in lines).encode()))
    for k in range(200, 400):
        data[k] ^= 0xFF
    path = tmp_path / "reviews_X_5.json.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(RawDataError, match="reviews_X_5.json.gz"):
        list(iter_records(path))


# --------------------------------------------------------------------------------------------
# key_filter


@pytest.mark.parametrize("line, kept", [
    ("{'asin': 'A', 'title': 'x'}", True),
    ('{"asin": "A", "title": "x"}', True),
    ("{'title': 'x', 'asin' : 'A'}", True),
    ("{'asin': 'B', 'title': 'x'}", False),
    ('{"asin": "AB"}', False),
    ("{'title': 'no id here'}", True),
    ("{'parent_asin': 'B', 'title': 'x'}", True),
])
def test_key_filter_keeps_wanted_and_keyless_lines(line, kept):
    assert key_filter("asin", {"A"})(line) is kept


def test_iter_records_with_keep_line_yields_only_kept_records_with_true_line_numbers(tmp_path):
    path = write_lines(tmp_path / "meta.json.gz", [
        "{'asin': 'B', 'title': 'b'}",
        "{'asin': 'A', 'title': 'a'}",
        "",
        "{'asin': 'C', 'title': 'unterminated",  # skipped before parsing, so not an error
        "{'title': 'keyless'}",
        '{"asin": "A", "title": "a2"}',
    ])
    got = list(iter_records(path, keep_line=key_filter("asin", {"A"})))
    assert got == [(2, {"asin": "A", "title": "a"}), (5, {"title": "keyless"}),
                   (6, {"asin": "A", "title": "a2"})]


# --------------------------------------------------------------------------------------------
# require_fields and AmazonSource


def test_require_fields_names_file_line_and_missing_fields():
    require_fields({"a": 1, "b": 2}, ("a", "b"), Path("x.json"), 1)  # all present: no error
    with pytest.raises(RawDataError) as info:
        require_fields({"a": 1}, ("a", "unixReviewTime", "asin"), Path("data/x.json"), 12)
    message = str(info.value)
    assert "data/x.json" in message and "line 12" in message
    assert "unixReviewTime" in message and "asin" in message


def _amazon(tmp_path: Path, review_lines: list[str]) -> AmazonSource:
    source = AmazonSource(tmp_path, "Beauty", ("title",), "published", downloadable=False)
    source.folder.mkdir(parents=True, exist_ok=True)
    write_lines(source.reviews_path, review_lines)
    return source


def test_amazon_reads_interactions_in_file_order(tmp_path):
    source = _amazon(tmp_path, [review("U1", "A", 30), "", review("U2", "B", 10), review("U1", "B", 20)])
    got = source.read_interactions()
    assert got.users.tolist() == ["U1", "U2", "U1"]
    assert got.items.tolist() == ["A", "B", "B"]
    assert got.times.tolist() == [30, 10, 20]


def test_amazon_review_without_time_names_file_and_line(tmp_path):
    source = _amazon(tmp_path, [review("U1", "A"), review("U2", "B"), "", review("U3", "C", None),
                                review("U4", "D")])
    with pytest.raises(RawDataError) as info:
        source.read_interactions()
    message = str(info.value)
    assert str(source.reviews_path) in message and "line 4" in message and "unixReviewTime" in message


def test_amazon_review_with_non_numeric_time_names_file_and_line(tmp_path):
    source = _amazon(tmp_path, [review("U1", "A"), json.dumps({"reviewerID": "U2", "asin": "B",
                                                                "unixReviewTime": "soon"})])
    with pytest.raises(RawDataError, match="line 2"):
        source.read_interactions()


def test_duplicated_amazon_review_lines_are_kept_as_published_and_reported(tmp_path, capsys):
    import json

    from ID_generation.preprocessing.amazon import AmazonSource

    folder = tmp_path / "amazon"
    folder.mkdir()
    reviews = [{"reviewerID": "u1", "asin": "a", "unixReviewTime": 1},
               {"reviewerID": "u1", "asin": "b", "unixReviewTime": 2}]
    lines = [json.dumps(r) for r in (*reviews, reviews[1])]  # line 3 repeats line 2
    (folder / "reviews_Beauty_5.json.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    interactions = AmazonSource(tmp_path, "Beauty", ("title",), "published").read_interactions()
    assert len(interactions.items) == 3  # the published preprocessing counts both
    out = capsys.readouterr().out
    assert "1 interaction(s) repeat an earlier one" in out and "lines 3" in out and "published" in out


def test_empty_reviews_file_is_named_as_empty_not_as_a_core_filter_problem(tmp_path):
    from ID_generation.preprocessing import preprocess
    from src.config import DataConfig

    folder = tmp_path / "raw" / "amazon"
    folder.mkdir(parents=True)
    (folder / "reviews_Beauty_5.json.gz").write_bytes(gzip.compress(b""))
    (folder / "meta_Beauty.json.gz").write_bytes(gzip.compress(b""))
    cfg = DataConfig(type="Amazon", name="Beauty", raw_data_path=tmp_path / "raw", processed_data_path=tmp_path / "p",
                     max_items_per_seq=20, features_needed=("title",), prompt_format="amazon",
                     text_cleaning="published", user_core=5, item_core=5, user_stride=1, content_model="x",
                     embedding_batch_size=8, generator=None)
    with pytest.raises(RawDataError,
                       match="reviews_Beauty_5.json.gz: no interaction could be read \\(the file is empty\\)"):
        preprocess(cfg)


def test_a_byte_that_is_not_utf8_is_named_at_its_line(tmp_path):
    path = tmp_path / "reviews.json.gz"
    lines = [b'{"a": 1}', b'{"a": 2}', b'{"a": "caf\xe9"}']
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(RawDataError, match="line 3: not UTF-8 text"):
        list(iter_records(path))
