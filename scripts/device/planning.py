"""The arithmetic of a GPU call's plan, apart from running anything: how long a run takes for a given
number of steps, the most steps that fit some seconds, the training length a dataset's first run fixes,
how the training step and the RQ-VAE run (from the benchmark's figures, only those a smoke check vouched
for), and whether two runs at once finish sooner than one after the other.

Figures are the benchmark's keys (`scripts/benchmark.py`): `train_ms_{tiger|liger}{suffix}`,
`train_warmup_s_*`, `{tiger|liger}_eval_{beam10|beam100|dense|uni}_seqs_per_s`, `rqvae_s_per_epoch{suffix}`,
`users`, `train_examples`. A figure that is missing is replaced by a deliberately slow guess (FALLBACK),
so that a plan without figures trains too little rather than runs out of time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from reproduction import PUBLISHED_RQVAE_EPOCHS, Length, RunSpec, warmup_for

MODELS = ("tiger", "liger")
FALLBACK = {"train_ms": 150.0, "rqvae_s_per_epoch": 0.05, "rqvae_s_per_epoch_graphed": 0.02,
            "tiger_eval_beam10_seqs_per_s": 500.0, "liger_eval_beam100_seqs_per_s": 200.0,
            "liger_eval_dense_seqs_per_s": 2000.0, "liger_eval_uni_seqs_per_s": 200.0,
            "users": 25_000, "train_examples": 120_000}
BATCH_SIZE, EVAL_FREQUENCE = 256, 10  # the published batch and validation interval (epochs)

# How a run's training step runs, by the suffix of the benchmark's step figures, and the overrides that
# make a run train that way (cuda_graphs named in every mode: its `auto` graphs a GPU's step)
STEP_MODES = {"eager": "", "eager_padded": "_padded", "cuda_graphs": "_graphed",
              "cuda_graphs_padded": "_graphed_padded", "compiled_graphs": "_compiled_graphed"}
MODE_OVERRIDES = {
    "eager": ("dataset.TIGER.trainer.cuda_graphs=false", "dataset.TIGER.trainer.compile=false"),
    "eager_padded": ("dataset.TIGER.trainer.cuda_graphs=false", "dataset.TIGER.trainer.compile=false",
                     "dataset.TIGER.T5.packing_groups=0"),
    "cuda_graphs": ("dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.trainer.compile=false"),
    "cuda_graphs_padded": ("dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.trainer.compile=false",
                           "dataset.TIGER.T5.packing_groups=0"),
    "compiled_graphs": ("dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.trainer.compile=true")}
# The smoke checks (scripts/device/smoke.py) that must pass before a mode's figures are believed
MODE_CHECKS = {"eager": (), "eager_padded": (), "cuda_graphs": ("cuda_graph",),
               "cuda_graphs_padded": ("cuda_graph",), "compiled_graphs": ("cuda_graph", "compiled_cuda_graph")}
RQVAE_CHECK = "rqvae_cuda_graph"
# The RQ-VAE's ways to train, (cuda_graphs, compile, float32_matmul_precision), by the suffix of the
# benchmark's keys for them: rqvae_s_per_epoch{suffix} and rqvae_warmup_s{suffix}
PUBLISHED_PRECISION = "highest"
RQVAE_MODES = {(False, False, PUBLISHED_PRECISION): "", (True, False, PUBLISHED_PRECISION): "_graphed",
               (True, False, "high"): "_graphed_tf32", (True, True, PUBLISHED_PRECISION): "_compiled_graphed",
               (True, True, "high"): "_compiled_graphed_tf32"}
EAGER_RQVAE = (False, False, PUBLISHED_PRECISION)


def figure(bench: dict, key: str, fallback: str | None = None) -> tuple[float, bool]:
    """(the figure, whether it was measured): a positive number from `bench`, else FALLBACK's guess."""
    value = bench.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value), True
    return float(FALLBACK[fallback or key]), False


