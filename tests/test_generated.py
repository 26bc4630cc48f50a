"""Tests of the synthetic Amazon-format dataset generator (ID_generation/preprocessing/generated.py)."""
from __future__ import annotations

import ast
import dataclasses
import gzip
import json
import re
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

import pytest

from ID_generation.preprocessing.generated import (
    COLD_USERS_PER_ITEM,
    GeneratedFiles,
    build_catalogue,
    write_generated_dataset,
)
from src.config import GeneratorConfig

DEFAULT = GeneratorConfig(seed=0, n_users=1200, n_groups=12, items_per_group=16,
                          cold_items_per_group=2, min_seq_len=5, max_seq_len=14, p_follow=0.8)
NAME = "synthetic"


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def _reviews(files: GeneratedFiles) -> list[dict]:
    return [json.loads(line) for line in _lines(files.reviews)]


def _meta(files: GeneratedFiles) -> list[dict]:
    return [ast.literal_eval(line) for line in _lines(files.meta)]


def _sequences(reviews: list[dict]) -> dict[str, list[str]]:
    """Each user's asins in time order (as the consumer builds them)."""
    by_user = defaultdict(list)
    for r in reviews:
        by_user[r["reviewerID"]].append((r["unixReviewTime"], r["asin"]))
    return {u: [a for _, a in sorted(events)] for u, events in by_user.items()}


@pytest.fixture(scope="module")
def default_files(tmp_path_factory) -> GeneratedFiles:
    return write_generated_dataset(tmp_path_factory.mktemp("gen"), NAME, DEFAULT)


@pytest.fixture(scope="module")
def catalogue():
    return {item.asin: item for item in build_catalogue(DEFAULT)}


# --------------------------------------------------------------------------------------------
# Determinism and reuse.


def test_same_settings_give_identical_bytes_and_another_seed_differs(tmp_path):
    a = write_generated_dataset(tmp_path / "a", NAME, DEFAULT)
    b = write_generated_dataset(tmp_path / "b", NAME, DEFAULT)
    c = write_generated_dataset(tmp_path / "c", NAME, dataclasses.replace(DEFAULT, seed=1))
    assert a.reviews.read_bytes() == b.reviews.read_bytes()
    assert a.meta.read_bytes() == b.meta.read_bytes()
    assert a.cold_asins == b.cold_asins
    assert a.reviews.read_bytes() != c.reviews.read_bytes()
    assert a.meta.read_bytes() != c.meta.read_bytes()


def test_paths_follow_amazon_naming(tmp_path):
    files = write_generated_dataset(tmp_path, NAME, DEFAULT)
    assert files.reviews == tmp_path / "amazon" / f"reviews_{NAME}_5.json.gz"
    assert files.meta == tmp_path / "amazon" / f"meta_{NAME}.json.gz"
    manifest = json.loads((tmp_path / "amazon" / f"{NAME}.generator.json").read_text())
    assert manifest["settings"] == dataclasses.asdict(DEFAULT)
    assert tuple(manifest["cold_asins"]) == files.cold_asins
    assert sorted(p.name for p in (tmp_path / "amazon").iterdir()) == sorted(
        [files.reviews.name, files.meta.name, f"{NAME}.generator.json"])  # no temp files left


def test_second_call_with_same_settings_reuses_files(tmp_path):
    first = write_generated_dataset(tmp_path, NAME, DEFAULT)
    stamps = (first.reviews.stat().st_mtime_ns, first.meta.stat().st_mtime_ns)
    second = write_generated_dataset(tmp_path, NAME, DEFAULT)
    assert second == first
    assert (second.reviews.stat().st_mtime_ns, second.meta.stat().st_mtime_ns) == stamps


def test_changed_setting_rewrites_files(tmp_path):
    first = write_generated_dataset(tmp_path, NAME, DEFAULT)
    old = first.reviews.read_bytes()
    changed = dataclasses.replace(DEFAULT, p_follow=0.5)
    second = write_generated_dataset(tmp_path, NAME, changed)
    assert second.reviews.read_bytes() != old
    fresh = write_generated_dataset(tmp_path / "fresh", NAME, changed)
    assert second.reviews.read_bytes() == fresh.reviews.read_bytes()


