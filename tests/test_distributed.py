"""Data-parallel runs on CPU (gloo): sharded evaluation equals one process exactly; two processes
train like one with the same global batch; a run interrupted under two processes resumes under one;
torchrun end to end; a sweep through the local submitit launcher."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import REPO, small_generated
from src.distributed import Processes
from src.training import Trainer
from test_training import experiment

NO_DROPOUT = ("dataset.TIGER.T5.dropout_rate=0", "method.embedding_head_dict.embd_proj_dropout_rate=0",
              "method.embedding_head_dict.embd_proj_in_dropout_rate=0")
TRAIN = ("dataset.TIGER.trainer.steps=40", "dataset.TIGER.trainer.eval_frequence=2", *NO_DROPOUT)


class Interrupted(Exception):
    pass


def spawn(worker, tmp_path: Path, *args, world_size: int = 2) -> None:
    """Run worker(processes, tmp_path, *args) in `world_size` gloo processes (file rendezvous, no port)."""
    mp.spawn(_join_group, args=(world_size, worker, tmp_path, args), nprocs=world_size)


def _join_group(rank, world_size, worker, tmp_path, args):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=rank, world_size=world_size)
    try:
        worker(Processes(rank=rank, world_size=world_size, local_rank=rank), tmp_path, *args)
        # both ranks done before either tears gloo down: once in a full suite run rank 0 aborted
        # in teardown ("terminate called without an active exception") after its work had finished
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_shares_cover_every_index_once():
    for n in (0, 1, 5, 7, 64):
        for world in (1, 2, 3, 5):
            parts = [list(range(n))[Processes(r, world).share(n)] for r in range(world)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def _fill_cache_first(processes, tmp_path):
    with processes.main_first():
        cache = tmp_path / "cache.txt"
        if processes.is_main:
            time.sleep(0.5)  # a slow stage: the other process must not start before it ends
            cache.write_text("filled")
        else:
            assert cache.read_text() == "filled"
            (tmp_path / "read.txt").write_text("ok")


def test_stages_run_in_the_main_process_first(tmp_path):
    spawn(_fill_cache_first, tmp_path)
    assert (tmp_path / "read.txt").read_text() == "ok"


def _fail_in_main(processes, tmp_path):
    try:
        with processes.main_first():
            if processes.is_main:
                raise ValueError("broken raw file")
    except Exception as exc:  # noqa: BLE001 - each process records how it stopped
        (tmp_path / f"rank{processes.rank}.txt").write_text(f"{type(exc).__name__}: {exc}")


def test_failure_of_the_main_process_stops_the_others(tmp_path):
    start = time.perf_counter()
    spawn(_fail_in_main, tmp_path)  # would wait for distributed.timeout_min without the shared flag
    assert (tmp_path / "rank0.txt").read_text() == "ValueError: broken raw file"
    assert "process 0 failed" in (tmp_path / "rank1.txt").read_text()
    assert time.perf_counter() - start < 120


# -- sharded evaluation -------------------------------------------------------------------------


def _evaluate_shard(processes, tmp_path, weights):
    exp = experiment(tmp_path / f"rank{processes.rank}", "dataset.TIGER.trainer.eval_batch_size=3",
                     processes=processes)
    exp.model.load_state_dict(torch.load(weights, weights_only=True))
    metrics = {which: exp.evaluator.evaluate(which) for which in ("val", "test")}
    if processes.is_main:
        (tmp_path / "sharded.json").write_text(json.dumps(metrics))


def test_sharded_evaluation_equals_one_process(tmp_path):
    exp = experiment(tmp_path / "train", "dataset.TIGER.trainer.steps=30", "dataset.TIGER.trainer.eval_batch_size=3")
    exp.trainer.fit()
    torch.save(exp.model.state_dict(), tmp_path / "weights.pt")
    single = {which: exp.evaluator.evaluate(which) for which in ("val", "test")}
    n_batches = -(-len(exp.data.eval_examples("test", cold=False)) // 3)
    assert n_batches > 2 and n_batches % 2 == 1  # several batches per process, shared unevenly
    assert any(v > 0 for v in single["test"].values()) and "uni_in_test/Gen5_NDCG@10" in single["test"]
    spawn(_evaluate_shard, tmp_path, tmp_path / "weights.pt")
    assert json.loads((tmp_path / "sharded.json").read_text()) == single


# -- training and resuming ----------------------------------------------------------------------


def _train(processes, tmp_path, interrupt_after_epoch):
    exp = experiment(tmp_path / "run", *TRAIN, processes=processes)
    if interrupt_after_epoch:
        real_save = Trainer.save_checkpoint

        def save_then_stop(self):
            real_save(self)
            if self.state.epoch == interrupt_after_epoch:
                raise Interrupted

        Trainer.save_checkpoint = save_then_stop
    try:
        result = exp.trainer.fit()
    except Interrupted:
        return
    if processes.is_main:
        torch.save({"result": result, "model": exp.model.state_dict()}, tmp_path / "two.pt")


def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    one = experiment(tmp_path / "one", *TRAIN)
    result = one.trainer.fit()
    spawn(_train, tmp_path, 0)
    two = torch.load(tmp_path / "two.pt", weights_only=False)
    assert two["result"].steps == result.steps == 40 and two["result"].epochs == result.epochs
    for name, loss in result.last_losses.items():
        assert two["result"].last_losses[name] == pytest.approx(loss, rel=1e-4), name
    for (name, a), b in zip(one.model.state_dict().items(), two["model"].values()):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=name)
    assert [p.name for p in (tmp_path / "run").glob("ckpt*.pt")] and not list((tmp_path / "run").glob("*.tmp*"))


def test_run_interrupted_under_two_processes_resumes_under_one(tmp_path):
    whole = experiment(tmp_path / "whole", *TRAIN)
    expected = whole.trainer.fit()
    spawn(_train, tmp_path, 2)  # two processes, stopped right after the checkpoint of epoch 2
    saved = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)
    assert saved["state"]["epoch"] == 2 and len(saved["rng"]) == 2
    resumed = experiment(tmp_path / "run", *TRAIN)
    result = resumed.trainer.fit()
    assert (result.steps, result.epochs) == (expected.steps, expected.epochs)
    assert result.last_losses["loss"] == pytest.approx(expected.last_losses["loss"], rel=1e-4)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=name)


def test_resume_refuses_another_global_batch(tmp_path):
    experiment(tmp_path, "dataset.TIGER.trainer.steps=6").trainer.fit()
    other = experiment(tmp_path, "dataset.TIGER.trainer.steps=6")
    other.trainer.batch_size = 16  # what per_device gives under another number of processes
    with pytest.raises(RuntimeError, match="global batch of 8, this run has 16"):
        other.trainer.fit()


def test_checkpoint_from_before_data_parallel_training_resumes(tmp_path):
    experiment(tmp_path, *TRAIN).trainer.fit()
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    old = {k: v for k, v in ckpt.items() if k not in ("rng", "batch_size")}
    old["cpu_rng"], old["state"]["finished"] = ckpt["rng"][0]["cpu"], False
    torch.save(old, tmp_path / "ckpt.pt")
    assert experiment(tmp_path, *TRAIN).trainer.fit().steps == 40


# -- the command line: torchrun and a submitit sweep --------------------------------------------


def _generated(tmp_path, *extra):
    return small_generated(tmp_path, "dataset.TIGER.trainer.steps=24", "dataset.TIGER.trainer.eval_frequence=2",
                           "dataset.RQ-VAE.epochs=20", *NO_DROPOUT, *extra)


def _run(command, **env):
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    """A 1-process run on generated data; the caches it fills are shared by the multi-process runs."""
    tmp = tmp_path_factory.mktemp("generated")
    _run([sys.executable, "run.py", *_generated(tmp, f"output_path={tmp}/one", "logging.mode=disabled")])
    return tmp, json.loads((tmp / "one" / "metrics.json").read_text())


def test_torchrun_two_processes_match_one_and_write_one_run(one_process_run):
    tmp, one = one_process_run
    out = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "run.py",
                *_generated(tmp, f"output_path={tmp}/two", "logging.mode=offline")])
    two = json.loads((tmp / "two" / "metrics.json").read_text())
    assert two["train/steps"] == one["train/steps"] == 24
    assert two["train/last_epoch_loss"] == pytest.approx(one["train/last_epoch_loss"], rel=1e-4)
    assert "dense_cold_test/Recall@10" in two and "uni_in_test/Gen100_NDCG@10" in two
    assert out.stdout.count("Test results") == 1  # only the main process prints
    assert len(list((tmp / "two" / "wandb").glob("offline-run-*"))) == 1


def test_submitit_job_of_two_tasks_is_one_data_parallel_run(one_process_run):
    tmp, one = one_process_run
    _run([sys.executable, "run.py", "-m", "hydra/launcher=local", "hydra.launcher.tasks_per_node=2",
          *_generated(tmp, f"output_path={tmp}/tasks", "logging.mode=disabled", "stop_after=train")])
    (job,) = [p for p in (tmp / "tasks").iterdir() if p.is_dir() and not p.name.startswith(".")]
    two = json.loads((job / "metrics.json").read_text())
    assert two["train/last_epoch_loss"] == pytest.approx(one["train/last_epoch_loss"], rel=1e-4)
    logs = sorted((tmp / "tasks" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and "Run folder" in logs[0].read_text() and "Run folder" not in logs[1].read_text()


def test_local_submitit_sweep_writes_one_run_folder_per_job(tmp_path):
    _run([sys.executable, "run.py", "-m", "hydra/launcher=local", "dataset.generator.n_users=300,400",
          "stop_after=preprocess", "logging.mode=disabled", f"output_path={tmp_path}/sweep",
          f"dataset.raw_data_path={tmp_path}/raw", f"dataset.processed_data_path={tmp_path}/processed"])
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0_liger_synthetic_seed_42", "1_liger_synthetic_seed_42"]
    users = [json.loads((job / "metrics.json").read_text())["data/users"] for job in jobs]
    assert users == [300, 400]


def test_cache_lock_excludes_another_process(tmp_path):
    from src.cache import file_lock

    probe = ("import fcntl, sys; h = open(sys.argv[1], 'a')\n"
             "try:\n    fcntl.flock(h, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)")
    lock = tmp_path / "processed" / ".synthetic.lock"
    with file_lock(lock):
        assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 3
    assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 0


def test_slurm_launcher_config_exposes_job_resources():
    from hydra import compose, initialize_config_dir

    import src.config  # noqa: F401  registers the resolvers

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        cfg = compose(config_name="main", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                 "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4",
                                 "hydra.launcher.mem_gb=128"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node, launcher.mem_gb) == ("gpu", 4, 4, 128)
    assert launcher.timeout_min == 720 and launcher.cpus_per_task == 8 and "SLURM_KILL_BAD_EXIT=1" in launcher.setup[0]
