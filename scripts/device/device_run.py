"""One GPU call of the reproduction: it reads what the reproduction folder (`docs/reproduction/`) already
holds and does the next missing piece with all the time it has.

    bash scripts/device/run.sh OUT_DIR             # on the GPU machine, with the bundle of bundle.sh
    bash scripts/device/run.sh --dry-run OUT_DIR   # on a CPU: a generated dataset at tiny sizes, the same steps

1. Figures: the benchmark's, committed for this GPU and torch (any `bench.json` under docs/), else a
   short benchmark now; the runs' own step times where committed runs measured them.
2. Smoke check: only what the plan needs (the graphed step against the eager one, the RQ-VAE's graph).
3. No semantic IDs committed for the dataset: the published RQ-VAE (all 8,000 epochs), its codes written
   to OUT_DIR/{dataset}_semantic_ids.npz.
4. The missing runs, in the reproduction's order (`reproduction.queue`), each alone on the GPU, or two
   at once where a committed measurement shows that finishes both sooner, as many as fit. Every run of
   a dataset trains the length its first run's plan fixed (`planning.plan_length`).
5. Time left over, and no committed measurement of two runs at once: that measurement.

OUT_DIR receives at most 8 files: device.log, summary.json (the plan, every step's status, the smoke
check's results), bench.json (where the benchmark ran), the semantic IDs (where trained), and per run
{run}.json (its metrics.json, a `run` block and its curves) and {run}.log. `report.py OUT_DIR --into
docs/reproduction` adds them to the reproduction.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts" / "device"))

from planning import (  # noqa: E402
    MODE_OVERRIDES,
    PAIR_GAIN,
    STEP_MODES,
    LengthPlan,
    at_once_seconds,
    checks_for,
    plan_length,
    rqvae_overrides,
    rqvae_plan,
    run_cost,
    step_mode,
    vouched,
)
from reproduction import (  # noqa: E402
    DEFAULT_ROOT,
    PUBLISHED_RQVAE_EPOCHS,
    PUBLISHED_STEPS,
    Length,
    Reproduction,
    RunSpec,
)

from src.cache import remove_stale_temporaries  # noqa: E402

MAX_FILES = 8
BASE_FILES = ("device.log", "summary.json")
PAIR_MEASURE_S = 150   # seconds the measurement of two runs at once needs (two benchmarks' setup and steps)


@dataclass(frozen=True)
class Profile:
    """What differs between the GPU call and its dry run on a CPU."""
    budget_s: float               # everything ends within this (run.sh adds a hard limit above it)
    dataset: str                  # dataset.name of the reproduction
    dataset_key: str              # {dataset.type}_{dataset.name}: how results tables name it
    data: tuple[str, ...]         # overrides selecting the data (and the bundled caches)
    bench_args: tuple[str, ...]   # the benchmark's data
    bench_s: float                # time box of the benchmark
    smoke_s: float                # time box of the smoke check
    rqvae_epochs: int             # the RQ-VAE's epochs (published: 8,000)
    max_steps: int                # the longest training (published: 200,000)
    eval_batch_size: int
    startup_s: float              # a run's start (imports, data, model) before it trains
    call_overhead_s: float        # a call's time before its first run when figures and codes are committed
    safety: float                 # share of the estimated seconds planned


def profiles(work: Path) -> dict[str, Profile]:
    bundle = REPO / ".bundle"
    return {
        "device": Profile(budget_s=520, dataset="Beauty", dataset_key="Amazon_Beauty",
                          data=("dataset=amazon", "dataset.name=Beauty", f"dataset.raw_data_path={bundle / 'raw'}",
                                f"dataset.processed_data_path={bundle / 'processed'}",
                                "dataset.content_model=all-MiniLM-L6-v2", f"dataset.RQ-VAE.cache_dir={work / 'ids'}"),
                          bench_args=("--data", "beauty", "--raw", str(bundle / "raw")), bench_s=45, smoke_s=40,
                          rqvae_epochs=PUBLISHED_RQVAE_EPOCHS, max_steps=PUBLISHED_STEPS, eval_batch_size=4096,
                          startup_s=30, call_overhead_s=45, safety=0.85),
        "dry-run": Profile(budget_s=240, dataset="synthetic", dataset_key="generated_synthetic",
                           data=("dataset=generated", f"dataset.raw_data_path={work / 'raw'}",
                                 f"dataset.processed_data_path={work / 'processed'}",
                                 f"dataset.RQ-VAE.cache_dir={work / 'ids'}", "dataset.generator.n_users=400",
                                 "dataset.generator.n_groups=6"),
                           bench_args=("--tiny",), bench_s=120, smoke_s=60, rqvae_epochs=150, max_steps=30,
                           eval_batch_size=256, startup_s=20, call_overhead_s=30, safety=0.85),
    }


class Log:
    """Prints and appends to OUT_DIR/device.log; subprocess output is appended there too."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        with self.path.open("a") as handle:
            handle.write(line + "\n")


