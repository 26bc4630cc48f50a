"""The figures of src/plots.py, checked on their matplotlib objects (labels, legends, colours, limits,
error bars, the selected checkpoint, repeated seeds), on fake run folders."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from src.plots import MIN_SPAN, curves_of, figures, metric_limits, run_colours, selected_step, write_plots
from src.results import Run, find_runs, run_labels
from src.retrieval import metric_name
from src.tracking import Curve, RunRecorder

DATASET = "generated_synthetic"
METHOD = {  # method.* of configs/method
    "TIGER": dict(use_id="sid", flag_add_input_embedding=False, flag_use_output_embedding=False, sid_loss_weight=1),
    "LIGER": dict(use_id="sid", flag_add_input_embedding=True, flag_use_output_embedding=True, sid_loss_weight=1),
}
MODES = {"TIGER": ("genret",), "LIGER": ("genret", "dense")}
# the selection metric (genret NDCG@10) per seed at its validations (steps 50, 100, ...; two, as the offline
# demo has, for seed 42): seed 42's best is the first, seed 43's the second of three
SELECTION = {42: (0.33, 0.31), 43: (0.31, 0.33, 0.32)}
RAW_KEY = re.compile(r"(train|rqvae|sid|time)/|_(in|cold)_(val|test)")


def write_run(run_dir: Path, method: str, seed: int, uni: dict[int, float] | None = None) -> Path:
    """A finished run of the offline demo's shape: two validations, test metrics of the in-set targets
    only (no cold-start items), code usage of 32-code levels."""
    (run_dir / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "stop_after": None, "method": METHOD[method],
              "dataset": {"type": "generated", "name": "synthetic", "RQ-VAE": {"code_book_size": 32}}}
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    recorder = RunRecorder(run_dir)
    ndcg = tuple(value * (0.8 if method == "TIGER" else 1) for value in SELECTION[seed])
    for epoch, step in enumerate(range(50, 50 * len(ndcg) + 1, 50), start=1):
        recorder.curve({"train/loss": 8 / epoch, "train/sid_loss": 5 / epoch, "train/epoch": epoch}, "train/step", step)
        values = {metric_name(mode, "in", "val", measure, 10): ndcg[epoch - 1] * (2 if measure == "Recall" else 1)
                  * (1.1 if mode == "dense" else 1) for mode in MODES[method] for measure in ("Recall", "NDCG")}
        recorder.curve(values, "train/step", step)
    best = int(np.argmax(ndcg))  # the first of equal values, as the trainer keeps
    metrics = {"train/best_epoch": best + 1, "train/best_genret_in_val/NDCG@10": ndcg[best],
               "sid/usage_l1": 1.0 if seed == 42 else 0.9, "sid/usage_l2": 0.5, "sid/usage_l3": 0.25}
    metrics.update({metric_name(mode, "in", "test", measure, 10): 0.2 for mode in MODES[method]
                    for measure in ("Recall", "NDCG")})
    for generated, value in (uni or {}).items():
        metrics.update({metric_name("uni", "in", "test", measure, 10, generated): value
                        for measure in ("Recall", "NDCG")})
    recorder.log(metrics)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """LIGER seeds 42 and 43 (seed 42 twice: the same run copied to a second folder), TIGER seed 42.
    The hybrid's Recall of the LIGER runs spreads so wide that mean + std passes 1."""
    root = tmp_path_factory.mktemp("plots")
    uni = {42: {20: 0.95, 40: 0.96}, 43: {20: 0.25, 40: 0.3}}
    write_run(root / "liger_42", "LIGER", 42, uni[42])
    write_run(root / "liger_42_copy", "LIGER", 42, uni[42])
    write_run(root / "liger_43", "LIGER", 43, uni[43])
    write_run(root / "tiger_42", "TIGER", 42)
    return find_runs([root])


@pytest.fixture(scope="module")
def drawn(runs) -> dict[str, Figure]:
    return figures(runs)


def by_name(runs, name: str):
    return next(run for run in runs if run.path.name == name)


def data_lines(axes):
    """The lines of the runs (not the selected-checkpoint stars)."""
    return [line for line in axes.lines if line.get_gid() and not line.get_gid().endswith("#selected")]


def texts(figure: Figure) -> list[str]:
    return [figure.get_suptitle(), *(text for axes in figure.axes
                                     for text in (axes.get_title(), axes.get_xlabel(), axes.get_ylabel()))]


def test_every_figure_is_made(drawn):
    assert set(drawn) == {f"{kind}_{DATASET}.png" for kind in ("training", "validation", "uni_sweep")} | \
        {"sid_usage.png"}


