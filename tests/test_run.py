"""run.py end to end on the generated dataset: stages, stop_after, metrics.json, start-up errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, load, small_generated as _overrides
from run import run_pipeline


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    recorder = run_pipeline(load(*_overrides(tmp, "stop_after=embed")))
    return tmp, json.loads(recorder.path.read_text())


def test_stop_after_embed_writes_data_stats_and_stage_times(embedded_run):
    tmp, metrics = embedded_run
    assert metrics["data/users"] == 300 and metrics["data/items"] == 4 * (8 + 1)
    # each cold item ends 3 users and is second-to-last for 3 others
    assert metrics["data/cold_test_items"] == metrics["data/cold_val_items"] == 4
    assert metrics["data/embedding_width"] == 384
    assert metrics["time/preprocess"] >= 0 and metrics["time/embed"] > 0
    assert (tmp / "raw" / "amazon" / "reviews_synthetic_5.json.gz").exists()
    assert (tmp / "processed" / "synthetic.txt").exists()


def test_stop_after_preprocess_skips_embedding(tmp_path):
    recorder = run_pipeline(load(*_overrides(tmp_path, "stop_after=preprocess")))
    metrics = json.loads(recorder.path.read_text())
    assert "time/preprocess" in metrics and "data/users" in metrics
    assert "time/embed" not in metrics and not list((tmp_path / "processed").glob("*_embeddings.pt"))


def _cli(*args):
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_invalid_config_fails_before_any_stage(tmp_path):
    out = _cli(*_overrides(tmp_path, "dataset.max_items_per_seq=zero"))
    assert out.returncode == 2
    assert "dataset.max_items_per_seq" in out.stderr and "an integer" in out.stderr
    assert not (tmp_path / "raw").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_width_mismatch_with_cached_embeddings_fails_at_start(embedded_run):
    tmp, _ = embedded_run
    metrics_file = tmp / "run" / "metrics.json"
    before = metrics_file.stat().st_mtime_ns
    out = _cli(*_overrides(tmp, "method.embedding_head_dict.text_embedding_dim=768"))
    assert out.returncode == 2
    assert "method.embedding_head_dict.text_embedding_dim" in out.stderr and "384" in out.stderr
    assert metrics_file.stat().st_mtime_ns == before  # nothing ran


def test_semantic_ids_stage_records_quality_report(embedded_run):
    tmp, _ = embedded_run
    recorder = run_pipeline(load(*_overrides(tmp, "stop_after=semantic_ids", "dataset.RQ-VAE.epochs=20",
                                             "dataset.RQ-VAE.eval_every=10", f"dataset.RQ-VAE.cache_dir={tmp}/ids")))
    metrics = json.loads(recorder.path.read_text())
    for key in ("sid/recon_loss", "sid/usage_l1", "sid/usage_l2", "sid/usage_l3", "sid/unique_prefix_share",
                "sid/max_collision", "sid/n_items", "time/semantic_ids", "time/rqvae_epoch"):
        assert key in metrics, key
    assert metrics["sid/n_items"] == metrics["data/items"] and 0 < metrics["sid/usage_l1"] <= 1
    assert len(list((tmp / "ids").glob("synthetic_all-MiniLM-L6-v2_42_*.pt"))) == 1


def test_offline_wandb_run_lands_in_the_run_folder(tmp_path):
    run_pipeline(load(*_overrides(tmp_path, "stop_after=preprocess", "logging.mode=offline")), {"seed": 42})
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    assert (tmp_path / "run" / "metrics.json").exists()
    # a second start in the same run folder (a resumed run) logs to the same W&B run
    run_id = (tmp_path / "run" / "wandb_run_id").read_text().strip()
    run_pipeline(load(*_overrides(tmp_path, "stop_after=preprocess", "logging.mode=offline")), {"seed": 42})
    folders = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert run_id and all(f.name.endswith(f"-{run_id}") for f in folders), folders


E2E = ("dataset.RQ-VAE.epochs=20", "dataset.RQ-VAE.eval_every=10", "dataset.TIGER.trainer.steps=12",
       "dataset.TIGER.trainer.eval_frequence=1", "dataset.TIGER.T5.encoder_layers=1",
       "dataset.TIGER.T5.decoder_layers=1")
TEST_NAMES = {m: {f"{m}_{g}_test/{x}@10" for g in ("in", "cold") for x in ("Recall", "NDCG")}
              for m in ("genret", "dense")}
UNI_NAMES = {f"uni_{g}_test/Gen{k}_{x}@10"
             for g in ("in", "cold") for k in (20, 40, 60, 80, 100) for x in ("Recall", "NDCG")}
RUN_NAMES = {"train/best_epoch", "train/steps", "train/epochs", "time/train", "time/test", "time/validation_mean"}


@pytest.mark.parametrize("method, expected", [
    (("method=setting", "test_method=liger"), TEST_NAMES["genret"] | TEST_NAMES["dense"] | UNI_NAMES),
    (("method=base", "test_method=tiger"), TEST_NAMES["genret"]),
    (("method=setting", "method.sid_loss_weight=0"), TEST_NAMES["dense"]),
])
def test_end_to_end_each_method_reports_its_metrics(embedded_run, tmp_path, method, expected):
    tmp, _ = embedded_run
    # the shared data of `embedded_run`, a run folder of this test's own (the later output_path wins)
    recorder = run_pipeline(load(*_overrides(tmp, *E2E, *method, f"dataset.RQ-VAE.cache_dir={tmp}/ids"),
                                 f"output_path={tmp_path}/run"))
    metrics = json.loads(recorder.path.read_text())
    test_metrics = {k for k in metrics if "_test/" in k}
    assert test_metrics == expected
    assert RUN_NAMES <= set(metrics) and metrics["train/steps"] == 12
    assert metrics["train/compiled"] == 0 and "train/graph_replays" not in metrics  # eager on a CPU, no graph
    assert 0 < metrics["time/validation_mean"] < metrics["time/train"]
    assert all(0 <= metrics[k] <= 1 for k in expected)
    assert (tmp_path / "run" / "ckpt.pt").exists() and (tmp_path / "run" / "ckpt_best.pt").exists()


def test_float32_matmul_precision_applies_to_training_and_evaluation_only(embedded_run, tmp_path, monkeypatch):
    """`trainer.float32_matmul_precision=high` (TF32 on a GPU): set for training and the test, not before
    the RQ-VAE (whose cached codes it must not change)."""
    import torch

    import ID_generation.rqvae.stage as stage  # run.py imports the stage where it runs

    tmp, _ = embedded_run
    seen = {}
    semantic_ids_stage = stage.semantic_ids_stage

    def recording(*args, **kwargs):
        seen["rqvae"] = torch.get_float32_matmul_precision()
        return semantic_ids_stage(*args, **kwargs)

    monkeypatch.setattr(stage, "semantic_ids_stage", recording)
    try:
        recorder = run_pipeline(load(*_overrides(tmp, *E2E, f"dataset.RQ-VAE.cache_dir={tmp}/ids",
                                                 "dataset.TIGER.trainer.float32_matmul_precision=high"),
                                     f"output_path={tmp_path}/run"))
        seen["after"] = torch.get_float32_matmul_precision()
    finally:
        torch.set_float32_matmul_precision("highest")  # process-wide: the other tests' default
    assert seen == {"rqvae": "highest", "after": "high"}
    assert "genret_in_test/Recall@10" in json.loads(recorder.path.read_text())


def test_too_few_beams_fails_before_any_stage(tmp_path):
    out = _cli(*_overrides(tmp_path, "evaluation.num_beams=5"))
    assert out.returncode == 2 and "evaluation.num_beams" in out.stderr
    assert not (tmp_path / "raw").exists()


def test_expected_failure_prints_its_message_without_a_traceback(tmp_path):
    """A missing raw file (own data): exit 1, the message naming the file, no traceback; LIGER_DEBUG=1
    shows the traceback."""
    import os

    args = ("dataset=custom", "dataset.name=mine", f"dataset.raw_data_path={tmp_path}/raw",
            f"dataset.processed_data_path={tmp_path}/processed", f"output_path={tmp_path}/run", "logging.mode=disabled")
    out = _cli(*args)
    assert out.returncode == 1
    assert "Error:" in out.stderr and "interactions.csv" in out.stderr
    assert "Traceback" not in out.stderr and "Error executing job" not in out.stderr
    debug = subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "LIGER_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_a_second_run_on_a_busy_run_folder_stops_naming_it(tmp_path):
    """Two runs in one run folder would mix their checkpoints and best weights."""
    from src.cache import run_folder_lock
    from src.errors import RunFolderBusyError

    cfg = load(*_overrides(tmp_path, "stop_after=preprocess"))
    with run_folder_lock(cfg.run_dir):  # another run holds the folder
        with pytest.raises(RunFolderBusyError, match=str(cfg.run_dir.resolve())):
            run_pipeline(cfg)
        assert not (cfg.run_dir / "metrics.json").exists()  # nothing was written
        out = _cli(*_overrides(tmp_path, "stop_after=preprocess"))
        assert out.returncode == 1 and "in use by another run" in out.stderr and "Traceback" not in out.stderr
    run_pipeline(cfg)  # free again
    assert (cfg.run_dir / "metrics.json").exists()


def test_a_run_folder_that_cannot_be_created_is_named_without_a_traceback(tmp_path, monkeypatch):
    """Hydra creates the run folder before run.py's code runs; the folder is checked when it is named."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = _cli(*_overrides(tmp_path, "stop_after=preprocess", f"output_path={blocker}/run"))
    assert out.returncode == 2 and "Traceback" not in out.stderr  # a configuration error
    assert f"the run folder {blocker}/run cannot be created: {blocker} is a file, not a folder" in out.stderr
    assert "set output_path" in out.stderr
    import os

    from src.config import unwritable_reason
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only folder (the tests may run as root)
    assert unwritable_reason(tmp_path / "new" / "run") == f"{tmp_path.resolve()} is not writable"
