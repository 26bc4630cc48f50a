"""The results of many runs as the paper's tables: find the run folders below some folders, group
their runs by dataset, method and the settings that set them apart, and summarise each group's test
metrics over seeds as `mean ± std (n)`, in Markdown, CSV or LaTeX (`scripts/results.py`).

A run folder is a folder holding `.hydra/config.yaml` (Hydra writes it when a run starts). A run is
finished when its `metrics.json` holds test metrics; unfinished and failed runs are listed with the
reason, never averaged. Configurations are read as plain data, as written: not through src.config,
whose schema may refuse the keys of older runs.

Two views, both built as a long frame with one row per table cell (`CELL_COLUMNS`, which is also
the CSV format):
- the paper's table (view `paper`): a row per method, in the order of `METHODS`, reporting the
  retrieval of `ROW_RETRIEVAL`; per dataset, in-set and cold-start Recall@k and NDCG@k. With
  published reference rows (`docs/published_results.csv`) appended on request;
- the hybrid's K sweep (view `sweep`): for the runs with uni metrics, Recall@k and NDCG@k per K of
  `evaluation.uni_ks` (the generated candidates the hybrid keeps).
"""
from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.config import REFUSED_KEYS
from src.errors import DataError
from src.retrieval import DENSE, GENRET, GROUPS, MEASURES, UNI, metric_name_pattern
from src.tracking import CURVES_FILE

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "docs" / "published_results.csv"

TIGER, TIGER_T, DENSE_ID, DENSE_SID, LIGER, OTHER = "TIGER", "TIGER (T)", "Dense (ID)", "Dense (SID)", "LIGER", "other"
METHODS = (TIGER, TIGER_T, DENSE_ID, DENSE_SID, LIGER, OTHER)  # the rows of the paper's table, in its order
# The retrieval each method's row reports, as the paper does: (mode, the hybrid's K or None). A method
# matching none of the paper's has no row retrieval: its cells stay empty (the sweep view still shows uni).
ROW_RETRIEVAL: dict[str, tuple[str, int | None] | None] = {
    TIGER: (GENRET, None), TIGER_T: (GENRET, None), DENSE_ID: (DENSE, None), DENSE_SID: (DENSE, None),
    LIGER: (UNI, 20), OTHER: None,
}
# configs/method/base.yaml: what a method key means when an older run's config lacks it
METHOD_DEFAULTS = {"use_id": "sid", "sid_loss_weight": 1, "flag_add_input_embedding": False,
                   "flag_use_output_embedding": False}

# Settings that never set runs apart: the seed (averaged over), names, places, logging, parallelism.
# Besides these, any key ending in `_path` and `cache_dir`.
IGNORED_SETTINGS = ("seed", "experiment_id", "output_path", "device_id", "stop_after",
                    "dataset.TIGER.save_every_n_epochs",  # how often a checkpoint is written: not the results
                    *REFUSED_KEYS)                        # read by nothing (older runs' configs still hold them)
IGNORED_SECTIONS = ("logging.", "distributed.")
ABSENT = "(absent)"  # the value of a setting an (older) run's config does not have

GROUP_NAMES = {"in": "in-set", "cold": "cold-start", "all": "all users"}
# A test metric's name (src.retrieval.metric_name), parsed: `uni_cold_test/Gen20_Recall@10`
TEST_METRIC = metric_name_pattern("test")
# One table cell a line: view (paper | sweep); source (`runs`, or a published row's source); row (the
# row label); retrieval (genret, dense, uni@K; empty for published rows); group (in, cold, or all:
# every test user, for a published split without cold-start items); measure (Recall | NDCG); k; K
# (the hybrid's generated candidates, uni only); mean; std (ddof=1, empty for one seed); n (seeds
# averaged, empty for published rows); seeds (space-separated).
CELL_COLUMNS = ("view", "source", "dataset", "row", "retrieval", "group", "measure", "k", "K", "mean", "std", "n",
                "seeds")
PUBLISHED_COLUMNS = ("source", "dataset", "method", "group", "measure", "k", "value", "note")


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]          # .hydra/config.yaml as nested plain data ({} when unreadable)
    metrics: dict[str, Any] | None  # metrics.json; None when absent or unreadable
    finished: bool                  # its test metrics are present
    why_not: str = ""               # why it is not finished ("" when it is)

    @property
    def dataset(self) -> str:
        """`{dataset.type}_{dataset.name}`, e.g. Amazon_Beauty, generated_synthetic."""
        data = self.config.get("dataset") or {}
        return f"{data.get('type', '?')}_{data.get('name', '?')}"

    @property
    def method(self) -> str:
        return method_label(self.config)

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def curves_path(self) -> Path:
        return self.path / CURVES_FILE


