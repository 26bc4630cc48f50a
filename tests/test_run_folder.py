"""A run folder's record is never damaged by a run that does not belong in it; an invalid config
creates nothing; interrupts end at a safe point with what to do; start-up failures are messages."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, small_generated

TINY_RUN = ("dataset.TIGER.trainer.steps=6", "dataset.TIGER.trainer.warmup_steps=2", "dataset.RQ-VAE.epochs=10")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env, stdin=subprocess.DEVNULL)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder, byte for byte."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run (trained, tested) made by the command line: its folder holds Hydra's record."""
    tmp = tmp_path_factory.mktemp("finished")
    done = cli(*small_generated(tmp, *TINY_RUN))
    assert done.returncode == 0, done.stderr[-2000:]
    finished_console[:] = [done.stdout]
    return tmp


finished_console: list[str] = []  # what the finished run printed


def test_the_run_folder_holds_hydras_record_written_by_the_run(finished):
    record = finished / "run" / ".hydra"
    assert {p.name for p in record.iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    from omegaconf import OmegaConf

    assert OmegaConf.load(record / "config.yaml").dataset.TIGER.trainer.steps == 6
    assert "dataset.TIGER.trainer.steps=6" in OmegaConf.load(record / "overrides.yaml")


def test_the_run_folder_keeps_the_console_story_and_the_console_ends_short(finished):
    """run.log holds what the console showed (stage headers, dataset statistics, the RQ-VAE's checks,
    validations, the test table), a progress bar once as last drawn; the console ends with the table,
    the best epoch and where the files are, not a dump of every metric."""
    log = (finished / "run" / "run.log").read_text()
    for expected in ("=== preprocess ===", "Dataset synthetic (generated): 300 users", "epoch    10: train recon",
                     "  epoch 1: genret_in_val/Recall@10", "Test results", "uni@20", "Best model: epoch 1 of 1"):
        assert expected in log, expected
    bars = [line for line in log.splitlines() if line.startswith("training:")]
    assert len(bars) == 1 and "6/6" in bars[0] and "\r" not in log
    console = finished_console[0]
    assert "Best model: epoch 1 of 1 (6 of 6 steps), chosen by dense_in_val/NDCG@10" in console
    assert "uni_cold_test/Gen60_NDCG@10" not in console and "values in metrics.json" in console


@pytest.mark.parametrize("case", ["other_settings", "other_seed", "partial_rerun"])
def test_a_refused_run_changes_no_file_of_the_finished_runs_folder(finished, case):
    extra = {"other_settings": ("dataset.TIGER.trainer.lr=0.01",), "other_seed": ("seed=7",),
             "partial_rerun": ("stop_after=embed",)}[case]
    before = snapshot(finished / "run")
    done = cli(*small_generated(finished, *TINY_RUN, *extra))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert snapshot(finished / "run") == before
    message = " ".join(done.stderr.split())
    assert str((finished / "run").resolve()) in message and "delete" not in message.lower()
    assert "another experiment_id=... or output_path=..." in message  # advice that keeps the run
    if case == "other_settings":
        assert "dataset.TIGER.trainer.lr=0.003 there, 0.01 here" in message
    if case == "partial_rerun":
        assert "holds a finished run" in message and "stops after embed" in message


def test_a_run_of_other_data_is_refused_before_it_writes_anything(finished, monkeypatch, capsys):
    """Same settings, other data (the checkpoint's key differs): refused once the data are known, before
    metrics.json, the curves or Hydra's record are touched."""
    import src.experiment as experiment
    from conftest import compose, load
    from run import HydraRecord, run_pipeline
    from src.run_folder import RunFolderError

    before = snapshot(finished / "run")
    overrides = small_generated(finished, *TINY_RUN)
    monkeypatch.setattr(experiment, "data_digest", lambda split: ["other data"])
    with pytest.raises(RunFolderError, match="another experiment_id=... or output_path=...") as raised:
        run_pipeline(load(*overrides), record=HydraRecord(compose(*overrides), None, list(overrides)))
    assert "delete" not in str(raised.value).lower() and raised.value.exit_status == 2
    assert snapshot(finished / "run") == before


def test_a_busy_folder_is_refused_without_a_change(finished):
    from src.cache import run_folder_lock

    before = snapshot(finished / "run")
    with run_folder_lock(finished / "run"):
        done = cli(*small_generated(finished, *TINY_RUN))
    assert done.returncode == 1 and "in use by another run" in done.stderr
    assert snapshot(finished / "run") == before


def test_an_invalid_config_creates_no_folder(tmp_path):
    out = tmp_path / "results" / "liger" / "Amazon_Beuty" / "demo_seed_42"
    for bad in ("dataset.max_items_per_seq=zero", "seed=abc", "experiment_id=a/b"):
        done = cli(*small_generated(tmp_path, f"output_path={out}"), bad)
        assert done.returncode == 2 and "Configuration error" in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "results").exists(), bad


def test_a_key_given_twice_is_warned_naming_both_values(tmp_path):
    """Hydra keeps the last silently; the experiment scripts rely on it (their own keys, then the user's)."""
    done = cli(*small_generated(tmp_path, "stop_after=preprocess"), "seed=1", "seed=2")
    assert done.returncode == 0 and "'seed' is given 2 times (1, 2); the last, 2, is used" in done.stderr
    assert (tmp_path / "run" / "metrics.json").exists()