def test_titles_and_axis_labels_are_words_and_every_panel_has_a_y_label(drawn):
    for name, figure in drawn.items():
        for text in texts(figure):
            assert text and not RAW_KEY.search(text) and "/" not in text, (name, text)
    validation = drawn[f"validation_{DATASET}.png"]
    assert {axes.get_title() for axes in validation.axes} == {
        f"{retrieval} retrieval: {measure}@10 (validation, in-set)" for retrieval in ("Generative", "Dense")
        for measure in ("Recall", "NDCG")}
    assert {axes.get_xlabel() for axes in validation.axes} == {"training step"}
    # the codebook size where code usage is shown
    assert all("32 codes" in axes.get_ylabel() for axes in drawn["sid_usage.png"].axes)


def test_validation_has_a_row_per_retrieval_with_recall_and_ndcg_side_by_side(drawn):
    validation = drawn[f"validation_{DATASET}.png"]
    grid = {(axes.get_subplotspec().rowspan.start, axes.get_subplotspec().colspan.start): axes.get_title()
            for axes in validation.axes}
    assert [grid[0, 0], grid[0, 1]] == ["Generative retrieval: Recall@10 (validation, in-set)",
                                        "Generative retrieval: NDCG@10 (validation, in-set)"]
    assert grid[1, 0].startswith("Dense retrieval: Recall") and grid[1, 1].startswith("Dense retrieval: NDCG")
    for axes in validation.axes:  # a marker per validation, joined by lines
        for line in data_lines(axes):
            assert line.get_marker() not in (None, "", "None") and line.get_linestyle() != "None"


def test_legends_sit_under_the_panels_never_in_an_empty_one(drawn):
    for name, figure in drawn.items():
        assert len(figure.legends) == 1, name
        for axes in figure.axes:
            assert axes.get_legend() is None or data_lines(axes) or axes.containers, name
            assert data_lines(axes) or axes.containers or axes.patches, f"{name}: empty panel {axes.get_title()}"
    # no cold-start items: no cold-start panel, the lines are labelled in-set
    sweep = drawn[f"uni_sweep_{DATASET}.png"]
    assert len(sweep.axes) == 2 and all(axes.get_title().startswith("in-set targets") for axes in sweep.axes)
    assert {text.get_text() for text in sweep.legends[0].get_texts()} == {"LIGER (3 seeds)"}


def test_a_run_has_one_colour_in_every_figure(runs, drawn):
    colours = run_colours(runs)
    labels = run_labels(runs)
    assert len({colours[run.path] for run in runs}) == len(set(labels.values())) == 2
    for figure_name in (f"training_{DATASET}.png", f"validation_{DATASET}.png"):
        for axes in drawn[figure_name].axes:
            for line in axes.lines:
                path = Path(line.get_gid().removesuffix("#selected"))
                assert to_hex(line.get_color()) == colours[path], (figure_name, path)
    rows = {labels[run.path]: colours[run.path] for run in runs}
    sweep_lines = [line for axes in drawn[f"uni_sweep_{DATASET}.png"].axes for line in data_lines(axes)]
    assert sweep_lines and all(to_hex(line.get_color()) == rows[line.get_gid()] for line in sweep_lines)
    bars = [patch for axes in drawn["sid_usage.png"].axes for patch in axes.patches]
    assert {patch.get_gid() for patch in bars} == {"LIGER", "TIGER"}
    assert all(to_hex(patch.get_facecolor()) == rows[patch.get_gid()] for patch in bars)


def test_the_colour_map_given_is_the_one_every_figure_uses(runs):
    """One map for all the figures of a call: each row's own colour (none of matplotlib's defaults)."""
    labels = run_labels(runs)
    own = {"TIGER": "#123456", "LIGER": "#654321"}
    drawn = figures(runs, colours={run.path: own[labels[run.path]] for run in runs})
    used = {to_hex(line.get_color()) for figure in drawn.values() for axes in figure.axes for line in axes.lines
            if line.get_gid()}  # the runs' lines and stars, not the error bars' caps
    used |= {to_hex(patch.get_facecolor()) for axes in drawn["sid_usage.png"].axes for patch in axes.patches}
    assert used == set(own.values())


def test_metric_axes_start_at_zero_and_never_zoom_below_the_minimum_span(drawn):
    low, high = metric_limits([0.31, 0.33])
    assert 0 <= low and high <= 1 and high - low >= MIN_SPAN and high >= 0.33
    assert metric_limits([0.001, 0.002]) == metric_limits([0.0, 0.0]) == (0.0, MIN_SPAN)  # never a sliver
    assert metric_limits([0.99, 1.0]) == (0.0, 1.0)
    for name in (f"validation_{DATASET}.png", f"uni_sweep_{DATASET}.png", "sid_usage.png"):
        for axes in drawn[name].axes:
            low, high = axes.get_ylim()
            assert low == 0 and high <= 1 and high - low >= MIN_SPAN, (name, axes.get_title(), low, high)
            for line in data_lines(axes):
                assert np.nanmax(line.get_ydata()) <= high
    for name in (f"training_{DATASET}.png", f"validation_{DATASET}.png"):  # every point in view (losses from step 0)
        for axes in drawn[name].axes:
            left, right = axes.get_xlim()
            assert left == 0 if name.startswith("training") else left > 0
            assert all(left <= min(line.get_xdata()) and max(line.get_xdata()) <= right for line in data_lines(axes))
    genret_ndcg = next(axes for axes in drawn[f"validation_{DATASET}.png"].axes
                       if axes.get_title().startswith("Generative retrieval: NDCG"))
    assert genret_ndcg.get_ylim()[1] - genret_ndcg.get_ylim()[0] > 0.3  # values 0.31 and 0.33, drawn from 0


