"""The GPU calls of the reproduction, proven on the CPU: the queue of runs, the plan's arithmetic, and
two dry-run calls end to end (the first without semantic IDs: the RQ-VAE, then the first run, which
fixes the length; the second with them committed: the next run at that length), each added to a
reproduction folder by `report.py --into`."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, compose

sys.path.insert(0, str(REPO / "scripts" / "device"))
from planning import (  # noqa: E402
    PAIR_GAIN,
    RunCost,
    at_once_seconds,
    checks_for,
    most_steps,
    plan_length,
    rqvae_plan,
    run_cost,
    step_mode,
    vouched,
)
from reproduction import Length, Reproduction, RunSpec, queue, warmup_for  # noqa: E402

DATASET = "synthetic"  # the dry run's generated dataset


# ---- the queue -------------------------------------------------------------------------------------

def test_the_queue_makes_tiger_and_liger_first_then_the_ablations_then_two_more_seeds():
    assert [spec.name for spec in queue("Beauty")] == [
        "Beauty_TIGER_seed42", "Beauty_LIGER_seed42", "Beauty_Dense-ID_seed42", "Beauty_Dense-SID_seed42",
        "Beauty_TIGER-T_seed42", "Beauty_TIGER_seed43", "Beauty_LIGER_seed43", "Beauty_TIGER_seed44",
        "Beauty_LIGER_seed44"]


@pytest.mark.parametrize("method", ["TIGER", "LIGER", "Dense (ID)", "Dense (SID)", "TIGER (T)"])
def test_each_queued_run_is_the_method_the_results_table_calls_it(method):
    """The overrides of a queued run compose to the configuration `scripts/results.py` labels with the
    method's name (as scripts/ablation.sh runs it)."""
    from omegaconf import OmegaConf

    from src.results import method_label

    spec = RunSpec("Beauty", method, 43)
    config = OmegaConf.to_container(compose("dataset=amazon", *spec.overrides), resolve=False)
    assert method_label(config) == method and config["seed"] == 43


def test_the_reproduction_folder_says_what_is_missing_and_how_long_runs_train(tmp_path):
    repro = Reproduction(tmp_path / "docs" / "reproduction")
    assert [s.name for s in repro.missing("Beauty")][:2] == ["Beauty_TIGER_seed42", "Beauty_LIGER_seed42"]
    assert not repro.has_codes("Beauty") and repro.length("Beauty") is None
    repro.root.mkdir(parents=True)
    repro.run_path(RunSpec("Beauty", "TIGER", 42)).write_text("{}")
    repro.fix_length("Beauty", Length(12_000, 600, "Beauty_TIGER_seed42"))
    assert repro.missing("Beauty")[0].name == "Beauty_LIGER_seed42" and len(repro.missing("Beauty")) == 8
    assert repro.length("Beauty") == Length(12_000, 600, "Beauty_TIGER_seed42")
    assert repro.length("Toys_and_Games") is None
    # committed benchmark figures: any bench.json under docs/ of this GPU and torch, the newest
    for folder, date in (("a", "2026-01-01"), ("b", "2026-02-01")):
        (tmp_path / "docs" / folder).mkdir()
        (tmp_path / "docs" / folder / "bench.json").write_text(json.dumps(
            {"device": "NVIDIA H200", "torch": "2.11.0+cu130", "date": date, "train_ms_tiger": 1.0}))
    bench, source = repro.committed_figures("NVIDIA H200", "2.11.0+cu130")
    assert source == tmp_path / "docs" / "b" / "bench.json" and bench["date"] == "2026-02-01"
    assert repro.committed_figures("NVIDIA H100 80GB HBM3", "2.11.0+cu130") == ({}, None)
    assert repro.committed_figures("NVIDIA H200", "2.13.0+cu130") == ({}, None)
    repro.plan_path.write_text("[1]")
    with pytest.raises(ValueError, match="plan.json: not a JSON object"):
        repro.length("Beauty")


# ---- the plan's arithmetic -------------------------------------------------------------------------

COST = RunCost(step_s=0.02, validation_s=5.0, test_s=8.0, setup_s=30.0, steps_per_epoch=100, mode="cuda_graphs")


