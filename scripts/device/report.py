"""What GPU calls of the reproduction produced: a Markdown report of calls, or a call added to the
reproduction folder.

    .venv/bin/python scripts/device/report.py OUT_DIR [OUT_DIR ...]          # a report of the calls, printed
    .venv/bin/python scripts/device/report.py OUT_DIR --into docs/reproduction
    .venv/bin/python scripts/device/report.py --into docs/reproduction       # only its README.md, written anew

`--into` checks everything first and then writes, so a refused call changes nothing: every finished
run's JSON (its metrics.json and `run` block) and its curves, the semantic IDs where the call trained
them, the call's record (calls/{date}-{gpu}-{n}/: summary, benchmark, logs), the training length where
the call's first run fixed it, and README.md: the table beside the paper's figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "scripts" / "device"))

from benchmark import VARIANT_SUFFIX  # noqa: E402
from reproduction import (  # noqa: E402
    PUBLISHED_STEPS,
    Length,
    Reproduction,
    ReproductionError,
    queue,
)

from device_run import json_object  # noqa: E402
from src.cache import atomic_write, write_json  # noqa: E402
from src.results import ROW_RETRIEVAL, read_published  # noqa: E402
from src.retrieval import DENSE, GENRET, UNI, metric_name  # noqa: E402
from src.tracking import read_curves  # noqa: E402

K, HYBRID_K = 10, 20
PAPER_SOURCE = "Yang et al. 2024"
# What the paper's figures lead to expect with the offline encoder (the paper used Sentence-T5-XXL)
EXPECTED = {"Beauty": {"tiger_in_recall": 0.055, "liger_cold_recall": 0.08}}
COLUMNS = [(group, measure) for group in ("in", "cold") for measure in ("Recall", "NDCG")]
COLUMN_TITLES = [f"{'in-set' if g == 'in' else 'cold-start'} {m}@{K}" for g, m in COLUMNS]


def number(value, digits: int = 4) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, ["---"] * len(header), *rows])


def retrieval_label(mode: str, generated: int | None) -> str:
    return mode if generated is None else f"{mode} (K = {generated})"


def cells(metrics: dict, mode: str, generated: int | None) -> list[str]:
    return [number(metrics.get(metric_name(mode, group, "test", measure, K, generated))) for group, measure in COLUMNS]


# ---- adding a call ---------------------------------------------------------------------------------

class Refused(ValueError):
    """The call cannot be added as it is; the message says why and what to do."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def has_test_metrics(record: dict) -> bool:
    return any("_test/" in key for key in record)


