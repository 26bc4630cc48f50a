"""metrics.json and what reaches the W&B logger."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.tracking import RunRecorder


class FakeLogger:
    def __init__(self):
        self.summaries, self.curves, self.finished = [], [], False

    def summary(self, values):
        self.summaries.append(dict(values))

    def curve(self, values, step_key, step):
        self.curves.append((dict(values), step_key, step))

    def finish(self):
        self.finished = True


def test_results_go_to_metrics_json_and_logger_curves_to_logger_only(tmp_path):
    logger = FakeLogger()
    recorder = RunRecorder(tmp_path / "run", logger)
    recorder.log({"data/users": 10})
    recorder.curve({"rqvae/val_recon_loss": 0.3}, "rqvae/epoch", 50)
    recorder.log({"sid/usage_l1": 0.95, "data/users": 11})
    recorder.finish()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == {"data/users": 11, "sid/usage_l1": 0.95}
    assert logger.summaries == [{"data/users": 10}, {"sid/usage_l1": 0.95, "data/users": 11}]
    assert logger.curves == [({"rqvae/val_recon_loss": 0.3}, "rqvae/epoch", 50)] and logger.finished


def test_a_stage_records_its_time_only_once_it_finished(tmp_path):
    """A stage that failed or was interrupted records no time: metrics.json never shows it as done."""
    recorder = RunRecorder(tmp_path)
    with recorder.stage("preprocess"):
        pass
    with pytest.raises(RuntimeError):
        with recorder.stage("train"):
            raise RuntimeError("boom")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "time/preprocess" in metrics and "time/train" not in metrics


def test_a_pending_recorder_writes_nothing_until_the_run_is_accepted(tmp_path):
    """What a run records before its folder accepts it stays in memory; `accept` writes all of it."""
    (tmp_path / "curves.jsonl").write_text('{"axis": "train/step", "step": 1, "train/loss": 9.0}\n')
    before = (tmp_path / "curves.jsonl").read_text()
    recorder = RunRecorder(tmp_path, pending=True)
    recorder.log({"data/users": 3})
    recorder.curve({"rqvae/recon": 0.5}, "rqvae/epoch", 10)
    assert not (tmp_path / "metrics.json").exists() and (tmp_path / "curves.jsonl").read_text() == before
    recorder.accept(resuming=False)  # a run that starts over: its curves start anew
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"data/users": 3}
    assert [json.loads(line)["step"] for line in (tmp_path / "curves.jsonl").read_text().splitlines()] == [10]
    recorder.log({"data/items": 4})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"data/users": 3, "data/items": 4}


def test_temporary_files_of_a_killed_writer_are_removed_at_the_next_write(tmp_path):
    """A writer killed mid-write leaves `.{name}.{host}.{pid}.*.tmp`; the next write of that file
    removes it when its process is gone (and leaves a live writer's file alone)."""
    import os
    import subprocess
    import sys

    from src.cache import _HOST, atomic_write

    target = tmp_path / "ckpt.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ckpt.pt.{_HOST}.{int(dead.stdout)}.abc123.tmp"
    live = tmp_path / f".ckpt.pt.{_HOST}.{os.getpid()}.def456.tmp"
    old_style = tmp_path / ".ckpt.pt.xyz789.tmp"  # written before temporary names carried the writer
    other_file = tmp_path / f".other.pt.{_HOST}.{int(dead.stdout)}.abc123.tmp"
    for f in (stale, live, old_style, other_file):
        f.write_bytes(b"x" * 100)
    os.utime(old_style, (0, 0))  # far older than a day
    with atomic_write(target, "wb") as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new"
    assert not stale.exists() and not old_style.exists()
    assert live.exists() and other_file.exists()


def test_a_write_on_a_full_disk_is_reported_as_such_naming_the_file(tmp_path, monkeypatch):
    """torch.save on a full disk says `unexpected pos ...`; the error names the file and the cause."""
    import shutil
    from collections import namedtuple

    import src.cache as cache
    from src.errors import DiskFullError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskFullError, match="writing .*ckpt.pt failed: its file system is full"):
        with cache.atomic_write(tmp_path / "ckpt.pt", "wb"):
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 976384 vs 976272")
    assert not list(tmp_path.glob(".ckpt.pt.*.tmp"))