def test_a_run_costs_its_setup_steps_a_validation_every_ten_epochs_and_the_last_and_its_test():
    assert COST.seconds(1000) == pytest.approx(30 + 1000 * 0.02 + 1 * 5 + 8)     # 10 epochs: one validation
    assert COST.seconds(1001) == pytest.approx(30 + 1001 * 0.02 + 2 * 5 + 8)     # 11: and the last epoch's
    assert COST.seconds(2500) == pytest.approx(30 + 2500 * 0.02 + 3 * 5 + 8)     # 25: at 10, 20 and 25


def test_most_steps_is_the_largest_number_that_fits():
    for seconds in (43.0, 60.0, 100.0, 333.3):
        steps = most_steps(COST, seconds, cap=200_000)
        assert COST.seconds(steps) <= seconds < COST.seconds(steps + 1)
    assert most_steps(COST, 10.0, cap=200_000) == 0
    assert most_steps(COST, 1e9, cap=200_000) == 200_000


def test_the_first_run_fixes_the_most_steps_that_fit_now_and_in_a_whole_call_of_the_slowest_method():
    spec = RunSpec("Beauty", "TIGER", 42)
    slow = RunCost(0.03, 10.0, 15.0, 30.0, 100, "cuda_graphs")
    # little time now (the RQ-VAE took the rest): the time now decides
    plan = plan_length(spec, None, COST, seconds=200.0, full_call=[COST, slow], full_call_s=400.0, cap=200_000)
    assert plan.length.steps == most_steps(COST, 200.0, 200_000) and plan.reason == "the most that fit the time left"
    assert plan.length.warmup_steps == warmup_for(plan.length.steps) == round(plan.length.steps / 20)
    assert plan.length.fixed_by == "Beauty_TIGER_seed42"
    # a whole call now: the slowest queued method's whole call decides, so that it fits a later call
    plan = plan_length(spec, None, COST, seconds=400.0, full_call=[COST, slow], full_call_s=400.0, cap=200_000)
    assert plan.length.steps == most_steps(slow, 400.0, 200_000) < most_steps(COST, 400.0, 200_000)
    assert plan.reason == "the most that fit one whole call for the slowest method queued"
    assert plan_length(spec, None, COST, 1e9, [COST], 1e9, 200_000).length == Length(200_000, 10_000, spec.name)
    assert plan_length(spec, None, COST, 20.0, [COST], 400.0, 200_000).length is None


def test_a_fixed_length_is_trained_as_it_is_or_not_in_this_call():
    spec = RunSpec("Beauty", "LIGER", 42)
    fixed = Length(5000, 250, "Beauty_TIGER_seed42")
    more_time = plan_length(spec, fixed, COST, seconds=10_000.0, full_call=[COST], full_call_s=10_000.0, cap=200_000)
    assert more_time.length == fixed  # a call that would fit more does not change it
    short = plan_length(spec, fixed, COST, seconds=COST.seconds(5000) - 1, full_call=[COST], full_call_s=1e4,
                        cap=200_000)
    assert short.length is None and "fixed by Beauty_TIGER_seed42" in short.reason


def test_a_run_costs_what_its_methods_figures_say_and_a_committed_runs_step_time_first():
    bench = {"train_ms_tiger": 95.0, "train_ms_tiger_graphed": 15.5, "train_warmup_s_tiger_graphed": 4.0,
             "tiger_eval_beam10_seqs_per_s": 10_000.0, "users": 20_000, "train_examples": 25_600}
    cost = run_cost(bench, RunSpec("Beauty", "TIGER (T)", 42), startup_s=30.0)
    assert cost.mode == "cuda_graphs" and cost.step_s == pytest.approx(0.0155)
    assert (cost.validation_s, cost.test_s, cost.setup_s, cost.steps_per_epoch) == (2.0, 2.0, 34.0, 100)
    assert cost.guessed == ()
    measured = run_cost(bench, RunSpec("Beauty", "TIGER", 42), 30.0, {("tiger", "cuda_graphs"): 0.017})
    assert measured.step_s == 0.017
    liger = run_cost(bench, RunSpec("Beauty", "Dense (SID)", 42), 30.0)  # no LIGER figures: slow guesses
    assert liger.mode == "eager" and liger.step_s == 0.15 and "train_ms_liger" in liger.guessed