def test_missing_file_or_broken_manifest_triggers_rewrite(tmp_path):
    files = write_generated_dataset(tmp_path, NAME, DEFAULT)
    expected = files.meta.read_bytes()
    files.meta.unlink()
    assert write_generated_dataset(tmp_path, NAME, DEFAULT).meta.read_bytes() == expected
    manifest = tmp_path / "amazon" / f"{NAME}.generator.json"
    manifest.write_text("{not json")
    stamp = files.reviews.stat().st_mtime_ns
    again = write_generated_dataset(tmp_path, NAME, DEFAULT)
    assert again.cold_asins == files.cold_asins
    assert json.loads(manifest.read_text())["settings"] == dataclasses.asdict(DEFAULT)
    assert files.reviews.stat().st_mtime_ns != stamp  # rewritten, not trusted


def test_interrupted_rewrite_is_not_mistaken_for_the_old_files(tmp_path, monkeypatch):
    import ID_generation.preprocessing.generated as generated
    write_generated_dataset(tmp_path, NAME, DEFAULT)
    real_write = generated._write_gzip_lines

    def write_reviews_then_fail(path, lines):
        if path.name.startswith("meta_"):
            raise KeyboardInterrupt
        real_write(path, lines)

    monkeypatch.setattr(generated, "_write_gzip_lines", write_reviews_then_fail)
    with pytest.raises(KeyboardInterrupt):  # new reviews written, meta not: a mixed state
        write_generated_dataset(tmp_path, NAME, dataclasses.replace(DEFAULT, seed=7))
    monkeypatch.undo()
    again = write_generated_dataset(tmp_path, NAME, DEFAULT)
    fresh = write_generated_dataset(tmp_path / "fresh", NAME, DEFAULT)
    assert again.reviews.read_bytes() == fresh.reviews.read_bytes()


# --------------------------------------------------------------------------------------------
# File formats.


def test_review_lines_are_json_with_amazon_fields(default_files):
    lines = _lines(default_files.reviews)
    for line in lines:
        r = json.loads(line)
        assert isinstance(r["reviewerID"], str) and re.fullmatch(r"U\d+", r["reviewerID"])
        assert isinstance(r["asin"], str) and len(r["asin"]) == 10
        assert isinstance(r["overall"], float) and r["overall"] in (1.0, 2.0, 3.0, 4.0, 5.0)
        assert isinstance(r["unixReviewTime"], int) and r["unixReviewTime"] % 86_400 == 0
    times = [json.loads(line)["unixReviewTime"] for line in lines]
    assert times != sorted(times)  # shuffled: the consumer has to sort by time


def test_meta_lines_are_python_literals_not_json(default_files):
    lines = _lines(default_files.meta)
    for line in lines:
        record = ast.literal_eval(line)
        assert isinstance(record, dict)
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
        assert isinstance(record["title"], str)
        assert "price" not in record or isinstance(record["price"], float)
        assert record["categories"][0][0] == "Beauty" and len(record["categories"][0]) == 3
    records = [ast.literal_eval(line) for line in lines]
    # The text template's edge cases occur: missing price, missing brand, an HTML entity.
    assert 0 < sum("price" not in m for m in records) < 0.15 * len(records)
    assert 0 < sum("brand" not in m for m in records) < 0.15 * len(records)
    assert any("&amp;" in m["title"] for m in records)


def test_every_reviewed_asin_has_exactly_one_meta_line(default_files):
    meta_asins = Counter(m["asin"] for m in _meta(default_files))
    assert all(n == 1 for n in meta_asins.values())
    assert all(len(a) == 10 for a in meta_asins)
    assert {r["asin"] for r in _reviews(default_files)} <= set(meta_asins)


def test_times_strictly_increase_within_each_user(default_files):
    by_user = defaultdict(list)
    for r in _reviews(default_files):
        by_user[r["reviewerID"]].append(r["unixReviewTime"])
    assert len(by_user) == DEFAULT.n_users
    for times in by_user.values():
        assert len(set(times)) == len(times)  # no ties, so sorting by time gives one order
        assert DEFAULT.min_seq_len <= len(times) <= DEFAULT.max_seq_len


# --------------------------------------------------------------------------------------------
# Structure.


def test_cold_items_occur_only_last_or_second_to_last_in_enough_users(default_files, catalogue):
    cold = set(default_files.cold_asins)
    assert cold == {a for a, item in catalogue.items() if item.cold}
    assert len(cold) == DEFAULT.n_groups * DEFAULT.cold_items_per_group
    users_per_cold, slots = Counter(), Counter()
    for seq in _sequences(_reviews(default_files)).values():
        for i, asin in enumerate(seq):
            if asin in cold:
                assert i >= len(seq) - 2, f"cold item {asin} at position {i} of {len(seq)}"
                users_per_cold[asin] += 1
                slots[len(seq) - i] += 1
        assert sum(a in cold for a in seq) <= 1  # a user carries at most one cold item
    assert all(users_per_cold[a] >= max(6, COLD_USERS_PER_ITEM) for a in cold)
    assert slots[1] > 0 and slots[2] > 0  # both last and second-to-last are used


