"""The prepared GPU call (README, "The GPU run"): a smoke check, the benchmark, and the Beauty
reproduction (TIGER and LIGER at once on the one GPU), each step time-boxed, all results in OUT_DIR.

    bash scripts/device/run.sh OUT_DIR             # on the GPU machine, with .carry/ from prepare.sh
    bash scripts/device/run.sh --dry-run OUT_DIR   # here, on the CPU: tiny sizes, the same steps

OUT_DIR receives at most 8 files: device.log, smoke.json, bench.json, {tiger,liger}_metrics.json
(each run's metrics.json plus a `device_run` block: the steps, warm-up and RQ-VAE epochs actually
used and why), {tiger,liger}_train.log and summary.json (each step's status and wall time).

The training length is chosen from the step times the benchmark measured: the published 200,000
steps where they fit in the time left, otherwise the most that fit, with the warm-up scaled in
proportion; `trainer.time_budget_min` backs the estimate up, so a run always ends with a test.
`--plan-from DIR` plans from an earlier call's figures instead (its bench.json and smoke.json), with
neither the smoke check nor the benchmark run: a second call gives all its time to the reproduction.
"""
from __future__ import annotations

import argparse
import json
import math
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

from src.cache import remove_stale_temporaries  # noqa: E402

PUBLISHED_STEPS, PUBLISHED_WARMUP, PUBLISHED_RQVAE_EPOCHS = 200_000, 10_000, 8_000
METHODS = {"tiger": ("method=base", "test_method=tiger"), "liger": ("method=setting", "test_method=liger")}
# extra seconds with --compile: the benchmark's inductor compiles TIGER's and LIGER's step and the
# RQ-VAE, the smoke check's a tiny step and a tiny RQ-VAE
COMPILE_BENCH_S, COMPILE_SMOKE_S = 180, 75
# Used when the benchmark gave no figure: deliberately slow guesses.
FALLBACK = {"train_ms": 150.0, "rqvae_s_per_epoch": 0.05, "tiger_eval_beam10_seqs_per_s": 500.0,
            "liger_eval_uni_seqs_per_s": 200.0}


def train_ms_key(name: str) -> str:
    """The benchmark's step time of the T5 implementation the runs use (the config's default)."""
    import yaml

    t5 = yaml.safe_load((REPO / "configs" / "dataset" / "amazon.yaml").read_text())["TIGER"]["T5"]
    return f"train_ms_{name}" + ("" if t5["implementation"] == "compact" else "_transformers")


@dataclass(frozen=True)
class Profile:
    """What differs between the GPU run and its dry run on the CPU."""
    budget_s: float               # everything ends within this (run.sh adds a hard limit above it)
    smoke_s: float                # time box of the smoke check
    bench_s: float                # time box of the benchmark
    bench_args: tuple[str, ...]
    data: tuple[str, ...]         # overrides selecting the data (and the carried caches)
    rqvae_budget_s: float         # seconds the RQ-VAE may take
    rqvae_epochs: int             # at most this many epochs
    max_steps: int                # at most this many training steps
    eval_batch_size: int
    startup_s: float              # a run's start (imports, caches, model) before it trains
    safety: float                 # share of the estimated time actually planned


