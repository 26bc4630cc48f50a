"""Figures of many runs' results as PNG files (`scripts/results.py --plots OUT_DIR`).

- `training_{dataset}.png`: the training losses (total, semantic-ID, dense; each a mean over an
  epoch) against the training step from 0, a line per run;
- `validation_{dataset}.png`: the in-set validation Recall@k and NDCG@k against the training step, a
  row of panels per retrieval (generative, then dense), a line per run, each validation a marker and
  each run's selected checkpoint (its best validation of the selection metric) a large star;
- `uni_sweep_{dataset}.png`: the hybrid's test Recall@k (top row) and NDCG@k (bottom row) against K,
  in-set and cold-start targets side by side (a panel only where there are such targets), mean over
  seeds with std error bars, a line per row of the table;
- `sid_usage.png`: the share of each semantic-ID level's codes in use (the codebook size in the
  y-label), mean over seeds with std error bars, a panel per dataset, a bar per row of the table.

One colour per row of the table (its method and settings), the same in every figure: the seeds of a
row share it and are told apart by their marker (and in the legend); a run that repeats a seed of its
row (one run copied to two folders) is drawn hollow and dotted and named as a copy in the legend, so
that it never hides under the other. Unfinished runs are dashed. Every figure has one legend, under its
panels.

Axes of a metric (Recall, NDCG, the share of codes in use; all in [0, 1]) start at 0 and end 10% above
the largest value drawn, at least `MIN_SPAN` (0.05) and at most 1: small gaps between runs are not
blown up into large ones. Error bars (std over seeds) are cut at 0 and 1.

The curves come from each run's `curves.jsonl` (src.tracking): a run without one (older runs) is
left out of the curve figures and named by `write_plots`. Every run that has curves is drawn, the
unfinished ones too, so a sweep can be watched while it runs. Figures are drawn through matplotlib's
object API (Figure, no pyplot): no GUI backend and no global state, PNGs by Agg. `figures` returns
them by file name (for a look at their artists); `write_plots` saves each and clears it.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from src.errors import DataError, NotWritableError
from src.results import GROUP_NAMES, METHODS, Run, group_runs, run_labels, seed_order, sweep_cells
from src.retrieval import DENSE, GENRET, GROUPS, MEASURES, metric_name, metric_name_pattern
from src.tracking import Curve, read_curves

# The training losses, in words (src.model.ModelOutput)
LOSSES = {"train/loss": "Total loss (weighted sum)", "train/sid_loss": "Semantic-ID loss (token cross-entropy)",
          "train/embedding_loss": "Dense loss (item cross-entropy)"}
AXES = {"train/step": "training step", "rqvae/epoch": "RQ-VAE epoch"}  # what curves are logged against, in words
RETRIEVALS = {GENRET: "Generative retrieval", DENSE: "Dense retrieval"}
SID_USAGE = re.compile(r"^sid/usage_l(\d+)$")
VAL_METRIC = metric_name_pattern("val")
Curves = dict[Path, dict[str, Curve]]  # run folder -> its curves by name
Colours = dict[Path, str]              # run folder -> its colour (hex)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")  # per seed of a row
SELECTED = "*"  # the selected checkpoint
MIN_SPAN = 0.05  # the least height of a metric's axis (metrics lie in [0, 1])
# tab10, then tab20's lighter shades: one colour per row of the table, for 20 rows before they repeat
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5")


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


# ---- what every figure shares --------------------------------------------------------------------

def _table_order(runs: Sequence[Run], labels: dict[Path, str]) -> list[Run]:
    return sorted(runs, key=lambda run: (METHODS.index(run.method), labels[run.path], seed_order(run)))


def run_colours(runs: Sequence[Run]) -> Colours:
    """Each run's colour: one per row label of the table, in the table's order, over all datasets (a
    row is the same colour in every figure and dataset)."""
    labels = run_labels(runs)
    rows = list(dict.fromkeys(labels[run.path] for run in _table_order(runs, labels)))
    by_row = {row: PALETTE[i % len(PALETTE)] for i, row in enumerate(rows)}
    return {run.path: by_row[labels[run.path]] for run in runs}


def _row_colours(runs: Sequence[Run], colours: Colours) -> dict[str, str]:
    """Row label -> the colour of its runs."""
    labels = run_labels(runs)
    return {labels[run.path]: colours[run.path] for run in runs if run.path in colours}


def metric_limits(values: Sequence[float], top: float = 1.0) -> tuple[float, float]:
    """The y-limits of a metric in [0, top]: from 0 to 10% above the largest value, at least MIN_SPAN
    high (two validations at 0.31 and 0.33 get (0, 0.363), not a zoom onto their gap)."""
    finite = [value for value in values if value is not None and np.isfinite(value)]
    highest = max(finite, default=0.0)
    return 0.0, float(min(top, max(MIN_SPAN, 1.1 * highest)))


def clipped_errors(mean: Sequence[float], std: Sequence[float], low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Asymmetric error bars (2, n) of mean ± std cut at the metric's range [low, high] (no bar
    below 0 or above 1); a missing std (one seed) gives no bar."""
    mean = np.asarray(mean, dtype=float)
    std = np.nan_to_num(np.asarray(std, dtype=float))
    return np.stack([np.clip(np.minimum(std, mean - low), 0, None), np.clip(np.minimum(std, high - mean), 0, None)])


