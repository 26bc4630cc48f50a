"""Item text: cleaning and the published templates (docs/method.md §2).

Amazon: `This item is called '{title}'. It is priced at {price}. It is manufactured by '{brand}'.
It belongs to the categories of {categories}. `, each part only when its field is present (title
and brand also non-empty). Steam: `This game is called '{title}'. Developed by {publisher}, this game
is priced at {price}. This game features a variety of gameplay modes including {specs}. Tags of the
game include: {tags}. `

Two cleanings (`dataset.text_cleaning`):
- `published` (default for Amazon and Steam): byte for byte what the published preprocessing
  writes, so the embeddings and semantic IDs are those of the published runs. Amazon values are
  cleaned in the published order (unescape, strip, drop tags, tabs/newlines to spaces, collapse
  spaces, then non-ASCII to spaces, so a replaced character can leave a double or trailing space),
  and every `true`/`false` of a raw metadata line is capitalised before parsing (`READ_FIXES`).
  Steam values are used raw.
- `tidy`: every value of either source cleaned by `tidy_text` (also non-ASCII to spaces, but spaces
  collapsed and stripped last, carriage returns too), raw lines parsed as they are. The default for
  your own data.
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

_TAG = re.compile(r"<[^>]+>")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_TAB_NEWLINE_PUBLISHED = re.compile(r"[\n\t]")  # the published cleaning keeps carriage returns
_NON_ASCII = re.compile(r"[^\x00-\x7F]")
_SPACES = re.compile(r" +")


def tidy_text(value: Any) -> str:
    """Unescape HTML entities, drop tags, tabs/newlines and non-ASCII to spaces, collapse, strip."""
    text = html.unescape(str(value))
    text = _TAG.sub("", text)
    text = _TAB_NEWLINE.sub(" ", text)
    text = _NON_ASCII.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def published_text(value: Any) -> str:
    """The published cleaning of one Amazon value, in its order; lists are joined by ', ' first."""
    text = html.unescape(_comma_joined(value)).strip()
    text = _TAG.sub("", text)
    text = _TAB_NEWLINE_PUBLISHED.sub(" ", text)
    text = _SPACES.sub(" ", text)
    return _NON_ASCII.sub(" ", text)  # last: nothing is collapsed or stripped after it


def _comma_joined(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_comma_joined(v) for v in value)
    return str(value)


def capitalise_literal_names(line: str) -> str:
    """What the published Amazon reader does to a raw line before `eval`: every `true` → `True`
    and `false` → `False`, wherever they stand (inside titles too: `untrue` → `unTrue`)."""
    return line.replace("true", "True").replace("false", "False")


# Per cleaning: the raw-line rewrite before parsing an Amazon metadata line, and the cleaner of a
# single free-text value (your own data's texts).
READ_FIXES: dict[str, Callable[[str], str] | None] = {"published": capitalise_literal_names, "tidy": None}
VALUE_CLEANERS: dict[str, Callable[[Any], str]] = {"published": published_text, "tidy": tidy_text}


# --------------------------------------------------------------------------------------------
# Amazon


def _present(meta: dict, key: str, features: tuple[str, ...]) -> bool:
    # A None value would crash the published code; here it counts as absent.
    return key in features and key in meta and meta[key] is not None


def _published_amazon_value(value: Any) -> str:
    """A value as the published template prints it: a number with a full stop after it, category
    paths without their top-level entry joined by ', ', other lists concatenated, text cleaned."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value}."
    if isinstance(value, list) and value and isinstance(value[0], list):
        return ", ".join(published_text(entry) for path in value for entry in path[1:])
    if isinstance(value, list):
        return "".join(published_text(v) for v in value)
    return published_text(value)


def _tidy_amazon_value(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):  # category paths, each without its top-level entry
        return ", ".join(tidy_text(c) for path in value for c in (path[1:] if isinstance(path, list) else [path]))
    return tidy_text(value)


def amazon_item_text(meta: dict, features: tuple[str, ...] = ("title", "price", "brand", "categories"),
                     cleaning: str = "published") -> str:
    """The published Amazon template for one metadata record."""
    # Published: a numeric price brings its own full stop ("12.0."), any other price has none.
    value, price_end = (_published_amazon_value, " ") if cleaning == "published" else (_tidy_amazon_value, ". ")
    text = ""
    if _present(meta, "title", features) and meta["title"] != "":
        text += f"This item is called '{value(meta['title'])}'. "
    if _present(meta, "price", features):
        text += f"It is priced at {value(meta['price'])}{price_end}"
    if _present(meta, "brand", features) and meta["brand"] != "":
        text += f"It is manufactured by '{value(meta['brand'])}'. "
    if _present(meta, "categories", features):
        text += f"It belongs to the categories of {value(meta['categories'])}. "
    return text


# --------------------------------------------------------------------------------------------
# Steam


def _published_steam_fields(game: dict) -> dict[str, str]:
    """The published Steam fields, raw: lists joined by spaces (missing: `Unknown`, empty: ``),
    price `0` and publisher `Unknown` when missing, every value through str() (`None` → `None`)."""
    def spaced(key: str) -> str:
        return " ".join(str(v) for v in game[key]) if key in game else "Unknown"

    return {"title": str(game["title"]) if "title" in game else "",
            "publisher": str(game.get("publisher", "Unknown")), "price": str(game.get("price", 0)),
            "specs": ", ".join(spaced("specs").split(" ")), "tags": spaced("tags")}


def _tidy_steam_fields(game: dict) -> dict[str, str]:
    def joined(key: str, sep: str) -> str:
        value = game.get(key)
        if not value:
            return "Unknown"
        return sep.join(tidy_text(v) for v in value) if isinstance(value, list) else tidy_text(value)

    publisher = game.get("publisher", "Unknown")
    return {"title": tidy_text(game["title"]) if game.get("title") else "",
            "publisher": "" if publisher in ("", None) else tidy_text(publisher),
            "price": tidy_text(game.get("price", 0)), "specs": joined("specs", ", "), "tags": joined("tags", " ")}


def steam_item_text(game: dict, features: tuple[str, ...] = ("title", "genre", "specs", "tags", "price", "publisher"),
                    cleaning: str = "published") -> str:
    """The published Steam template for one `steam_games` record. A title or publisher part is left
    out when its value is empty (a missing title counts as empty; the published code would stop)."""
    fields = (_published_steam_fields if cleaning == "published" else _tidy_steam_fields)(game)
    text = ""
    if "title" in features and fields["title"] != "":
        text += f"This game is called '{fields['title']}'. "
    if "publisher" in features and fields["publisher"] != "":
        text += f"Developed by {fields['publisher']}, "
    if "price" in features:
        text += f"this game is priced at {fields['price']}. "
    if "specs" in features:
        text += f"This game features a variety of gameplay modes including {fields['specs']}. "
    if "tags" in features:
        text += f"Tags of the game include: {fields['tags']}. "
    return text