def start(cmd: list[str], output: Path, env: dict) -> subprocess.Popen:
    with output.open("a") as handle:
        return subprocess.Popen(cmd, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def wait_boxed(process: subprocess.Popen, seconds: float) -> tuple[int | None, float]:
    """(exit code, None if killed at `seconds` with its children; wall seconds)."""
    begin = time.monotonic()
    try:
        code = process.wait(timeout=max(seconds, 1))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code = None
    return code, time.monotonic() - begin


def run_boxed(cmd: list[str], seconds: float, output: Path, env: dict) -> tuple[int | None, float]:
    return wait_boxed(start(cmd, output, env), seconds)


def status_of(code: int | None) -> str:
    return "ok" if code == 0 else "killed at its time limit" if code is None else f"exit {code}"


def json_object(path: Path) -> dict:
    """A JSON object from `path`; ValueError naming the file otherwise."""
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: holds a JSON {type(value).__name__}, not an object")
    return value


PROBE = ("import json, platform, torch; c = torch.cuda.is_available(); print(json.dumps({'gpu': "
         "torch.cuda.get_device_name(0) if c else (platform.processor() or 'cpu'), 'torch': torch.__version__, "
         "'cuda': torch.version.cuda, 'cuda_available': c}))")


def probe(py: str, env: dict) -> dict:
    """The machine as the benchmark names it: GPU (or processor), torch and CUDA versions."""
    done = subprocess.run([py, "-c", PROBE], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"torch does not start here: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def source_commit() -> str:
    """The commit the call runs: git's, where the tree is a clone; else what bundle.sh recorded."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=20)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                   capture_output=True, text=True, timeout=20).stdout.strip()
            return head.stdout.strip() + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    recorded = REPO / ".bundle" / "commit.txt"
    return recorded.read_text().strip() if recorded.is_file() else "unknown"


def codes_settings(path: Path) -> dict:
    """The RQ-VAE settings a semantic-ID file was made with (the runs ask for the same, so that the file's
    check finds them equal)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["meta"]))
    rqvae = meta.get("settings", {})
    return {"epochs": rqvae.get("epochs", PUBLISHED_RQVAE_EPOCHS), "cuda_graphs": bool(rqvae.get("cuda_graphs")),
            "compile": bool(rqvae.get("compile")),
            "float32_matmul_precision": rqvae.get("float32_matmul_precision", "highest")}


def benchmark_command(py: str, out: Path, profile: Profile, rqvae: bool, compile_: bool) -> list[str]:
    """The short benchmark of a call without committed figures: the step in each way a run may train
    (eager, and on a GPU graphed), evaluation at the runs' batch size, the RQ-VAE where it will train."""
    return [py, "scripts/benchmark.py", *profile.bench_args, "--quick", "--eval-batch-size",
            str(profile.eval_batch_size), "--out", str(out / "bench.json"), "--no-compile",
            "--only", "train,eval" + (",rqvae" if rqvae else ""),
            "--variants", "compact,graphed" + (",compiled_graphed" if compile_ else ""),
            *(["--compile-graphed"] if compile_ else [])]


def smoke_command(py: str, path: Path, dry_run: bool, checks: list[str]) -> list[str]:
    return [py, "scripts/device/smoke.py", "--out", str(path), "--checks", ",".join(checks),
            *(["--device", "cpu"] if dry_run else []), *(["--compile"] if "compiled_cuda_graph" in checks else [])]