def test_other_write_failures_are_not_called_a_full_disk(tmp_path):
    import src.cache as cache

    with pytest.raises(ValueError, match="not serialisable"):
        with cache.atomic_write(tmp_path / "x.json"):
            raise ValueError("not serialisable")


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"), OSError(30, "Read-only file system"),
                                   OSError(1, "Operation not permitted")],
                         ids=["permissions", "read-only", "immutable"])
def test_a_folder_that_cannot_be_written_is_named_with_the_key_that_sets_it(tmp_path, monkeypatch, error):
    """(Simulated: the tests may run as root, who may write anywhere but on a read-only file system.)"""
    import tempfile

    import src.cache as cache
    from src.errors import NotWritableError

    def refuse(*args, **kwargs):
        raise error

    cache.name_folders({"output_path": tmp_path / "run", "dataset.processed_data_path": tmp_path / "run" / "data"})
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(NotWritableError, match=r"cannot write .*data/x.json: .*; set dataset.processed_data_path to a "
                                               r"folder this run can write \(now .*data\)"):
        cache.write_json(tmp_path / "run" / "data" / "x.json", {"a": 1})  # the innermost configured folder
    with pytest.raises(NotWritableError, match=r"set output_path to"):
        cache.write_json(tmp_path / "run" / "metrics.json", {"a": 1})
    (tmp_path / "old.json").write_text("{}")
    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(NotWritableError, match="cannot write .*old.json"):
        cache.remove_file(tmp_path / "old.json")
    cache.name_folders({})


def test_logging_writer_picks_the_tracker_and_disabled_mode_none(tmp_path, monkeypatch):
    import src.tracking as tracking
    from src.config import LoggingConfig

    made = []
    monkeypatch.setitem(tracking.LOGGERS, "wandb", lambda *args: made.append(args) or "tracker")
    cfg = LoggingConfig(writer="wandb", mode="offline", project="p", entity=None)
    assert (tracking.run_logger(cfg, "run", tmp_path, {"a": 1}) == "tracker"
            and made[0][1:] == ("run", tmp_path, {"a": 1}))
    disabled = LoggingConfig(writer="wandb", mode="disabled", project="p", entity=None)
    assert tracking.run_logger(disabled, "run", tmp_path, {}) is None and len(made) == 1


def test_curves_are_written_locally_and_read_back_whatever_the_logger(tmp_path):
    """curves.jsonl: every point, W&B or not; a resumed run's replayed steps keep the later value; a
    last line cut short by a kill is left out; a fresh (not resuming) run starts the file anew."""
    from src.errors import DataError
    from src.tracking import read_curves

    recorder = RunRecorder(tmp_path)  # no logger: W&B disabled
    recorder.curve({"train/loss": 2.0, "train/lr": 1e-3}, "train/step", 10)
    recorder.curve({"train/loss": 1.5, "train/lr": float("nan")}, "train/step", 20)
    recorder.curve({"rqvae/val_recon_loss": 0.3}, "rqvae/epoch", 100)
    resumed = RunRecorder(tmp_path, resuming=True)
    resumed.curve({"train/loss": 1.4}, "train/step", 20)  # replayed after the checkpoint
    with open(tmp_path / "curves.jsonl", "a") as handle:
        handle.write('{"axis": "train/step", "st')  # killed mid-line
    curves = read_curves(tmp_path / "curves.jsonl")
    assert curves["train/loss"].axis == "train/step" and curves["train/loss"].steps == (10, 20)
    assert curves["train/loss"].values == (2.0, 1.4) and curves["train/lr"].values == (1e-3, None)
    assert curves["rqvae/val_recon_loss"].axis == "rqvae/epoch" and curves["rqvae/val_recon_loss"].steps == (100,)
    RunRecorder(tmp_path, resuming=True).curve({"train/loss": 1.2}, "train/step", 30)  # drops the cut line first
    assert read_curves(tmp_path / "curves.jsonl")["train/loss"].values == (2.0, 1.4, 1.2)
    with open(tmp_path / "curves.jsonl", "a") as handle:
        handle.write('{"axis": "train/st\n{"axis": "train/step", "step": 30, "train/loss": 1.0}\n')
    with pytest.raises(DataError, match="curves.jsonl, line 6: not a curve point"):
        read_curves(tmp_path / "curves.jsonl")  # a broken line in the middle is not silently dropped
    RunRecorder(tmp_path)  # a run that starts over
    assert not (tmp_path / "curves.jsonl").exists()
    assert not (RunRecorder(tmp_path / "other", write=False).curve({"x": 1.0}, "s", 1) or (tmp_path / "other").exists())