def _legend_below(figure: Figure, extra: Sequence[Line2D] = ()) -> None:
    """One legend under the panels for the lines of all of them (a panel may lack some runs' lines),
    never inside a panel."""
    handles = {}
    for axes in figure.axes:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    handles.update((handle.get_label(), handle) for handle in extra)
    if handles:
        figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(2, len(handles)),
                      fontsize="small")


def _drop_empty(figure: Figure, panels: np.ndarray) -> None:
    """Remove the panels with nothing drawn (a retrieval without one of the measures)."""
    for axes in panels.flat:
        if not axes.lines and not axes.containers:
            figure.delaxes(axes)


def _by_dataset(runs: Sequence[Run]) -> dict[str, list[Run]]:
    datasets: dict[str, list[Run]] = {}
    for run in runs:
        datasets.setdefault(run.dataset, []).append(run)
    return datasets


def file_name(stem: str, dataset: str) -> str:
    """`{stem}_{dataset}.png`, the dataset's name made safe for a file name (a custom dataset's may hold anything)."""
    return f"{stem}_{re.sub(r'[^A-Za-z0-9_.-]', '_', dataset)}.png"


def curve_axis(curves: Curves, name: str) -> str:
    """The axis a curve is logged against (train/step, rqvae/epoch)."""
    return next(run_curves[name].axis for run_curves in curves.values() if name in run_curves)


def axis_words(axis: str) -> str:
    """A curve's axis in words: `training step` for train/step."""
    return AXES.get(axis, axis.rsplit("/", 1)[-1].replace("_", " "))


def metric_words(name: str) -> str:
    """A validation metric in words: `NDCG@10 of generative retrieval (validation, in-set)`."""
    match = VAL_METRIC.match(name)
    if match is None:
        return name.rsplit("/", 1)[-1]
    retrieval = RETRIEVALS.get(match["mode"], match["mode"]).lower()
    return f"{match['measure']}@{match['k']} of {retrieval} (validation, {GROUP_NAMES[match['group']]})"


# ---- curves --------------------------------------------------------------------------------------

def _line_styles(runs: Sequence[Run], colours: Colours) -> dict[Path, dict]:
    """Each run's line: its row's colour, a marker per seed of its row, dashed when unfinished; a run
    repeating a seed of its row (a copy) hollow, larger and dotted, and named as a copy."""
    labels = run_labels(runs)
    styles = {}
    copies: dict[tuple[str, str], list[Run]] = {}
    for run in _table_order(runs, labels):
        copies.setdefault((labels[run.path], str(run.seed)), []).append(run)
    seeds: dict[str, list[str]] = {}
    for row, seed in copies:
        seeds.setdefault(row, []).append(seed)
    for (row, seed), same in copies.items():
        marker = MARKERS[seeds[row].index(seed) % len(MARKERS)]
        for i, run in enumerate(same):
            label = f"{row}, seed {run.seed}"
            if len(same) > 1:
                label += f" (copy {i + 1} of {len(same)}: {run.path.name})"
            if not run.finished:
                label += " (unfinished)"
            style = dict(color=colours[run.path], marker=marker, markersize=5, label=label, gid=str(run.path),
                         linestyle="-" if run.finished else "--")
            if i > 0:  # on top of the first copy when their values are the same: a ring around its marker
                style.update(linestyle=":", markerfacecolor="none", markersize=5 + 4 * i, markeredgewidth=1.5,
                             linewidth=2)
            styles[run.path] = style
    return styles