def run_overrides(profile: Profile, work: Path, spec: RunSpec, codes: Path, rqvae: dict, length: Length, mode: str,
                  budget_min: float) -> list[str]:
    return [*profile.data, *spec.overrides, f"experiment_id={spec.name}", "logging.mode=disabled",
            f"output_path={work / spec.name}", f"dataset.RQ-VAE.codes_file={codes}", *rqvae_overrides(rqvae),
            f"dataset.TIGER.trainer.steps={length.steps}", f"dataset.TIGER.trainer.warmup_steps={length.warmup_steps}",
            f"dataset.TIGER.trainer.scheduler={length.scheduler}",
            f"dataset.TIGER.trainer.eval_batch_size={profile.eval_batch_size}",
            f"dataset.TIGER.trainer.time_budget_min={budget_min:.2f}", *MODE_OVERRIDES[mode]]


def run_record(spec: RunSpec, run_dir: Path, status: str, wall_s: float, length: Length, mode: str,
               machine: dict, commit: str, codes: Path, rqvae: dict, overrides: list[str], profile: Profile) -> dict:
    """{run}.json of the call: the run's metrics.json, its `run` block and its curves (curves.jsonl's lines)."""
    metrics_path, curves_path = run_dir / "metrics.json", run_dir / "curves.jsonl"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    curves = [json.loads(line) for line in curves_path.read_text().splitlines() if line.strip()] \
        if curves_path.is_file() else []
    validations = sum(point.get("time/validation", 0.0) for point in curves)
    steps = metrics.get("train/steps")
    train_s = metrics.get("time/train")
    s_per_step = round((train_s - validations) / steps, 6) if steps and train_s else None
    run = {"name": spec.name, "dataset": spec.dataset, "dataset_key": profile.dataset_key, "method": spec.method,
           "seed": spec.seed, "status": status, "steps_trained": steps, "steps_planned": length.steps,
           "warmup_steps": length.warmup_steps, "scheduler": length.scheduler, "published_steps": PUBLISHED_STEPS,
           "length_fixed_by": length.fixed_by, "best_epoch": metrics.get("train/best_epoch"),
           "epochs": metrics.get("train/epochs"), "out_of_time": metrics.get("train/out_of_time"),
           "step_mode": metrics.get("train/step_mode", mode), "s_per_step": s_per_step,
           "encoder": next((o.split("=", 1)[1] for o in profile.data if o.startswith("dataset.content_model=")),
                           "all-MiniLM-L6-v2"),
           "semantic_ids": {"file": codes.name, "sha256": hashlib.sha256(codes.read_bytes()).hexdigest()
                            if codes.is_file() else None, **rqvae},
           "gpu": machine.get("gpu"), "torch": machine.get("torch"), "cuda": machine.get("cuda"), "commit": commit,
           "date": time.strftime("%Y-%m-%d"), "wall_s": {**{k.removeprefix("time/"): v for k, v in metrics.items()
                                                           if k.startswith("time/") and isinstance(v, (int, float))},
                                                        "run": round(wall_s, 1)},
           "overrides": overrides}
    return {**metrics, "run": run, "curves": curves}


def drop_killed_writes(out: Path) -> None:
    """Remove what a writer killed at its time limit left half-written in OUT_DIR (they write atomically)."""
    remove_stale_temporaries(out / "bench.json")