@dataclass(frozen=True)
class Group:
    """The finished runs of one dataset and method that share their settings (all but the seed)."""
    dataset: str
    method: str
    settings: tuple[tuple[str, str], ...]  # (dotted key, value) that set these runs apart from the method's others
    runs: tuple[Run, ...]

    @property
    def label(self) -> str:
        """The row label: `LIGER`, or `LIGER (dataset.TIGER.trainer.lr=0.001)` beside runs of another lr."""
        if not self.settings:
            return self.method
        return f"{self.method} ({', '.join(f'{key}={value}' for key, value in self.settings)})"


# ---- gathering ---------------------------------------------------------------------------------

def find_runs(folders: Iterable[str | Path]) -> list[Run]:
    """The runs in or below `folders` (a run folder, a sweep root, `results/`), each once. DataError
    for a folder that does not exist or holds no run folder."""
    found: dict[Path, Path] = {}  # resolved -> as given: folders may overlap
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder; give run folders or folders that hold them "
                            "(e.g. results/ or results/multirun/<experiment_id>)")
        configs = folder.rglob("config.yaml")
        paths = sorted({config.parent.parent for config in configs if config.parent.name == ".hydra"})
        if not paths:
            raise DataError(f"{folder}: holds no run folder (a folder with .hydra/config.yaml, which run.py writes "
                            "when a run starts); give the folder a run or a sweep wrote into")
        found.update((path.resolve(), path) for path in paths if path.resolve() not in found)
    return [load_run(path) for path in found.values()]


def load_run(path: Path) -> Run:
    """A run folder's configuration and metrics, and whether it finished (else why not)."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "config.yaml"), resolve=False)
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as exc:
        return Run(path, {}, None, False, f"unreadable .hydra/config.yaml ({' '.join(str(exc).split())})")
    if not isinstance(config, dict):
        return Run(path, {}, None, False, ".hydra/config.yaml is not a mapping")
    metrics_file = path / "metrics.json"
    if not metrics_file.exists():
        return Run(path, config, None, False,
                   "no metrics.json (it stopped or failed before its first stage ended, or is still running)")
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, ValueError) as exc:
        return Run(path, config, None, False, f"unreadable metrics.json ({' '.join(str(exc).split())})")
    if not isinstance(metrics, dict):
        return Run(path, config, None, False, "metrics.json is not a JSON object")
    if any(TEST_METRIC.match(name) for name in metrics):
        return Run(path, config, metrics, True)
    return Run(path, config, metrics, False, _why_untested(config, metrics))


UNIT_TIMES = ("time/rqvae_epoch", "time/validation_mean")  # seconds of one epoch or validation, not of a stage


def _why_untested(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """Why metrics.json has no test metrics: stop_after, or the stages it timed (the last may have failed)."""
    if config.get("stop_after"):
        return f"no test metrics: stop_after={config['stop_after']} ends it before the test"
    stages = [name.removeprefix("time/") for name in metrics if name.startswith("time/") and name not in UNIT_TIMES]
    return f"no test metrics (stopped, failed or still running; stages timed: {', '.join(stages) or 'none'})"


def method_label(config: dict[str, Any]) -> str:
    """The paper's name of the run's method (`other` for none of them), from `method.*`."""
    method = {**METHOD_DEFAULTS, **(config.get("method") or {})}
    if method["use_id"] == "item_id":
        return DENSE_ID
    if method["use_id"] != "sid":
        return OTHER
    if method["sid_loss_weight"] == 0:
        return DENSE_SID
    flags = (bool(method["flag_add_input_embedding"]), bool(method["flag_use_output_embedding"]))
    return {(False, False): TIGER, (True, False): TIGER_T, (True, True): LIGER}.get(flags, OTHER)


def flat_settings(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The configuration as `dotted.key -> value`, values written as a Hydra override would (true,
    null, [20,40]), so that a row label can be pasted onto a command line."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = override_text(value)
    return flat


def override_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(map(override_text, value)) + "]"
    return str(value)


def _ignored(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return (key in IGNORED_SETTINGS or key.startswith(IGNORED_SECTIONS) or last.endswith("_path")
            or last in ("cache_dir", "codes_file"))


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """The finished runs grouped by dataset, method and the settings that differ between runs of the
    same dataset and method (other than those of `_ignored`), sorted by dataset, then as the table's rows."""
    cells: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if run.finished:
            cells.setdefault((run.dataset, run.method), []).append(run)
    groups = []
    for (dataset, method), members in cells.items():
        settings = [flat_settings(run.config) for run in members]
        keys = sorted(set().union(*settings))
        differing = [key for key in keys if not _ignored(key) and len({s.get(key, ABSENT) for s in settings}) > 1]
        by_values: dict[tuple[str, ...], list[Run]] = {}
        for run, setting in zip(members, settings):
            by_values.setdefault(tuple(setting.get(key, ABSENT) for key in differing), []).append(run)
        groups += [Group(dataset, method, tuple(zip(differing, values)), tuple(sorted(same, key=seed_order)))
                   for values, same in by_values.items()]
    return sorted(groups, key=lambda g: (g.dataset, *_row_key(g.label, g.method)))


