"""Item text: cleaning and the published templates (SPEC §2).

Amazon: `This item is called '{title}'. It is priced at {price}. It is manufactured by '{brand}'.
It belongs to the categories of {categories}. `, each part only when its field is present (title
and brand also non-empty). Steam: `This game is called '{title}'. Developed by {publisher}, this game
is priced at {price}. This game features a variety of gameplay modes including {specs}. Tags of the
game include: {tags}. `
"""
from __future__ import annotations

import html
import re
from typing import Any

_TAG = re.compile(r"<[^>]+>")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_NON_ASCII = re.compile(r"[^\x00-\x7F]")
_SPACES = re.compile(r" +")


def clean_text(value: Any) -> str:
    """Unescape HTML entities, drop tags, tabs/newlines and non-ASCII to spaces, collapse, strip."""
    text = html.unescape(str(value))
    text = _TAG.sub("", text)
    text = _TAB_NEWLINE.sub(" ", text)
    text = _NON_ASCII.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _present(meta: dict, key: str, features: tuple[str, ...]) -> bool:
    return key in features and key in meta and meta[key] is not None


def amazon_categories(categories: Any) -> str:
    """Every entry of every category list except each list's first (top-level) one, joined by ', '."""
    if isinstance(categories, str):
        return clean_text(categories)
    entries = [clean_text(c) for path in categories for c in (path[1:] if isinstance(path, list) else [path])]
    return ", ".join(entries)


def amazon_item_text(meta: dict, features: tuple[str, ...] = ("title", "price", "brand", "categories")) -> str:
    """The published Amazon template for one metadata record."""
    text = ""
    if _present(meta, "title", features) and meta["title"] != "":
        text += f"This item is called '{clean_text(meta['title'])}'. "
    if _present(meta, "price", features):
        price = meta["price"] if isinstance(meta["price"], (int, float)) else clean_text(meta["price"])
        text += f"It is priced at {price}. "
    if _present(meta, "brand", features) and meta["brand"] != "":
        text += f"It is manufactured by '{clean_text(meta['brand'])}'. "
    if _present(meta, "categories", features):
        text += f"It belongs to the categories of {amazon_categories(meta['categories'])}. "
    return text


def _joined(meta: dict, key: str, sep: str) -> str:
    value = meta.get(key)
    if not value:
        return "Unknown"
    return sep.join(clean_text(v) for v in value) if isinstance(value, list) else clean_text(value)


def steam_item_text(meta: dict, features: tuple[str, ...] = ("title", "genre", "specs", "tags", "price", "publisher")) -> str:
    """The published Steam template for one `steam_games` record (missing lists read `Unknown`)."""
    text = ""
    if "title" in features and meta.get("title"):
        text += f"This game is called '{clean_text(meta['title'])}'. "
    publisher = meta.get("publisher", "Unknown")
    if "publisher" in features and publisher not in ("", None):
        text += f"Developed by {clean_text(publisher)}, "
    if "price" in features:
        text += f"this game is priced at {clean_text(meta.get('price', 0))}. "
    if "specs" in features:
        text += f"This game features a variety of gameplay modes including {_joined(meta, 'specs', ', ')}. "
    if "tags" in features:
        text += f"Tags of the game include: {_joined(meta, 'tags', ' ')}. "
    return text
