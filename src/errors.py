"""Expected failures: what a user can act on from the message alone.

`run.py` and the scripts print such an error's message without a traceback (`report`) and exit 1
(configuration errors: 2); with the environment variable LIGER_DEBUG=1 the traceback shows too. An
error of any other type is a bug and always comes with its traceback.
"""
from __future__ import annotations

import os
import sys


class ExpectedError(Exception):
    """A failure with a message that names the file, key or setting and says what to do."""
    label = "Error"    # how `report` introduces the message
    exit_status = 1


def report(exc: ExpectedError) -> int:
    """Print `exc`'s message alone to stderr and return the exit status for it; under LIGER_DEBUG=1
    raise it again instead, traceback and all."""
    if os.environ.get("LIGER_DEBUG") == "1":
        raise exc
    print(f"\n{exc.label}: {exc}\n(LIGER_DEBUG=1 shows the traceback)", file=sys.stderr)
    return exc.exit_status


def first_line(exc: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message`, at most `limit` characters of the message: an exception
    from a library (a compiler, torch.load) in one line, where its own advice would not apply."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:limit]}"


class DataError(ExpectedError, ValueError):
    """The data cannot support a stage (too few seen items, no in-set validation example)."""


class NotWritableError(ExpectedError, OSError):
    """A file cannot be written where the configuration puts it (a read-only folder)."""


class TrainingDivergedError(ExpectedError, RuntimeError):
    """A loss or the gradient norm became non-finite during training."""


class RunFolderBusyError(ExpectedError, RuntimeError):
    """Another run is using the run folder."""


class DiskFullError(ExpectedError, OSError):
    """A file could not be written because its file system is full."""


class CheckpointError(ExpectedError, RuntimeError):
    """A checkpoint cannot be used by this run (other settings or data, unreadable, busy folder)."""


class DeviceMemoryError(ExpectedError, RuntimeError):
    """A stage ran out of device memory at a setting the user can lower."""