class Call:
    """The state of one call: its output folder, log, summary and the clock."""

    def __init__(self, args, profile: Profile, work: Path):
        self.out, self.profile, self.work = args.out.resolve(), profile, work
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = Log(self.out / "device.log")
        self.deadline = time.monotonic() + profile.budget_s
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
        self.py = sys.executable
        self.summary: dict = {"mode": "dry-run" if args.dry_run else "device", "date": time.strftime("%Y-%m-%d"),
                              "profile": asdict(profile),
                              "reproduction": str(args.reproduction), "steps": {}, "runs": []}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def record(self, step: str, code: int | None, wall: float, **extra) -> None:
        self.summary["steps"][step] = {"status": status_of(code), "wall_s": round(wall, 1), **extra}
        self.log(f"{step}: {status_of(code)} in {wall:.1f} s")

    def files_free(self) -> int:
        return MAX_FILES - sum(1 for _ in self.out.iterdir())

    def write_summary(self) -> None:
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="on a CPU: a generated dataset at tiny sizes")
    parser.add_argument("--reproduction", type=Path, default=DEFAULT_ROOT,
                        help="the reproduction folder to complete (default: docs/reproduction)")
    parser.add_argument("--budget", type=float, default=None, help="seconds in all (default: the profile's)")
    parser.add_argument("--max-runs", type=int, default=None, help="train at most this many runs")
    parser.add_argument("--compile", action="store_true",
                        help="where the benchmark runs, also time the graphed step compiled for its one shape")
    parser.add_argument("--measure-pair", action="store_true",
                        help="measure two runs at once in the time left even where a measurement is committed")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="liger_call_"))
    profile = profiles(work)["dry-run" if args.dry_run else "device"]
    if args.budget is not None:
        profile = replace(profile, budget_s=args.budget)
    try:
        call = Call(args, profile, work)
        run_call(call, args)
    except (ValueError, RuntimeError) as exc:  # a reproduction folder or figures at fault: named in the message
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_call(call: Call, args) -> None:
    profile, log, summary = call.profile, call.log, call.summary
    repro = Reproduction(args.reproduction)
    log(f"call ({summary['mode']}), {profile.budget_s:.0f} s in all; reproduction {repro.root}; work {call.work}")
    if shutil.which("nvidia-smi") and not args.dry_run:
        run_boxed(["nvidia-smi"], 20, call.out / "device.log", call.env)
    machine = probe(call.py, call.env)
    commit = source_commit()
    summary.update(machine=machine, commit=commit)
    log(f"machine: {machine['gpu']}, torch {machine['torch']}, CUDA {machine['cuda']}; commit {commit}")

    dataset = profile.dataset
    missing = repro.missing(dataset)
    has_codes = repro.has_codes(dataset)
    fixed = repro.length(dataset)
    summary["state"] = {"finished": [s.name for s in repro.finished(dataset)], "missing": [s.name for s in missing],
                        "semantic_ids_committed": has_codes, "length": None if fixed is None else asdict(fixed)}
    log(f"reproduction of {dataset}: {len(missing)} run(s) missing"
        + (f", next {missing[0].name}" if missing else "") + f"; semantic IDs {'committed' if has_codes else 'missing'}"
        + (f"; length {fixed.describe()} (fixed by {fixed.fixed_by})" if fixed else "; length not fixed yet"))
    if not missing and has_codes:
        log("nothing is missing: the table is complete")
        finish(call)
        return

    # 1. figures
    bench, source = repro.committed_figures(machine["gpu"], machine["torch"])
    if source is not None:
        log(f"benchmark: skipped, figures committed for this GPU and torch: {source}")
        summary["figures"] = str(source)
    else:
        cmd = benchmark_command(call.py, call.out, profile, rqvae=not has_codes, compile_=args.compile)
        call.record("benchmark", *run_boxed(cmd, min(profile.bench_s, call.left()), call.out / "device.log",
                                            call.env))
        drop_killed_writes(call.out)
        bench = json_object(call.out / "bench.json") if (call.out / "bench.json").is_file() else {}
        summary["figures"] = "this call's benchmark" if bench else "none: slow guesses"
    measured = repro.measured_steps(machine["gpu"], machine["torch"])

    # 2. smoke check: what the planned modes need
    gpu = bool(machine.get("cuda_available"))
    modes = {step_mode(bench, spec.bench) for spec in missing}
    checks = checks_for(modes, rqvae_graphed=not has_codes and gpu)
    smoke = None
    if checks:
        smoke_path = call.work / "smoke.json"
        call.record("smoke", *run_boxed(smoke_command(call.py, smoke_path, args.dry_run, checks),
                                        min(profile.smoke_s, call.left()), call.out / "device.log", call.env),
                    checks=checks)
        smoke = json_object(smoke_path) if smoke_path.is_file() else {}
        summary["smoke"] = smoke
    else:
        log("smoke: nothing to check (eager steps, no RQ-VAE graph)")
    if not gpu:  # a CPU has no graphs to vouch for: the figures stay as measured
        smoke = None
    bench = vouched(bench, smoke)

    # 3. semantic IDs
    codes = repro.codes_path(dataset)
    if has_codes:
        rqvae = codes_settings(codes)
        log(f"semantic IDs: committed ({codes.name}, {rqvae['epochs']} RQ-VAE epochs)")
    else:
        codes = call.out / f"{dataset}_semantic_ids.npz"
        rqvae = train_semantic_ids(call, bench, codes, gpu)
        if rqvae is None:
            finish(call)
            return

    # 4. runs
    train_runs(call, args, repro, missing, bench, measured, fixed, codes, rqvae, machine, commit)

    # 5. the measurement of two runs at once, in the time left
    if gpu and (args.measure_pair or repro.pair_figures(machine["gpu"], machine["torch"]) is None):
        measure_pair(call, bench, machine)
    finish(call)


