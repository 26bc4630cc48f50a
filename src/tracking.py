"""A run's results: `{run_dir}/metrics.json`, a flat JSON object rewritten atomically on every
update, so it holds whatever the run reached even when it stops early or fails."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from src.cache import write_json

Scalar = int | float | str | bool | None


class RunRecorder:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.json"
        self.metrics: dict[str, Scalar] = {}

    def log(self, values: dict[str, Scalar]) -> None:
        """Add or update flat `name -> value` entries and rewrite metrics.json."""
        self.metrics.update(values)
        write_json(self.path, self.metrics)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a pipeline stage into `time/{name}` (seconds), written even if the stage fails."""
        print(f"\n=== {name} ===")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.log({f"time/{name}": round(time.perf_counter() - start, 3)})

    def summary(self) -> str:
        """The recorded metrics as aligned `name  value` lines."""
        width = max((len(k) for k in self.metrics), default=0)
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in self.metrics.items())