def add_call(out: Path, repro: Reproduction) -> list[str]:
    """Add the call in `out` to the reproduction folder; the lines that say what was added and what not.
    Raises Refused (nothing written) where the call does not fit what the folder holds."""
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        raise Refused(f"{out}: no summary.json; give the OUT_DIR of a call of scripts/device/run.sh")
    summary = json_object(summary_path)
    said: list[str] = []
    codes_now = {}  # dataset → the call's semantic-ID file, to add
    for path in sorted(out.glob("*_semantic_ids.npz")):
        dataset = path.name.removesuffix("_semantic_ids.npz")
        committed = repro.codes_path(dataset)
        if committed.is_file() and sha256(committed) != sha256(path):
            raise Refused(f"{path} differs from the committed {committed}: the runs of one table must share their "
                          "semantic IDs. Add the call to a new reproduction folder, or remove the committed file and "
                          "every run made with it first")
        if not committed.is_file():
            codes_now[dataset] = path
    runs, lengths = {}, {}
    for name in summary.get("runs", []):
        path = out / f"{name}.json"
        record = json_object(path) if path.is_file() else {}
        run = record.get("run", {})
        if not record or run.get("status") != "ok" or not has_test_metrics(record):
            said.append(f"not added: {name} ({'no ' + path.name if not record else run.get('status', '?')}"
                        f"{'' if has_test_metrics(record) else ', no test metrics'})")
            continue
        if repro.run_path(name).exists():
            raise Refused(f"{repro.run_path(name)} exists: a run is added once. Delete it first to replace it")
        dataset = run["dataset"]
        codes = codes_now.get(dataset, repro.codes_path(dataset))
        if not codes.is_file() or run.get("semantic_ids", {}).get("sha256") != sha256(codes):
            raise Refused(f"{path}: the run used semantic IDs {run.get('semantic_ids', {}).get('sha256', '?')[:12]}, "
                          f"not {codes.name if codes.is_file() else 'any committed file'}: every run of a table "
                          "uses the dataset's committed semantic IDs")
        fixed = lengths.get(dataset) or repro.length(dataset)
        if fixed is not None and (run.get("steps_planned"), run.get("warmup_steps")) != (fixed.steps,
                                                                                        fixed.warmup_steps):
            raise Refused(f"{path}: planned {run.get('steps_planned')} steps (warm-up {run.get('warmup_steps')}), "
                          f"but {dataset}'s runs train {fixed.steps} (warm-up {fixed.warmup_steps}, fixed by "
                          f"{fixed.fixed_by}); a longer schedule is a new table: add it to a new reproduction folder")
        if fixed is None:
            lengths[dataset] = Length(int(run["steps_planned"]), int(run["warmup_steps"]), name,
                                      run.get("scheduler", "cosine"))
        runs[name] = record
    # everything checked: write
    for dataset, path in codes_now.items():
        shutil.copyfile(path, repro.codes_path(dataset))
        said.append(f"added: {repro.codes_path(dataset).name}")
    for dataset, length in lengths.items():
        repro.fix_length(dataset, length)
        said.append(f"fixed: {dataset}'s training length, {length.describe()}, by {length.fixed_by}")
    for name, record in runs.items():
        curves = record.pop("curves", [])
        write_json(repro.run_path(name), record, indent=1)
        repro.curves_path(name).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(repro.curves_path(name)) as handle:
            handle.write("".join(json.dumps(point) + "\n" for point in curves))
        said.append(f"added: {name}.json and curves/{name}.jsonl")
    said.append(f"record: {keep_record(out, summary, repro)}")
    return said


def keep_record(out: Path, summary: dict, repro: Reproduction) -> Path:
    """calls/{date}-{gpu}-{n}/: the call's summary, benchmark figures and logs (never its run JSONs or
    semantic IDs, which live in the folder itself)."""
    machine = summary.get("machine", {})
    date = summary.get("date")
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", str(machine.get("gpu", "unknown"))).strip("-").lower()
    stem = f"{date or 'undated'}-{gpu}"
    n = 1 + sum(1 for _ in repro.root.glob(f"calls/{stem}-*"))
    folder = repro.root / "calls" / f"{stem}-{n}"
    folder.mkdir(parents=True)
    for path in sorted(out.iterdir()):
        if path.name in ("summary.json", "bench.json", "device.log") or path.suffix == ".log":
            shutil.copyfile(path, folder / path.name)
    return folder.relative_to(repro.root)


# ---- the reproduction's README ---------------------------------------------------------------------

def paper_figures(dataset_key: str) -> dict[tuple[str, str, str], float]:
    """(method, group, measure) → the LIGER paper's test figure@K for a dataset."""
    published = read_published()
    rows = published[(published["source"] == PAPER_SOURCE) & (published["dataset"] == dataset_key)
                     & (published["k"] == K)]
    return {(r.method, r.group, r.measure): float(r.value) for r in rows.itertuples()}


def selection_curve(record: dict, curves_path: Path) -> tuple[str | None, list[tuple[int, float]]]:
    """(the metric that chose the best model, its (step, value) at each validation)."""
    selection = next((key.removeprefix("train/best_") for key in record
                      if key.startswith("train/best_") and key != "train/best_epoch"), None)
    if selection is None or not curves_path.is_file():
        return selection, []
    curve = read_curves(curves_path).get(selection)
    return selection, [] if curve is None else [(s, v) for s, v in zip(curve.steps, curve.values) if v is not None]