def train_semantic_ids(call: Call, bench: dict, codes: Path, gpu: bool) -> dict | None:
    """Train the RQ-VAE (the profile's epochs), its codes written to `codes`; its settings, or None where it
    failed (then no run trains: every run of the table must use the same, published, codes)."""
    profile, log = call.profile, call.log
    settings = rqvae_plan(bench if gpu else {k: v for k, v in bench.items() if "graphed" not in k},
                          profile.rqvae_epochs)
    for attempt in ("graphed", "eager") if settings["cuda_graphs"] else ("eager",):
        if attempt == "eager" and settings["cuda_graphs"]:
            settings = rqvae_plan({k: v for k, v in bench.items() if "graphed" not in k}, profile.rqvae_epochs)
            if settings["estimated_s"] > call.left() - 60:
                log(f"RQ-VAE eager: about {settings['estimated_s']:.0f} s, {call.left():.0f} s left: not tried")
                return None
        overrides = [*profile.data, "method=setting", "logging.mode=disabled", f"output_path={call.work / 'rqvae'}",
                     f"dataset.RQ-VAE.codes_file={codes}", *rqvae_overrides(settings), "stop_after=semantic_ids"]
        box = min(call.left() - 30, max(2 * settings["estimated_s"] + 60, 120))
        log(f"RQ-VAE ({attempt}): {settings['epochs']} epochs, about {settings['estimated_s']:.0f} s"
            f"{'' if settings['estimate_measured'] else ' (a guess)'}; box {box:.0f} s")
        code, wall = run_boxed([call.py, "run.py", *overrides], box, call.out / "device.log", call.env)
        call.record(f"rqvae_{attempt}", code, wall, **settings)
        if code == 0 and codes.is_file():
            return {k: settings[k] for k in ("epochs", "cuda_graphs", "compile", "float32_matmul_precision")}
    return None


