"""Item-text cleaning and the published Amazon and Steam templates, under both cleanings."""
import gzip

from ID_generation.preprocessing.amazon import AmazonSource
from ID_generation.preprocessing.text import (
    amazon_item_text,
    capitalise_literal_names,
    published_text,
    steam_item_text,
    tidy_text,
)
from test_raw_io import review, write_lines


def test_tidy_text_unescapes_strips_tags_and_normalises_spaces():
    assert tidy_text("Dr. Scholl&#39;s &amp; Co") == "Dr. Scholl's & Co"
    assert tidy_text("<b>Bold</b> <br/>text") == "Bold text"
    assert tidy_text("a\tb\nc\r\nd") == "a b c d"
    assert tidy_text("Caf\u00e9 \u2122 Noir") == "Caf Noir"
    assert tidy_text("  many    spaces  ") == "many spaces"
    assert tidy_text(12.5) == "12.5"


def test_published_text_replaces_non_ascii_last_and_strips_first():
    assert published_text("Dr. Scholl&#39;s &amp; Co") == "Dr. Scholl's & Co"
    assert published_text("WEN&reg; Sweet") == "WEN  Sweet"         # collapsed before the replacement
    assert published_text("by Cheeky\u00ae") == "by Cheeky "          # no strip after it
    assert published_text("  a    b  ") == "a b"                       # stripped, then collapsed
    assert published_text("<b>x</b> ") == "x"                          # stripped before tags go
    assert published_text(" <b>x</b> <i> </i>") == "x "                # ... so a tag can leave a space
    assert published_text("a\tb\nc") == "a b c"
    assert published_text("a\rb") == "a\rb"                           # only tabs and newlines
    assert published_text(["a", ["b", "c"]]) == "a, b, c"              # lists joined by ', ' first


def test_capitalise_literal_names_rewrites_every_occurrence():
    line = "{'title': 'untrue false lashes', 'flag': true, 'other': false}"
    assert capitalise_literal_names(line) == "{'title': 'unTrue False lashes', 'flag': True, 'other': False}"


def test_amazon_template_all_fields_in_order():
    meta = {"asin": "X", "title": "OPI Nail Lacquer", "price": 12.0, "brand": "OPI",
            "categories": [["Beauty", "Makeup", "Nails"], ["Beauty", "Gifts"]]}
    expected = ("This item is called 'OPI Nail Lacquer'. It is priced at 12.0. It is manufactured by 'OPI'. "
                "It belongs to the categories of Makeup, Nails, Gifts. ")
    assert amazon_item_text(meta) == expected
    assert amazon_item_text(meta, cleaning="tidy") == expected


def test_amazon_template_omits_absent_or_empty_parts():
    for cleaning in ("published", "tidy"):
        assert amazon_item_text({"title": "", "brand": "", "categories": [["Beauty", "Skin"]]},
                                cleaning=cleaning) == "It belongs to the categories of Skin. "
        assert amazon_item_text({"title": "T", "price": 3.04}, cleaning=cleaning) == \
            "This item is called 'T'. It is priced at 3.04. "
        # features_needed restricts the parts used
        assert amazon_item_text({"title": "T", "price": 3.0, "brand": "B"}, ("title", "brand"), cleaning) == \
            "This item is called 'T'. It is manufactured by 'B'. "


def test_amazon_published_quirks_differ_from_tidy():
    meta = {"title": "WEN&reg; Sweet\u00ae", "price": "$5", "brand": " Brand ", "categories": [["Top"]]}
    assert amazon_item_text(meta) == ("This item is called 'WEN  Sweet '. It is priced at $5 "
                                      "It is manufactured by 'Brand'. It belongs to the categories of . ")
    assert amazon_item_text(meta, cleaning="tidy") == (
        "This item is called 'WEN Sweet'. It is priced at $5. It is manufactured by 'Brand'. "
        "It belongs to the categories of . ")


def test_amazon_reader_capitalises_true_and_false_only_when_published(tmp_path):
    texts = {}
    for cleaning in ("published", "tidy"):
        source = AmazonSource(tmp_path / cleaning, "Beauty", ("title",), cleaning, downloadable=False)
        source.folder.mkdir(parents=True)
        write_lines(source.reviews_path, [review("U1", "A", 1)])
        with gzip.open(source.meta_path, "wt") as handle:
            handle.write("{'asin': 'A', 'title': 'untrue false lashes', 'gift': true}\n")
        texts[cleaning] = source.read_item_texts(source.read_interactions().items)
    assert texts["published"] == ["This item is called 'unTrue False lashes'. "]
    assert texts["tidy"] == ["This item is called 'untrue false lashes'. "]


STEAM_GAME = {"id": "1", "title": "Caf\u00e9 &amp; <i>Portal</i>", "publisher": "Valve", "price": 9.99,
              "specs": ["Single-player", "Steam Achievements"], "tags": ["Puzzle", "Sci-fi"]}


def test_steam_published_uses_raw_fields_and_splits_specs_on_spaces():
    assert steam_item_text(STEAM_GAME) == (
        "This game is called 'Caf\u00e9 &amp; <i>Portal</i>'. Developed by Valve, this game is priced at 9.99. "
        "This game features a variety of gameplay modes including Single-player, Steam, Achievements. "
        "Tags of the game include: Puzzle Sci-fi. ")


def test_steam_published_missing_empty_and_none_values():
    bare = steam_item_text({"id": "2", "title": "X"})
    assert bare == ("This game is called 'X'. Developed by Unknown, this game is priced at 0. This game features "
                    "a variety of gameplay modes including Unknown. Tags of the game include: Unknown. ")
    empty = steam_item_text({"id": "3", "title": "X", "publisher": None, "price": None, "specs": [], "tags": []})
    assert empty == ("This game is called 'X'. Developed by None, this game is priced at None. This game features "
                     "a variety of gameplay modes including . Tags of the game include: . ")
    nameless = steam_item_text({"id": "4", "title": "", "publisher": "", "price": "Free"})
    assert nameless.startswith("this game is priced at Free. ")


def test_steam_tidy_cleans_each_value():
    assert steam_item_text(STEAM_GAME, cleaning="tidy") == (
        "This game is called 'Caf & Portal'. Developed by Valve, this game is priced at 9.99. "
        "This game features a variety of gameplay modes including Single-player, Steam Achievements. "
        "Tags of the game include: Puzzle Sci-fi. ")
    bare = steam_item_text({"id": "2", "title": "X", "publisher": None, "specs": []}, cleaning="tidy")
    assert "Developed by" not in bare and "modes including Unknown." in bare and "include: Unknown." in bare
