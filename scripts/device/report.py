"""A Markdown report of one or more device calls (README, "The GPU run"): what ran, the speed targets
against the figures measured, the training step of every variant, and the test metrics beside the
paper's TIGER. The first draft of a results folder's README.md, read off the files themselves:

    .venv/bin/python scripts/device/report.py docs/results/gpu_DATE_DEVICE/call1 [more OUT_DIRs]

Each OUT_DIR is what a call of `scripts/device/run.sh` wrote (any of its files may be missing: a
step that failed, or a call with `--plan-from`, which runs no benchmark). A figure that was not
measured is shown as `-`, and its target as not measured, never as met.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "scripts" / "device"))

from benchmark import VARIANT_SUFFIX  # noqa: E402

from device_run import (  # noqa: E402
    METHODS,
    PUBLISHED_PRECISION,
    PUBLISHED_RQVAE_EPOCHS,
    json_object,
    rqvae_timings,
    smoke_report,
    vouched_for,
)
from src.retrieval import DENSE, GENRET, UNI, metric_name  # noqa: E402

# The GPU speed issue's targets on one H200 (required; the aims are the whole run in one call)
STEP_MS = {"tiger": 6.0, "liger": 8.0}
STEP_MS_AIM = {"tiger": 1.5, "liger": 2.0}
VALIDATION_S, TEST_S, RQVAE_S, HOST_MB = 2.0, 5.0, 60.0, 2048.0
# The paper's TIGER on Beauty, as the GPU-run issue quotes it, and what that issue expects of the runs
PAPER_TIGER = {"Recall": 0.0601, "NDCG": 0.0322}
TIGER_RECALL_EXPECTED = 0.055
K, HYBRID_K = 10, 20
RQVAE_LABELS = {(False, False): "eager", (True, False): "graphed", (True, True): "compiled, graphed"}


def rqvae_label(cuda_graphs: bool, compile_: bool, precision: str) -> str:
    """How an RQ-VAE trained, in words: "graphed", "compiled, graphed, TF32", ..."""
    return RQVAE_LABELS[(bool(cuda_graphs), bool(compile_))] + ("" if precision == PUBLISHED_PRECISION
                                                                 else ", TF32" if precision == "high"
                                                                 else f", float32 products {precision}")


@dataclass(frozen=True)
class Call:
    """What one call left in its OUT_DIR ({} for a file it did not write)."""
    path: Path
    summary: dict
    bench: dict   # the benchmark's figures that the smoke check vouched for
    smoke: dict
    metrics: dict[str, dict]  # per method

    @classmethod
    def read(cls, path: Path) -> Call:
        def read(name: str) -> dict:
            return json_object(path / name) if (path / name).is_file() else {}

        summary = read("summary.json")
        # as the call's plan held them: a --skip smoke call's graphed figures as measured, a killed check's left out
        smoke = smoke_report(path, skipped="smoke" in summary.get("options", {}).get("skip", []))
        bench, _ = vouched_for(read("bench.json"), smoke)
        return cls(path, summary, bench, smoke or {},
                   {name: read(f"{name}_metrics.json") or read(f"beauty_{name}_metrics.json") for name in METHODS})


def number(value, digits: int = 1) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def verdict(value, limit: float) -> str:
    if not isinstance(value, (int, float)):
        return "not measured"
    return "met" if value <= limit else f"not met ({value / limit:.1f}× the target)"


def heading(call: Call) -> str:
    names = {call.bench.get("device"), call.smoke.get("summary", {}).get("name")} - {None}
    torch_ = call.bench.get("torch") or call.smoke.get("summary", {}).get("torch") or "?"
    options = call.summary.get("options", {})
    flags = ", ".join(f"{k}: {v}" for k, v in options.items() if v not in (None, False, []))
    return (f"## `{call.path}`\n\n{', '.join(sorted(names)) or 'device not recorded'}; torch {torch_}; "
            f"{call.bench.get('date', 'date not recorded')}; mode {call.summary.get('mode', '?')}"
            + (f"; options: {flags}" if flags else "") + f"; wall {number(call.summary.get('wall_s'))} s")


def steps_table(call: Call) -> str:
    rows = []
    for step, s in call.summary.get("steps", {}).items():
        note = ""
        if step == "prepare":
            note = (f"RQ-VAE {number(s.get('rqvae_epochs'), 0)} of {PUBLISHED_RQVAE_EPOCHS:,} epochs, "
                    + rqvae_label(s.get("rqvae_cuda_graphs"), s.get("rqvae_compile"),
                                  s.get("rqvae_float32_matmul_precision", PUBLISHED_PRECISION)))
        elif step in METHODS:
            m = call.metrics[step]
            note = (f"{m.get('train/steps', '-')} steps in {number(m.get('time/train'))} s, "
                    f"test in {number(m.get('time/test'))} s" + steps_ran(m))
        rows.append([step, s.get("status", "?"), number(s.get("wall_s")), note])
    plan = call.summary.get("plan", {})
    text = table(["step", "status", "wall (s)", ""], rows)
    if plan:
        text += (f"\n\nPlan: {number(plan.get('steps'), 0)} steps ({plan.get('steps_reason')}; published "
                 f"{number(plan.get('published_steps'), 0)}), warm-up {number(plan.get('warmup_steps'), 0)}, step mode "
                 f"`{plan.get('step_mode', '-')}`, estimated {number(plan.get('estimated_s_per_step_of_both'), 4)} s "
                 "a step of both runs.")
    for line in call.summary.get("left_out", []):
        text += f"\n- {line}"
    return text


def steps_ran(metrics: dict) -> str:
    """How a run's steps ran, as its metrics say (compiled, replayed from a graph), and what failed."""
    parts = ["compiled"] if metrics.get("train/compiled") else []
    if "train/graph_replays" in metrics:
        parts.append(f"{metrics['train/graph_replays']} replayed from a CUDA graph, "
                     f"{metrics.get('train/graph_eager_steps')} eager")
    parts += [f"{key.split('/')[1].replace('_', ' ')}: {metrics[key]}"
              for key in ("train/compile_error", "train/capture_error") if metrics.get(key)]
    return "".join(f"; {part}" for part in parts)


