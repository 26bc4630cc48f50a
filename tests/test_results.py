"""Results of many runs (src/results.py, src/plots.py, scripts/results.py) on fake run folders."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import REPO, compose
from src.errors import DataError
from src.plots import write_plots
from src.results import (
    LATEX,
    MARKDOWN,
    PUBLISHED,
    TEST_METRIC,
    find_runs,
    format_report,
    group_runs,
    markdown,
    method_label,
    paper_grid,
    paper_table,
    read_published,
    sweep_cells,
    sweep_grid,
    with_published,
)
from src.retrieval import metric_name
from src.tracking import RunRecorder

BEAUTY, TOYS = ("Amazon", "Beauty"), ("Amazon", "Toys_and_Games")
UNI_KS = (20, 40, 60)
METHOD = {  # method.* of the experiment scripts
    "TIGER": dict(use_id="sid", flag_add_input_embedding=False, flag_use_output_embedding=False,
                  embedding_loss_weight=0, sid_loss_weight=1),
    "LIGER": dict(use_id="sid", flag_add_input_embedding=True, flag_use_output_embedding=True,
                  embedding_loss_weight=1, sid_loss_weight=1),
    "Dense (SID)": dict(use_id="sid", flag_add_input_embedding=True, flag_use_output_embedding=True,
                        embedding_loss_weight=1, sid_loss_weight=0),
}
MODES = {"TIGER": ("genret",), "LIGER": ("genret", "dense", "uni"), "Dense (SID)": ("dense",)}
LR = "dataset.TIGER.trainer.lr"


def config(dataset: tuple[str, str], method: str, seed: int, lr: float = 0.003) -> dict:
    """A run's .hydra/config.yaml: the keys results.py reads, and ignored ones that differ per seed."""
    return {"experiment_id": f"exp_{seed}", "seed": seed, "device_id": seed, "output_path": f"/out/{seed}",
            "test_method": "tiger" if method == "TIGER" else "liger", "stop_after": None,
            "evaluation": {"ks": [10], "uni_ks": list(UNI_KS)},
            "dataset": {"type": dataset[0], "name": dataset[1], "raw_data_path": f"/raw/{seed}",
                        "RQ-VAE": {"cache_dir": f"/cache/{seed}"}, "TIGER": {"trainer": {"lr": lr}}},
            "method": METHOD[method], "logging": {"mode": "disabled", "project": f"p{seed}"},
            "distributed": {"timeout_min": 100 + seed}}


def fake_metrics(method: str, rng: np.random.Generator) -> dict[str, float]:
    """Random test metrics of the method's retrievals, at k=10 and 5, and the other metrics a run logs."""
    names = [metric_name(mode, group, "test", measure, k, generated)
             for mode in MODES[method] for generated in (UNI_KS if mode == "uni" else (None,))
             for group in ("in", "cold") for measure in ("Recall", "NDCG") for k in (5, 10)]
    return {"time/train": 1.0, "sid/usage_l1": 0.9, "sid/usage_l2": float(rng.uniform(0.5, 1)), "sid/usage_l3": 1.0,
            **{name: float(rng.uniform(0, 1)) for name in names}}