def curve_reading(points: list[tuple[int, float]]) -> str:
    """What a validation curve says about the training length: still rising at the end, or levelled off."""
    if not points:
        return "no validation recorded"
    best = max(range(len(points)), key=lambda i: points[i][1])
    if best == len(points) - 1:
        rise = points[-1][1] - points[-2][1] if len(points) > 1 else None
        return ("best at the last validation: still rising when training stopped"
                + (f" (+{rise:.4f} over the one before)" if rise is not None else ""))
    drop = points[best][1] - points[-1][1]
    return (f"best at validation {best + 1} of {len(points)} (step {points[best][0]:,}); the last is {drop:.4f} "
            "lower: levelled off")


def expectations(dataset: str, runs: dict[str, dict], paper: dict) -> list[str]:
    """The expectations of the seed-42 TIGER and LIGER runs (EXPECTED), each met or by how much not."""
    expected = EXPECTED.get(dataset)
    tiger = runs.get(f"{dataset}_TIGER_seed42")
    liger = runs.get(f"{dataset}_LIGER_seed42")
    if expected is None:
        return []
    t_in = tiger and tiger.get(metric_name(GENRET, "in", "test", "Recall", K))
    l_in = liger and liger.get(metric_name(UNI, "in", "test", "Recall", K, HYBRID_K))
    l_cold = liger and liger.get(metric_name(UNI, "cold", "test", "Recall", K, HYBRID_K))

    def verdict(value, threshold) -> str:
        if not isinstance(value, (int, float)) or not isinstance(threshold, (int, float)):
            return "not measured yet"
        if value >= threshold:
            return f"met ({value:.4f})"
        return f"not met: {value:.4f}, short by {threshold - value:.4f} ({100 * (1 - value / threshold):.0f}% below)"

    return [
        f"- TIGER in-set Recall@{K} ≥ {expected['tiger_in_recall']} (paper "
        f"{number(paper.get(('TIGER', 'in', 'Recall')))}): {verdict(t_in, expected['tiger_in_recall'])}",
        f"- LIGER in-set Recall@{K} (uni, K = {HYBRID_K}) at least TIGER's "
        f"({number(t_in)}): {verdict(l_in, t_in)}",
        f"- LIGER cold-start Recall@{K} (uni, K = {HYBRID_K}) ≥ {expected['liger_cold_recall']} (paper "
        f"{number(paper.get(('LIGER', 'cold', 'Recall')))}): {verdict(l_cold, expected['liger_cold_recall'])}"]


