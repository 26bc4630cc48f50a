"""The prepared GPU call, proven on the CPU: its dry run goes through every step and leaves the
layout the GPU run leaves; the training plan follows the measured speed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts" / "device"))
from device_run import PUBLISHED_STEPS, profiles, rqvae_plan, train_ms_key, training_plan  # noqa: E402

EXPECTED_FILES = {"device.log", "smoke.json", "bench.json", "tiger_metrics.json", "liger_metrics.json",
                  "tiger_train.log", "liger_train.log", "summary.json"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("device_out")
    done = subprocess.run(["bash", "scripts/device/run.sh", "--dry-run", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_dry_run_leaves_the_gpu_runs_files(dry_run):
    assert {p.name for p in dry_run.iterdir()} == EXPECTED_FILES  # at most 8 files come back


def test_dry_run_passes_every_step(dry_run):
    summary = json.loads((dry_run / "summary.json").read_text())
    assert {step: s["status"] for step, s in summary["steps"].items()} == {
        "smoke": "ok", "benchmark": "ok", "prepare": "ok", "tiger": "ok", "liger": "ok"}
    assert summary["wall_s"] < summary["profile"]["budget_s"]
    smoke = json.loads((dry_run / "smoke.json").read_text())
    assert set(smoke["checks"]) == {"setup", "forward", "train_step", "beam_search", "wide_beams", "evaluation", "fit",
                                    "cuda_graph", "rqvae_cuda_graph"}
    assert all(check["ok"] for check in smoke["checks"].values())
    assert all(smoke["checks"][name]["detail"].startswith("skipped")  # on a GPU only
               for name in ("cuda_graph", "rqvae_cuda_graph"))
    bench = json.loads((dry_run / "bench.json").read_text())
    assert bench[train_ms_key("tiger")] > 0 and bench["liger_eval_uni_seqs_per_s"] > 0
    assert bench["loss_tiger"] == pytest.approx(bench["loss_tiger_transformers"], rel=1e-4)
    assert bench["liger_eval_uni_seqs_per_s_batch512"] > 0  # the first device session's batch size, beside
    for profile in (bench["profile_train_liger"], bench["profile_eval_liger_beam100"], bench["profile_rqvae"]):
        assert profile["launches"] > 100 and 0 < profile["busy_ms"] and profile["top"][0]["count"] >= 1


def test_the_benchmarks_inputs_are_the_same_in_every_run(dry_run, tmp_path):
    """The benchmark's random embeddings and codes are seeded: another run (here with other options)
    gives the dry run's first-batch losses exactly, so losses compare across runs and sessions."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "scripts/benchmark.py", "--tiny", "--only", "train", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again, bench = (json.loads(path.read_text()) for path in (out, dry_run / "bench.json"))
    for key in ("loss_tiger", "loss_liger"):
        assert again[key] == bench[key]


def test_dry_run_metrics_are_the_runs_with_the_plan(dry_run):
    for name, headline in (("tiger", "genret_in_test/Recall@10"), ("liger", "uni_cold_test/Gen20_Recall@10")):
        metrics = json.loads((dry_run / f"{name}_metrics.json").read_text())
        plan = metrics["device_run"]
        assert headline in metrics and metrics["train/steps"] == plan["steps"] == 30
        assert plan["steps_reason"] == "the dry run's cap" and plan["status"] == "ok"
        assert f"dataset.TIGER.trainer.warmup_steps={plan['warmup_steps']}" in plan["overrides"]
        assert "seed=42" in plan["overrides"] and f"dataset.RQ-VAE.epochs={plan['rqvae_epochs']}" in plan["overrides"]
    assert "uni_in_test/Gen20_Recall@10" not in json.loads((dry_run / "tiger_metrics.json").read_text())


FLOAT32 = {"float32_matmul_precision": "highest"}  # the published RQ-VAE's products
RQVAE = {"epochs": 1, "cuda_graphs": False, "compile": False, **FLOAT32}
GPU_BENCH = {train_ms_key("tiger"): 20.0, train_ms_key("liger"): 30.0, "rqvae_s_per_epoch": 0.02,
             "tiger_eval_beam10_seqs_per_s": 20000.0, "liger_eval_uni_seqs_per_s": 5000.0,
             "users": 22363, "train_examples": 114104}