def selection_metric(run: Run) -> str | None:
    """The validation metric that selected the run's checkpoint, from metrics.json's `train/best_{metric}`
    (None before training ended)."""
    return next((name.removeprefix("train/best_") for name in (run.metrics or {})
                 if name.startswith("train/best_") and VAL_METRIC.match(name.removeprefix("train/best_"))), None)


def selected_step(run: Run, run_curves: dict[str, Curve]) -> int | None:
    """The training step of the run's selected checkpoint: the step whose `train/epoch` is metrics.json's
    `train/best_epoch` (1-based), else the first best value of its selection metric's curve (the
    trainer keeps the first of equal scores); None when training has not ended (no train/best_*)."""
    metrics = run.metrics or {}
    selection = selection_metric(run)
    validated = run_curves.get(selection) if selection else None
    epochs = run_curves.get("train/epoch")
    best_epoch = metrics.get("train/best_epoch")
    if best_epoch is not None and epochs is not None:
        steps = [step for step, epoch in zip(epochs.steps, epochs.values) if epoch == best_epoch]
        if steps and (validated is None or steps[0] in validated.steps):
            return steps[0]
    if validated is None:
        return None
    values = np.array([np.nan if value is None else value for value in validated.values], dtype=float)
    if np.isnan(values).all():
        return None
    return validated.steps[int(np.nanargmax(values))]


def _curve_values(curve: Curve) -> list[float]:
    return [np.nan if value is None else value for value in curve.values]


def _draw_runs(axes: Axes, runs: Sequence[Run], curves: Curves, name: str, styles: dict[Path, dict],
               selected: dict[Path, int | None] | None = None, from_zero: bool = False) -> list[float]:
    """A line per run with the curve `name` (a marker per point), a star at its selected step; the values
    drawn. from_zero: the x-axis starts at step 0 (the whole of training, not only the steps drawn)."""
    drawn: list[float] = []
    steps: set[int] = set()
    for run in runs:
        curve = curves.get(run.path, {}).get(name)
        if curve is None:
            continue
        values = _curve_values(curve)
        axes.plot(curve.steps, values, **styles[run.path])
        drawn += values
        steps.update(curve.steps)
        step = (selected or {}).get(run.path)
        if step is not None and step in curve.steps:
            value = values[curve.steps.index(step)]
            axes.plot([step], [value], linestyle="none", marker=SELECTED, markersize=15, zorder=5,
                      color=styles[run.path]["color"], markeredgecolor="black", markeredgewidth=0.8,
                      gid=f"{run.path}#selected", label=f"_selected checkpoint of {styles[run.path]['label']}")
    if drawn:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and epochs are whole
        if from_zero:  # after every run's line: the right end stays autoscaled to all of them
            axes.set_xlim(left=0)
        elif len(steps) <= 8:  # a few validations: a tick at each
            axes.set_xticks(sorted(steps))
    return drawn


def training_figure(runs: Sequence[Run], curves: Curves, colours: Colours, title: str) -> Figure | None:
    """A panel per training loss that some run has, a line per run; None when no run has any."""
    names = [name for name in LOSSES if any(name in curves.get(run.path, {}) for run in runs)]
    if not names:
        return None
    labels = run_labels(runs)
    runs = _table_order(runs, labels)
    styles = _line_styles(runs, colours)
    figure = Figure(figsize=(5 * len(names), 4.5), layout="constrained")
    for axes, name in zip(figure.subplots(1, len(names), squeeze=False).flat, names):
        _draw_runs(axes, runs, curves, name, styles, from_zero=True)
        axes.set(title=LOSSES[name], xlabel=axis_words(curve_axis(curves, name)), ylabel="loss (mean over the epoch)")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
    _legend_below(figure)
    figure.suptitle(title)
    return figure