def dataset_section(repro: Reproduction, dataset: str, runs: dict[str, dict]) -> str:
    mine = {name: runs[name] for name in (spec.name for spec in queue(dataset)) if name in runs}
    missing = repro.missing(dataset)
    length = repro.length(dataset)
    first = next(iter(mine.values()), {}).get("run", {})
    paper = paper_figures(first.get("dataset_key", f"Amazon_{dataset}"))
    lines = [f"## {dataset}", "",
             f"{len(mine)} of {len(queue(dataset))} runs finished"
             + (f"; next: `{missing[0].name}`." if missing else ": the table is complete.")]
    if length is not None:
        lines.append(f"Every run trains {length.describe()}: the length `{length.fixed_by}`'s plan fixed "
                     f"(the paper: {PUBLISHED_STEPS:,} steps, warm-up 10,000).")
    codes = repro.codes_path(dataset)
    if codes.is_file():
        ids = first.get("semantic_ids", {})
        lines.append(f"Semantic IDs: `{codes.name}` (RQ-VAE {number(ids.get('epochs'), 0)} epochs"
                     f"{', replayed from a CUDA graph' if ids.get('cuda_graphs') else ''}), used by every run. "
                     f"Text encoder: {first.get('encoder', '?')} (the paper: Sentence-T5-XXL).")
    rows = []
    for record in mine.values():
        run = record["run"]
        label = f"{run['method']}, seed {run['seed']}"
        steps = number(record.get("train/steps"), 0)
        mode, generated = ROW_RETRIEVAL.get(run["method"]) or (GENRET, None)
        rows.append([label, retrieval_label(mode, generated), steps, *cells(record, mode, generated)])
        if run["method"] == "LIGER":  # its other retrievals, for reading the hybrid
            rows += [[label, retrieval_label(m, None), steps, *cells(record, m, None)] for m in (GENRET, DENSE)]
    for method in ("TIGER", "LIGER"):
        if any(key[0] == method for key in paper):
            rows.append([f"**paper: {method}**", "uni (K = 20)" if method == "LIGER" else "genret", "published",
                         *(number(paper.get((method, group, measure))) for group, measure in COLUMNS)])
    lines += ["", f"### Test Recall@{K} and NDCG@{K}", "",
              table(["run", "retrieval", "steps", *COLUMN_TITLES], rows) if rows else "No finished run yet."]
    expected = expectations(dataset, mine, paper)
    if expected:
        lines += ["", "### Against what the paper's figures lead to expect", "", *expected]
    if mine:
        curve_rows, run_rows = [], []
        for name, record in mine.items():
            run = record["run"]
            selection, points = selection_curve(record, repro.curves_path(name))
            shown = ", ".join(f"{v:.4f}" for _, v in points)
            curve_rows.append([name, f"`{selection}`", shown or "-", curve_reading(points)])
            wall = run.get("wall_s", {})
            run_rows.append([name, f"{number(record.get('train/steps'), 0)} of {number(run.get('steps_planned'), 0)}"
                             + (" (out of time)" if run.get("out_of_time") else ""),
                             number(record.get("train/best_epoch"), 0), str(run.get("step_mode", "-")),
                             number(1000 * run["s_per_step"], 2) if run.get("s_per_step") else "-",
                             f"{number(wall.get('train'), 0)} / {number(wall.get('test'), 0)}",
                             f"{run.get('gpu', '?')}, torch {run.get('torch', '?')}, CUDA {run.get('cuda', '?')}",
                             f"`{str(run.get('commit', '?'))[:10]}`", str(run.get("date", "?"))])
        lines += ["", "### Validation curves", "",
                  "The metric that chose each run's best model, at each validation (every 10 epochs and the last); "
                  "the full curves are in `curves/`.", "",
                  table(["run", "metric", "values", "reading"], curve_rows),
                  "", "### How each run trained", "",
                  table(["run", "steps", "best epoch", "step mode", "ms/step", "train / test (s)", "machine",
                         "commit", "date"], run_rows)]
    return "\n".join(lines)


def write_readme(repro: Reproduction) -> Path:
    runs = repro.runs()
    datasets = list(dict.fromkeys([*(r["run"]["dataset"] for r in runs.values() if "run" in r),
                                   *repro.plans(), *(p.name.removesuffix("_semantic_ids.npz")
                                                      for p in repro.root.glob("*_semantic_ids.npz"))])) or ["Beauty"]
    text = "\n\n".join([
        "# Reproduction of the LIGER paper",
        "Written by `scripts/device/report.py --into` from the files of this folder; do not edit it by hand. "
        "Each GPU call (`bash scripts/device/run.sh OUT_DIR`, [docs/gpu.md](../gpu.md)) trains the next missing "
        "runs; "
        "`python scripts/device/report.py OUT_DIR --into docs/reproduction` adds them here. Figures are "
        "test-split metrics of the best validation epoch; the paper's rows are its published figures "
        "(`docs/published_results.csv`). Runs are never tuned on the test split.",
        *(dataset_section(repro, dataset, runs) for dataset in datasets),
        "## Files\n\n"
        "- `{dataset}_{METHOD}_seed{S}.json`: a run's metrics.json and its `run` block (steps trained and planned, "
        "schedule, best epoch, encoder, GPU, torch and CUDA, commit, wall time of each stage)\n"
        "- `curves/{run}.jsonl`: the run's curves (src/tracking.py's format)\n"
        "- `{dataset}_semantic_ids.npz`: the semantic IDs every run of that dataset uses "
        "(`dataset.RQ-VAE.codes_file`)\n"
        "- `plan.json`: each dataset's training length, fixed by its first run\n"
        "- `calls/`: each call's summary, benchmark figures and logs"])
    repro.root.mkdir(parents=True, exist_ok=True)
    path = repro.root / "README.md"
    with atomic_write(path) as handle:
        handle.write(text + "\n")
    return path