def vouched(bench: dict, smoke: dict | None) -> dict:
    """The figures a plan may use: a mode's step figures only where its smoke checks passed (a graph that
    trains wrongly is never chosen for being fast); smoke None: no smoke check ran, every figure stays."""
    if smoke is None:
        return dict(bench)
    passed = {name for name, check in smoke.get("checks", {}).items() if check.get("ok")}
    kept = dict(bench)
    for mode, checks in MODE_CHECKS.items():
        if not set(checks) <= passed:
            for model in MODELS:
                kept.pop(f"train_ms_{model}{STEP_MODES[mode]}", None)
    if RQVAE_CHECK not in passed:
        kept.pop("rqvae_s_per_epoch_graphed", None)
    return kept


def step_mode(bench: dict, model: str) -> str:
    """The fastest step mode the figures hold for `model`; `eager` where none is measured. A compiled
    graph counts only where it compiled (the benchmark times the eager graph under its name otherwise)."""
    times = {mode: bench.get(f"train_ms_{model}{suffix}") for mode, suffix in STEP_MODES.items()}
    if bench.get(f"train_compiled_{model}_compiled_graphed") is not True:
        times.pop("compiled_graphs")
    times = {mode: t for mode, t in times.items() if isinstance(t, (int, float)) and t > 0}
    return min(times, key=times.get) if times else "eager"


def checks_for(modes: set[str], rqvae_graphed: bool) -> list[str]:
    """The smoke checks a call needs: those of the step modes it plans, and the RQ-VAE's graph."""
    checks = {check for mode in modes for check in MODE_CHECKS[mode]} | ({RQVAE_CHECK} if rqvae_graphed else set())
    return sorted(checks)


@dataclass(frozen=True)
class RunCost:
    """What one run costs in seconds, for any number of training steps."""
    step_s: float
    validation_s: float   # one validation (in-set validation users, the method's validation retrievals)
    test_s: float         # the test evaluation
    setup_s: float        # start (imports, data, model, semantic IDs) and the step's capture or compile
    steps_per_epoch: int
    mode: str
    guessed: tuple[str, ...] = ()  # the figures that were guesses

    def seconds(self, steps: int) -> float:
        """Setup, `steps` steps, a validation every EVAL_FREQUENCE epochs and after the last, the test."""
        epochs = math.ceil(steps / self.steps_per_epoch)
        validations = epochs // EVAL_FREQUENCE + (1 if epochs % EVAL_FREQUENCE else 0)
        return self.setup_s + steps * self.step_s + validations * self.validation_s + self.test_s


def run_cost(bench: dict, spec: RunSpec, startup_s: float, measured: dict | None = None) -> RunCost:
    """The cost of `spec` from the figures: its benchmark model's fastest step mode, the step time a committed
    run measured for that model and mode where there is one (`measured`), else the benchmark's."""
    model, guessed = spec.bench, []
    mode = step_mode(bench, model)
    suffix = STEP_MODES[mode]

    def get(key: str, fallback: str | None = None) -> float:
        value, ok = figure(bench, key, fallback)
        if not ok:
            guessed.append(key)
        return value

    step_s = (measured or {}).get((model, mode)) or get(f"train_ms_{model}{suffix}", "train_ms") / 1000
    users = get("users")
    if model == "tiger":
        validation = users / get("tiger_eval_beam10_seqs_per_s")
        test = validation
    else:
        validation = users / get("liger_eval_beam100_seqs_per_s") + users / get("liger_eval_dense_seqs_per_s")
        test = validation + users / get("liger_eval_uni_seqs_per_s")
    warmup = bench.get(f"train_warmup_s_{model}{suffix}")
    warmup = float(warmup) if isinstance(warmup, (int, float)) else 0.0
    return RunCost(step_s, validation, test, startup_s + warmup,
                   math.ceil(get("train_examples") / BATCH_SIZE), mode, tuple(guessed))


def most_steps(cost: RunCost, seconds: float, cap: int) -> int:
    """The most steps (at most `cap`) whose run fits in `seconds`; 0 if not even one does."""
    lo, hi = 0, cap
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost.seconds(mid) <= seconds:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class LengthPlan:
    length: Length | None   # None: the run does not fit this call
    reason: str
    estimated_s: float | None = None