def test_plan_takes_the_most_steps_that_fit_with_the_warm_up_in_proportion(tmp_path):
    device = profiles(tmp_path)["device"]
    plan = training_plan(GPU_BENCH, 300.0, device)
    # (300 s × 0.8 − 25 s start − test 5.6 s − 1 validation) / 50 ms of both ≈ 4,000 steps
    assert 3500 < plan["steps"] < 4500 and plan["steps_reason"] == "the most that fit the time left"
    assert plan["warmup_steps"] == round(10_000 * plan["steps"] / PUBLISHED_STEPS)
    faster = training_plan({**GPU_BENCH, train_ms_key("tiger"): 10.0, train_ms_key("liger"): 15.0}, 300.0, device)
    assert faster["steps"] > 1.8 * plan["steps"]
    instant = training_plan({**GPU_BENCH, train_ms_key("tiger"): 0.1, train_ms_key("liger"): 0.1,
                             "tiger_eval_beam10_seqs_per_s": 1e7, "liger_eval_uni_seqs_per_s": 1e7}, 300.0, device)
    assert instant["steps"] == PUBLISHED_STEPS and instant["warmup_steps"] == 10_000
    assert instant["steps_reason"] == "published"


def test_plan_without_a_benchmark_uses_slow_guesses(tmp_path):
    device = profiles(tmp_path)["device"]
    assert 0 < training_plan({}, 300.0, device)["steps"] < training_plan(GPU_BENCH, 300.0, device)["steps"]
    # 60 s at the guessed 50 ms an epoch
    assert rqvae_plan({}, device) == {"epochs": 1200, "cuda_graphs": False, "compile": False, **FLOAT32}
    assert train_ms_key("liger") in ("train_ms_liger", "train_ms_liger_transformers")
    assert rqvae_plan({"rqvae_s_per_epoch": 0.001}, device)["epochs"] == 8000  # the published count, no more


def test_rqvae_replays_a_cuda_graph_where_the_benchmark_timed_it_faster(tmp_path):
    from device_run import run_overrides

    device = profiles(tmp_path)["device"]
    graphed = rqvae_plan({"rqvae_s_per_epoch": 0.06, "rqvae_s_per_epoch_graphed": 0.005}, device)
    # 60 s at 5 ms: all the published epochs
    assert graphed == {"epochs": 8000, "cuda_graphs": True, "compile": False, **FLOAT32}
    assert rqvae_plan({"rqvae_s_per_epoch": 0.06, "rqvae_s_per_epoch_graphed": 0.07}, device) == {
        "epochs": 1000, "cuda_graphs": False, "compile": False, **FLOAT32}
    # compiled and graphed, its compile time taken from the 60 s: where it fits more epochs, or the same
    # epochs sooner
    slow = {"rqvae_s_per_epoch": 0.06, "rqvae_s_per_epoch_graphed": 0.01}  # 6,000 epochs in 60 s
    compiled = {**slow, "rqvae_s_per_epoch_compiled_graphed": 0.002, "rqvae_warmup_s_compiled_graphed": 50.0}
    # compiled: 10 s left, 5,000 epochs
    assert rqvae_plan(compiled, device) == {"epochs": 6000, "cuda_graphs": True, "compile": False, **FLOAT32}
    assert rqvae_plan({**compiled, "rqvae_warmup_s_compiled_graphed": 10.0}, device) == {
        "epochs": 8000, "cuda_graphs": True, "compile": True, **FLOAT32}
    fast = {**compiled, "rqvae_s_per_epoch_graphed": 0.004}  # 8,000 epochs both ways: 32 s graphed
    assert rqvae_plan({**fast, "rqvae_warmup_s_compiled_graphed": 20.0}, device)["compile"] is False  # 16 s + 20 s
    assert rqvae_plan({**fast, "rqvae_warmup_s_compiled_graphed": 10.0}, device)["compile"] is True  # 16 s + 10 s
    # after a graphed or compiled RQ-VAE failed: eager epochs, whatever the graphs' figures
    assert rqvae_plan(fast, device, eager_only=True) == {"epochs": 1000, "cuda_graphs": False, "compile": False,
                                                         **FLOAT32}
    # the runs ask for the RQ-VAE the preparation cached, or they would train it again
    prepared = run_overrides(device, tmp_path, "liger", graphed, None)
    run = run_overrides(device, tmp_path, "tiger", graphed, training_plan({}, 300.0, device))
    assert "dataset.RQ-VAE.cuda_graphs=true" in prepared and "dataset.RQ-VAE.cuda_graphs=true" in run
    assert [o for o in prepared if "RQ-VAE" in o] == [o for o in run if "RQ-VAE" in o]


