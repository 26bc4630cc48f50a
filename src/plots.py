"""Figures of many runs' results as PNG files (`scripts/results.py --plots OUT_DIR`).

- `training_{dataset}.png`: training losses (total, semantic-ID, dense) against the step, a line per run;
- `validation_{dataset}.png`: the in-set validation metrics (genret / dense NDCG@k and Recall@k)
  against the step, a line per run;
- `uni_sweep_{dataset}.png`: the hybrid's in-set and cold-start Recall@k against K, mean over
  seeds with std error bars, a line per row of the table;
- `sid_usage.png`: the share of each semantic-ID level's codes in use, mean over seeds with std
  error bars, bars per dataset and row.

The curves come from each run's `curves.jsonl` (src.tracking): a run without one (older runs) is
left out of the curve figures and named by `write_plots`. Every run that has curves is drawn, the
unfinished ones too (dashed), so a sweep can be watched while it runs. Figures are drawn through
matplotlib's object API (Figure, no pyplot): no GUI backend and no global state, PNGs by Agg.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from src.errors import DataError, NotWritableError
from src.results import GROUP_NAMES, METHODS, Run, group_runs, run_labels, seed_order, sweep_cells
from src.retrieval import DENSE, GENRET, MEASURES, metric_name
from src.tracking import Curve, read_curves

LOSSES = ("train/loss", "train/sid_loss", "train/embedding_loss")
SID_USAGE = re.compile(r"^sid/usage_l(\d+)$")
Curves = dict[Path, dict[str, Curve]]  # run folder -> its curves by name
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def curves_of(runs: Sequence[Run]) -> tuple[Curves, list[str]]:
    """The curves of each run that has a readable curves.jsonl, and `path: why` for the others."""
    curves, skipped = {}, []
    for run in runs:
        if not run.curves_path.exists():
            skipped.append(f"{run.path}: no curves.jsonl (a run from before curves were written, or not yet training)")
            continue
        try:
            curves[run.path] = read_curves(run.curves_path)
        except (OSError, DataError) as exc:
            skipped.append(f"{run.path}: {exc}")
    return curves, skipped


def _line_label(run: Run, labels: dict[Path, str]) -> str:
    return f"{labels[run.path]}, seed {run.seed}" + ("" if run.finished else " (unfinished)")


def _curve_figure(runs: Sequence[Run], curves: Curves, names: Sequence[str],
                  title: str, path: Path) -> Path | None:
    """One panel per curve name that some run has, a line per run (colour per row label, marker per
    seed, dashed if unfinished); None (nothing written) when no run has any of the names."""
    names = [name for name in names if any(name in curves.get(run.path, {}) for run in runs)]
    if not names:
        return None
    labels = run_labels(runs)
    runs = sorted(runs, key=lambda run: (METHODS.index(run.method), labels[run.path], seed_order(run)))  # table order
    colours = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels[run.path] for run in runs))}
    # the seeds of one row share its colour; a marker each tells them apart
    rows = {label: [run.path for run in runs if labels[run.path] == label] for label in colours}
    seed_index = {path: paths.index(path) for paths in rows.values() for path in paths}
    figure = Figure(figsize=(5 * len(names), 4), layout="constrained")
    for axes, name in zip(np.atleast_1d(figure.subplots(1, len(names))), names):
        for run in runs:
            curve = curves.get(run.path, {}).get(name)
            if curve is None:
                continue
            values = [np.nan if value is None else value for value in curve.values]
            axes.plot(curve.steps, values, color=colours[labels[run.path]], linestyle="-" if run.finished else "--",
                      marker=MARKERS[seed_index[run.path] % len(MARKERS)], markersize=4, label=_line_label(run, labels))
        axes.set(title=name, xlabel=curve_axis(curves, name))
        axes.grid(alpha=0.3)
    _legend_below(figure)
    figure.suptitle(title)
    figure.savefig(path, dpi=110)
    return path


def _legend_below(figure: Figure) -> None:
    """One legend under the panels for the lines of all of them (a panel may lack some runs' lines)."""
    handles = {}
    for axes in figure.axes:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(3, len(handles)),
                  fontsize="small")


def curve_axis(curves: Curves, name: str) -> str:
    """The axis a curve is logged against (train/step, rqvae/epoch)."""
    return next(run_curves[name].axis for run_curves in curves.values() if name in run_curves)


def _by_dataset(runs: Sequence[Run]) -> dict[str, list[Run]]:
    datasets: dict[str, list[Run]] = {}
    for run in runs:
        datasets.setdefault(run.dataset, []).append(run)
    return datasets


def file_name(stem: str, dataset: str) -> str:
    """`{stem}_{dataset}.png`, the dataset's name made safe for a file name (a custom dataset's may hold anything)."""
    return f"{stem}_{re.sub(r'[^A-Za-z0-9_.-]', '_', dataset)}.png"


def plot_training_curves(runs: Sequence[Run], out_dir: Path, curves: Curves | None = None) -> list[Path]:
    """`training_{dataset}.png` per dataset with curves: the losses against the training step.
    curves: those of `curves_of(runs)`, read here when not given."""
    curves = curves_of(runs)[0] if curves is None else curves
    paths = [_curve_figure(members, curves, LOSSES, f"{dataset}: training losses",
                           Path(out_dir) / file_name("training", dataset))
             for dataset, members in _by_dataset(runs).items()]
    return [path for path in paths if path is not None]