def validation_figure(runs: Sequence[Run], curves: Curves, colours: Colours, k: int, title: str) -> Figure | None:
    """A row per retrieval (genret, dense) that some run validated, Recall@k and NDCG@k side by side,
    a line per run with a marker per validation and a star at its selected checkpoint; None when no
    run has validation curves."""
    names = {(mode, measure): metric_name(mode, "in", "val", measure, k) for mode in RETRIEVALS for measure in MEASURES}
    has = {key: any(name in curves.get(run.path, {}) for run in runs) for key, name in names.items()}
    modes = [mode for mode in RETRIEVALS if any(has[mode, measure] for measure in MEASURES)]
    if not modes:
        return None
    labels = run_labels(runs)
    runs = _table_order(runs, labels)
    styles = _line_styles(runs, colours)
    selected = {run.path: selected_step(run, curves.get(run.path, {})) for run in runs}
    figure = Figure(figsize=(11, 1.5 + 3.5 * len(modes)), layout="constrained")
    panels = figure.subplots(len(modes), len(MEASURES), squeeze=False)
    for row, mode in zip(panels, modes):
        for axes, measure in zip(row, MEASURES):
            name = names[mode, measure]
            drawn = _draw_runs(axes, runs, curves, name, styles, selected)
            if not drawn:
                continue
            axes.set(title=f"{RETRIEVALS[mode]}: {measure}@{k} (validation, in-set)",
                     xlabel=axis_words(curve_axis(curves, name)), ylabel=f"{measure}@{k}",
                     ylim=metric_limits(drawn))
            axes.grid(alpha=0.3)
    _drop_empty(figure, panels)
    chosen = sorted({metric_words(metric) for run in runs if selected[run.path] is not None
                     and (metric := selection_metric(run))})
    star = [Line2D([], [], linestyle="none", marker=SELECTED, markersize=12, color="white", markeredgecolor="black",
                   label=f"selected checkpoint: the run's best {' or '.join(chosen)}")] if chosen else []
    _legend_below(figure, star)
    figure.suptitle(title)
    return figure


# ---- the hybrid's K sweep ------------------------------------------------------------------------

def uni_sweep_figure(cells: pd.DataFrame, row_colours: dict[str, str], k: int, title: str) -> Figure | None:
    """A row of panels per measure (Recall, NDCG), a panel per target group with cells (in-set, and
    cold-start where the dataset has cold-start items), a line per row of the table: mean over seeds
    against K, std error bars cut to [0, 1]. cells: `sweep_cells` of one dataset."""
    measures = [measure for measure in MEASURES if (cells["measure"] == measure).any()]
    groups = [group for group in GROUPS if (cells["group"] == group).any()]
    if not measures or not groups:
        return None
    ks = sorted({int(K) for K in cells["K"].dropna()})
    figure = Figure(figsize=(1 + 5 * len(groups), 1.5 + 3.5 * len(measures)), layout="constrained")
    panels = figure.subplots(len(measures), len(groups), squeeze=False)
    for row, measure in zip(panels, measures):
        drawn = []
        for axes, group in zip(row, groups):
            shown = cells[(cells["measure"] == measure) & (cells["group"] == group)]
            for label, line in shown.groupby("row", sort=False):
                line = line.sort_values("K")
                n = int(line["n"].max())
                axes.errorbar(line["K"].astype(float), line["mean"], yerr=clipped_errors(line["mean"], line["std"]),
                              capsize=3, marker="o", color=row_colours.get(label, "black"), gid=label,
                              label=f"{label} ({n} seed{'s' if n != 1 else ''})")
                drawn += [*(line["mean"] + line["std"].fillna(0))]
            axes.set(title=f"{GROUP_NAMES[group]} targets: {measure}@{k} (test)",
                     xlabel="K (generated candidates the hybrid keeps)", ylabel=f"{measure}@{k}", xticks=ks)
            axes.grid(alpha=0.3)
        for axes in row:
            axes.set_ylim(metric_limits(drawn))  # one scale per row: in-set and cold-start compare at a glance
    _drop_empty(figure, panels)
    _legend_below(figure)
    figure.suptitle(title)
    return figure


# ---- semantic-ID code usage ----------------------------------------------------------------------

def codebook_size(run: Run) -> int | None:
    """`dataset.RQ-VAE.code_book_size` of the run's configuration (codes per level), None when absent."""
    size = ((run.config.get("dataset") or {}).get("RQ-VAE") or {}).get("code_book_size")
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def sid_usage(runs: Sequence[Run]) -> pd.DataFrame:
    """Per (dataset, row label) of the finished runs and semantic-ID level: mean, std and n of
    `sid/usage_l{level}` (the share of the level's codes some item uses), and the codebook sizes of
    the row's runs (`codes`: sizes joined by `/`, empty when unknown)."""
    records = [{"dataset": group.dataset, "row": group.label, "level": int(match[1]), "usage": value,
                "codes": codebook_size(run)}
               for group in group_runs(runs) for run in group.runs for name, value in run.metrics.items()
               if (match := SID_USAGE.match(name)) and value is not None]
    frame = pd.DataFrame(records, columns=["dataset", "row", "level", "usage", "codes"])
    return (frame.groupby(["dataset", "row", "level"], sort=False)
            .agg(mean=("usage", "mean"), std=("usage", "std"), n=("usage", "count"),
                 codes=("codes", lambda sizes: "/".join(str(int(s)) for s in sorted(set(sizes.dropna())))))
            .reset_index())