def test_a_graph_is_planned_only_where_its_smoke_check_passed():
    bench = {"train_ms_tiger": 95.0, "train_ms_tiger_graphed": 15.5, "train_ms_liger": 140.0,
             "train_ms_liger_graphed_padded": 21.0, "rqvae_s_per_epoch": 0.047, "rqvae_s_per_epoch_graphed": 0.013}
    assert step_mode(bench, "tiger") == "cuda_graphs" and step_mode(bench, "liger") == "cuda_graphs_padded"
    assert checks_for({"cuda_graphs", "cuda_graphs_padded"}, rqvae_graphed=True) == ["cuda_graph", "rqvae_cuda_graph"]
    assert checks_for({"eager"}, rqvae_graphed=False) == []
    assert checks_for({"compiled_graphs"}, False) == ["compiled_cuda_graph", "cuda_graph"]
    passed = {"checks": {"cuda_graph": {"ok": True}, "rqvae_cuda_graph": {"ok": True}}}
    assert vouched(bench, passed) == bench and vouched(bench, None) == bench
    failed = vouched(bench, {"checks": {"cuda_graph": {"ok": False}}})  # or killed before its checks: {}
    assert step_mode(failed, "tiger") == "eager" and step_mode(failed, "liger") == "eager"
    assert vouched(bench, {}) == failed
    assert not rqvae_plan(failed)["cuda_graphs"] and rqvae_plan(failed)["estimated_s"] == 8000 * 0.047
    plan = rqvae_plan(vouched(bench, passed))
    assert plan == {"epochs": 8000, "cuda_graphs": True, "compile": False, "float32_matmul_precision": "highest",
                    "estimated_s": 104.0, "estimate_measured": True}
    assert rqvae_plan({})["estimated_s"] == 8000 * 0.05 and not rqvae_plan({})["estimate_measured"]
    # a compiled graph only where it compiled
    compiled = {**bench, "train_ms_tiger_compiled_graphed": 5.0}
    assert step_mode(compiled, "tiger") == "cuda_graphs"
    assert step_mode({**compiled, "train_compiled_tiger_compiled_graphed": True}, "tiger") == "compiled_graphs"


def test_two_runs_train_at_once_only_where_a_measurement_says_that_is_sooner_and_they_fit():
    other = RunCost(0.03, 10.0, 15.0, 30.0, 100, "cuda_graphs")
    steps = 5000
    one_after_the_other = COST.seconds(steps) + other.seconds(steps)
    measured = {"slowdown": 0.7, "mps": True}
    both = at_once_seconds(measured, COST, other, steps, seconds=1e9)
    assert both == pytest.approx(one_after_the_other - 0.3 * steps * (0.02 + 0.03))
    assert at_once_seconds(measured, COST, other, steps, seconds=both - 1) is None  # does not fit
    assert at_once_seconds({"slowdown": PAIR_GAIN + 0.01}, COST, other, steps, 1e9) is None  # not sooner enough
    assert at_once_seconds(None, COST, other, steps, 1e9) is None  # never measured: one at a time


# ---- two dry-run calls, each added to a reproduction folder -----------------------------------------

def call(out: Path, repro: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", "scripts/device/run.sh", "--dry-run", str(out), "--reproduction", str(repro),
                           "--max-runs", "1", *extra], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def add(out: Path, repro: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/device/report.py", str(out), "--into", str(repro)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> dict:
    """Call 1 on an empty reproduction folder, added; call 2 on the result, added."""
    root = tmp_path_factory.mktemp("calls")
    repro = root / "docs" / "reproduction"
    repro.mkdir(parents=True)
    call(root / "call1", repro)
    first = add(root / "call1", repro)
    assert first.returncode == 0, first.stderr
    after_first = snapshot(repro)
    call(root / "call2", repro)
    second = add(root / "call2", repro)
    assert second.returncode == 0, second.stderr
    return {"root": root, "repro": repro, "call1": root / "call1", "call2": root / "call2",
            "after_first": after_first, "said": first.stdout + second.stdout}


def test_a_call_without_semantic_ids_trains_the_rqvae_then_the_first_run(calls):
    out = calls["call1"]
    files = {p.name for p in out.iterdir()}
    assert files == {"device.log", "summary.json", "bench.json", f"{DATASET}_semantic_ids.npz",
                     f"{DATASET}_TIGER_seed42.json", f"{DATASET}_TIGER_seed42.log"}  # at most 8 come back
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["steps"]) == ["benchmark", "rqvae_eager", f"{DATASET}_TIGER_seed42"]
    assert all(step["status"] == "ok" for step in summary["steps"].values())
    assert summary["steps"]["rqvae_eager"]["epochs"] == 150  # the dry run's "published" epochs
    assert summary["state"]["missing"][0] == f"{DATASET}_TIGER_seed42"
    assert not summary["state"]["semantic_ids_committed"]
    record = json.loads((out / f"{DATASET}_TIGER_seed42.json").read_text())
    run = record["run"]
    assert record["train/steps"] == record["train/steps_planned"] == run["steps_planned"] == 30  # the dry run's cap
    assert run["warmup_steps"] == record["train/warmup_steps"] == warmup_for(30)
    assert run["scheduler"] == record["train/scheduler"] == "cosine" and record["train/step_mode"] == "eager"
    assert run["length_fixed_by"] == f"{DATASET}_TIGER_seed42" and run["status"] == "ok"
    assert {"gpu", "torch", "cuda", "commit", "encoder", "best_epoch", "wall_s"} <= run.keys()
    assert {"preprocess", "semantic_ids", "train", "test"} <= run["wall_s"].keys()
    assert record["sid/codes_file_matches_inputs"] == 1 and record["curves"]
    assert "genret_in_test/Recall@10" in record
    # no folder of the machine that ran the call is named in what comes back
    for path in out.iterdir():
        if path.suffix in (".json", ".log"):
            text = path.read_text()
            assert "liger_call_" not in text and str(out) not in text and f"{REPO}/" not in text, path.name


