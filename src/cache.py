"""Atomic writes and cache keys.

Every cache file in the pipeline is written through `atomic_write` (a temporary file in the same
folder, then `os.replace`), so an interrupted run never leaves a half-written artefact behind, and
every cache is named or validated by `fingerprint` over everything that determines its content.
Cached artefacts are also verified when read: `verified_write` records the digest of the bytes it
wrote beside the file, and `unverified_reason` says why a file cannot be trusted (missing, written
before digests were recorded, or changed since), so an edited or truncated cache is recomputed.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask once: mkstemp creates files 0600, finished files honour it


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if absent) for the block: jobs of a sweep that share
    a cache folder build it one at a time, and none reads a half-replaced set of files. Where no lock
    can be taken (a read-only folder, a file system without flock), the block runs unlocked."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError:
        handle = None
    with handle or contextlib.nullcontext():
        locked = handle is not None and _flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if locked:
                _flock(handle, fcntl.LOCK_UN)


@contextmanager
def run_folder_lock(folder: str | os.PathLike) -> Iterator[Callable[[], None]]:
    """Hold `{folder}/.run.lock` for the block, so that no two runs share a run folder (they would
    mix checkpoints and best weights); RunFolderBusyError at once if another process holds it. Where
    no lock can be taken (a file system without flock) the block runs unlocked. Yields `claim()`,
    which writes this process into the lock file (named to a run that finds the folder busy): called
    once the run is accepted, so that a refused run leaves the file as it was."""
    from src.errors import RunFolderBusyError

    path = Path(folder) / ".run.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # an existing lock file is left as it is until the run claims the folder
    except OSError as exc:
        _explain_write_failure(path, exc)
        raise
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderBusyError(
                f"the run folder {Path(folder).resolve()} is in use by another run ({holder}); wait for it to end, "
                "or give this run its own folder (another experiment_id, seed or output_path)") from None
        except OSError:
            yield lambda: None
            return

        def claim() -> None:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
            handle.flush()

        try:
            yield claim
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _flock(handle, operation: int) -> bool:
    try:
        fcntl.flock(handle, operation)
        return True
    except OSError:
        return False


STALE_TEMP_SECONDS = 24 * 3600  # a temporary file of another host counts as abandoned after this


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling of `path` for writing; move it onto `path` only on success. The
    temporary files a killed writer left for `path` are removed first."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp")
    except OSError as exc:
        _explain_write_failure(path, exc)
        raise
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        _explain_write_failure(path, exc)
        raise


def remove_file(path: str | os.PathLike) -> None:
    """Delete `path` if it exists; a folder that does not allow it is named with its config key."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as exc:
        _explain_write_failure(Path(path), exc)
        raise


DISK_FULL_BYTES = 64 * 2**20  # a failed write with less free space than this is reported as a full disk


_FOLDER_KEYS: dict[Path, str] = {}  # the configured folders (and files) that runs write to, by config key
NOT_WRITABLE = {errno.EACCES: "permission denied", errno.EPERM: "not permitted", errno.EROFS: "read-only file system",
                errno.ENOTDIR: "a part of the path is a file, not a folder",
                errno.EEXIST: "a file is in the way of a folder", errno.ENOENT: "the folder cannot be created there"}


def name_folders(folders: dict[str, str | os.PathLike | None]) -> None:
    """Remember which config key sets each folder a run writes to (e.g. `dataset.processed_data_path`),
    so that a failed write names the key to change."""
    _FOLDER_KEYS.clear()
    for key, folder in folders.items():
        if folder is not None:
            _FOLDER_KEYS[Path(folder).absolute()] = key


def folder_key(path: Path) -> tuple[str, Path] | None:
    """(the config key, its folder) of the configured folder that holds `path`, the innermost one."""
    path = Path(path).absolute()
    holders = [(folder, key) for folder, key in _FOLDER_KEYS.items() if path == folder or folder in path.parents]
    if not holders:
        return None
    folder, key = max(holders, key=lambda item: len(item[0].parts))
    return key, folder