def test_rqvae_takes_tf32_products_only_where_they_fit_more_epochs(tmp_path):
    """TF32 (`dataset.RQ-VAE.float32_matmul_precision=high`) changes the codes by rounding: the plan keeps
    the published full float32 wherever that reaches as many epochs, and takes TF32, graphed or compiled,
    only where it fits more; the runs then ask for the RQ-VAE with those products, as the preparation
    cached it."""
    from device_run import run_overrides

    device = profiles(tmp_path)["device"]
    both_fit = {"rqvae_s_per_epoch": 0.06, "rqvae_s_per_epoch_graphed": 0.007, "rqvae_s_per_epoch_graphed_tf32": 0.004}
    assert rqvae_plan(both_fit, device) == {"epochs": 8000, "cuda_graphs": True, "compile": False, **FLOAT32}
    tf32 = {**both_fit, "rqvae_s_per_epoch_graphed": 0.013}  # float32: 4,615 epochs in 60 s
    plan = rqvae_plan(tf32, device)
    assert plan == {"epochs": 8000, "cuda_graphs": True, "compile": False, "float32_matmul_precision": "high"}
    compiled = {**tf32, "rqvae_s_per_epoch_graphed_tf32": 0.009, "rqvae_s_per_epoch_compiled_graphed_tf32": 0.003,
                "rqvae_warmup_s_compiled_graphed_tf32": 20.0}
    assert rqvae_plan(compiled, device) == {**plan, "compile": True}
    assert rqvae_plan(compiled, device, eager_only=True) == {"epochs": 1000, "cuda_graphs": False, "compile": False,
                                                             **FLOAT32}
    prepared = run_overrides(device, tmp_path, "liger", plan, None)
    run = run_overrides(device, tmp_path, "tiger", plan, training_plan({}, 300.0, device))
    assert "dataset.RQ-VAE.float32_matmul_precision=high" in prepared
    assert [o for o in prepared if "RQ-VAE" in o] == [o for o in run if "RQ-VAE" in o]


def test_a_writer_killed_mid_write_leaves_no_file_in_the_out_dir(tmp_path):
    """The smoke check and the benchmark write their JSON atomically; what a kill at their time limit
    leaves (a temporary file of a process that is gone) is removed, so only the call's files come back."""
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
    assert json.loads((tmp_path / "bench.json").read_text()) == {"train_ms_tiger": 5.0}


