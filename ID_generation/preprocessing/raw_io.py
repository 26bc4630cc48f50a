"""Reading raw record files: JSON lines and Python-literal lines, gzip or plain.

Amazon 2014 metadata and the Steam files hold one *Python dict literal* a line; they are parsed
with `ast.literal_eval` (never `eval`). A malformed line fails with the file and line number.
"""
from __future__ import annotations

import ast
import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from src.errors import ExpectedError


class RawDataError(ExpectedError, ValueError):
    """A raw input file is malformed."""


def open_lines(path: Path):
    """Open a raw file for reading its lines as bytes, transparently gunzipping `.gz` files (each
    line is decoded on its own, so a byte that is not UTF-8 is reported at its line)."""
    path = Path(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def parse_line(line: str, path: Path, line_no: int) -> dict:
    """One record from a JSON or Python-literal line; RawDataError naming file:line if neither."""
    # Try the likelier format first; a Python literal may also start with '{"', and some dumps mix
    # Python quoting with JSON's true/false/null (the published code patched those before eval).
    first = (json.loads, ast.literal_eval) if line.lstrip().startswith('{"') else (ast.literal_eval, json.loads)
    parsers = (*first, _literal_with_json_names)
    record, error = None, None
    for parse in parsers:
        try:
            record = parse(line)
            break
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            error = error or exc
    else:
        raise RawDataError(f"{path}, line {line_no}: not a JSON object or Python dict literal "
                           f"({type(error).__name__}: {error}). The line starts: {line[:120]!r}")
    if not isinstance(record, dict):
        raise RawDataError(f"{path}, line {line_no}: expected a dict record, got {type(record).__name__}")
    return record


class _JsonNames(ast.NodeTransformer):
    """Turns the bare names true / false / null into the constants they mean in JSON."""
    CONSTANTS = {"true": True, "false": False, "null": None}

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.CONSTANTS:
            return ast.copy_location(ast.Constant(self.CONSTANTS[node.id]), node)
        return node


def _literal_with_json_names(line: str):
    return ast.literal_eval(_JsonNames().visit(ast.parse(line.strip(), mode="eval")))


def int_field(record: dict, key: str, path: Path, line_no: int) -> int:
    """record[key] as an integer; RawDataError naming file:line otherwise."""
    try:
        return int(record[key])
    except (TypeError, ValueError):
        raise RawDataError(f"{path}, line {line_no}: field {key!r} must be an integer, "
                           f"got {record[key]!r}") from None


def iter_records(path: Path, keep_line: Callable[[str], bool] | None = None,
                 fix_line: Callable[[str], str] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for every non-blank line; `keep_line` pre-filters raw lines cheaply,
    `fix_line` rewrites a kept line before it is parsed."""
    path = Path(path)
    line_no = 0
    try:
        with open_lines(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise RawDataError(f"{path}, line {line_no}: not UTF-8 text "
                                       f"(byte {raw[exc.start:exc.start + 1]!r} at "
                                       f"column {exc.start + 1}); re-save the file as UTF-8") from None
                if not line.strip() or (keep_line is not None and not keep_line(line)):
                    continue
                yield line_no, parse_line(fix_line(line) if fix_line else line, path, line_no)
    except FileNotFoundError:
        raise RawDataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        where = f"after line {line_no}" if line_no else "at its start"
        raise RawDataError(f"{path}: cannot be read {where} ({type(exc).__name__}: {exc}); "
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
    pattern = re.compile(rf"""['"]{re.escape(key)}['"]\s*:\s*['"]([^'"]*)['"]""")

    def keep(line: str) -> bool:
        match = pattern.search(line)
        return match is None or match.group(1) in wanted

    return keep