def train_runs(call: Call, args, repro: Reproduction, missing: list[RunSpec], bench: dict, measured: dict,
               fixed: Length | None, codes: Path, rqvae: dict, machine: dict, commit: str) -> None:
    """The missing runs in order, alone or two at once, as many as fit the time and the files that come back."""
    profile, log = call.profile, call.log
    pair = repro.pair_figures(machine["gpu"], machine["torch"])
    trained = 0
    while missing and (args.max_runs is None or trained < args.max_runs):
        if call.files_free() < 2:
            log(f"runs: no more files can come back (at most {MAX_FILES}); the next run waits for the next call")
            break
        seconds = call.left() * profile.safety
        spec = missing[0]
        costs = {s.bench: run_cost(bench, s, profile.startup_s, measured) for s in missing}
        full_call_s = (profile.budget_s - profile.call_overhead_s) * profile.safety
        plan = plan_length(spec, fixed, costs[spec.bench], seconds, list(costs.values()), full_call_s,
                           profile.max_steps)
        if plan.length is None:
            log(f"{spec.name}: not started: {plan.reason}")
            call.summary.setdefault("not_started", []).append({"run": spec.name, "why": plan.reason})
            break
        length = plan.length
        together = [spec]
        if len(missing) > 1 and call.files_free() >= 4 and (args.max_runs is None or trained + 2 <= args.max_runs):
            second = missing[1]
            both = at_once_seconds(pair, costs[spec.bench], costs[second.bench], length.steps, seconds)
            if both is not None:
                together.append(second)
                log(f"{spec.name} and {second.name} at once: about {both:.0f} s (measured: their steps take "
                    f"{pair['slowdown']:.2f}× the time of one after the other{', MPS' if pair.get('mps') else ''})")
        guessed = sorted({g for s in together for g in costs[s.bench].guessed})
        log(f"plan: {', '.join(s.name for s in together)}: {length.describe()} ({plan.reason}); about "
            f"{plan.estimated_s:.0f} s each, {seconds:.0f} s usable"
            + (f"; guessed figures: {guessed}" if guessed else ""))
        run_together(call, together, length, costs, codes, rqvae, machine, commit, mps=len(together) > 1 and
                     bool(pair and pair.get("mps")), plan=plan)
        for s in together:
            missing.remove(s)
        trained += len(together)
        fixed = fixed or length  # the first run fixed it for the runs after it in this call


def run_together(call: Call, specs: list[RunSpec], length: Length, costs: dict, codes: Path, rqvae: dict,
                 machine: dict, commit: str, mps: bool, plan: LengthPlan) -> None:
    """Train `specs` at once (one: alone), each to its test; write their {run}.json and {run}.log."""
    profile = call.profile
    daemon = start_mps(call) if mps else None
    env = {**call.env, **(daemon or {})}
    if len(specs) > 1 and not call.summary["machine"].get("cuda_available"):
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // len(specs)))  # CPU threads shared
    started = {}
    for spec in specs:
        cost = costs[spec.bench]
        budget_min = max(0.1, (call.left() * profile.safety - cost.test_s - cost.setup_s) / 60)
        overrides = run_overrides(profile, call.work, spec, codes, rqvae, length, cost.mode, budget_min)
        started[spec] = (start([call.py, "run.py", *overrides], call.out / f"{spec.name}.log", env), time.monotonic(),
                         overrides)
    for spec, (process, began, overrides) in started.items():
        code, _ = wait_boxed(process, call.left())
        wall = time.monotonic() - began
        call.record(spec.name, code, wall, steps=length.steps, step_mode=costs[spec.bench].mode,
                    estimated_s=plan.estimated_s, together=[s.name for s in specs])
        record = run_record(spec, call.work / spec.name, status_of(code), wall, length, costs[spec.bench].mode,
                            machine, commit, codes, rqvae, overrides, profile)
        (call.out / f"{spec.name}.json").write_text(json.dumps(record, indent=1) + "\n")
        call.summary["runs"].append(spec.name)
        headline = "uni_in_test/Gen20_Recall@10" if "uni_in_test/Gen20_Recall@10" in record else \
            "dense_in_test/Recall@10" if "dense_in_test/Recall@10" in record and spec.method != "TIGER" \
            else "genret_in_test/Recall@10"
        call.log(f"{spec.name}: {record.get('train/steps', '-')} of {length.steps} steps, {headline} "
                 f"{record.get(headline, '-')}, cold-start {headline.replace('_in_', '_cold_')} "
                 f"{record.get(headline.replace('_in_', '_cold_'), '-')}")
    if daemon is not None:
        stop_mps(call, daemon)


