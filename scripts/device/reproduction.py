"""The reproduction folder (`docs/reproduction/`): what it holds, what it still lacks, and how long its
runs train. One home for the queue of runs, their names, the fixed training length and the committed
semantic IDs; `device_run.py` reads it to plan a GPU call, `report.py --into` writes it.

    docs/reproduction/
      README.md                       the table (written by report.py --into)
      plan.json                       per dataset: the training length every run of its table trains
      {dataset}_semantic_ids.npz      the semantic IDs every run of that dataset uses
      {dataset}_{METHOD}_seed{S}.json a finished run: its metrics.json plus a `run` block
      curves/{run}.jsonl              the run's curves (training losses, validations)
      calls/{call}/                   each GPU call's record: summary.json, bench.json, device.log, run logs
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / "docs" / "reproduction"

# The published schedule: AdamW, linear warm-up over 5% of the steps, then cosine decay (200,000 steps)
PUBLISHED_STEPS, PUBLISHED_WARMUP = 200_000, 10_000
PUBLISHED_RQVAE_EPOCHS = 8_000
SCHEDULER = "cosine"

# The methods of the paper's tables, as scripts/tiger.sh, ours.sh and ablation.sh run them; `bench` is the
# benchmark's nearest model (its step and evaluation times stand in for the ablations')
METHOD_OVERRIDES: dict[str, tuple[str, ...]] = {
    "TIGER": ("method=base", "test_method=tiger"),
    "LIGER": ("method=setting", "test_method=liger"),
    "Dense (ID)": ("method=setting", "test_method=liger", "method.sid_loss_weight=0", "method.use_id=item_id",
                   "method.embedding_head_dict.embed_target=ground_truth+item_id",
                   "method.embedding_head_dict.embed_proj_type=linear", "method.embedding_head_dict.use_new_init=true"),
    "Dense (SID)": ("method=setting", "test_method=liger", "method.sid_loss_weight=0"),
    "TIGER (T)": ("method=setting", "test_method=liger", "method.flag_use_output_embedding=false",
                  "method.embedding_loss_weight=0"),
}
BENCH_MODEL = {"TIGER": "tiger", "TIGER (T)": "tiger", "LIGER": "liger", "Dense (ID)": "liger", "Dense (SID)": "liger"}
FILE_LABEL = {"TIGER": "TIGER", "LIGER": "LIGER", "Dense (ID)": "Dense-ID", "Dense (SID)": "Dense-SID",
              "TIGER (T)": "TIGER-T"}


@dataclass(frozen=True)
class RunSpec:
    """One run of the table: a method of the paper on a dataset with a seed."""
    dataset: str   # dataset.name, e.g. Beauty
    method: str    # a key of METHOD_OVERRIDES
    seed: int

    @property
    def name(self) -> str:
        """The run's file stem, e.g. `Beauty_TIGER_seed42`, `Beauty_Dense-ID_seed42`."""
        return f"{self.dataset}_{FILE_LABEL[self.method]}_seed{self.seed}"

    @property
    def overrides(self) -> tuple[str, ...]:
        return (*METHOD_OVERRIDES[self.method], f"seed={self.seed}")

    @property
    def bench(self) -> str:
        return BENCH_MODEL[self.method]


def queue(dataset: str) -> tuple[RunSpec, ...]:
    """The runs of a dataset's table in the order they are made: TIGER and LIGER (seed 42), the ablations,
    then TIGER and LIGER with seeds 43 and 44."""
    first = [RunSpec(dataset, method, 42) for method in ("TIGER", "LIGER", "Dense (ID)", "Dense (SID)", "TIGER (T)")]
    return (*first, *(RunSpec(dataset, method, seed) for seed in (43, 44) for method in ("TIGER", "LIGER")))


def warmup_for(steps: int) -> int:
    """The published warm-up share (10,000 of 200,000 steps: 5%) of a schedule `steps` long."""
    return max(1, round(PUBLISHED_WARMUP * steps / PUBLISHED_STEPS))


@dataclass(frozen=True)
class Length:
    """How long every run of one dataset's table trains: fixed by the first run's plan."""
    steps: int
    warmup_steps: int
    fixed_by: str          # the run whose plan fixed it
    scheduler: str = SCHEDULER

    def describe(self) -> str:
        return (f"{self.steps:,} steps ({100 * self.steps / PUBLISHED_STEPS:.2g}% of the published "
                f"{PUBLISHED_STEPS:,}), warm-up {self.warmup_steps:,}, {self.scheduler} decay")


class ReproductionError(ValueError):
    """The reproduction folder holds something inconsistent; the message names the file and the fix."""