def test_hydras_own_errors_exit_as_configuration_errors(tmp_path):
    """A config group or key Hydra cannot find exits 2, as every configuration error does."""
    for bad in ("method=settings", "no_such_key=1"):
        done = cli(*small_generated(tmp_path, f"output_path={tmp_path}/out"), bad)
        assert done.returncode == 2, bad
        assert not (tmp_path / "out").exists()


def test_folders_that_cannot_be_written_are_named_with_their_keys(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    done = cli(*small_generated(tmp_path, "stop_after=preprocess", f"dataset.raw_data_path={a_file}"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"config key 'dataset.raw_data_path' is {a_file}, which is a file" in done.stderr
    under = cli(*small_generated(tmp_path, "stop_after=preprocess", f"dataset.processed_data_path={a_file}/p"))
    assert under.returncode == 2 and "'dataset.processed_data_path'" in under.stderr and "lies below" in under.stderr
    proc = cli(*small_generated(tmp_path, "stop_after=preprocess", "output_path=/proc/liger_run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr  # even as root
    assert "the run folder /proc/liger_run cannot be created" in proc.stderr and "set output_path" in proc.stderr


@pytest.mark.parametrize("key", ["dataset.processed_data_path", "dataset.raw_data_path", "dataset.RQ-VAE.cache_dir"])
def test_a_read_only_folder_of_a_stage_is_named_with_its_key(tmp_path, monkeypatch, key):
    """A read-only file system (simulated: the tests may run as root) under each folder a stage writes."""
    import tempfile

    from conftest import load
    from run import run_pipeline
    from src.cache import name_folders
    from src.errors import NotWritableError

    cfg = load(*small_generated(tmp_path, "stop_after=semantic_ids", "dataset.RQ-VAE.epochs=2"))
    folder = Path(dict(cfg.folders())[key]).absolute()
    mkstemp = tempfile.mkstemp

    def read_only(*args, **kwargs):
        if Path(kwargs.get("dir", "")).absolute().is_relative_to(folder):
            raise OSError(30, "Read-only file system")
        return mkstemp(*args, **kwargs)

    name_folders(cfg.folders())
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    try:
        with pytest.raises(NotWritableError, match=f"read-only file system; set {key} to a folder"):
            run_pipeline(cfg)
    finally:
        name_folders({})


def test_online_logging_without_credentials_is_a_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path / "home")  # no ~/.netrc
    overrides = [o for o in small_generated(tmp_path, "stop_after=preprocess") if not o.startswith("logging.mode")]
    done = cli(*overrides, "logging.mode=online", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "config key 'logging.mode' is online" in done.stderr and "wandb login" in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_warm_up_longer_than_the_training_is_warned_naming_both(tmp_path, capsys):
    from conftest import load
    from run import preflight
    from src.distributed import SINGLE

    preflight(load(*small_generated(tmp_path, "dataset.TIGER.trainer.steps=100",
                                    "dataset.TIGER.trainer.warmup_steps=500")), SINGLE)
    assert "warmup_steps=500 is more than dataset.TIGER.trainer.steps=100" in capsys.readouterr().err
    preflight(load(*small_generated(tmp_path, "dataset.TIGER.trainer.steps=100",
                                    "dataset.TIGER.trainer.warmup_steps=50")), SINGLE)
    assert "warmup" not in capsys.readouterr().err


# ---- interrupts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_training_at_a_step_and_says_where_to_resume(tmp_path, monkeypatch, signum):
    """The signal arrives during a step: the step ends, training stops after it with the step, the epoch
    and the checkpoint a rerun resumes from; the exit status is 128 + the signal."""
    from conftest import load
    from run import run_pipeline
    from src import interrupts
    from src.training import Trainer

    cfg = load(*small_generated(tmp_path, "dataset.TIGER.trainer.steps=400", "dataset.TIGER.trainer.warmup_steps=2",
                                "dataset.RQ-VAE.epochs=5", "dataset.TIGER.trainer.eval_frequence=1"))
    step = Trainer.train_step
    per_epoch = []

    def signalled_step(self, examples, weight=1.0):
        if not per_epoch:
            per_epoch.append(-(-len(self.examples) // self.batch_size))
        if self.state.step == per_epoch[0] + 2:  # the third step of the second epoch
            os.kill(os.getpid(), signum)
        return step(self, examples, weight)

    monkeypatch.setattr(Trainer, "train_step", signalled_step)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    try:
        with pytest.raises(interrupts.Interrupted) as raised:
            run_pipeline(cfg)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        interrupts.reset()
    assert raised.value.exit_status == 128 + signum
    assert str(raised.value).startswith(f"interrupted at step {per_epoch[0] + 3} (epoch 2); rerun the same command "
                                        f"to resume from step {per_epoch[0]}")
    metrics = (cfg.run_dir / "metrics.json").read_text()
    assert "time/train" not in metrics and "time/test" not in metrics  # not a finished training
    assert (cfg.run_dir / "ckpt.pt").exists()  # the first epoch's, to resume from


def test_sigterm_from_a_cluster_ends_the_command_with_143_and_no_traceback(tmp_path):
    process = subprocess.Popen([sys.executable, "run.py", *small_generated(
        tmp_path, "dataset.TIGER.trainer.steps=100000", "dataset.TIGER.trainer.warmup_steps=2",
        "dataset.RQ-VAE.epochs=5")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:  # wait until training runs
        lines.append(line)
        if "=== train ===" in line:
            time.sleep(4)
            process.send_signal(signal.SIGTERM)
            break
    rest = process.communicate(timeout=120)[0]
    assert process.returncode == 143, "".join(lines[-20:]) + rest
    assert "Traceback" not in rest and "Interrupted: " in rest and "rerun the same command" in rest