def _explain_write_failure(path: Path, exc: BaseException) -> None:
    """NotWritableError naming `path` and the config key of its folder, for a folder this process may not
    write in (permissions, a read-only file system, a file in the way); DiskFullError when `exc` came
    from a full file system (ENOSPC, or a writer such as torch.save that reports it in its own words,
    e.g. `unexpected pos`)."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return
    reason = NOT_WRITABLE.get(getattr(exc, "errno", None))
    if isinstance(exc, PermissionError) or reason is not None:
        from src.errors import NotWritableError

        named = folder_key(path)
        fix = (f"set {named[0]} to a folder this run can write (now {named[1]})" if named
               else "make its folder writable, or choose another output_path / dataset.processed_data_path")
        raise NotWritableError(f"cannot write {path}: {reason or 'permission denied'}; {fix}") from exc
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if getattr(exc, "errno", None) == errno.ENOSPC or (free is not None and free < DISK_FULL_BYTES):
        from src.errors import DiskFullError

        left = f"{free / 2**20:.1f} MB free" if free is not None else "no space left"
        raise DiskFullError(f"writing {path} failed: its file system is full ({left}); free some space "
                            f"(or choose another output_path / dataset.processed_data_path) and run again") from exc


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest_ = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest_.update(block)
    return digest_.hexdigest()


def digest_path(path: str | os.PathLike) -> Path:
    """Where `verified_write` records the digest of `path`: `{path}.sha256`."""
    return Path(f"{path}.sha256")


@contextmanager
def verified_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """`atomic_write`, then `record_digest` (a file whose digest is missing was never finished, or
    predates digests)."""
    digest_path(path).unlink(missing_ok=True)
    with atomic_write(path, mode) as handle:
        yield handle
    record_digest(path)


def record_digest(path: str | os.PathLike) -> None:
    """Write the digest of the finished file `path` beside it, for `unverified_reason`."""
    with atomic_write(digest_path(path)) as handle:
        handle.write(file_sha256(path) + "\n")


def unverified_reason(path: str | os.PathLike) -> str | None:
    """None when `path` holds the bytes `verified_write` wrote; otherwise why it cannot be trusted."""
    path = Path(path)
    if not path.exists():
        return "missing"
    try:
        recorded = digest_path(path).read_text().strip()
    except OSError:
        return f"no digest recorded beside it ({digest_path(path).name})"
    if file_sha256(path) != recorded:
        return "changed since it was written (its content no longer matches the recorded digest)"
    return None


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", os.uname().nodename)


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of `path` whose writer is gone: written by a process of this host
    that no longer runs, or of another host (or unnamed) and older than a day."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = tmp.name[len(path.name) + 2:].split(".")
        try:
            if len(parts) >= 3 and parts[0] == _HOST and parts[1].isdigit():
                stale = not _process_alive(int(parts[1]))
            else:
                stale = time.time() - tmp.stat().st_mtime > STALE_TEMP_SECONDS
            if stale:
                tmp.unlink()
        except OSError:  # gone meanwhile, or not ours to remove
            continue


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only whether it exists (PermissionError: it does, as another user's)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def load_verified(path: str | os.PathLike, what: str, problem: Callable[[Any], str | None]) -> Any | None:
    """`torch.load` of a cache written by `verified_write`, or None when it must be recomputed:
    missing, not verified, unreadable, or `problem(content)` names what is wrong with it. The reason
    is printed (naming `what` and the file) unless the file is simply missing."""
    import torch

    reason = unverified_reason(path)
    if reason is None:
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
            reason = problem(content)
            if reason is None:
                return content
        except Exception as exc:  # noqa: BLE001  any unreadable cache is recomputed
            reason = f"unreadable ({type(exc).__name__}: {exc})"
    if reason != "missing":
        print(f"{what} {path}: {reason}; recomputing it")
    return None


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line of text to `path` (created with its folder if missing) and flush it: a killed
    writer leaves at most its last line cut short, which readers of such logs skip."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(line + "\n")
    except OSError as exc:
        _explain_write_failure(path, exc)
        raise


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write `obj` as JSON to `path` atomically."""
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=indent, sort_keys=False)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as handle:
        return json.load(handle)


def fingerprint(*parts: Any) -> str:
    """A stable hex digest of JSON-serialisable parts (dict keys sorted); equal inputs, equal keys."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def digest(array) -> str:
    """Content digest of a numpy array or torch tensor (bytes, shape and dtype)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().contiguous().numpy()
    array = np.ascontiguousarray(array)
    return hashlib.sha256(array.tobytes()).hexdigest() + str(array.shape) + str(array.dtype)


def safe_name(text: str) -> str:
    """`text` usable in a file name: runs of other characters than letters, digits, _ . - become -."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip("/")).strip("-")


def file_stamp(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a large read-only input cheaply (a local encoder's weight files): its resolved
    path, size and mtime."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def content_stamp(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a raw data file: its resolved path and the digest of its content, so an edit
    that keeps its size and time is seen too (hashing is cheap next to parsing)."""
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