def test_plan_trains_the_way_the_benchmark_found_fastest_and_leaves_time_to_compile(tmp_path):
    from device_run import run_overrides, step_mode

    device = profiles(tmp_path)["device"]
    compiled_bench = {**GPU_BENCH, "train_compiled_tiger": True, "train_compiled_liger": True}
    plan = training_plan(compiled_bench, 300.0, device)
    assert plan["step_mode"] == "compiled"
    overrides = run_overrides(device, tmp_path, "liger", RQVAE, plan)
    # compiled as the config's `auto` compiles (dynamic shapes), the step not graphed (its `auto` would)
    assert not any("trainer.compile" in o for o in overrides)
    assert "dataset.TIGER.trainer.cuda_graphs=false" in overrides
    slow_compile = training_plan({**compiled_bench, "train_warmup_s_tiger": 40.0, "train_warmup_s_liger": 60.0},
                                 300.0, device)
    assert slow_compile["estimated_compile_s"] == 60.0 and slow_compile["steps"] < plan["steps"]
    # a compile that failed, was not tried or never finished in the benchmark: the runs train eager
    for bench in (GPU_BENCH, {**compiled_bench, "train_compiled_liger": False},
                  {k: v for k, v in compiled_bench.items() if k != train_ms_key("liger")}):
        assert step_mode(bench) == "eager"
    eager = training_plan(GPU_BENCH, 300.0, device)
    assert "dataset.TIGER.trainer.compile=false" in run_overrides(device, tmp_path, "liger", RQVAE, eager)
    # the step as a CUDA graph, where the benchmark timed it faster: its step time plans the steps
    graphed_bench = {**GPU_BENCH, "train_ms_tiger_graphed": 4.0, "train_ms_liger_graphed": 6.0,
                     "train_warmup_s_tiger_graphed": 3.0, "train_warmup_s_liger_graphed": 2.0}
    graphed = training_plan(graphed_bench, 300.0, device)
    assert graphed["step_mode"] == "cuda_graphs" and graphed["steps"] > 4 * eager["steps"]
    assert graphed["estimated_compile_s"] == 3.0
    assert {"dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.trainer.compile=false"} <= set(
        run_overrides(device, tmp_path, "tiger", RQVAE, graphed))
    # compiled for its one shape, then captured (device_run --compile), where that compiled and was fastest
    compiled_graphed = {**graphed_bench, "train_ms_tiger_compiled_graphed": 2.0, "train_ms_liger_compiled_graphed": 3.0,
                        "train_compiled_tiger_compiled_graphed": True, "train_compiled_liger_compiled_graphed": True,
                        "train_warmup_s_tiger_compiled_graphed": 50.0, "train_warmup_s_liger_compiled_graphed": 70.0}
    both = training_plan(compiled_graphed, 300.0, device)
    assert both["step_mode"] == "compiled_graphs" and both["estimated_compile_s"] == 70.0
    assert {"dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.trainer.compile=true"} <= set(
        run_overrides(device, tmp_path, "tiger", RQVAE, both))
    # its compile failed (the benchmark timed the eager graph under its name) or it was slower: eager graphs
    assert step_mode({**compiled_graphed, "train_compiled_liger_compiled_graphed": False}) == "cuda_graphs"
    assert step_mode({**compiled_graphed, "train_ms_liger_compiled_graphed": 9.0}) == "cuda_graphs"
    slower = {**graphed_bench, "train_ms_tiger_graphed": 40.0, "train_ms_liger_graphed": 60.0}
    assert step_mode(slower) == "eager"
    # the graph on batches padded to one shape, where that beat the length groups: their packing undone
    one_shape = training_plan({**graphed_bench, "train_ms_tiger_graphed_padded": 3.0,
                               "train_ms_liger_graphed_padded": 5.0, "train_warmup_s_liger_graphed_padded": 4.0},
                              300.0, device)
    assert one_shape["step_mode"] == "cuda_graphs_padded" and one_shape["estimated_compile_s"] == 4.0
    assert {"dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.T5.packing_groups=0"} <= set(
        run_overrides(device, tmp_path, "liger", RQVAE, one_shape))
    assert "dataset.TIGER.T5.packing_groups=0" not in run_overrides(device, tmp_path, "liger", RQVAE, graphed)
    # eager on padded batches where the benchmark timed them faster than packed ones (as on the H200)
    padded = training_plan({**GPU_BENCH, "train_ms_tiger_padded": 10.0, "train_ms_liger_padded": 15.0}, 300.0, device)
    assert padded["step_mode"] == "eager_padded" and padded["steps"] > 1.8 * eager["steps"]
    assert "dataset.TIGER.T5.packing_groups=0" in run_overrides(device, tmp_path, "liger", RQVAE, padded)
    assert step_mode({**GPU_BENCH, "train_ms_tiger_padded": 30.0, "train_ms_liger_padded": 45.0}) == "eager"