def start_mps(call: Call) -> dict | None:
    """Start the CUDA MPS daemon (its folders under the work folder); the clients' environment, or None where
    it cannot start (then the runs share the GPU by time-slicing)."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        call.log("MPS: nvidia-cuda-mps-control not found; the runs share the GPU by time-slicing")
        return None
    folders = {"CUDA_MPS_PIPE_DIRECTORY": str(call.work / "mps_pipe"),
               "CUDA_MPS_LOG_DIRECTORY": str(call.work / "mps_log")}
    for folder in folders.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    done = subprocess.run([control, "-d"], env={**call.env, **folders}, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        call.log(f"MPS: the daemon did not start ({done.stderr.strip()[:200] or done.returncode}); time-slicing")
        return None
    call.log("MPS: daemon started")
    return folders


def stop_mps(call: Call, folders: dict) -> None:
    control = shutil.which("nvidia-cuda-mps-control")
    if control:
        subprocess.run([control], input="quit\n", env={**call.env, **folders}, capture_output=True, text=True,
                       timeout=30)
        call.log("MPS: daemon stopped")


def measure_pair(call: Call, bench: dict, machine: dict) -> None:
    """Two benchmarks' training steps (TIGER's and LIGER's, the runs' step mode) timed at the same moment,
    under MPS where its daemon starts: `slowdown` = the slower one's step ÷ the sum of both alone (this
    call's or the committed figures). Below 1, two runs at once finish sooner than one after the other."""
    if call.left() < PAIR_MEASURE_S:
        call.log(f"two runs at once: not measured ({call.left():.0f} s left, {PAIR_MEASURE_S} s needed)")
        return
    modes = {model: step_mode(bench, model) for model in ("tiger", "liger")}
    alone = {model: bench.get(f"train_ms_{model}{STEP_MODES[mode]}") for model, mode in modes.items()}
    if not all(isinstance(v, (int, float)) for v in alone.values()):
        call.log("two runs at once: not measured (no step figures to compare with)")
        return
    variant = {"eager": "compact", "eager_padded": "padded", "cuda_graphs": "graphed",
               "cuda_graphs_padded": "graphed_padded", "compiled_graphs": "compiled_graphed"}
    daemon = start_mps(call)
    env = {**call.env, **(daemon or {})}
    start_at = time.time() + PAIR_MEASURE_S * 0.6  # both set up first, then time their steps together
    processes = {}
    for model, mode in modes.items():
        out = call.work / f"pair_{model}.json"
        cmd = [call.py, "scripts/benchmark.py", *call.profile.bench_args, "--only", "train", "--methods", model,
               "--variants", variant[mode], "--no-compile", "--start-at", f"{start_at:.0f}", "--out", str(out)]
        processes[model] = (start(cmd, call.out / "device.log", env), out)
    together = {}
    for model, (process, out) in processes.items():
        code, _ = wait_boxed(process, min(call.left(), PAIR_MEASURE_S))
        figures = json.loads(out.read_text()) if code == 0 and out.is_file() else {}
        together[model] = figures.get(f"train_ms_{model}{STEP_MODES[modes[model]]}")
    if daemon is not None:
        stop_mps(call, daemon)
    if not all(isinstance(v, (int, float)) for v in together.values()):
        call.log(f"two runs at once: the measurement failed ({together})")
        return
    slowdown = max(together.values()) / sum(alone.values())
    call.summary["pair_measurement"] = {"gpu": machine["gpu"], "torch": machine["torch"], "mps": daemon is not None,
                                        "modes": modes, "alone_ms": alone, "together_ms": together,
                                        "slowdown": round(slowdown, 4)}
    sooner = "sooner" if slowdown <= PAIR_GAIN else "not sooner"
    call.log(f"two runs at once{' (MPS)' if daemon else ''}: steps {together} ms against {alone} ms alone: "
             f"slowdown {slowdown:.2f} ({sooner} than one after the other)")


def finish(call: Call) -> None:
    call.summary["wall_s"] = round(call.profile.budget_s - call.left(), 1)
    call.write_summary()
    call.log(f"done in {call.summary['wall_s']} s: " + ", ".join(f"{k} {v['status']}"
                                                                for k, v in call.summary["steps"].items()))
    make_portable(call.out, {str(call.work): "WORK", str(call.out): "OUT_DIR", f"{REPO}/": ""})


def make_portable(out: Path, names: dict[str, str]) -> None:
    """Replace this machine's absolute paths in the call's text files (the work folder, OUT_DIR, the
    repository) by placeholders, so that what is committed names no machine's folders."""
    for path in out.iterdir():
        if path.suffix in (".log", ".json"):
            text = path.read_text(errors="replace")
            for old, new in names.items():
                text = text.replace(old, new)
            path.write_text(text)


if __name__ == "__main__":
    main()
