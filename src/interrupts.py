"""Ctrl-C (SIGINT) and SIGTERM (a cluster's time limit) end a run at a safe point, with a message and no
traceback: exit 130 for SIGINT, 143 for SIGTERM (128 + the signal's number, as a shell reports them).

`install()` (run.py) replaces both signals' handlers. Inside `safe_points()` (training, the RQ-VAE, the
test) a signal only sets a flag, read at the next safe point (`check`: after a training step, an RQ-VAE
epoch, the test) and turned into `Interrupted`; elsewhere (preprocessing, embeddings: every file
they write is written atomically) it raises `Interrupted` at once. A second signal while the first
waits for its safe point ends the run at once.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from src.errors import ExpectedError

_state = {"signal": None, "safe": 0}


class Interrupted(ExpectedError):
    """The run was stopped by a signal; the message says where and how to go on."""
    label = "Interrupted"

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


def _handler(signum: int, frame) -> None:
    if _state["signal"] is not None or _state["safe"] == 0:
        _state["signal"] = signum
        raise Interrupted(f"stopped by {signal.Signals(signum).name} before a safe point; rerun the same command: "
                          "the stages it finished are cached", signum)
    _state["signal"] = signum  # read at the next safe point


def install() -> None:
    """Handle SIGINT and SIGTERM as above (only the main thread can)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _handler)


def requested() -> int | None:
    """The signal that asked the run to stop, or None."""
    return _state["signal"]


@contextmanager
def safe_points() -> Iterator[None]:
    """A block whose loops call `check` at their safe points: a signal waits for the next one."""
    _state["safe"] += 1
    try:
        yield
    finally:
        _state["safe"] -= 1


def check(where: str) -> None:
    """Raise Interrupted (`where`: what was stopped and how to go on) if a signal asked to stop."""
    signum = _state["signal"]
    if signum is not None:
        raise Interrupted(f"{where} ({signal.Signals(signum).name})", signum)


def reset() -> None:
    """Forget a signal (tests; a new run in the same process)."""
    _state["signal"] = None