def test_a_graph_whose_smoke_check_failed_or_never_ran_is_never_chosen_for_being_fast(tmp_path):
    from device_run import run_overrides, step_mode, vouched_for

    device = profiles(tmp_path)["device"]
    bench = {**GPU_BENCH, "train_ms_tiger_graphed": 4.0, "train_ms_liger_graphed": 6.0,
             "train_ms_tiger_compiled_graphed": 2.0, "train_ms_liger_compiled_graphed": 3.0,
             "train_compiled_tiger_compiled_graphed": True, "train_compiled_liger_compiled_graphed": True,
             "rqvae_s_per_epoch_graphed": 0.005}
    passed = {"checks": {name: {"ok": True} for name in ("cuda_graph", "compiled_cuda_graph", "rqvae_cuda_graph")}}
    assert vouched_for(bench, passed) == (bench, [])
    assert step_mode(vouched_for(bench, passed)[0]) == "compiled_graphs"
    assert vouched_for(bench, None) == (bench, [])  # --skip smoke: nothing to go on, nothing left out
    compiled_failed = {"checks": {**passed["checks"], "compiled_cuda_graph": {"ok": False}}}
    kept, why = vouched_for(bench, compiled_failed)
    assert step_mode(kept) == "cuda_graphs" and rqvae_plan(kept, device)["cuda_graphs"]
    assert why == ["train_ms_tiger_compiled_graphed, train_ms_liger_compiled_graphed left out: "
                   "smoke check compiled_cuda_graph failed"]
    killed = {"checks": {"setup": {"ok": True}}}  # the smoke check stopped before its graph checks
    kept, why = vouched_for(bench, killed)
    assert step_mode(kept) == "eager" and not rqvae_plan(kept, device)["cuda_graphs"]
    assert len(why) == 3 and all(line.endswith("did not run") for line in why)
    assert not {"train_ms_tiger_graphed", "train_ms_liger_graphed", "rqvae_s_per_epoch_graphed"} & kept.keys()
    assert kept[train_ms_key("liger")] == bench[train_ms_key("liger")]  # the eager figures stay
    # the compiled RQ-VAE needs its own check (the smoke check's --compile)
    compiled_rqvae = {**bench, "rqvae_s_per_epoch_compiled_graphed": 0.001, "rqvae_warmup_s_compiled_graphed": 5.0}
    assert rqvae_plan(compiled_rqvae, device)["compile"]
    kept, why = vouched_for(compiled_rqvae, passed)
    assert not rqvae_plan(kept, device)["compile"] and rqvae_plan(kept, device)["cuda_graphs"]
    assert why == ["rqvae_s_per_epoch_compiled_graphed left out: smoke check compiled_rqvae_cuda_graph did not run"]
    overrides = run_overrides(device, tmp_path, "tiger", rqvae_plan(compiled_rqvae, device), None)
    assert {"dataset.RQ-VAE.compile=true", "dataset.RQ-VAE.cuda_graphs=true"} <= set(overrides)


def test_compile_option_reaches_the_smoke_check_and_the_benchmark(tmp_path):
    """`--compile`: the smoke check adds `compiled_cuda_graph`, the benchmark times the graphed step
    compiled for its one shape; the packed step is never compiled (torch 2.11 failed on its dynamic shapes)."""
    from device_run import benchmark_command, smoke_command

    device = profiles(tmp_path)["device"]
    plain, compiled = (benchmark_command("python", tmp_path, device, c) for c in (False, True))
    assert "--no-compile" in plain and "--no-compile" in compiled
    assert "--compile-graphed" in compiled and "--compile-graphed" not in plain
    assert plain[plain.index("--eval-batch-size") + 1] == f"{device.eval_batch_size},512"
    assert "--compile" in smoke_command("python", tmp_path, False, True)
    assert "--compile" not in smoke_command("python", tmp_path, True, False)
    assert smoke_command("python", tmp_path, True, False)[-2:] == ["--device", "cpu"]