def plan_length(spec: RunSpec, fixed: Length | None, cost: RunCost, seconds: float, full_call: list[RunCost],
                full_call_s: float, cap: int) -> LengthPlan:
    """The training length of the next run. Once a dataset's length is fixed (its first run's plan), every
    run trains it: this run if it fits the `seconds` left, else not in this call. Before that, the first
    run fixes it: the most steps that fit both the seconds left now and a whole call (`full_call_s`, no
    RQ-VAE, no benchmark) of each method still queued (`full_call`), so that every later run fits one call;
    at most `cap` (the published 200,000)."""
    if fixed is not None:
        needed = cost.seconds(fixed.steps)
        if needed <= seconds:
            return LengthPlan(fixed, f"the length fixed by {fixed.fixed_by}", round(needed, 1))
        return LengthPlan(None, f"{fixed.steps:,} steps (fixed by {fixed.fixed_by}) need about {needed:.0f} s; "
                                f"{seconds:.0f} s are left", round(needed, 1))
    now = most_steps(cost, seconds, cap)
    whole = min((most_steps(c, full_call_s, cap) for c in full_call), default=cap)
    steps = min(now, whole)
    if steps < 1:
        return LengthPlan(None, f"not one step fits the {seconds:.0f} s left")
    why = ("the published length" if steps == cap and cap == 200_000 else "the cap" if steps == cap
           else "the most that fit the time left" if steps == now
           else "the most that fit one whole call for the slowest method queued")
    return LengthPlan(Length(steps, warmup_for(steps), spec.name), why, round(cost.seconds(steps), 1))


PAIR_GAIN = 0.95  # two at once only where their steps take at most this share of one after the other


def at_once_seconds(pair: dict | None, first: RunCost, second: RunCost, steps: int, seconds: float) -> float | None:
    """The seconds of two runs trained at once, where a committed measurement (`pair`: its `slowdown`) says
    that finishes both sooner than one after the other and they fit `seconds`; None otherwise."""
    if pair is None or not pair.get("slowdown", 1.0) <= PAIR_GAIN:
        return None
    both = pair_seconds(first, second, steps, pair["slowdown"])
    return both if both <= seconds else None


def pair_seconds(first: RunCost, second: RunCost, steps: int, slowdown: float) -> float:
    """Two runs of `steps` steps trained at once: their steps, side by side, take `slowdown` × the time of
    both one after the other (a measured figure: below 1, at once is faster); their evaluations, setups and
    tests are counted in full (they overlap, so this overstates)."""
    alone = first.seconds(steps) + second.seconds(steps)
    train = steps * (first.step_s + second.step_s)
    return alone - train + slowdown * train


def rqvae_plan(bench: dict, epochs: int = PUBLISHED_RQVAE_EPOCHS) -> dict:
    """The RQ-VAE of a call that has no committed semantic IDs: all its epochs (published: 8,000), replayed
    from a CUDA graph where the smoke check vouched for it, in full float32 (published), and the seconds
    that should take (a guess where the benchmark gave no figure)."""
    graphed = "rqvae_s_per_epoch_graphed" in bench
    per_epoch, measured = figure(bench, "rqvae_s_per_epoch_graphed" if graphed else "rqvae_s_per_epoch")
    return {"epochs": epochs, "cuda_graphs": graphed, "compile": False, "float32_matmul_precision": PUBLISHED_PRECISION,
            "estimated_s": round(epochs * per_epoch, 1), "estimate_measured": measured}


def rqvae_overrides(settings: dict) -> list[str]:
    return [f"dataset.RQ-VAE.epochs={settings['epochs']}",
            f"dataset.RQ-VAE.cuda_graphs={str(settings['cuda_graphs']).lower()}",
            f"dataset.RQ-VAE.compile={str(settings['compile']).lower()}",
            f"dataset.RQ-VAE.float32_matmul_precision={settings['float32_matmul_precision']}"]