def test_adding_a_call_writes_the_runs_codes_length_record_and_readme(calls):
    repro, out = calls["repro"], calls["call1"]
    assert (repro / f"{DATASET}_semantic_ids.npz").read_bytes() == (out / f"{DATASET}_semantic_ids.npz").read_bytes()
    assert Reproduction(repro).length(DATASET) == Length(30, warmup_for(30), f"{DATASET}_TIGER_seed42")
    run = json.loads((repro / f"{DATASET}_TIGER_seed42.json").read_text())
    assert "curves" not in run and run["run"]["method"] == "TIGER"
    lines = (repro / "curves" / f"{DATASET}_TIGER_seed42.jsonl").read_text().splitlines()
    assert any("genret_in_val/NDCG@10" in line for line in lines)
    summary = json.loads((out / "summary.json").read_text())
    machine = re.sub(r"[^A-Za-z0-9]+", "-", summary["machine"]["gpu"]).strip("-").lower()
    records = sorted(p.name for p in (repro / "calls").iterdir())
    assert records == [f"{summary['date']}-{machine}-1", f"{summary['date']}-{machine}-2"]  # one per call
    assert {p.name for p in (repro / "calls" / records[0]).iterdir()} >= {"summary.json", "bench.json", "device.log"}


def test_a_call_with_semantic_ids_committed_trains_the_next_run_at_the_fixed_length(calls):
    out, repro = calls["call2"], calls["repro"]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["steps"]) == [f"{DATASET}_LIGER_seed42"]  # no benchmark (committed), no RQ-VAE
    assert summary["figures"].endswith("bench.json") and summary["state"]["semantic_ids_committed"]
    assert {p.name for p in out.iterdir()} == {"device.log", "summary.json", f"{DATASET}_LIGER_seed42.json",
                                               f"{DATASET}_LIGER_seed42.log"}
    tiger = json.loads((repro / f"{DATASET}_TIGER_seed42.json").read_text())["run"]
    liger = json.loads((repro / f"{DATASET}_LIGER_seed42.json").read_text())
    assert liger["run"]["steps_planned"] == tiger["steps_planned"] and liger["run"]["length_fixed_by"] == tiger["name"]
    assert liger["run"]["semantic_ids"]["sha256"] == tiger["semantic_ids"]["sha256"]
    assert liger["sid/codes_file_matches_inputs"] == 1 and "uni_cold_test/Gen20_Recall@10" in liger
    text = (repro / "README.md").read_text()
    assert "2 of 9 runs finished; next: `synthetic_Dense-ID_seed42`" in text
    row = "| LIGER, seed 42 | uni (K = 20) | 30 | " + " | ".join(
        f"{liger[f'uni_{g}_test/Gen20_{m}@10']:.4f}" for g in ("in", "cold") for m in ("Recall", "NDCG")) + " |"
    assert row in text
    tiger_recall = json.loads((repro / f"{DATASET}_TIGER_seed42.json").read_text())["genret_in_test/Recall@10"]
    assert f"| TIGER, seed 42 | genret | 30 | {tiger_recall:.4f} |" in text
    assert "still rising" in text or "levelled off" in text