def fastest_step_ms(bench: dict, name: str) -> tuple[float | None, str]:
    """The fastest training step of the compact T5 (any variant but the baseline), and its variant."""
    times = {variant: bench.get(f"train_ms_{name}{suffix}") for variant, suffix in VARIANT_SUFFIX.items()
             if variant != "transformers"}
    times = {v: t for v, t in times.items() if isinstance(t, (int, float))}
    if not times:
        return None, "-"
    variant = min(times, key=times.get)
    return times[variant], variant


def rqvae_seconds(bench: dict) -> tuple[float | None, str]:
    """Seconds of the published 8,000 RQ-VAE epochs, the fastest way measured (warm-up included)."""
    totals = {rqvae_label(*mode): PUBLISHED_RQVAE_EPOCHS * epoch + first
              for mode, (epoch, first) in rqvae_timings(bench).items()}
    if not totals:
        return None, "-"
    kind = min(totals, key=totals.get)
    return totals[kind], kind


def validation_seconds(bench: dict, metrics: dict) -> float | None:
    """LIGER's validation (beam search and dense head over the in-set validation sequences), from the
    benchmark's rates: their sum slightly overstates it (the two share the encoder's pass)."""
    n = (metrics.get("data/val_examples") or bench.get("users") or 0) - (metrics.get("data/cold_val_examples") or 0)
    beams, dense = bench.get("liger_eval_beam100_seqs_per_s"), bench.get("liger_eval_dense_seqs_per_s")
    return n / beams + n / dense if n and beams and dense else None


def targets_table(call: Call) -> str:
    bench, liger = call.bench, call.metrics["liger"]
    rows = []
    for name in METHODS:
        ms, variant = fastest_step_ms(bench, name)
        rows.append([f"{name.upper()} training step", f"≤ {STEP_MS[name]:g} ms (aim ≤ {STEP_MS_AIM[name]:g})",
                     f"{number(ms, 2)} ms ({variant})", verdict(ms, STEP_MS[name])])
    val = validation_seconds(bench, liger)
    rows.append(["LIGER validation (beam 100 + dense)", f"≤ {VALIDATION_S:g} s",
                 f"{number(val, 2)} s (benchmark rates); {number(liger.get('time/validation_mean'), 2)} s in the run",
                 verdict(val, VALIDATION_S)])
    rows.append(["LIGER test evaluation", f"≤ {TEST_S:g} s", f"{number(liger.get('time/test'), 2)} s in the run "
                 "(the TIGER run may share the GPU)", verdict(liger.get("time/test"), TEST_S)])
    rq, kind = rqvae_seconds(bench)
    rows.append([f"RQ-VAE, {PUBLISHED_RQVAE_EPOCHS:,} epochs", f"≤ {RQVAE_S:g} s (its checks included)",
                 f"{number(rq)} s ({kind}; the benchmark's epoch time, checks not counted)",
                 verdict(rq, RQVAE_S)])
    host = [bench.get(f"train_host_rss_mb_above_baseline_{name}") for name in METHODS]
    host = max((h for h in host if isinstance(h, (int, float))), default=None)
    rows.append(["host memory of training above the baseline", f"≤ {HOST_MB:,.0f} MB", f"{number(host, 0)} MB",
                 verdict(host, HOST_MB)])
    return table(["target", "required", "measured", ""], rows)


