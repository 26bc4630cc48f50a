"""Write the digest of every item text the *published* preprocessing gives for an Amazon dataset.

The test `tests/test_beauty.py::test_every_item_text_equals_the_published_preprocessing` compares
the project's texts with `tests/fixtures/{name}_published_text_digests.txt.gz`, which this script
made by running the published code itself (facebookresearch/liger, `ID_generation/preprocessing/
data_process.py`, read from a checkout you point it at; it is imported, never copied):

    python scripts/dev/published_text_digests.py --published /path/to/liger \
        --raw RAW_DIR --name Beauty --out tests/fixtures/Beauty_published_text_digests.txt.gz

One line per item id 1..N: the first 16 hex digits of the SHA-256 of its UTF-8 text. The published
module imports `requests` and `wget` for downloads; the raw files must already be in place, so
empty stand-ins are installed for those two modules.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

DIGEST_HEX = 16
FEATURES = ["title", "price", "brand", "categories"]


def text_digest(text: str) -> str:
    """The fixture's digest of one item text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_HEX]


def published_texts(published: Path, raw: Path, name: str) -> list[str]:
    """Item texts 1..N as the published preprocessing writes them."""
    for stand_in in ("requests", "wget"):
        sys.modules.setdefault(stand_in, types.ModuleType(stand_in))
    spec = importlib.util.spec_from_file_location(
        "published_data_process", published / "ID_generation" / "preprocessing" / "data_process.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory() as out:
        _, id2meta_file, _ = module.preprocessing({
            "name": name, "type": "Amazon", "features_needed": FEATURES, "prompt_format": "amazon",
            "raw_data_path": str(raw), "processed_data_path": out})
        id2meta = json.loads(Path(id2meta_file).read_text())
    return [id2meta[str(i)] for i in range(1, len(id2meta) + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--published", type=Path, required=True, help="a checkout of facebookresearch/liger")
    parser.add_argument("--raw", type=Path, required=True, help="folder holding amazon/reviews_* and amazon/meta_*")
    parser.add_argument("--name", default="Beauty")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    texts = published_texts(args.published.resolve(), args.raw.resolve(), args.name)
    lines = "".join(text_digest(t) + "\n" for t in texts).encode("ascii")
    args.out.write_bytes(gzip.compress(lines, mtime=0))  # mtime 0: the same bytes on every run
    print(f"{len(texts)} item texts of {args.name} -> {args.out}")


if __name__ == "__main__":
    main()