def test_cold_item_replaces_an_item_of_its_own_group(default_files, catalogue):
    cold = set(default_files.cold_asins)
    brand = {item.group: item.meta["title"].split()[0] for item in catalogue.values()}
    for asin in cold:
        item = catalogue[asin]
        assert item.meta["title"].startswith(brand[item.group])
    # The warm item a cold item replaced was reached from the previous item by following (same
    # group) or by jumping (partner group), so the same must hold for the cold item.
    for seq in _sequences(_reviews(default_files)).values():
        for prev, cur in zip(seq, seq[1:]):
            if cur in cold:
                g_prev, g_cur = catalogue[prev].group, catalogue[cur].group
                assert g_cur in (g_prev, (g_prev + 1) % DEFAULT.n_groups)


def test_every_warm_item_is_seen_at_least_five_times_before_the_last_two(default_files, catalogue):
    total, early = Counter(), Counter()
    for seq in _sequences(_reviews(default_files)).values():
        total.update(seq)
        early.update(seq[:-2])
    warm = [a for a, item in catalogue.items() if not item.cold]
    assert len(warm) == DEFAULT.n_groups * DEFAULT.items_per_group
    assert all(total[a] >= 5 and early[a] >= 1 for a in warm)


def test_five_core_filtering_removes_nothing_and_users_repeat_no_item(default_files):
    sequences = _sequences(_reviews(default_files))
    item_counts = Counter(a for seq in sequences.values() for a in seq)
    assert min(item_counts.values()) >= 5
    assert min(len(seq) for seq in sequences.values()) >= 5
    assert all(len(set(seq)) == len(seq) for seq in sequences.values())


def _words(title: str) -> set[str]:
    return set(re.findall(r"[a-z]+", title.lower()))


def test_titles_share_more_words_within_a_group_than_across(catalogue):
    items = list(catalogue.values())
    within, across = [], []
    for a, b in combinations(items, 2):
        wa, wb = _words(a.meta["title"]), _words(b.meta["title"])
        (within if a.group == b.group else across).append(len(wa & wb) / len(wa | wb))
    mean_within, mean_across = sum(within) / len(within), sum(across) / len(across)
    assert mean_within > 0.3 and mean_across < 0.15 and mean_within > 3 * mean_across


def test_groups_have_distinct_brands_and_share_theme_within(catalogue):
    themes = defaultdict(set)
    for item in catalogue.values():
        themes[item.group].add((item.meta["title"].split(",")[0].split()[0],
                                tuple(item.meta["categories"][0])))
    assert all(len(t) == 1 for t in themes.values())  # one brand and category path per group
    brands = [next(iter(t))[0] for t in themes.values()]
    assert len(set(brands)) == DEFAULT.n_groups


def test_full_follow_walks_the_group_ring(tmp_path):
    gen = dataclasses.replace(DEFAULT, n_users=200, p_follow=1.0, cold_items_per_group=0)
    files = write_generated_dataset(tmp_path, NAME, gen)
    truth = {item.asin: item for item in build_catalogue(gen)}
    assert files.cold_asins == ()
    for seq in _sequences(_reviews(files)).values():
        for prev, cur in zip(seq, seq[1:]):
            p, c = truth[prev], truth[cur]
            assert c.group == p.group and c.position == (p.position + 1) % gen.items_per_group


def test_never_following_always_moves_to_the_partner_group(tmp_path):
    gen = dataclasses.replace(DEFAULT, n_users=200, p_follow=0.0, cold_items_per_group=0)
    files = write_generated_dataset(tmp_path, NAME, gen)
    group = {item.asin: item.group for item in build_catalogue(gen)}
    for seq in _sequences(_reviews(files)).values():
        assert all(group[b] == (group[a] + 1) % gen.n_groups for a, b in zip(seq, seq[1:]))


def test_catalogue_does_not_depend_on_user_settings():
    base = build_catalogue(DEFAULT)
    other = build_catalogue(dataclasses.replace(DEFAULT, n_users=500, p_follow=0.3))
    assert [(i.asin, i.meta) for i in base] == [(i.asin, i.meta) for i in other]


def test_too_few_users_for_the_cold_items_raises(tmp_path):
    gen = dataclasses.replace(DEFAULT, n_users=50)
    with pytest.raises(ValueError, match=r"n_users=50 is too small.*cold items"):
        write_generated_dataset(tmp_path, NAME, gen)
    assert not (tmp_path / "amazon" / f"{NAME}.generator.json").exists()
