"""metrics.json and what reaches the W&B logger."""
from __future__ import annotations

import json

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


def test_stage_time_is_recorded_even_when_the_stage_fails(tmp_path):
    recorder = RunRecorder(tmp_path)
    with pytest.raises(RuntimeError):
        with recorder.stage("embed"):
            raise RuntimeError("boom")
    assert "time/embed" in json.loads((tmp_path / "metrics.json").read_text())