# ---- a printed report of calls ---------------------------------------------------------------------

def call_report(out: Path) -> str:
    summary = json_object(out / "summary.json") if (out / "summary.json").is_file() else {}
    bench = json_object(out / "bench.json") if (out / "bench.json").is_file() else {}
    machine = summary.get("machine", {})
    parts = [f"## `{out}`", f"{machine.get('gpu', 'machine not recorded')}, torch {machine.get('torch', '?')}, "
             f"CUDA {machine.get('cuda', '?')}; commit {summary.get('commit', '?')}; wall "
             f"{number(summary.get('wall_s'), 1)} s; figures: {summary.get('figures', '-')}"]
    steps = [[step, s.get("status", "?"), number(s.get("wall_s"), 1)] for step, s in summary.get("steps", {}).items()]
    parts.append(table(["step", "status", "wall (s)"], steps) if steps else "No step recorded.")
    parts += [f"- {item['run']}: not started: {item['why']}" for item in summary.get("not_started", [])]
    pair = summary.get("pair_measurement")
    if pair:
        parts.append(f"Two runs at once{' (MPS)' if pair.get('mps') else ''}: {pair['together_ms']} ms a step "
                     f"against {pair['alone_ms']} ms alone: slowdown {pair['slowdown']}")
    variants = [[variant, *(number(bench.get(f"train_ms_{m}{suffix}"), 2) for m in ("tiger", "liger"))]
                for variant, suffix in VARIANT_SUFFIX.items()
                if any(f"train_ms_{m}{suffix}" in bench for m in ("tiger", "liger"))]
    if variants:
        parts.append(table(["training step (ms)", "TIGER", "LIGER"], variants))
    rows = []
    for name in summary.get("runs", []):
        record = json_object(out / f"{name}.json") if (out / f"{name}.json").is_file() else {}
        method = record.get("run", {}).get("method", "?")
        mode, generated = ROW_RETRIEVAL.get(method) or (GENRET, None)
        rows.append([name, record.get("run", {}).get("status", "?"), number(record.get("train/steps"), 0),
                     retrieval_label(mode, generated), *cells(record, mode, generated)])
    if rows:
        parts.append(table(["run", "status", "steps", "retrieval", *COLUMN_TITLES], rows))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dirs", type=Path, nargs="*", metavar="OUT_DIR")
    parser.add_argument("--into", type=Path, default=None, metavar="FOLDER",
                        help="add the call (one OUT_DIR) to this reproduction folder, e.g. docs/reproduction; "
                             "without OUT_DIR, write its README.md anew")
    args = parser.parse_args()
    try:
        if args.into is None:
            if not args.out_dirs:
                parser.error("give an OUT_DIR of a call, or --into FOLDER")
            for path in args.out_dirs:
                if not (path / "summary.json").is_file():
                    parser.error(f"{path}: no summary.json; give the OUT_DIR of a call of scripts/device/run.sh")
            print("\n\n".join(call_report(path) for path in args.out_dirs))
            return
        if len(args.out_dirs) > 1:
            parser.error("--into adds one call at a time: give one OUT_DIR")
        repro = Reproduction(args.into)
        for line in add_call(args.out_dirs[0], repro) if args.out_dirs else []:
            print(line)
        print(f"written: {write_readme(repro)}")
    except (Refused, ReproductionError, ValueError) as exc:
        print(f"report.py: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
