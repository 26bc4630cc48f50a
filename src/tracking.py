"""A run's results: `{run_dir}/metrics.json`, `{run_dir}/curves.jsonl` and, unless disabled, a
Weights & Biases run.

`metrics.json` is a flat JSON object of final values (dataset statistics, stage timings, quality
reports, test metrics), rewritten atomically on every update so it holds whatever the run reached
even when it stops early or fails. `curves.jsonl` holds the curves (values per step or epoch:
training losses, learning rate and gradient norm per epoch, validation metrics, RQ-VAE checks), one
JSON object a line, `{"axis": "train/step", "step": 120, "train/loss": 5.3, ...}`, appended as they
come; `read_curves` reads them back. Both are written whatever the W&B mode.
"""
from __future__ import annotations

import json
import math
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.cache import append_line, atomic_write, remove_file, write_json
from src.config import ConfigError, LoggingConfig
from src.errors import DataError, first_line

Scalar = int | float | str | bool | None


class WandbLogger:
    """One W&B run (project, run name = experiment_id, the resolved config), files in the run folder.

    mode `offline` needs no account or network (sync later with `wandb sync`), `online` logs live.
    The run's id is kept in `{run_dir}/wandb_run_id`, so a resumed run logs to the same W&B run.
    """

    def __init__(self, cfg: LoggingConfig, run_name: str, run_dir: Path, config: dict[str, Any]):
        import wandb

        check_credentials(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        # one W&B run per run folder: a resumed run goes on with the run it started
        id_file = run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else ""
        if not run_id:
            run_id = secrets.token_hex(4)  # W&B run ids: lowercase letters and digits
            with atomic_write(id_file) as handle:
                handle.write(run_id + "\n")
        try:
            # quiet: no history and summary dump at the end (metrics.json holds them); where the run is stays said
            self.run = wandb.init(project=cfg.project, entity=cfg.entity, name=run_name, mode=cfg.mode,
                                  dir=str(run_dir), config=config, id=run_id, resume="allow",
                                  settings=wandb.Settings(quiet=True))
        except (wandb.errors.UsageError, wandb.errors.CommError, wandb.errors.AuthenticationError) as exc:
            raise ConfigError(_wandb_advice(cfg, exc)) from None
        self._defined: set[str] = set()

    def summary(self, values: dict[str, Scalar]) -> None:
        self.run.summary.update(values)

    def curve(self, values: dict[str, float], step_key: str, step: int) -> None:
        """Log values against their own step counter `step_key` (e.g. train/step, rqvae/epoch)."""
        for key in (step_key, *values):
            if key not in self._defined:
                self.run.define_metric(key, step_metric=None if key == step_key else step_key)
                self._defined.add(key)
        self.run.log({step_key: step, **values})

    def finish(self) -> None:
        self.run.finish()


def _wandb_advice(cfg: LoggingConfig, exc: BaseException) -> str:
    return (f"config key 'logging.mode' is {cfg.mode}, but W&B cannot start a run ({first_line(exc)}); log in with "
            "`wandb login` (or set WANDB_API_KEY), or set logging.mode=offline (sync later with `wandb sync`) "
            "or logging.mode=disabled")


def check_credentials(cfg: LoggingConfig) -> None:
    """For logging.mode=online, before any stage runs: ConfigError where W&B finds no credentials (it
    would fail once the run folder takes the run, or wait for a key at a prompt no one sees)."""
    if cfg.mode != "online" or cfg.writer != "wandb":
        return
    import wandb

    try:
        found = wandb.login(relogin=False, verify=False)
    except (wandb.errors.UsageError, wandb.errors.AuthenticationError) as exc:
        raise ConfigError(_wandb_advice(cfg, exc)) from None
    if not found:
        raise ConfigError(_wandb_advice(cfg, RuntimeError("no API key configured")))


LOGGERS = {"wandb": WandbLogger}  # `logging.writer`: the experiment tracker each run logs to


def run_logger(cfg: LoggingConfig, run_name: str, run_dir: Path, config: dict[str, Any]) -> WandbLogger | None:
    """The tracker `logging.writer` names, or None with `logging.mode=disabled`."""
    return None if cfg.mode == "disabled" else LOGGERS[cfg.writer](cfg, run_name, run_dir, config)


CURVES_FILE = "curves.jsonl"


class RunRecorder:
    def __init__(self, run_dir: Path, logger: WandbLogger | None = None, write: bool = True, resuming: bool = False,
                 pending: bool = False):
        """write=False keeps the metrics in memory only (the processes other than the main one);
        resuming: the run goes on from a checkpoint, so its curves so far are kept (else they start anew).
        pending: nothing reaches the run folder (or W&B) until `accept`, which writes what was recorded
        so far: a run the folder refuses leaves it as it was."""
        self.path = Path(run_dir) / "metrics.json"
        self.curves_path = Path(run_dir) / CURVES_FILE
        self.metrics: dict[str, Scalar] = {}
        self.logger, self.write = logger, write
        self.pending: list[tuple[dict[str, float], str, int]] | None = [] if pending else None  # curves held back
        if not pending:
            self._open(resuming)

    def _open(self, resuming: bool) -> None:
        if self.write and not resuming:
            remove_file(self.curves_path)
        elif self.write and self.curves_path.exists():
            _drop_cut_line(self.curves_path)

    def accept(self, resuming: bool, logger: WandbLogger | None = None) -> None:
        """The run folder took the run: write what was recorded while pending, then record as it comes."""
        if self.pending is None:
            return
        held, self.pending = self.pending, None
        self.logger = logger
        self._open(resuming)
        if self.metrics:
            self.log({})
            if self.logger is not None:
                self.logger.summary(dict(self.metrics))
        for values, step_key, step in held:
            self.curve(values, step_key, step)

    def log(self, values: dict[str, Scalar]) -> None:
        """Add or update flat `name -> value` results: metrics.json and the W&B summary."""
        values = _finite(values)
        self.metrics.update(values)
        if self.pending is not None:
            return
        if self.write:
            write_json(self.path, self.metrics)
        if self.logger is not None and values:
            self.logger.summary(values)

    def curve(self, values: dict[str, float], step_key: str, step: int) -> None:
        """A point of curves (curves.jsonl and W&B), e.g. curve({"rqvae/val_recon_loss": 0.3}, "rqvae/epoch", 100)."""
        if self.pending is not None:
            self.pending.append((values, step_key, step))
            return
        if self.write:
            append_line(self.curves_path, json.dumps({"axis": step_key, "step": step, **_finite(values)}))
        if self.logger is not None:
            self.logger.curve(values, step_key, step)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a pipeline stage into `time/{name}` (seconds), once it finished: a stage that failed or was
        interrupted records no time, so that metrics.json never shows it as done."""
        print(f"\n=== {name} ===")
        start = time.perf_counter()
        yield
        self.log({f"time/{name}": round(time.perf_counter() - start, 3)})

    def summary(self) -> str:
        """The recorded metrics as aligned `name  value` lines."""
        width = max((len(k) for k in self.metrics), default=0)
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in self.metrics.items())

    def finish(self) -> None:
        if self.logger is not None:
            self.logger.finish()


class ConsoleLog:
    """What the console shows, kept in `{run_dir}/run.log`: `install` puts it between sys.stdout /
    sys.stderr and the terminal. Lines are held in memory until `open(path)` (the run folder accepted
    the run: a refused run writes nothing), then appended as they end. A progress bar, redrawn in place
    with carriage returns, is kept once, as last drawn (the text after a line's last carriage return)."""

    def __init__(self):
        self.path: Path | None = None
        self.held: list[str] = []
        self.partial = ""
        self.streams: tuple = ()

    def install(self) -> None:
        self.streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _Tee(sys.stdout, self), _Tee(sys.stderr, self)

    def uninstall(self) -> None:
        if self.streams:
            sys.stdout, sys.stderr = self.streams
            self.streams = ()
        if self.partial.strip():
            self._line(self.partial)
        self.partial = ""

    def open(self, path: Path) -> None:
        """Start writing to `path` (appended: a resumed run's log goes on), with the lines held so far."""
        self.path = Path(path)
        held, self.held = self.held, []
        for line in held:
            self._line(line)

    def feed(self, text: str) -> None:
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            self._line(line.rsplit("\r", 1)[-1])

    def _line(self, line: str) -> None:
        if self.path is None:
            self.held.append(line)
            return
        try:
            with open(self.path, "a") as handle:
                handle.write(line + "\n")
        except OSError:
            self.path = None  # the folder went away or read-only: the console still shows everything


class _Tee:
    """A text stream that writes through to `stream` and feeds what it writes to a ConsoleLog."""

    def __init__(self, stream, log: ConsoleLog):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.feed(text)
        return self.stream.write(text)

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding...: the terminal's
        return getattr(self.stream, name)


def _drop_cut_line(path: Path) -> None:
    """Remove a last line a killed run left cut short, so that the resumed run's lines follow whole ones."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _finite(values: dict[str, Scalar]) -> dict[str, Scalar]:
    """The values with NaN and infinities as None (JSON has no spelling for them)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()}


@dataclass(frozen=True)
class Curve:
    """One quantity over its axis: steps (ascending) and values (None where it was not finite)."""
    axis: str
    steps: tuple[int, ...]
    values: tuple[float | None, ...]


def read_curves(path: Path) -> dict[str, Curve]:
    """The curves of `{run_dir}/curves.jsonl`, by name. A point logged twice at one step (a resumed
    run replays the epochs after its checkpoint) keeps the later value; a last line cut short (a
    killed run) is left out; any other unreadable line is a DataError naming it."""
    points: dict[str, dict[int, float | None]] = {}
    axes: dict[str, str] = {}
    lines = Path(path).read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            axis, step = record.pop("axis"), int(record.pop("step"))
        except (ValueError, KeyError, TypeError, AttributeError):
            if number == len(lines) and line.strip():
                continue  # written while the run was killed
            raise DataError(f"{path}, line {number}: not a curve point ({line[:80]!r}); "
                            "delete the line or the file") from None
        for name, value in record.items():
            axes[name] = axis
            points.setdefault(name, {})[step] = value
    return {name: Curve(axes[name], tuple(sorted(p)), tuple(p[s] for s in sorted(p))) for name, p in points.items()}