def test_a_second_call_plans_from_the_first_calls_figures(dry_run, tmp_path):
    """`--plan-from`: no smoke check and no benchmark; the plan's step time is the earlier call's."""
    out = tmp_path / "second"
    done = subprocess.run(["bash", "scripts/device/run.sh", "--dry-run", str(out), "--plan-from", str(dry_run)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES - {"smoke.json", "bench.json"}
    summary = json.loads((out / "summary.json").read_text())
    assert {step: s["status"] for step, s in summary["steps"].items()} == {
        "prepare": "ok", "tiger": "ok", "liger": "ok"}
    assert summary["options"]["plan_from"] == str(dry_run)
    bench = json.loads((dry_run / "bench.json").read_text())
    step_s = sum(bench[train_ms_key(name)] for name in ("tiger", "liger")) / 1000
    assert summary["plan"]["estimated_s_per_step_of_both"] == round(step_s, 4)  # not the slow guesses
    metrics = json.loads((out / "liger_metrics.json").read_text())
    assert metrics["train/steps"] == 30 and metrics["device_run"]["plan_from"] == str(dry_run)


def test_plan_from_refuses_what_is_not_an_earlier_calls_figures(tmp_path):
    from device_run import earlier_figures, vouched_for

    with pytest.raises(ValueError, match="bench.json not found"):
        earlier_figures(tmp_path)
    (tmp_path / "bench.json").write_text("[1]")
    with pytest.raises(ValueError, match="bench.json: holds a JSON list"):
        earlier_figures(tmp_path)
    (tmp_path / "bench.json").write_text('{"train_ms_tiger_graphed": 4.0, "train_ms_liger_graphed": 6.0}')
    (tmp_path / "smoke.json").write_text("{not json")
    with pytest.raises(ValueError, match="smoke.json: cannot be read as JSON"):
        earlier_figures(tmp_path)
    (tmp_path / "smoke.json").unlink()  # no smoke report: no graphed figure is vouched for
    bench, smoke = earlier_figures(tmp_path)
    assert vouched_for(bench, smoke)[0] == {}
    done = subprocess.run([sys.executable, "scripts/device/device_run.py", "--dry-run", str(tmp_path / "out"),
                           "--plan-from", str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "--plan-from:" in done.stderr and "Traceback" not in done.stderr


def test_report_reads_the_calls_files(dry_run, tmp_path):
    """scripts/device/report.py: the Markdown draft of a results README, every figure read off the files."""
    done = subprocess.run([sys.executable, "scripts/device/report.py", str(dry_run)], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert all(f"| {step} | ok |" in text for step in ("smoke", "benchmark", "prepare", "tiger", "liger"))
    liger = json.loads((dry_run / "liger_metrics.json").read_text())
    assert f"| LIGER dense | {liger['dense_in_test/Recall@10']:.4f} | {liger['dense_in_test/NDCG@10']:.4f} |" in text
    bench = json.loads((dry_run / "bench.json").read_text())
    assert f"| TIGER training step | ≤ 6 ms (aim ≤ 1.5) | {bench[train_ms_key('tiger')]:,.2f} ms" in text
    assert "| paper's TIGER (Beauty) | 0.0601 | 0.0322 |" in text
    missing = subprocess.run([sys.executable, "scripts/device/report.py", str(tmp_path)], cwd=REPO,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no summary.json or bench.json" in missing.stderr


def test_report_counts_only_vouched_figures_against_the_targets(tmp_path):
    from report import Call, fastest_step_ms, rqvae_seconds, targets_table

    bench = {"train_ms_tiger": 50.0, "train_ms_tiger_graphed": 5.0, "train_ms_tiger_transformers": 1.0,
             "rqvae_s_per_epoch": 0.05, "rqvae_s_per_epoch_graphed": 0.004, "rqvae_warmup_s_graphed": 2.0}
    assert fastest_step_ms(bench, "tiger") == (5.0, "graphed")  # the baseline is not this path
    assert fastest_step_ms(bench, "liger") == (None, "-")
    assert rqvae_seconds(bench) == (pytest.approx(8000 * 0.004 + 2.0), "graphed")
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "smoke.json").write_text(json.dumps({"checks": {"cuda_graph": {"ok": True},
                                                                "rqvae_cuda_graph": {"ok": True}}}))
    rows = targets_table(Call.read(tmp_path)).splitlines()
    assert any(r.startswith("| TIGER training step") and "5.00 ms (graphed) | met" in r for r in rows)
    assert any(r.startswith("| LIGER training step") and r.endswith("| not measured |") for r in rows)
    (tmp_path / "smoke.json").write_text(json.dumps({"checks": {"cuda_graph": {"ok": False}}}))
    rows = targets_table(Call.read(tmp_path)).splitlines()  # a graph that trained wrongly is no figure
    assert any(r.startswith("| TIGER training step") and "50.00 ms (compact) | not met (8.3× the target)" in r
               for r in rows)
    assert any(r.startswith("| RQ-VAE") and "400.0 s (eager;" in r for r in rows)


def test_report_shows_the_hosts_part_of_a_graphed_step_beside_its_time():
    from report import step_variants_table

    text = step_variants_table({"train_ms_tiger": 50.0, "train_ms_liger": 60.0, "train_ms_tiger_graphed": 5.0,
                                "train_ms_liger_graphed": 6.0, "train_host_ms_tiger_graphed": 0.25})
    assert "| compact | 50.00 | 60.00 |" in text
    assert "| graphed | 5.00 (host 0.25) | 6.00 |" in text