def seed_order(run: Run) -> tuple[bool, float, str]:
    """Runs by seed (numbers first, ascending), then folder."""
    numeric = isinstance(run.seed, int | float) and not isinstance(run.seed, bool)
    return not numeric, run.seed if numeric else 0, str(run.path)


def _row_key(label: str, method: str) -> tuple[int, str]:
    return METHODS.index(method), label


def run_labels(runs: Sequence[Run]) -> dict[Path, str]:
    """Each run's row label: its group's for a finished run, its method's for the others."""
    labels = {run.path: run.method for run in runs}
    labels.update((run.path, group.label) for group in group_runs(runs) for run in group.runs)
    return labels


def unfinished(runs: Sequence[Run]) -> list[Run]:
    return [run for run in runs if not run.finished]


# ---- the views ---------------------------------------------------------------------------------

def metric_values(groups: Sequence[Group]) -> pd.DataFrame:
    """One row per test metric of each run: dataset, row, method, seed, path, mode, group, measure,
    k (int), K (float, NaN but for uni), retrieval (genret, dense, uni@K), value (NaN if not finite)."""
    records = [{"dataset": g.dataset, "row": g.label, "method": g.method, "seed": run.seed, "path": str(run.path),
                "metric": name, "value": value}
               for g in groups for run in g.runs for name, value in run.metrics.items()]
    frame = pd.DataFrame(records, columns=["dataset", "row", "method", "seed", "path", "metric", "value"])
    parts = frame["metric"].astype(str).str.extract(TEST_METRIC)
    frame = pd.concat([frame.drop(columns="metric"), parts], axis=1).dropna(subset=["mode"])
    frame["k"] = frame["k"].astype(int)
    frame["K"] = pd.to_numeric(frame["K"])
    frame["value"] = pd.to_numeric(frame["value"])  # a non-finite value is written as null
    with_k = frame["mode"] + "@" + frame["K"].astype("Int64").astype(str)
    frame["retrieval"] = frame["mode"].where(frame["K"].isna(), with_k)
    return frame


def _summarise(values: pd.DataFrame, view: str) -> pd.DataFrame:
    """CELL_COLUMNS: the mean, std (ddof=1) and count over the seeds of each cell, in the values' order."""
    by = ["dataset", "row", "retrieval", "group", "measure", "k", "K"]
    cells = (values.groupby(by, dropna=False, sort=False)
             .agg(mean=("value", "mean"), std=("value", "std"), n=("value", "count"),
                  seeds=("seed", lambda seeds: " ".join(map(str, seeds))))
             .reset_index())
    cells.insert(0, "view", view)
    cells.insert(1, "source", "runs")
    return _typed(cells)


def _typed(cells: pd.DataFrame) -> pd.DataFrame:
    """CELL_COLUMNS in order, K and n as nullable integers (so that the CSV writes 20, not 20.0)."""
    cells = cells.reindex(columns=list(CELL_COLUMNS))
    return cells.astype({"k": int, "K": "Int64", "n": "Int64"})


def reported(method: str) -> str | None:
    """The retrieval a method's row reports as `metric_values` spells it (uni@20), None for `other`."""
    spec = ROW_RETRIEVAL[method]
    return None if spec is None else spec[0] if spec[1] is None else f"{spec[0]}@{spec[1]}"