def sid_usage_figure(runs: Sequence[Run], colours: Colours) -> Figure | None:
    """A panel per dataset: a bar per row of the table at each semantic-ID level, its mean share of the
    level's codes in use (std error bars cut to [0, 1]); the codebook size in the y-label (or in the
    legend, where the rows differ). None without sid/usage metrics."""
    usage = sid_usage(runs)
    if usage.empty:
        return None
    row_colours = _row_colours(runs, colours)
    datasets = list(dict.fromkeys(usage["dataset"]))
    widest = max(usage.groupby("dataset")["row"].nunique())
    levels_most = max(usage.groupby("dataset")["level"].nunique())
    figure = Figure(figsize=(max(5.0, 1.5 + 0.45 * widest * levels_most) * len(datasets), 4.5), layout="constrained")
    for axes, dataset in zip(figure.subplots(1, len(datasets), squeeze=False).flat, datasets):
        of_dataset = usage[usage["dataset"] == dataset]
        rows = list(dict.fromkeys(of_dataset["row"]))
        levels = sorted(of_dataset["level"].unique())
        sizes = set(of_dataset["codes"])
        one_size = sizes.pop() if len(sizes) == 1 else None
        width = 0.8 / len(rows)
        for i, row in enumerate(rows):
            bars = of_dataset[of_dataset["row"] == row].set_index("level").reindex(levels)
            codes = bars["codes"].dropna().iloc[0] if not one_size and bars["codes"].notna().any() else ""
            axes.bar(np.arange(len(levels)) + (i - (len(rows) - 1) / 2) * width, bars["mean"], width=width,
                     yerr=clipped_errors(bars["mean"], bars["std"]), capsize=3, color=row_colours.get(row, "grey"),
                     gid=row, label=f"{row}" + (f" ({codes} codes a level)" if codes else ""),
                     error_kw={"clip_on": False, "ecolor": "black"})
        share = f"share of the {one_size} codes in use" if one_size else "share of the level's codes in use"
        axes.set(xticks=np.arange(len(levels)), xticklabels=[f"level {level}" for level in levels],
                 xlabel="semantic-ID level", ylabel=share, ylim=(0, 1),
                 title=dataset)
        axes.grid(axis="y", alpha=0.3)
    _legend_below(figure)
    figure.suptitle("Semantic-ID code usage per level (mean ± std over seeds)")
    return figure


# ---- all figures ---------------------------------------------------------------------------------

def iter_figures(runs: Sequence[Run], k: int = 10, curves: Curves | None = None,
                 colours: Colours | None = None) -> Iterator[tuple[str, Figure]]:
    """(file name, figure) of every figure, one at a time. curves: those of `curves_of(runs)`, read here
    when not given; colours: `run_colours(runs)` unless given (one map for all the figures)."""
    curves = curves_of(runs)[0] if curves is None else curves
    colours = run_colours(runs) if colours is None else colours
    for dataset, members in _by_dataset(runs).items():
        figure = training_figure(members, curves, colours, f"{dataset}: training losses")
        if figure is not None:
            yield file_name("training", dataset), figure
    for dataset, members in _by_dataset(runs).items():
        figure = validation_figure(members, curves, colours, k, f"{dataset}: in-set validation during training")
        if figure is not None:
            yield file_name("validation", dataset), figure
    row_colours = _row_colours(runs, colours)
    cells = sweep_cells(group_runs(runs), k)
    for dataset, of_dataset in cells.groupby("dataset", sort=False):
        figure = uni_sweep_figure(of_dataset, row_colours, k,
                                  f"{dataset}: hybrid (uni) retrieval by K, mean ± std over seeds")
        if figure is not None:
            yield file_name("uni_sweep", dataset), figure
    figure = sid_usage_figure(runs, colours)
    if figure is not None:
        yield "sid_usage.png", figure


def figures(runs: Sequence[Run], k: int = 10, curves: Curves | None = None,
            colours: Colours | None = None) -> dict[str, Figure]:
    """Every figure by its file name (nothing saved), all with the same run colours (`run_colours`
    unless given)."""
    return dict(iter_figures(runs, k, curves, colours))


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
    paths = []
    for name, figure in iter_figures(runs, k, curves):
        path = out_dir / name
        figure.savefig(path, dpi=110)
        figure.clear()  # no pyplot: nothing else holds the figure, its artists go now
        paths.append(path)
    return paths, skipped