def test_a_call_that_does_not_fit_the_reproduction_changes_nothing(calls, tmp_path):
    from report import Refused, add_call

    repro = calls["repro"]
    before = snapshot(repro)
    again = add(calls["call1"], repro)  # its run is in already; the command says so, exit 2
    assert again.returncode == 2 and "exists: a run is added once" in again.stderr and "Traceback" not in again.stderr
    other = tmp_path / "other"
    shutil.copytree(calls["call2"], other)
    record = json.loads((other / f"{DATASET}_LIGER_seed42.json").read_text())
    record["run"].update(name=f"{DATASET}_LIGER_seed43", seed=43, steps_planned=60, warmup_steps=3)
    (other / f"{DATASET}_LIGER_seed43.json").write_text(json.dumps(record))
    summary = json.loads((other / "summary.json").read_text())
    summary["runs"] = [f"{DATASET}_LIGER_seed43"]
    (other / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(Refused, match="a longer schedule is a new table"):
        add_call(other, Reproduction(repro))
    record["run"].update(steps_planned=30, warmup_steps=warmup_for(30))
    record["run"]["semantic_ids"]["sha256"] = "0" * 64
    (other / f"{DATASET}_LIGER_seed43.json").write_text(json.dumps(record))
    with pytest.raises(Refused, match="uses the dataset's committed semantic IDs"):
        add_call(other, Reproduction(repro))
    (other / f"{DATASET}_semantic_ids.npz").write_bytes(b"other codes")
    with pytest.raises(Refused, match="the runs of one table must share their semantic IDs"):
        add_call(other, Reproduction(repro))
    with pytest.raises(Refused, match="no summary.json"):  # not a call's OUT_DIR
        add_call(tmp_path, Reproduction(repro))
    assert snapshot(repro) == before


def test_the_printed_report_of_a_call(calls):
    done = subprocess.run([sys.executable, "scripts/device/report.py", str(calls["call1"]), str(calls["call2"])],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| rqvae_eager | ok |" in done.stdout
    assert f"| {DATASET}_LIGER_seed42 | ok | 30 | uni (K = 20) |" in done.stdout


def test_the_benchmarks_inputs_are_the_same_in_every_run_and_it_times_one_model_when_asked(calls, tmp_path):
    """The benchmark's random embeddings and codes are seeded: another run (here one model, its steps timed
    from a given moment, as two benchmarks at once time theirs) gives the call's first-batch loss exactly."""
    out = tmp_path / "bench.json"
    start_at = time.time() + 1
    done = subprocess.run([sys.executable, "scripts/benchmark.py", "--tiny", "--only", "train", "--methods", "tiger",
                           "--variants", "compact", "--start-at", str(start_at), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again = json.loads(out.read_text())
    bench = json.loads((calls["call1"] / "bench.json").read_text())
    assert again["loss_tiger"] == bench["loss_tiger"]
    assert "train_ms_liger" not in again and "train_ms_tiger_transformers" not in again and again["train_ms_tiger"] > 0
    assert bench["profile_train_tiger"] == {"skipped": "--quick"}  # the call's benchmark is the quick one


def test_the_smoke_check_runs_only_the_checks_asked_for(tmp_path):
    out = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, "scripts/device/smoke.py", "--out", str(out), "--device", "cpu",
                           "--checks", "cuda_graph,rqvae_cuda_graph"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    checks = json.loads(out.read_text())["checks"]
    assert set(checks) == {"cuda_graph", "rqvae_cuda_graph"}  # no setup: neither needs the tiny experiment
    assert all(check["detail"].startswith("skipped") for check in checks.values())  # on a GPU only
    bad = subprocess.run([sys.executable, "scripts/device/smoke.py", "--out", str(out), "--checks", "nope"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--checks: unknown nope" in bad.stderr


def test_a_writer_killed_mid_write_leaves_no_file_in_the_out_dir(tmp_path):
    """The benchmark writes its JSON atomically; what a kill at its time limit leaves (a temporary file of
    a process that is gone) is removed, so only the call's files come back."""
    from device_run import drop_killed_writes
    from src.cache import _HOST, write_json

    gone = subprocess.Popen(["true"])  # a writer's process that has ended
    gone.wait()
    write_json(tmp_path / "bench.json", {"train_ms_tiger": 5.0})
    killed = tmp_path / f".bench.json.{_HOST}.{gone.pid}.x1y2.tmp"
    killed.write_text('{"train_ms_ti')
    alive = tmp_path / "note.txt"
    alive.write_text("kept")
    drop_killed_writes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "note.txt"]