@dataclass(frozen=True)
class PaperTable:
    """The paper's table: its cells, and what lays them out (rows, column groups, notes under it)."""
    cells: pd.DataFrame            # CELL_COLUMNS, view `paper`
    rows: tuple[str, ...]          # row labels in order (a row of `other` has no cell)
    datasets: tuple[str, ...]      # column groups, in order
    k: int
    notes: tuple[str, ...] = ()


def paper_table(groups: Sequence[Group], k: int = 10) -> PaperTable:
    """In-set and cold-start Recall@k / NDCG@k of each group by the retrieval its method reports."""
    values = metric_values(groups)
    values = values[(values["k"] == k) & (values["retrieval"] == values["method"].map(reported))]
    rows = tuple(dict.fromkeys(g.label for g in sorted(groups, key=lambda g: _row_key(g.label, g.method))))
    datasets = tuple(dict.fromkeys(g.dataset for g in groups))
    notes = ["cells: mean ± std (number of seeds) over finished runs, std with ddof=1; rows report TIGER and "
             "TIGER (T) by generative retrieval (genret), Dense (ID) and Dense (SID) by the dense head, LIGER by the "
             f"hybrid (uni) with K={ROW_RETRIEVAL[LIGER][1]} generated candidates"]
    if not groups:
        notes = ["no finished run: nothing to average (the runs found are listed as unfinished)"]
    elif values.empty:
        notes.append(f"no run has test metrics at k={k} (see their evaluation.ks; --k picks the cut-off)")
    if any(g.method == OTHER for g in groups):
        notes.append("other: a configuration matching none of the paper's methods; no retrieval is reported for it")
    notes += duplicate_seeds(groups)
    return PaperTable(_summarise(values, "paper"), rows, datasets, k, tuple(notes))


def duplicate_seeds(groups: Sequence[Group]) -> list[str]:
    """A note per group holding a seed twice (e.g. one run copied to two folders), naming the runs of each
    repeated seed: each copy is averaged."""
    notes = []
    for group in groups:
        by_seed: dict[str, list[Run]] = {}
        for run in group.runs:  # in seed order (`seed_order`)
            by_seed.setdefault(str(run.seed), []).append(run)
        repeated = [f"seed {seed} appears more than once ({', '.join(str(run.path) for run in runs)})"
                    for seed, runs in by_seed.items() if len(runs) > 1]
        if repeated:
            notes.append(f"{group.dataset} / {group.label}: {'; '.join(repeated)}; each run is averaged")
    return notes


def sweep_cells(groups: Sequence[Group], k: int = 10) -> pd.DataFrame:
    """CELL_COLUMNS, view `sweep`: the hybrid's Recall@k and NDCG@k per K, for the groups with uni metrics."""
    values = metric_values(groups)
    return _summarise(values[(values["mode"] == UNI) & (values["k"] == k)], "sweep")


# ---- published reference rows --------------------------------------------------------------------

