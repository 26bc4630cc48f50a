"""kill -9 in the middle of training, then the same command again: the run ends with the test
metrics of an uninterrupted run, bit for bit (CPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO, small_generated

SETTINGS = ("dataset.RQ-VAE.epochs=10", "dataset.RQ-VAE.eval_every=5", "dataset.TIGER.trainer.steps=120",
            "dataset.TIGER.trainer.eval_frequence=2", "dataset.TIGER.T5.encoder_layers=1",
            "dataset.TIGER.T5.decoder_layers=1", "dataset.TIGER.trainer.warmup_steps=10")


def command(tmp_path, run: str) -> list[str]:
    """run.py on the small generated data; caches shared, the run folder `run`'s own."""
    return [sys.executable, "run.py", *small_generated(tmp_path, *SETTINGS, f"output_path={tmp_path}/{run}")]


def test_kill_9_mid_training_resumes_to_bit_identical_test_metrics(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(command(tmp_path, "whole"), cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert whole.returncode == 0, whole.stderr[-2000:]
    expected = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    process = subprocess.Popen(command(tmp_path, "killed"), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    checkpoint = tmp_path / "killed" / "ckpt.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # mid-epoch, past the first checkpoint
    assert process.poll() is None, "the run ended before it could be killed; give it more steps"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists() or "genret_in_test/Recall@10" not in \
        json.loads((tmp_path / "killed" / "metrics.json").read_text())

    again = subprocess.run(command(tmp_path, "killed"), cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Resuming from" in again.stdout
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    tests = {k: v for k, v in expected.items() if "_test/" in k}
    assert tests and {k: resumed[k] for k in tests} == tests
    assert resumed["train/steps"] == expected["train/steps"] == 120
