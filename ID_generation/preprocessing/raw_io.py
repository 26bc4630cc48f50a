"""Reading raw record files: JSON lines and Python-literal lines, gzip or plain.

Amazon 2014 metadata and the Steam files hold one *Python dict literal* a line; they are parsed
with `ast.literal_eval` (never `eval`). A malformed line fails with the file and line number.
"""
from __future__ import annotations

import ast
import gzip
import json
import re
from pathlib import Path
from typing import Callable, Iterator


class RawDataError(ValueError):
    """A raw input file is malformed."""


def open_text(path: Path):
    """Open a raw file for reading as text, transparently gunzipping `.gz` files."""
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def parse_line(line: str, path: Path, line_no: int) -> dict:
    """One record from a JSON or Python-literal line; RawDataError naming file:line if neither."""
    try:
        record = json.loads(line) if line.lstrip().startswith('{"') else ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        try:  # JSON spelling of booleans (true/false/null) inside a literal-looking line
            record = json.loads(line)
        except ValueError:
            raise RawDataError(f"{path}, line {line_no}: not a JSON object or Python dict literal "
                               f"({type(exc).__name__}: {exc}). The line starts: {line[:120]!r}") from None
    if not isinstance(record, dict):
        raise RawDataError(f"{path}, line {line_no}: expected a dict record, got {type(record).__name__}")
    return record


def iter_records(path: Path, keep_line: Callable[[str], bool] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for every non-blank line; `keep_line` pre-filters raw lines cheaply."""
    path = Path(path)
    try:
        with open_text(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip() or (keep_line is not None and not keep_line(line)):
                    continue
                yield line_no, parse_line(line, path, line_no)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise RawDataError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); "
                           "the file may be truncated or not gzip — delete it and fetch it again") from None


def require_fields(record: dict, fields: tuple[str, ...], path: Path, line_no: int) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise RawDataError(f"{path}, line {line_no}: record lacks field(s) {', '.join(missing)}")


def key_filter(key: str, wanted: set[str]) -> Callable[[str], bool]:
    """A cheap line pre-filter: keep lines whose `'key': 'value'` names a wanted value.

    Lines where the pattern is not found are kept (and parsed), so the filter never drops a record
    it cannot read; it only skips the many metadata lines of items that are not in the data.
    """
    pattern = re.compile(r"""['"]%s['"]\s*:\s*['"]([^'"]*)['"]""" % re.escape(key))

    def keep(line: str) -> bool:
        match = pattern.search(line)
        return match is None or match.group(1) in wanted

    return keep