def read_published(path: Path = PUBLISHED) -> pd.DataFrame:
    """The rows of a published-results CSV (PUBLISHED_COLUMNS; lines starting with # are comments)."""
    try:
        text = "\n".join(line for line in Path(path).read_text().splitlines() if not line.lstrip().startswith("#"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the published results ({exc.strerror}); restore it from git") from None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype={"value": float, "k": int}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a CSV of {', '.join(PUBLISHED_COLUMNS)} ({exc}); fix or restore it") from None
    missing = [column for column in PUBLISHED_COLUMNS if column not in frame.columns]
    bad = frame[~frame["group"].isin([*GROUPS, "all"]) | ~frame["measure"].isin(MEASURES)] if not missing else frame[:0]
    if missing or not bad.empty:
        problem = f"missing column(s) {', '.join(missing)}" if missing else \
            f"group must be in, cold or all and measure Recall or NDCG (rows: {bad.to_dict('records')})"
        raise DataError(f"{path}: {problem}; its header must be {','.join(PUBLISHED_COLUMNS)}")
    return frame


def with_published(table: PaperTable, published: pd.DataFrame) -> PaperTable:
    """The table with the published rows of its datasets and k appended, labelled by their source."""
    shown = published[published["dataset"].isin(table.datasets) & (published["k"] == table.k)]
    if shown.empty:
        note = (f"--paper: no published Recall/NDCG@{table.k} for {', '.join(table.datasets) or 'these datasets'} "
                f"(published: {', '.join(sorted(set(published['dataset'])))})")
        return PaperTable(table.cells, table.rows, table.datasets, table.k, (*table.notes, note))
    rows = shown["method"] + " (published: " + shown["source"] + ")"
    cells = pd.DataFrame({"view": "paper", "source": shown["source"], "dataset": shown["dataset"], "row": rows,
                          "group": shown["group"], "measure": shown["measure"], "k": shown["k"],
                          "mean": shown["value"], "seeds": ""})
    notes = list(table.notes)
    if (shown["group"] == "all").any():
        notes.append("†: published over all test users (in-set column): that split has no cold-start group")
    notes += [f"{source}: {note}" for source, note in dict(zip(shown["source"], shown["note"])).items() if note]
    return PaperTable(pd.concat([table.cells, _typed(cells)], ignore_index=True),
                      (*table.rows, *dict.fromkeys(rows)), table.datasets, table.k, tuple(notes))


# ---- rendering ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Style:
    """How a format writes a cell's parts and escapes a label."""
    pm: str
    dash: str
    dagger: str
    escape: Callable[[str], str]


def latex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", text).replace("~", r"\textasciitilde{}").replace("^", r"\^{}")


MARKDOWN = Style(" ± ", "—", "†", lambda text: text.replace("|", r"\|"))
LATEX = Style(r" $\pm$ ", "--", r"$^\dagger$", latex_escape)


@dataclass(frozen=True)
class Grid:
    """A table to print: label columns, then column groups (a title spanning its columns), then rows."""
    title: str
    index: tuple[str, ...]                          # headers of the label columns
    spans: tuple[tuple[str, tuple[str, ...]], ...]  # (title over them, their headers)
    rows: tuple[tuple[str, ...], ...]               # the label texts, then the cell texts
    notes: tuple[str, ...] = ()


def cell_text(mean: float, std: float, n: Any, style: Style, mark: str = "") -> str:
    """`0.1234 ± 0.0056 (3)`, `0.1234 (1)` for one seed, `0.1234` for a published value, dash for none."""
    if pd.isna(mean):
        return style.dash
    if pd.isna(n):
        return f"{mean:.4f}{mark}"
    spread = f"{style.pm}{std:.4f}" if n > 1 else ""
    return f"{mean:.4f}{spread} ({int(n)}){mark}"


def _lookup(cells: pd.DataFrame, keys: Sequence[str]) -> dict[tuple, tuple[float, float, Any]]:
    """(values of `keys`) -> (mean, std, n) of each cell."""
    return dict(zip(cells[list(keys)].itertuples(index=False, name=None), zip(cells["mean"], cells["std"], cells["n"])))


def paper_grid(table: PaperTable, style: Style) -> Grid:
    """Rows: table.rows; per dataset the columns in-set Recall, in-set NDCG, cold-start Recall, NDCG."""
    found = _lookup(table.cells, ("dataset", "row", "group", "measure"))
    columns = [(group, measure) for group in GROUPS for measure in MEASURES]

    def text(dataset: str, row: str, group: str, measure: str) -> str:
        if (dataset, row, group, measure) in found:
            return cell_text(*found[dataset, row, group, measure], style)
        if group == "in" and (dataset, row, "all", measure) in found:  # a published split without cold-start
            return cell_text(*found[dataset, row, "all", measure], style, style.dagger)
        return style.dash

    rows = tuple((style.escape(row), *(text(dataset, row, group, measure) for dataset in table.datasets
                                       for group, measure in columns)) for row in table.rows)
    spans = tuple((style.escape(dataset), tuple(f"{GROUP_NAMES[g]} {m}@{table.k}" for g, m in columns))
                  for dataset in table.datasets)
    return Grid(f"Test results at k={table.k}", ("Method",), spans, rows, table.notes)


def sweep_grid(cells: pd.DataFrame, k: int, style: Style) -> Grid:
    """Rows (dataset, row label, targets, measure); columns K of the hybrid, ascending."""
    found = _lookup(cells, ("dataset", "row", "group", "measure", "K"))
    ks = sorted({int(K) for K in cells["K"].dropna()})

    def text(*key: Any) -> str:
        return cell_text(*found[key], style) if key in found else style.dash

    rows = tuple((style.escape(dataset), style.escape(row), GROUP_NAMES[group], f"{measure}@{k}",
                  *(text(dataset, row, group, measure, K) for K in ks))
                 for dataset, row in dict.fromkeys(zip(cells["dataset"], cells["row"]))
                 for group in GROUPS for measure in MEASURES)
    notes = ("K: the generated candidates the hybrid (uni) keeps before the dense head reranks them, "
             "cold-start items added",)
    return Grid(f"Hybrid (uni) retrieval by K, at k={k}", ("Dataset", "Method", "Targets", "Measure"),
                (("", tuple(f"K={K}" for K in ks)),), rows, notes)


def markdown(grid: Grid) -> str:
    headers = [*grid.index, *(f"{span} {column}".strip() for span, columns in grid.spans for column in columns)]
    align = ["---"] * len(grid.index) + ["---:"] * (len(headers) - len(grid.index))
    lines = [f"### {grid.title}", "", *(f"| {' | '.join(cells)} |" for cells in (headers, align, *grid.rows))]
    return "\n".join([*lines, "", *(f"- {note}" for note in grid.notes)]).rstrip()


def latex(grid: Grid) -> str:
    """A tabular (no package needed), the title and notes as % comments above and below it."""
    layout = "l" * len(grid.index) + "".join("|" + "r" * len(columns) for _, columns in grid.spans)
    spanned = [f"\\multicolumn{{{len(columns)}}}{{c}}{{{span}}}" for span, columns in grid.spans]
    lines = [f"% {grid.title}", f"\\begin{{tabular}}{{{layout}}}", r"\hline"]
    if any(span for span, _ in grid.spans):
        lines.append(" & ".join([""] * len(grid.index) + spanned) + r" \\")
    headers = [*grid.index, *(latex_escape(column) for _, columns in grid.spans for column in columns)]
    lines += [" & ".join(headers) + r" \\", r"\hline", *(" & ".join(row) + r" \\" for row in grid.rows)]
    lines += [r"\hline", r"\end{tabular}", *(f"% {note}" for note in grid.notes)]
    return "\n".join(lines)


def unfinished_lines(runs: Sequence[Run]) -> list[str]:
    """`path: why` for each run that is not finished."""
    return [f"{run.path}: {run.why_not}" for run in unfinished(runs)]


FORMATS = ("markdown", "csv", "latex")


def format_report(runs: Sequence[Run], fmt: str = "markdown", k: int = 10, paper: bool = False,
                  sweep: bool = False, published: Path = PUBLISHED) -> tuple[str, str]:
    """(what goes to stdout, what goes to stderr). Markdown and LaTeX: the tables, their notes and the
    unfinished runs (LaTeX: as % comments), nothing to stderr. CSV: stdout is the CSV alone
    (CELL_COLUMNS, the paper's table then, with `sweep`, the sweep view), the notes and unfinished
    runs go to stderr."""
    groups = group_runs(runs)
    table = paper_table(groups, k)
    if paper:
        table = with_published(table, read_published(published))
    sweep_view = sweep_cells(groups, k) if sweep else None
    if sweep and sweep_view.empty:
        table = PaperTable(table.cells, table.rows, table.datasets, table.k,
                           (*table.notes, f"--sweep: no finished run has uni metrics at k={k}"))
    missing = unfinished_lines(runs)
    if fmt == "csv":
        frames = [table.cells] + ([sweep_view] if sweep_view is not None and not sweep_view.empty else [])
        remarks = [*table.notes, *(["unfinished or failed runs (not averaged):"] if missing else []),
                   *(f"  {line}" for line in missing)]
        return pd.concat(frames, ignore_index=True).to_csv(index=False), "\n".join(remarks)
    style, render, comment = (MARKDOWN, markdown, "") if fmt == "markdown" else (LATEX, latex, "% ")
    # no finished run: the notes alone say so, an empty table would only look broken
    parts = [render(paper_grid(table, style)) if table.rows else "\n".join(comment + note for note in table.notes)]
    if sweep_view is not None and not sweep_view.empty:
        parts.append(render(sweep_grid(sweep_view, k, style)))
    if missing:
        parts.append("\n".join([f"{comment}Unfinished or failed runs (not averaged):",
                                *(f"{comment}- {line}" for line in missing)]))
    return "\n\n".join(parts) + "\n", ""
