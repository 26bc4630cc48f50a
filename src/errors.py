"""Expected failures: what a user can act on from the message alone.

`run.py` prints such an error's message without a traceback and exits 1 (configuration errors: 2);
with the environment variable LIGER_DEBUG=1 it shows the traceback too. An error of any other type
is a bug and always comes with its traceback.
"""
from __future__ import annotations


class ExpectedError(Exception):
    """A failure with a message that names the file, key or setting and says what to do."""


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