def validation_names(k: int) -> list[str]:
    """The in-set validation metrics training logs (the model selection's among them), NDCG first."""
    return [metric_name(mode, "in", "val", measure, k) for measure in reversed(MEASURES) for mode in (GENRET, DENSE)]


def plot_validation_curves(runs: Sequence[Run], out_dir: Path, k: int = 10, curves: Curves | None = None) -> list[Path]:
    """`validation_{dataset}.png` per dataset with curves: in-set validation NDCG@k and Recall@k."""
    curves = curves_of(runs)[0] if curves is None else curves
    paths = [_curve_figure(members, curves, validation_names(k), f"{dataset}: validation",
                           Path(out_dir) / file_name("validation", dataset))
             for dataset, members in _by_dataset(runs).items()]
    return [path for path in paths if path is not None]


def plot_uni_sweep(runs: Sequence[Run], out_dir: Path, k: int = 10) -> list[Path]:
    """`uni_sweep_{dataset}.png` per dataset with uni metrics: in-set and cold-start Recall@k against
    K, mean with std error bars (none for one seed), a line per row of the table."""
    cells = sweep_cells(group_runs(runs), k)
    cells = cells[cells["measure"] == "Recall"]
    paths = []
    for dataset, of_dataset in cells.groupby("dataset", sort=False):
        figure = Figure(figsize=(10, 4), layout="constrained")
        for axes, group in zip(figure.subplots(1, 2, sharey=True), ("in", "cold")):
            for row, line in of_dataset[of_dataset["group"] == group].groupby("row", sort=False):
                line = line.sort_values("K")
                axes.errorbar(line["K"].astype(float), line["mean"], yerr=line["std"].fillna(0), capsize=3,
                              marker="o", label=f"{row} (n={line['n'].max()})")
            axes.set(title=f"{GROUP_NAMES[group]} Recall@{k}", xlabel="K (generated candidates)")
            axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        figure.suptitle(f"{dataset}: hybrid (uni) retrieval by K")
        path = Path(out_dir) / file_name("uni_sweep", dataset)
        figure.savefig(path, dpi=110)
        paths.append(path)
    return paths


def sid_usage(runs: Sequence[Run]) -> pd.DataFrame:
    """Per (dataset, row label) of the finished runs and semantic-ID level: mean, std and n of
    `sid/usage_l{level}` (the share of the level's codes some item uses)."""
    records = [{"dataset": group.dataset, "row": group.label, "level": int(match[1]), "usage": value}
               for group in group_runs(runs) for run in group.runs for name, value in run.metrics.items()
               if (match := SID_USAGE.match(name)) and value is not None]
    frame = pd.DataFrame(records, columns=["dataset", "row", "level", "usage"])
    return (frame.groupby(["dataset", "row", "level"], sort=False)["usage"]
            .agg(mean="mean", std="std", n="count").reset_index())


def plot_sid_usage(runs: Sequence[Run], out_dir: Path) -> list[Path]:
    """`sid_usage.png`: bars per (dataset, row), one per semantic-ID level; none without sid/usage metrics."""
    usage = sid_usage(runs)
    if usage.empty:
        return []
    keys = list(dict.fromkeys(zip(usage["dataset"], usage["row"])))  # the bar clusters, in the table's order
    levels = sorted(usage["level"].unique())
    height = 0.8 / len(levels)
    positions = np.arange(len(keys))[::-1]  # the first cluster on top
    # horizontal bars: the row labels (with their settings) stay readable however long
    figure = Figure(figsize=(8, 1 + 0.6 * len(keys) * max(1, len(levels) / 3)), layout="constrained")
    axes = figure.subplots()
    for i, level in enumerate(levels):
        bars = usage[usage["level"] == level].set_index(["dataset", "row"]).reindex(keys)
        axes.barh(positions + ((len(levels) - 1) / 2 - i) * height, bars["mean"], xerr=bars["std"].fillna(0),
                  height=height, capsize=2, label=f"level {level}")
    axes.set_yticks(positions, [f"{dataset}\n{row}" for dataset, row in keys], fontsize="small")
    axes.set(xlabel="share of the level's codes used", xlim=(0, 1.05),
             title="Semantic-ID code usage per level (mean ± std over seeds)")
    axes.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=len(levels), fontsize="small")
    path = Path(out_dir) / "sid_usage.png"
    figure.savefig(path, dpi=110)
    return [path]


def write_plots(runs: Sequence[Run], out_dir: Path, k: int = 10) -> tuple[list[Path], list[str]]:
    """Every figure, into out_dir (made if missing): (the PNGs written, `path: why` for each run left
    out of the curve figures)."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NotWritableError(f"{out_dir}: cannot make the plot folder ({exc.strerror}); "
                               "give --plots a folder you can write") from None
    curves, skipped = curves_of(runs)
    paths = [*plot_training_curves(runs, out_dir, curves), *plot_validation_curves(runs, out_dir, k, curves),
             *plot_uni_sweep(runs, out_dir, k), *plot_sid_usage(runs, out_dir)]
    return paths, skipped