def step_variants_table(bench: dict) -> str:
    """The step time of each variant; for a graphed one also the host's part of a step (`train_host_ms_*`)."""
    def cell(name: str, suffix: str) -> str:
        host = bench.get(f"train_host_ms_{name}{suffix}")
        host_part = f" (host {number(host, 2)})" if isinstance(host, (int, float)) else ""
        return number(bench.get(f"train_ms_{name}{suffix}"), 2) + host_part

    rows = []
    for variant, suffix in VARIANT_SUFFIX.items():
        times = [bench.get(f"train_ms_{name}{suffix}") for name in METHODS]
        if any(isinstance(t, (int, float)) for t in times):
            rows.append([variant, *(cell(name, suffix) for name in METHODS)])
    errors = {k: v for k, v in bench.items() if "error" in k}
    text = table(["training step (ms)", *(name.upper() for name in METHODS)], rows) if rows else ""
    return text + "".join(f"\n- `{k}`: {v}" for k, v in errors.items())


def test_table(metrics: dict[str, dict]) -> str:
    def row(label: str, m: dict, mode: str, generated: int | None = None) -> list[str]:
        return [label, *(number(m.get(metric_name(mode, group, "test", measure, K, generated)), 4)
                         for group in ("in", "cold") for measure in ("Recall", "NDCG"))]

    tiger, liger = metrics["tiger"], metrics["liger"]
    rows = [row("TIGER genret", tiger, GENRET), row("LIGER genret", liger, GENRET), row("LIGER dense", liger, DENSE),
            row(f"LIGER uni (K = {HYBRID_K})", liger, UNI, HYBRID_K),
            ["paper's TIGER (Beauty)", number(PAPER_TIGER["Recall"], 4), number(PAPER_TIGER["NDCG"], 4), "", ""]]
    header = ["", *(f"{group} {measure}@{K}" for group in ("in-set", "cold") for measure in ("Recall", "NDCG"))]
    steps = [f"{name.upper()} {metrics[name].get('train/steps', '-')}" for name in METHODS]
    return table(header, rows) + f"\n\nSteps trained: {', '.join(steps)}.\n\n" + expectations(tiger, liger)


def expectations(tiger: dict, liger: dict) -> str:
    """What the GPU-run issue expects on Beauty, each met or not (or not measured)."""
    t_in = tiger.get(metric_name(GENRET, "in", "test", "Recall", K))
    l_in = liger.get(metric_name(UNI, "in", "test", "Recall", K, HYBRID_K))
    t_cold = tiger.get(metric_name(GENRET, "cold", "test", "Recall", K))
    l_cold = liger.get(metric_name(UNI, "cold", "test", "Recall", K, HYBRID_K))

    def check(ok: bool | None) -> str:
        return "not measured" if ok is None else "met" if ok else "not met"

    def both(a, b, compare) -> bool | None:
        return None if a is None or b is None else compare(a, b)

    return "\n".join([
        f"- TIGER in-set Recall@{K} ≥ {TIGER_RECALL_EXPECTED}: "
        f"{check(None if t_in is None else t_in >= TIGER_RECALL_EXPECTED)} ({number(t_in, 4)})",
        f"- LIGER in-set Recall@{K} (uni, K = {HYBRID_K}) at least TIGER's: "
        f"{check(both(l_in, t_in, lambda a, b: a >= b))} ({number(l_in, 4)} against {number(t_in, 4)})",
        f"- LIGER cold-start Recall@{K} (uni, K = {HYBRID_K}) above TIGER's: "
        f"{check(both(l_cold, t_cold, lambda a, b: a > b))} ({number(l_cold, 4)} against {number(t_cold, 4)})"])


def report(call: Call) -> str:
    parts = [heading(call), "### Steps", steps_table(call)]
    if call.bench:
        parts += ["### Speed targets", targets_table(call)]
        variants = step_variants_table(call.bench)
        parts += ["### Training step of each variant", variants] if variants else []
    else:
        parts += ["No benchmark figures in this call (a `--plan-from` call, or the benchmark failed)."]
    if any(call.metrics.values()):
        parts += ["### Test metrics", test_table(call.metrics)]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dirs", type=Path, nargs="+", metavar="OUT_DIR")
    args = parser.parse_args()
    for path in args.out_dirs:
        if not (path / "summary.json").is_file() and not (path / "bench.json").is_file():
            parser.error(f"{path}: no summary.json or bench.json; give the OUT_DIR of a device call")
    try:
        print("\n\n".join(report(Call.read(path)) for path in args.out_dirs))
    except ValueError as exc:  # a file that is not the JSON object it should be, named
        parser.error(str(exc))


if __name__ == "__main__":
    main()