class Reproduction:
    """A reproduction folder, read fresh on every question (the files are the state)."""

    def __init__(self, root: Path = DEFAULT_ROOT):
        self.root = Path(root)

    def run_path(self, spec: RunSpec | str) -> Path:
        return self.root / f"{spec if isinstance(spec, str) else spec.name}.json"

    def curves_path(self, name: str) -> Path:
        return self.root / "curves" / f"{name}.jsonl"

    def codes_path(self, dataset: str) -> Path:
        return self.root / f"{dataset}_semantic_ids.npz"

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    def finished(self, dataset: str) -> list[RunSpec]:
        return [spec for spec in queue(dataset) if self.run_path(spec).is_file()]

    def missing(self, dataset: str) -> list[RunSpec]:
        """The dataset's runs still to make, in queue order."""
        return [spec for spec in queue(dataset) if not self.run_path(spec).is_file()]

    def has_codes(self, dataset: str) -> bool:
        return self.codes_path(dataset).is_file()

    def length(self, dataset: str) -> Length | None:
        """The fixed training length of the dataset's runs, None before its first run is added."""
        entry = self.plans().get(dataset)
        if entry is None:
            return None
        try:
            return Length(int(entry["steps"]), int(entry["warmup_steps"]), str(entry["fixed_by"]),
                          str(entry.get("scheduler", SCHEDULER)))
        except (KeyError, TypeError, ValueError):
            raise ReproductionError(f"{self.plan_path}: the entry of {dataset} needs steps, warmup_steps and "
                                    f"fixed_by (got {entry!r}); restore the file from git") from None

    def fix_length(self, dataset: str, length: Length) -> None:
        """Record the length the dataset's first run trained (report.py --into)."""
        from src.cache import write_json

        plans = self.plans()
        plans[dataset] = {"steps": length.steps, "warmup_steps": length.warmup_steps, "scheduler": length.scheduler,
                          "fixed_by": length.fixed_by, "published_steps": PUBLISHED_STEPS}
        write_json(self.plan_path, plans)

    def plans(self) -> dict:
        if not self.plan_path.is_file():
            return {}
        try:
            plans = json.loads(self.plan_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ReproductionError(f"{self.plan_path}: cannot be read as JSON ({exc}); restore it from git") from None
        if not isinstance(plans, dict):
            raise ReproductionError(f"{self.plan_path}: not a JSON object; restore it from git")
        return plans

    def runs(self) -> dict[str, dict]:
        """Every finished run's JSON, by name, in queue order within each dataset."""
        found = {}
        for path in sorted(self.root.glob("*_seed*.json")):
            try:
                found[path.stem] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ReproductionError(f"{path}: cannot be read as JSON ({exc}); restore it from git") from None
        return found

    def committed_figures(self, device: str, torch_version: str) -> tuple[dict, Path | None]:
        """(the newest benchmark figures measured on this GPU with this torch, their file): every
        `bench.json` below the folder's parent (docs/: the calls' records here, the benchmarks beside)."""
        matches = []
        for path in self.root.parent.rglob("bench.json"):
            try:
                bench = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(bench, dict) and bench.get("device") == device and bench.get("torch") == torch_version:
                matches.append((str(bench.get("date", "")), str(path), bench))
        if not matches:
            return {}, None
        date, path, bench = max(matches)
        return bench, Path(path)

    def measured_steps(self, device: str, torch_version: str) -> dict[tuple[str, str], float]:
        """(benchmark model, step mode) → seconds a training step took in the committed runs on this GPU
        with this torch (validations left out): a run's own measurement, closer than the benchmark's."""
        seconds: dict[tuple[str, str], list[float]] = {}
        for data in self.runs().values():
            run = data.get("run", {})
            s = run.get("s_per_step")
            if run.get("gpu") == device and run.get("torch") == torch_version and isinstance(s, (int, float)) and s > 0:
                seconds.setdefault((BENCH_MODEL.get(run.get("method"), "?"), run.get("step_mode")), []).append(s)
        return {key: sorted(values)[len(values) // 2] for key, values in seconds.items()}

    def pair_figures(self, device: str, torch_version: str) -> dict | None:
        """The committed measurement of two runs trained at once on this GPU with this torch (or None)."""
        found = None
        for path in sorted(self.root.glob("calls/*/summary.json")):
            try:
                pair = json.loads(path.read_text()).get("pair_measurement")
            except (OSError, json.JSONDecodeError, AttributeError):
                continue
            if isinstance(pair, dict) and pair.get("gpu") == device and pair.get("torch") == torch_version \
                    and isinstance(pair.get("slowdown"), (int, float)) and math.isfinite(pair["slowdown"]):
                found = pair
        return found