def error_bar_ends(figure: Figure) -> list[float]:
    ends = []
    for axes in figure.axes:
        for collection in axes.collections:
            if isinstance(collection, LineCollection):
                ends += [y for segment in collection.get_segments() for _, y in segment]
    return ends


def test_error_bars_stay_within_the_metric_range(runs, drawn):
    # unclipped, the hybrid's Recall@10 at K=20 (0.95, 0.95, 0.25) and level-1 usage (1, 1, 0.9) pass 1
    values = np.array([0.95, 0.95, 0.25])
    assert values.mean() + values.std(ddof=1) > 1
    for name in (f"uni_sweep_{DATASET}.png", "sid_usage.png"):
        ends = error_bar_ends(drawn[name])
        assert ends and min(ends) >= 0 and max(ends) <= 1, name
        assert max(ends) == pytest.approx(1.0), name  # cut at 1, not left out


def test_the_selected_checkpoint_is_starred_on_each_runs_curve(runs, drawn):
    curves = curves_of(runs)[0]
    best = {run.path: selected_step(run, curves[run.path]) for run in runs}
    # seed 42's best validation is the first (step 50), not the last; seed 43's the second
    assert best[by_name(runs, "liger_42").path] == 50 and best[by_name(runs, "liger_43").path] == 100
    for axes in drawn[f"validation_{DATASET}.png"].axes:
        stars = {Path(line.get_gid().removesuffix("#selected")): line for line in axes.lines
                 if line.get_gid().endswith("#selected")}
        assert set(stars) == {Path(line.get_gid()) for line in data_lines(axes)}
        for line in data_lines(axes):
            star = stars[Path(line.get_gid())]
            step = best[Path(line.get_gid())]
            assert star.get_marker() == "*" and list(star.get_xdata()) == [step]
            assert star.get_ydata()[0] == line.get_ydata()[list(line.get_xdata()).index(step)]
            assert star.get_markersize() > line.get_markersize()
    legend = [text.get_text() for text in drawn[f"validation_{DATASET}.png"].legends[0].get_texts()]
    assert "selected checkpoint: the run's best NDCG@10 of generative retrieval (validation, in-set)" in legend


def style(line) -> tuple:
    return line.get_linestyle(), to_hex(line.get_markerfacecolor(), keep_alpha=True), line.get_markersize()


def test_a_repeated_seed_is_drawn_distinguishably_and_named_a_copy(runs, drawn):
    first, copy = by_name(runs, "liger_42").path, by_name(runs, "liger_42_copy").path
    for name in (f"training_{DATASET}.png", f"validation_{DATASET}.png"):
        for axes in drawn[name].axes:
            lines = {Path(line.get_gid()): line for line in data_lines(axes)}
            a, b = lines[first], lines[copy]
            assert list(a.get_ydata()) == list(b.get_ydata())  # the same values ...
            assert style(a) != style(b)  # ... drawn apart
            assert b.get_markersize() > a.get_markersize() and b.get_markerfacecolor() == "none"
            assert "copy 1 of 2: liger_42" in a.get_label() and "copy 2 of 2: liger_42_copy" in b.get_label()
    seed_43 = next(line for line in data_lines(drawn[f"training_{DATASET}.png"].axes[0])
                   if line.get_gid() == str(by_name(runs, "liger_43").path))
    assert "copy" not in seed_43.get_label()


def test_write_plots_saves_pngs_and_clears_the_figures(runs, tmp_path):
    paths, skipped = write_plots(runs, tmp_path)
    assert {path.name for path in paths} == set(figures(runs)) and not skipped
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in paths)


def test_the_selected_step_without_the_epoch_curve_is_the_first_best_validation(runs):
    """A run without the train/epoch curve (or whose best epoch it lacks): the first best value of the
    selection metric that metrics.json names; a run still training (no train/best_*): none."""
    run = by_name(runs, "liger_43")
    curves = dict(curves_of([run])[0][run.path])
    del curves["train/epoch"]
    name = "genret_in_val/NDCG@10"
    curves[name] = Curve("train/step", (50, 100, 150), (0.2, 0.4, 0.4))
    assert selected_step(run, curves) == 100
    training = Run(run.path, run.config, {"train/loss": 1.0}, False, "still training")
    assert selected_step(training, curves) is None