def write_run(run_dir: Path, cfg: dict, metrics: dict | None, curves: bool = True) -> Path:
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(cfg), run_dir / ".hydra" / "config.yaml")
    recorder = RunRecorder(run_dir)
    if metrics is not None:
        recorder.log(metrics)
    if curves:
        for step in (10, 20, 30):
            recorder.curve({"train/loss": 5 / step, "train/sid_loss": 3 / step, "train/embedding_loss": 2 / step,
                            "train/lr": 0.001, "train/epoch": step // 10}, "train/step", step)
            recorder.curve({"genret_in_val/NDCG@10": step / 100, "genret_in_val/Recall@10": step / 50,
                            "dense_in_val/NDCG@10": step / 90}, "train/step", step)
    return run_dir


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, dict[tuple[str, str, int], dict]]:
    """Fake results: TIGER and LIGER over seeds 0-2 on Beauty and Toys (a sweep below multirun/, the
    rest as single runs), a LIGER Beauty run at another lr, one Dense (SID) run, a run stopped after
    training and one that never wrote metrics. Returns the root and (dataset, label, seed) -> metrics."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    truth = {}
    for dataset in (BEAUTY, TOYS):
        for method in ("TIGER", "LIGER"):
            for seed in range(3):
                metrics = fake_metrics(method, rng)
                folder = root / "multirun" / "sweep" / f"{len(truth)}_liger_{dataset[1]}_seed_{seed}" \
                    if method == "LIGER" else root / "tiger" / f"{dataset[0]}_{dataset[1]}" / f"exp_seed_{seed}"
                # one older run without curves
                write_run(folder, config(dataset, method, seed), metrics, curves=(dataset, method, seed) != (TOYS,
                                                                                                          "TIGER", 2))
                truth[f"{dataset[0]}_{dataset[1]}", method, seed] = metrics
    truth["Amazon_Beauty", "LIGER lr", 0] = metrics = fake_metrics("LIGER", rng)
    write_run(root / "liger" / "Amazon_Beauty" / "lr_seed_0", config(BEAUTY, "LIGER", 0, lr=0.001), metrics)
    truth["Amazon_Toys_and_Games", "Dense (SID)", 0] = metrics = fake_metrics("Dense (SID)", rng)
    write_run(root / "liger" / "Amazon_Toys_and_Games" / "dense_seed_0", config(TOYS, "Dense (SID)", 0), metrics)
    write_run(root / "liger" / "Amazon_Beauty" / "stopped_seed_3", config(BEAUTY, "LIGER", 3),
              {"time/preprocess": 0.1, "time/train": 3.0})
    write_run(root / "liger" / "Amazon_Beauty" / "failed_seed_4", config(BEAUTY, "LIGER", 4), None, curves=False)
    return root, truth


def expected(truth: dict, dataset: str, method: str, name: str, seeds=range(3)) -> tuple[float, float]:
    values = [truth[dataset, method, seed][name] for seed in seeds]
    return float(np.mean(values)), float(np.std(values, ddof=1))


def test_find_runs_searches_recursively_and_says_why_runs_are_unfinished(results):
    root, _ = results
    runs = find_runs([root, root / "multirun"])  # overlapping folders: each run once
    assert len(runs) == 16
    why = {run.path.name: run.why_not for run in runs if not run.finished}
    assert set(why) == {"stopped_seed_3", "failed_seed_4"}
    assert "no test metrics" in why["stopped_seed_3"] and "preprocess, train" in why["stopped_seed_3"]
    assert "no metrics.json" in why["failed_seed_4"]
    assert all(run.metrics is not None for run in runs if run.finished)


def test_unreadable_runs_are_listed_and_a_repeated_seed_is_noted(tmp_path):
    (tmp_path / "broken" / ".hydra").mkdir(parents=True)
    (tmp_path / "broken" / ".hydra" / "config.yaml").write_text("a: [b\n")
    write_run(tmp_path / "garbled", config(BEAUTY, "TIGER", 0), None).joinpath("metrics.json").write_text("{")
    metrics = fake_metrics("TIGER", np.random.default_rng(1))
    for copy in ("a", "b"):  # one run copied to two folders
        write_run(tmp_path / copy, config(BEAUTY, "TIGER", 0), metrics)
    runs = find_runs([tmp_path])
    why = {run.path.name: run.why_not for run in runs}
    assert why["broken"].startswith("unreadable .hydra/config.yaml (") and "\n" not in why["broken"]
    assert why["garbled"].startswith("unreadable metrics.json (")
    out, _ = format_report(runs)
    assert "Amazon_Beauty / TIGER: seed 0 appears more than once" in out and "(2)" in out


def test_a_repeated_seed_note_names_only_the_runs_of_that_seed(tmp_path):
    """Three runs of one group, two of them of seed 0: the note names those two, not the third."""
    rng = np.random.default_rng(2)
    for name, seed in (("first", 0), ("second", 1), ("again", 0)):
        write_run(tmp_path / name, config(BEAUTY, "TIGER", seed), fake_metrics("TIGER", rng), curves=False)
    notes = [note for note in paper_table(group_runs(find_runs([tmp_path]))).notes if "more than once" in note]
    assert notes == [f"Amazon_Beauty / TIGER: seed 0 appears more than once ({tmp_path / 'again'}, "
                     f"{tmp_path / 'first'}); each run is averaged"]


@pytest.mark.parametrize("method, label", [
    (dict(use_id="sid", flag_add_input_embedding=False, flag_use_output_embedding=False, sid_loss_weight=1), "TIGER"),
    (dict(flag_add_input_embedding=True, flag_use_output_embedding=False, embedding_loss_weight=0), "TIGER (T)"),
    (dict(flag_add_input_embedding=True, flag_use_output_embedding=True, sid_loss_weight=1), "LIGER"),
    (dict(flag_add_input_embedding=True, flag_use_output_embedding=True, sid_loss_weight=0), "Dense (SID)"),
    (dict(use_id="item_id", flag_add_input_embedding=True, flag_use_output_embedding=True, sid_loss_weight=0),
     "Dense (ID)"),
    (dict(flag_add_input_embedding=False, flag_use_output_embedding=True, sid_loss_weight=1), "other"),
    ({}, "TIGER"),  # an older config without method keys: configs/method/base.yaml's values
])
def test_method_label_names_the_papers_methods(method, label):
    assert method_label({"method": method}) == label


def test_groups_split_a_method_by_the_settings_that_differ_but_not_the_ignored_ones(results):
    root, _ = results
    groups = {(g.dataset, g.label): [run.seed for run in g.runs] for g in group_runs(find_runs([root]))}
    assert groups == {
        ("Amazon_Beauty", "TIGER"): [0, 1, 2],
        ("Amazon_Beauty", f"LIGER ({LR}=0.001)"): [0],
        ("Amazon_Beauty", f"LIGER ({LR}=0.003)"): [0, 1, 2],
        ("Amazon_Toys_and_Games", "TIGER"): [0, 1, 2],
        ("Amazon_Toys_and_Games", "Dense (SID)"): [0],
        ("Amazon_Toys_and_Games", "LIGER"): [0, 1, 2],
    }


def test_paper_table_reports_each_methods_retrieval_as_mean_and_std_over_seeds(results):
    root, truth = results
    table = paper_table(group_runs(find_runs([root])), k=10)
    cells = table.cells.set_index(["dataset", "row", "group", "measure"])
    for dataset, row, method, mode, generated in [
            ("Amazon_Beauty", "TIGER", "TIGER", "genret", None),
            ("Amazon_Toys_and_Games", "TIGER", "TIGER", "genret", None),
            ("Amazon_Beauty", f"LIGER ({LR}=0.003)", "LIGER", "uni", 20),
            ("Amazon_Toys_and_Games", "LIGER", "LIGER", "uni", 20)]:
        for group in ("in", "cold"):
            for measure in ("Recall", "NDCG"):
                mean, std = expected(truth, dataset, method, metric_name(mode, group, "test", measure, 10, generated))
                cell = cells.loc[dataset, row, group, measure]
                assert cell["mean"] == pytest.approx(mean) and cell["std"] == pytest.approx(std) and cell["n"] == 3
                assert cell["retrieval"] == (mode if generated is None else f"uni@{generated}")
    dense = cells.loc["Amazon_Toys_and_Games", "Dense (SID)", "cold", "NDCG"]
    assert dense["mean"] == truth["Amazon_Toys_and_Games", "Dense (SID)", 0]["dense_cold_test/NDCG@10"]
    assert dense["n"] == 1 and pd.isna(dense["std"])
    # another cut-off: the k=5 metrics
    at_5 = paper_table(group_runs(find_runs([root])), k=5).cells.set_index(["dataset", "row", "group", "measure"])
    mean, _ = expected(truth, "Amazon_Beauty", "TIGER", "genret_in_test/Recall@5")
    assert at_5.loc["Amazon_Beauty", "TIGER", "in", "Recall"]["mean"] == pytest.approx(mean)


def test_rows_follow_the_papers_order_and_cells_read_mean_std_n(results):
    root, truth = results
    grid = paper_grid(paper_table(group_runs(find_runs([root]))), MARKDOWN)
    assert [row[0] for row in grid.rows] == ["TIGER", "Dense (SID)", "LIGER", f"LIGER ({LR}=0.001)",
                                             f"LIGER ({LR}=0.003)"]
    assert [span for span, _ in grid.spans] == ["Amazon_Beauty", "Amazon_Toys_and_Games"]
    assert grid.spans[0][1] == ("in-set Recall@10", "in-set NDCG@10", "cold-start Recall@10", "cold-start NDCG@10")
    mean, std = expected(truth, "Amazon_Beauty", "TIGER", "genret_in_test/Recall@10")
    assert grid.rows[0][1] == f"{mean:.4f} ± {std:.4f} (3)"
    one = truth["Amazon_Beauty", "LIGER lr", 0]["uni_cold_test/Gen20_NDCG@10"]
    assert grid.rows[3][4] == f"{one:.4f} (1)"
    assert grid.rows[1][1:5] == ("—",) * 4  # Dense (SID) ran on Toys only
    assert grid.rows[2][1:5] == ("—",) * 4 and grid.rows[3][5:] == ("—",) * 4


def test_markdown_report_lists_the_unfinished_runs_under_the_table(results):
    root, _ = results
    out, err = format_report(find_runs([root]))
    table, unfinished = out.split("Unfinished or failed runs (not averaged):")
    assert err == "" and "| Method | Amazon_Beauty in-set Recall@10 |" in table
    assert "stopped_seed_3: no test metrics" in unfinished and "failed_seed_4: no metrics.json" in unfinished
    assert "stopped_seed_3" not in table


def test_csv_has_one_line_per_cell_with_mean_std_and_n(results):
    root, truth = results
    out, err = format_report(find_runs([root]), "csv", sweep=True)
    cells = pd.read_csv(io.StringIO(out))
    assert list(cells.columns) == ["view", "source", "dataset", "row", "retrieval", "group", "measure", "k", "K",
                                   "mean", "std", "n", "seeds"]
    paper = cells[cells["view"] == "paper"]
    assert len(paper) == 6 * 4  # (dataset, row) pairs x in/cold x Recall/NDCG
    line = paper[(paper["row"] == "TIGER") & (paper["dataset"] == "Amazon_Toys_and_Games") & (paper["group"] == "cold")
                 & (paper["measure"] == "NDCG")].iloc[0]
    mean, std = expected(truth, "Amazon_Toys_and_Games", "TIGER", "genret_cold_test/NDCG@10")
    assert (line["mean"], line["std"]) == (pytest.approx(mean), pytest.approx(std))
    assert (line["n"], line["seeds"]) == (3, "0 1 2")
    assert set(cells[cells["view"] == "sweep"]["K"]) == set(UNI_KS)
    assert "failed_seed_4" in err and "failed_seed_4" not in out


def test_latex_is_a_tabular_with_the_numbers(results):
    root, truth = results
    out, _ = format_report(find_runs([root]), "latex")
    mean, std = expected(truth, "Amazon_Beauty", "TIGER", "genret_in_test/NDCG@10")
    assert r"\begin{tabular}{l|rrrr|rrrr}" in out and r"\end{tabular}" in out
    assert r"\multicolumn{4}{c}{Amazon\_Toys\_and\_Games}" in out
    recall, _ = expected(truth, "Amazon_Beauty", "TIGER", "genret_in_test/Recall@10")
    assert f"TIGER & {recall:.4f}" in out
    assert f"{mean:.4f} $\\pm$ {std:.4f} (3)" in out
    assert r"LIGER (dataset.TIGER.trainer.lr=0.001)" in out
    assert "% - " in out and "failed_seed_4" in out  # unfinished runs as comments
    assert all(line.endswith(r"\\") for line in out.splitlines() if " & " in line)


def test_paper_appends_the_published_rows_of_the_runs_datasets(results):
    root, _ = results
    table = with_published(paper_table(group_runs(find_runs([root]))), read_published())
    grid = paper_grid(table, MARKDOWN)
    published = {row[0]: row[1:] for row in grid.rows if "published" in row[0]}
    assert list(published) == ["TIGER (published: Rajput et al. 2023)", "TIGER (published: Yang et al. 2024)",
                               "LIGER (published: Yang et al. 2024)"]
    # Beauty and Toys columns: in-set (over all users, marked) filled, cold-start empty
    assert published["TIGER (published: Rajput et al. 2023)"] == ("0.0648†", "0.0384†", "—", "—",
                                                                  "0.0712†", "0.0432†", "—", "—")
    assert any("†" in note for note in grid.notes)
    shipped = read_published()
    assert set(shipped["dataset"]) == {"Amazon_Beauty", "Amazon_Sports_and_Outdoors", "Amazon_Toys_and_Games",
                                       "steam_steam"}


def test_paper_appends_the_liger_papers_rows_to_beauty_runs(tmp_path):
    rng = np.random.default_rng(2)
    for method in ("TIGER", "LIGER"):
        write_run(tmp_path / method, config(BEAUTY, method, 0), fake_metrics(method, rng), curves=False)
    runs = find_runs([tmp_path])
    out, notes = format_report(runs, fmt="csv", paper=True)  # what --paper --format csv prints
    cells = pd.read_csv(io.StringIO(out))
    liger_paper = cells[cells["source"] == "Yang et al. 2024"]
    assert set(liger_paper["dataset"]) == {"Amazon_Beauty"}
    value = liger_paper.set_index(["row", "group", "measure"])["mean"]
    # Beauty in Yang et al. 2024's main table, copied from shared/published/liger_paper_results.csv
    assert value.to_dict() == {
        ("TIGER (published: Yang et al. 2024)", "in", "Recall"): 0.0601,
        ("TIGER (published: Yang et al. 2024)", "in", "NDCG"): 0.0322,
        ("TIGER (published: Yang et al. 2024)", "cold", "Recall"): 0.0,
        ("TIGER (published: Yang et al. 2024)", "cold", "NDCG"): 0.0,
        ("LIGER (published: Yang et al. 2024)", "in", "Recall"): 0.0745,
        ("LIGER (published: Yang et al. 2024)", "in", "NDCG"): 0.0402,
        ("LIGER (published: Yang et al. 2024)", "cold", "Recall"): 0.1008,
        ("LIGER (published: Yang et al. 2024)", "cold", "NDCG"): 0.0380}
    assert "Yang et al. 2024: LIGER paper (arXiv 2411.18814)" in notes and "Sentence-T5-XXL" in notes
    grid = paper_grid(with_published(paper_table(group_runs(runs)), read_published()), MARKDOWN)
    rows = {row[0]: row[1:] for row in grid.rows}
    # Beauty columns: in-set Recall, NDCG, cold-start Recall, NDCG, all filled (no dagger: a split with cold-start)
    assert rows["LIGER (published: Yang et al. 2024)"] == ("0.0745", "0.0402", "0.1008", "0.0380")
    assert rows["TIGER (published: Yang et al. 2024)"] == ("0.0601", "0.0322", "0.0000", "0.0000")
    assert [row for row in rows if "published" in row] == [
        "TIGER (published: Rajput et al. 2023)", "TIGER (published: Yang et al. 2024)",
        "LIGER (published: Yang et al. 2024)"]


def test_shipped_published_rows_are_valid_unique_and_name_the_runs_datasets():
    shipped = read_published()
    key = ["source", "dataset", "method", "group", "measure", "k"]
    assert not shipped.duplicated(key).any(), shipped[shipped.duplicated(key, keep=False)]
    assert set(shipped["method"]) <= {"TIGER", "TIGER (T)", "Dense (ID)", "Dense (SID)", "LIGER"}
    assert shipped["value"].between(0, 1).all() and (shipped["note"] != "").all()
    assert shipped.groupby("source")["note"].nunique().eq(1).all()  # the table shows one note per source
    liger_paper = shipped[shipped["source"] == "Yang et al. 2024"]
    # the LIGER paper's table: TIGER and LIGER, in-set and cold-start, Recall@10 and NDCG@10, on 4 datasets
    assert len(liger_paper) == 32 and set(liger_paper["group"]) == {"in", "cold"}
    assert (liger_paper[(liger_paper["method"] == "TIGER") & (liger_paper["group"] == "cold")]["value"] == 0).all()
    # each dataset is the {dataset.type}_{dataset.name} that a run of the project's configs records
    names = {f"{cfg.dataset.type}_{cfg.dataset.name}" for cfg in (
        compose("dataset=steam"), *(compose("dataset=amazon", f"dataset.name={name}")
                                    for name in ("Beauty", "Sports_and_Outdoors", "Toys_and_Games")))}
    assert set(shipped["dataset"]) == names
    assert "not included" not in PUBLISHED.read_text()


def test_published_csv_comments_are_skipped_and_a_bad_one_is_named(tmp_path):
    good = tmp_path / "published.csv"
    good.write_text("# a comment\nsource,dataset,method,group,measure,k,value,note\n# another\n"
                    "Yang et al. 2024,Amazon_Beauty,LIGER,cold,NDCG,10,0.01,\n")
    assert read_published(good).to_dict("records") == [
        {"source": "Yang et al. 2024", "dataset": "Amazon_Beauty", "method": "LIGER", "group": "cold",
         "measure": "NDCG", "k": 10, "value": 0.01, "note": ""}]
    bad = tmp_path / "bad.csv"
    bad.write_text("source,dataset,method,group,measure,k,value,note\nX,Amazon_Beauty,LIGER,warm,NDCG,10,0.01,\n")
    with pytest.raises(DataError, match="bad.csv: group must be in, cold or all"):
        read_published(bad)
    with pytest.raises(DataError, match="missing.csv: cannot read"):
        read_published(tmp_path / "missing.csv")


def test_sweep_view_has_recall_and_ndcg_per_k_of_the_hybrid(results):
    root, truth = results
    cells = sweep_cells(group_runs(find_runs([root])))
    assert set(cells["row"]) == {"LIGER", f"LIGER ({LR}=0.001)", f"LIGER ({LR}=0.003)"}
    at = cells.set_index(["dataset", "row", "group", "measure", "K"])
    for K in UNI_KS:
        mean, std = expected(truth, "Amazon_Toys_and_Games", "LIGER", f"uni_cold_test/Gen{K}_Recall@10")
        cell = at.loc["Amazon_Toys_and_Games", "LIGER", "cold", "Recall", K]
        assert (cell["mean"], cell["std"], cell["n"]) == (pytest.approx(mean), pytest.approx(std), 3)
    grid = sweep_grid(cells, 10, MARKDOWN)
    assert grid.spans == (("", ("K=20", "K=40", "K=60")),)
    assert len(grid.rows) == 3 * 4 and grid.rows[0][:4] == ("Amazon_Beauty", f"LIGER ({LR}=0.001)", "in-set",
                                                            "Recall@10")
    assert "K=60" in markdown(grid) and "\\begin{tabular}" not in markdown(grid)
    assert "--sweep: no finished run has uni metrics" in format_report(find_runs([root / "tiger"]), sweep=True)[0]


def test_plots_write_non_empty_pngs_and_name_the_runs_without_curves(results, tmp_path):
    root, _ = results
    paths, skipped = write_plots(find_runs([root]), tmp_path / "figures")
    names = {path.name for path in paths}
    assert names == {f"{kind}_{dataset}.png" for kind in ("training", "validation", "uni_sweep")
                     for dataset in ("Amazon_Beauty", "Amazon_Toys_and_Games")} | {"sid_usage.png"}
    for path in paths:
        assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(line.split(":")[0].rsplit("/", 1)[-1] for line in skipped) == ["exp_seed_2", "failed_seed_4"]


def test_metric_pattern_parses_every_metric_name():
    for generated in (None, 20, 100):
        name = metric_name("uni" if generated else "dense", "cold", "test", "NDCG", 10, generated)
        match = TEST_METRIC.match(name)
        assert match["group"] == "cold" and match["measure"] == "NDCG" and match["k"] == "10"
        assert match["K"] == (None if generated is None else str(generated))
    assert TEST_METRIC.match(metric_name("genret", "in", "val", "Recall", 10)) is None


def test_latex_style_escapes_labels():
    assert LATEX.escape("a_b & c%") == r"a\_b \& c\%"


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "results.py"), *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def test_script_prints_the_tables_and_writes_figures(results, tmp_path):
    root, _ = results
    done = script(str(root), "--sweep", "--paper", "--plots", str(tmp_path / "figures"))
    assert done.returncode == 0, done.stderr
    assert "### Test results at k=10" in done.stdout and "### Hybrid (uni) retrieval by K" in done.stdout
    assert "TIGER (published: Rajput et al. 2023)" in done.stdout and "failed_seed_4" in done.stdout
    assert "| LIGER (published: Yang et al. 2024) | 0.0745 | 0.0402 | 0.1008 | 0.0380 |" in done.stdout
    assert str(tmp_path / "figures" / "sid_usage.png") in done.stdout
    assert (tmp_path / "figures" / "sid_usage.png").stat().st_size > 0


def test_script_exits_1_with_a_message_for_a_missing_or_empty_folder(tmp_path):
    for folder, message in ((tmp_path / "nowhere", "no such folder"), (tmp_path, "holds no run folder")):
        done = script(str(folder))
        assert done.returncode == 1 and message in done.stderr and str(folder) in done.stderr
        assert "Traceback" not in done.stderr


def test_runs_before_and_after_a_config_change_that_does_nothing_average_together(tmp_path):
    """A run made before dataset.RQ-VAE.max_seq_len was refused (its config holds it) and one whose
    checkpoint cadence differs are one group: neither key changes results."""
    rng = np.random.default_rng(3)
    old = config(BEAUTY, "LIGER", 0)
    old["dataset"]["RQ-VAE"]["max_seq_len"] = 256
    old["dataset"]["TIGER"]["save_every_n_epochs"] = 10
    new = config(BEAUTY, "LIGER", 1)
    new["dataset"]["TIGER"]["save_every_n_epochs"] = 1
    for name, cfg in (("old", old), ("new", new)):
        write_run(tmp_path / name, cfg, fake_metrics("LIGER", rng))
    groups = group_runs(find_runs([tmp_path]))
    assert len(groups) == 1 and groups[0].label == "LIGER" and len(groups[0].runs) == 2
