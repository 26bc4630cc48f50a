"""Fetching missing raw files from their public addresses.

Raw data is only read: a file that exists is never touched. A missing file is downloaded into the
raw folder (atomically, with a progress bar). When that fails, the error lists every missing file,
the folder it was expected in and its public address, and says how to place it by hand.
"""
from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from src.cache import atomic_write
from src.errors import ExpectedError


@dataclass(frozen=True)
class RawFile:
    path: Path
    url: str | None  # None: no public address, the file must be placed by hand


class MissingRawDataError(ExpectedError, FileNotFoundError):
    """Raw files are missing and could not be downloaded."""


def ensure_raw_files(files: list[RawFile], timeout: float = 60.0) -> None:
    """Download every missing file; raise MissingRawDataError naming all that are still missing."""
    failures: list[tuple[RawFile, str]] = []
    for raw in files:
        if raw.path.exists():
            continue
        if raw.url is None:
            failures.append((raw, "it has no public address"))
            continue
        try:
            download(raw.url, raw.path, timeout)
        except Exception as exc:  # network, permissions, disk: all end in the same instructions
            failures.append((raw, f"{type(exc).__name__}: {exc}"))
    if failures:
        raise MissingRawDataError(_missing_message(failures))


def download(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Stream `url` into `dest` with a progress bar; `dest` appears only when complete."""
    print(f"Downloading {url} -> {dest}")
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with atomic_write(dest, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                                   desc=dest.name) as bar:
            received = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            if total is not None and received != total:
                raise OSError(f"incomplete download: received {received} of {total} bytes")


def _missing_message(failures: list[tuple[RawFile, str]]) -> str:
    lines = ["Raw data files are missing"
             + (" and could not be downloaded:" if any(r.url for r, _ in failures) else ":")]
    for raw, reason in failures:
        lines += [f"  - {raw.path.name}", f"      expected in: {raw.path.parent.resolve()}"]
        lines += [f"      public address: {raw.url}", f"      download failed: {reason}"] if raw.url else []
    lines += ["Place each file by hand: copy it into the folder named above, keeping its file name (for a",
              "public file, download it from its address on a machine with network access), or point",
              "dataset.raw_data_path at a folder that already holds the files in this layout."]
    return "\n".join(lines)

