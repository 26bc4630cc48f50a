"""Item-text cleaning and the published Amazon and Steam templates."""
from ID_generation.preprocessing.text import amazon_item_text, clean_text, steam_item_text


def test_clean_text_unescapes_strips_tags_and_normalises_spaces():
    assert clean_text("Dr. Scholl&#39;s &amp; Co") == "Dr. Scholl's & Co"
    assert clean_text("<b>Bold</b> <br/>text") == "Bold text"
    assert clean_text("a\tb\nc\r\nd") == "a b c d"
    assert clean_text("Caf\u00e9 \u2122 Noir") == "Caf Noir"
    assert clean_text("  many    spaces  ") == "many spaces"
    assert clean_text(12.5) == "12.5"


def test_amazon_template_all_fields_in_order():
    meta = {"asin": "X", "title": "OPI Nail Lacquer", "price": 12.0, "brand": "OPI",
            "categories": [["Beauty", "Makeup", "Nails"], ["Beauty", "Gifts"]]}
    assert amazon_item_text(meta) == ("This item is called 'OPI Nail Lacquer'. It is priced at 12.0. "
                                      "It is manufactured by 'OPI'. It belongs to the categories of "
                                      "Makeup, Nails, Gifts. ")


def test_amazon_template_omits_absent_or_empty_parts():
    assert amazon_item_text({"title": "", "brand": "", "categories": [["Beauty", "Skin"]]}) == \
        "It belongs to the categories of Skin. "
    assert amazon_item_text({"title": "T", "price": 3.04}) == "This item is called 'T'. It is priced at 3.04. "
    # features_needed restricts the parts used
    assert amazon_item_text({"title": "T", "price": 3.0, "brand": "B"}, ("title", "brand")) == \
        "This item is called 'T'. It is manufactured by 'B'. "


def test_steam_template_and_unknown_lists():
    game = {"id": "1", "title": "Portal", "publisher": "Valve", "price": 9.99,
            "specs": ["Single-player", "Steam Achievements"], "tags": ["Puzzle", "Sci-fi"]}
    assert steam_item_text(game) == (
        "This game is called 'Portal'. Developed by Valve, this game is priced at 9.99. This game features a "
        "variety of gameplay modes including Single-player, Steam Achievements. Tags of the game include: "
        "Puzzle Sci-fi. ")
    bare = steam_item_text({"id": "2", "title": "X"})
    assert "modes including Unknown." in bare and "include: Unknown." in bare and "Developed by Unknown," in bare