def profiles(work: Path) -> dict[str, Profile]:
    """On the device the semantic IDs go to the repository's git-ignored ID_generation/ID/ (the config's
    default), which a machine still warm keeps between calls: a second call, with the same RQ-VAE
    settings, finds them and skips the RQ-VAE."""
    carry = REPO / ".carry"
    return {
        "device": Profile(budget_s=520, smoke_s=75, bench_s=180,
                          bench_args=("--data", "beauty", "--raw", str(carry / "raw")),
                          data=("dataset=amazon", "dataset.name=Beauty", f"dataset.raw_data_path={carry / 'raw'}",
                                f"dataset.processed_data_path={carry / 'processed'}",
                                "dataset.content_model=all-MiniLM-L6-v2",
                                f"dataset.RQ-VAE.cache_dir={REPO / 'ID_generation' / 'ID'}"),
                          rqvae_budget_s=60, rqvae_epochs=PUBLISHED_RQVAE_EPOCHS, max_steps=PUBLISHED_STEPS,
                          eval_batch_size=4096, startup_s=25, safety=0.8),
        "dry-run": Profile(budget_s=280, smoke_s=90, bench_s=90, bench_args=("--tiny",),
                           data=("dataset=generated", f"dataset.raw_data_path={work}/raw",
                                 f"dataset.processed_data_path={work}/processed",
                                 f"dataset.RQ-VAE.cache_dir={work}/ids",
                                 "dataset.generator.n_users=400", "dataset.generator.n_groups=6"),
                           rqvae_budget_s=5, rqvae_epochs=150, max_steps=30, eval_batch_size=256,
                           startup_s=25, safety=0.8),
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


def run_boxed(cmd: list[str], seconds: float, output: Path, env: dict) -> tuple[int | None, float]:
    """Run cmd with its output appended to `output`, killed (with its children) after `seconds`;
    (exit code, None if killed; wall seconds)."""
    return wait_boxed(start(cmd, output, env), seconds)


def start(cmd: list[str], output: Path, env: dict) -> subprocess.Popen:
    with output.open("a") as handle:
        return subprocess.Popen(cmd, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def wait_boxed(process: subprocess.Popen, seconds: float) -> tuple[int | None, float]:
    begin = time.monotonic()
    try:
        code = process.wait(timeout=max(seconds, 1))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code = None
    return code, time.monotonic() - begin


def smoke_command(py: str, out: Path, dry_run: bool, compile_: bool) -> list[str]:
    """The smoke check's command line (with --compile: also the compiled graphed step)."""
    return [py, "scripts/device/smoke.py", "--out", str(out / "smoke.json"), *(["--device", "cpu"] if dry_run else []),
            *(["--compile"] if compile_ else [])]


def benchmark_command(py: str, out: Path, profile: Profile, compile_: bool) -> list[str]:
    """The benchmark's command line: the packed step eager (dynamic-shape compiling failed on torch
    2.11), with --compile also the graphed step compiled for its one shape; evaluation in the
    profile's batches and, beside them, in the first device session's 512 (launch-bound or not?)."""
    return [py, "scripts/benchmark.py", *profile.bench_args, "--eval-batch-size", f"{profile.eval_batch_size},512",
            "--out", str(out / "bench.json"), "--no-compile", *(["--compile-graphed"] if compile_ else [])]


def rate(bench: dict, key: str, fallback: str | None = None) -> float:
    value = bench.get(key)
    return float(value) if isinstance(value, (int, float)) and value > 0 else FALLBACK[fallback or key]


# The RQ-VAE's ways to train, (cuda_graphs, compile, float32_matmul_precision), by the suffix of the
# benchmark's keys for them: rqvae_s_per_epoch{suffix} and rqvae_warmup_s{suffix} (the seconds before the
# first timed epoch: eager epochs, the capture and compiling)
PUBLISHED_PRECISION = "highest"
RQVAE_MODES = {(False, False, PUBLISHED_PRECISION): "", (True, False, PUBLISHED_PRECISION): "_graphed",
               (True, False, "high"): "_graphed_tf32", (True, True, PUBLISHED_PRECISION): "_compiled_graphed",
               (True, True, "high"): "_compiled_graphed_tf32"}
EAGER_RQVAE = (False, False, PUBLISHED_PRECISION)


def rqvae_timings(bench: dict) -> dict[tuple[bool, bool, str], tuple[float, float]]:
    """(cuda_graphs, compile, float32_matmul_precision) → (seconds an epoch, seconds before the first: the
    warm-up, capture and compile) of each RQ-VAE mode the benchmark timed."""
    timings = {}
    for mode, suffix in RQVAE_MODES.items():
        seconds = bench.get(f"rqvae_s_per_epoch{suffix}")
        if isinstance(seconds, (int, float)) and seconds > 0:
            timings[mode] = (float(seconds), float(bench.get(f"rqvae_warmup_s{suffix}") or 0) if suffix else 0.0)
    return timings


def rqvae_plan(bench: dict, profile: Profile, eager_only: bool = False) -> dict:
    """How the RQ-VAE trains: eager, replayed from a CUDA graph, or compiled and then replayed, in full
    float32 (published) or with TF32 products, as many epochs as fit in its budget, at most the
    profile's (published: 8,000), a compiled one's compile time taken from the budget. The most epochs
    win; of those, full float32 where it reaches them, then the fastest; a tie keeps the plainer.
    eager_only: eager epochs (after a graphed or compiled RQ-VAE failed)."""
    options = {EAGER_RQVAE: (rate(bench, "rqvae_s_per_epoch"), 0.0), **({} if eager_only else rqvae_timings(bench))}

    def epochs(mode: tuple[bool, bool, str]) -> int:
        seconds, first = options[mode]
        return max(1, min(profile.rqvae_epochs, int((profile.rqvae_budget_s - first) / seconds)))

    def seconds(mode: tuple[bool, bool, str]) -> float:
        return options[mode][0] * epochs(mode) + options[mode][1]

    graphs, compile_, precision = max(
        options, key=lambda mode: (epochs(mode), mode[2] == PUBLISHED_PRECISION, -seconds(mode)))
    return {"epochs": epochs((graphs, compile_, precision)), "cuda_graphs": graphs, "compile": compile_,
            "float32_matmul_precision": precision}


# The benchmark's graphed figures, by the smoke check that vouches for them
GRAPH_CHECKS = {
    "cuda_graph": [f"train_ms_{name}{suffix}" for suffix in ("_graphed", "_graphed_padded", "_graphed_tf32")
                   for name in METHODS],
    "compiled_cuda_graph": [f"train_ms_{name}_compiled_graphed" for name in METHODS],
    "rqvae_cuda_graph": ["rqvae_s_per_epoch_graphed", "rqvae_s_per_epoch_graphed_tf32"],
    "compiled_rqvae_cuda_graph": ["rqvae_s_per_epoch_compiled_graphed", "rqvae_s_per_epoch_compiled_graphed_tf32"]}


def vouched_for(bench: dict, smoke: dict | None) -> tuple[dict, list[str]]:
    """(the benchmark's figures the plan may use, why others were left out): a graphed figure only
    where its smoke check passed, so that a graph that trains wrongly is never chosen for being fast.
    A check that failed or never ran (the smoke check killed at its limit) leaves its figures out;
    smoke None (the smoke check skipped with --skip) leaves everything in."""
    if smoke is None:
        return bench, []
    checks, kept, why = smoke.get("checks", {}), dict(bench), []
    for check, keys in GRAPH_CHECKS.items():
        if checks.get(check, {}).get("ok"):
            continue
        dropped = [key for key in keys if kept.pop(key, None) is not None]
        if dropped:
            state = "failed" if check in checks else "did not run"
            why.append(f"{', '.join(dropped)} left out: smoke check {check} {state}")
    return kept, why


def earlier_figures(directory: Path) -> tuple[dict, dict]:
    """(benchmark figures, smoke report) of an earlier call, from its OUT_DIR. No smoke.json there: an
    empty report, so that no graphed figure is vouched for. Raises ValueError naming the file at fault."""
    bench_path = directory / "bench.json"
    if not bench_path.is_file():
        raise ValueError(f"{bench_path} not found: give the OUT_DIR of an earlier call (its bench.json and "
                         "smoke.json), copied into the working tree so that it travels")
    return json_object(bench_path), smoke_report(directory, skipped=False)


def smoke_report(directory: Path, skipped: bool) -> dict | None:
    """The smoke check's report in a call's OUT_DIR, as `vouched_for` takes it: None where the call skipped
    the check (nothing to go on), {} where it ran but wrote nothing (killed: nothing vouched for)."""
    if skipped:
        return None
    path = directory / "smoke.json"
    return json_object(path) if path.is_file() else {}


def drop_killed_writes(out: Path) -> None:
    """Remove the temporary files of the smoke check's and the benchmark's JSON that a time limit left in
    OUT_DIR, killing its writer mid-write (they write atomically: src/cache.py), so that only the call's
    files come back (at most 8)."""
    for name in ("smoke.json", "bench.json"):
        remove_stale_temporaries(out / name)


def json_object(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: holds a JSON {type(value).__name__}, not an object")
    return value


def step_mode(bench: dict) -> str:
    """How the runs train: the fastest of what the benchmark measured for both methods. The compact step
    as a run takes it (`compiled` where the benchmark compiled it, else `eager`: a compile that failed,
    was not tried or did not end in the benchmark's time box, as torch 2.11's inductor after three
    minutes on an H200), on padded batches (`eager_padded`), captured as a CUDA graph on batches in
    length groups of fixed widths (`cuda_graphs`) or padded to one shape (`cuda_graphs_padded`), or
    compiled for its one shape and then captured (`compiled_graphs`, where that compiled). A tie
    keeps the earlier; a mode not measured for both methods is never chosen, save `eager`."""
    def total(suffix: str) -> float:
        return sum(bench.get(f"train_ms_{name}{suffix}", math.inf) for name in METHODS)

    def compiled(suffix: str) -> bool:
        return all(bench.get(f"train_compiled_{name}{suffix}") is True for name in METHODS)

    default = sum(rate(bench, train_ms_key(name), "train_ms") for name in METHODS)
    seconds = {"compiled" if compiled("") and total("") < math.inf else "eager": default,
               "eager_padded": total("_padded"), "cuda_graphs": total("_graphed"),
               "cuda_graphs_padded": total("_graphed_padded"),
               "compiled_graphs": total("_compiled_graphed") if compiled("_compiled_graphed") else math.inf}
    return min(seconds, key=seconds.get)


def step_key(name: str, mode: str) -> str:
    """The benchmark's key of the step time (and with `train_warmup_s` its warm-up) a run of `mode` has."""
    return {"cuda_graphs": f"train_ms_{name}_graphed", "cuda_graphs_padded": f"train_ms_{name}_graphed_padded",
            "compiled_graphs": f"train_ms_{name}_compiled_graphed",
            "eager_padded": f"train_ms_{name}_padded"}.get(mode, train_ms_key(name))


def training_plan(bench: dict, seconds_left: float, profile: Profile) -> dict:
    """Steps (and the warm-up scaled to them) that let both runs train, validate every 10 epochs and
    test in `seconds_left`, the two sharing the device: a step of each in the time of both."""
    mode = step_mode(bench)
    step_s = sum(rate(bench, step_key(name, mode), "train_ms") for name in METHODS) / 1000
    n_eval = bench.get("users") or 25_000
    eval_s = n_eval / rate(bench, "tiger_eval_beam10_seqs_per_s") + n_eval / rate(bench, "liger_eval_uni_seqs_per_s")
    steps_per_epoch = math.ceil((bench.get("train_examples") or 120_000) / 256)
    # each run first compiles its step or captures its graph (the benchmark's warm-up of that step)
    compile_s = max(float(bench.get(step_key(name, mode).replace("train_ms", "train_warmup_s")) or 0)
                    for name in METHODS)
    usable = seconds_left * profile.safety - profile.startup_s - compile_s - eval_s  # the test of both runs
    # a validation every 10 epochs and one at the end: steps · (step + eval / 10 epochs) + eval ≤ usable
    steps = int((usable - eval_s) / (step_s + eval_s / (10 * steps_per_epoch)))
    steps = max(1, min(steps, profile.max_steps))
    warmup = max(1, round(PUBLISHED_WARMUP * steps / PUBLISHED_STEPS))
    why = ("published" if steps == PUBLISHED_STEPS else
           "the dry run's cap" if steps == profile.max_steps else "the most that fit the time left")
    budget_min = max(0.1, (usable - eval_s) / 60)
    return {"steps": steps, "warmup_steps": warmup, "published_steps": PUBLISHED_STEPS, "steps_reason": why,
            "time_budget_min": round(budget_min, 2), "seconds_left_at_plan": round(seconds_left, 1),
            "estimated_s_per_step_of_both": round(step_s, 4), "estimated_eval_s": round(eval_s, 1),
            "estimated_compile_s": round(compile_s, 1), "step_mode": mode}


MODE_OVERRIDES = {"cuda_graphs": ["dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.trainer.compile=false"],
                  "cuda_graphs_padded": ["dataset.TIGER.trainer.cuda_graphs=true",
                                         "dataset.TIGER.trainer.compile=false", "dataset.TIGER.T5.packing_groups=0"],
                  "compiled_graphs": ["dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.trainer.compile=true"],
                  # cuda_graphs named in every mode: its `auto` graphs a GPU's step
                  "compiled": ["dataset.TIGER.trainer.cuda_graphs=false"],
                  "eager": ["dataset.TIGER.trainer.cuda_graphs=false", "dataset.TIGER.trainer.compile=false"],
                  "eager_padded": ["dataset.TIGER.trainer.cuda_graphs=false", "dataset.TIGER.trainer.compile=false",
                                   "dataset.TIGER.T5.packing_groups=0"]}


def run_overrides(profile: Profile, work: Path, name: str, rqvae: dict, plan: dict | None) -> list[str]:
    """The run's overrides: the stages up to the semantic IDs (plan None), or the whole run. Every run
    has the same RQ-VAE settings (`rqvae_plan`), so all find the semantic IDs the first one cached."""
    overrides = [*profile.data, *METHODS[name], "seed=42", f"experiment_id={name}_Beauty", "logging.mode=disabled",
                 f"output_path={work}/{name}", f"dataset.RQ-VAE.epochs={rqvae['epochs']}",
                 f"dataset.RQ-VAE.cuda_graphs={str(rqvae['cuda_graphs']).lower()}",
                 f"dataset.RQ-VAE.compile={str(rqvae['compile']).lower()}",
                 f"dataset.RQ-VAE.float32_matmul_precision={rqvae['float32_matmul_precision']}",
                 f"dataset.TIGER.trainer.eval_batch_size={profile.eval_batch_size}"]
    if plan is None:
        return [*overrides, "stop_after=semantic_ids"]
    return [*overrides, f"dataset.TIGER.trainer.steps={plan['steps']}",
            f"dataset.TIGER.trainer.warmup_steps={plan['warmup_steps']}",
            f"dataset.TIGER.trainer.time_budget_min={plan['time_budget_min']}", *MODE_OVERRIDES[plan["step_mode"]]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="on this CPU, tiny sizes, the same steps")
    parser.add_argument("--skip", type=lambda text: set(text.split(",")), default=set(),
                        help="comma-separated steps to leave out, of smoke,benchmark (for a rerun in the time left)")
    parser.add_argument("--compile", action="store_true",
                        help="the smoke check and the benchmark also try the graphed step compiled for its one "
                             f"padded shape (their boxes {COMPILE_SMOKE_S} and {COMPILE_BENCH_S} s longer); the runs "
                             "compile only where it compiled and was fastest (dynamic-shape compiling stays off: "
                             "torch 2.11's inductor failed on it)")
    parser.add_argument("--budget", type=float, default=None, help="seconds in all (default: the profile's)")
    parser.add_argument("--plan-from", type=Path, default=None, metavar="DIR",
                        help="plan the runs from an earlier call's figures (DIR: its OUT_DIR with bench.json and "
                             "smoke.json, copied into the working tree so that it travels), skipping the smoke "
                             "check and the benchmark; its smoke checks vouch for its graphed figures")
    args = parser.parse_args()
    if not args.skip <= {"smoke", "benchmark"}:
        parser.error(f"--skip: unknown step(s) {', '.join(sorted(args.skip - {'smoke', 'benchmark'}))}; "
                     "choose from smoke,benchmark")
    earlier = None
    if args.plan_from is not None:
        try:
            earlier = earlier_figures(args.plan_from.resolve())
        except ValueError as exc:
            parser.error(f"--plan-from: {exc}")
        args.skip = {"smoke", "benchmark"}
    start_time = time.monotonic()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="liger_device_"))
    profile = profiles(work)["dry-run" if args.dry_run else "device"]
    if args.budget is not None:
        profile = replace(profile, budget_s=args.budget)
    if args.compile:
        profile = replace(profile, smoke_s=profile.smoke_s + COMPILE_SMOKE_S, bench_s=profile.bench_s + COMPILE_BENCH_S)
    deadline = start_time + profile.budget_s
    log = Log(out / "device.log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    py = sys.executable
    summary: dict = {"mode": "dry-run" if args.dry_run else "device", "profile": asdict(profile), "steps": {},
                     "options": {"skip": sorted(args.skip), "compile": args.compile,
                                 "plan_from": None if args.plan_from is None else str(args.plan_from)}}

    def left() -> float:
        return deadline - time.monotonic()

    def record(step: str, code: int | None, wall: float, **extra) -> None:
        status = "ok" if code == 0 else "killed at its time limit" if code is None else f"exit {code}"
        summary["steps"][step] = {"status": status, "wall_s": round(wall, 1), **extra}
        log(f"{step}: {status} in {wall:.1f} s")

    log(f"device run ({summary['mode']}), {profile.budget_s:.0f} s in all; work folder {work}")
    if shutil.which("nvidia-smi"):
        run_boxed(["nvidia-smi"], 20, out / "device.log", env)

    if earlier is not None:  # 1., 2.: an earlier call's figures
        bench, smoke_checks = earlier
        log(f"smoke, benchmark: skipped (--plan-from); the plan uses the figures of {args.plan_from} (measured on "
            f"{bench.get('device', '?')}, torch {bench.get('torch', '?')}, {bench.get('date', '?')})")
    else:
        # 1. smoke check
        if "smoke" in args.skip:
            log("smoke: skipped (--skip)")
        else:
            smoke = smoke_command(py, out, args.dry_run, args.compile)
            record("smoke", *run_boxed(smoke, min(profile.smoke_s, left()), out / "device.log", env))
        # 2. benchmark
        if "benchmark" in args.skip:
            log("benchmark: skipped (--skip); the plan uses deliberately slow guesses")
        else:
            bench_cmd = benchmark_command(py, out, profile, args.compile)
            record("benchmark", *run_boxed(bench_cmd, min(profile.bench_s, left()), out / "device.log", env))
        drop_killed_writes(out)
        bench = json_object(out / "bench.json") if (out / "bench.json").is_file() else {}
        smoke_checks = smoke_report(out, skipped="smoke" in args.skip)
    bench, left_out = vouched_for(bench, smoke_checks)
    for line in left_out:
        log(f"plan: {line}")
    summary["left_out"] = left_out

    # 3. the reproduction: the stages before training once, then TIGER and LIGER at once
    rqvae = rqvae_plan(bench, profile)
    prepare = [py, "run.py", *run_overrides(profile, work, "liger", rqvae, None)]
    code, wall = run_boxed(prepare, min(profile.rqvae_budget_s * 2 + 90, left()), out / "device.log", env)
    if code != 0 and (rqvae["cuda_graphs"] or rqvae["compile"]):  # failed: once more, eager, or no run has codes
        log(f"prepare with the RQ-VAE as a CUDA graph{' compiled' * rqvae['compile']}: "
            f"{'killed' if code is None else f'exit {code}'}; again, eager")
        rqvae = rqvae_plan(bench, profile, eager_only=True)
        prepare = [py, "run.py", *run_overrides(profile, work, "liger", rqvae, None)]
        code, more = run_boxed(prepare, min(profile.rqvae_budget_s * 2 + 90, left()), out / "device.log", env)
        wall += more
    record("prepare", code, wall, **{f"rqvae_{k}": v for k, v in rqvae.items()})
    plan = training_plan(bench, left(), profile)
    summary["plan"] = plan
    log(f"plan: {json.dumps(plan)}")
    # the two runs share the cores too: oversubscribed OpenMP threads slow a CPU step tenfold
    threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // len(METHODS)))}
    processes = {name: (start([py, "run.py", *run_overrides(profile, work, name, rqvae, plan)],
                              out / f"{name}_train.log", {**env, **threads}), time.monotonic()) for name in METHODS}
    for name, (process, began) in processes.items():
        code, _ = wait_boxed(process, left())
        record(name, code, time.monotonic() - began)
        metrics_path = work / name / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {"error": "no metrics.json"}
        metrics["device_run"] = {**plan, **{f"rqvae_{k}": v for k, v in rqvae.items()},
                                 "published_rqvae_epochs": PUBLISHED_RQVAE_EPOCHS,
                                 "status": summary["steps"][name]["status"],
                                 "plan_from": summary["options"]["plan_from"],  # whose figures planned it
                                 "overrides": run_overrides(profile, work, name, rqvae, plan)}
        (out / f"{name}_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    summary["wall_s"] = round(time.monotonic() - start_time, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name in METHODS:
        m = json.loads((out / f"{name}_metrics.json").read_text())
        head = "uni_in_test/Gen20_Recall@10" if name == "liger" else "genret_in_test/Recall@10"
        log(f"{name}: {m.get('train/steps', '-')} steps, "
            f"genret in-set Recall@10 {m.get('genret_in_test/Recall@10', '-')}"
            f", {head} {m.get(head, '-')}, uni cold Recall@10 {m.get('uni_cold_test/Gen20_Recall@10', '-')}")
    log(f"done in {summary['wall_s']} s: " + ", ".join(f"{k} {v['status']}" for k, v in summary["steps"].items()))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
