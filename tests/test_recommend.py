"""Recommendations from a finished run (src/recommend.py, scripts/recommend.py): the items the
evaluator ranks for a test user, by each retrieval; clear errors for what cannot be asked."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO, RunsCode, small_generated
from src.decoding import BeamResult
from src.errors import CheckpointError
from src.recommend import RecommendError, RecommendUsageError, load_run, recommend, recommend_with_reasons

SETTINGS = ("dataset.RQ-VAE.epochs=10", "dataset.RQ-VAE.eval_every=5", "dataset.TIGER.trainer.steps=60",
            "dataset.TIGER.trainer.eval_frequence=2", "dataset.TIGER.T5.encoder_layers=1",
            "dataset.TIGER.T5.decoder_layers=1", "dataset.TIGER.trainer.warmup_steps=10")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished LIGER run of the offline default's generated data (small), through run.py."""
    tmp = tmp_path_factory.mktemp("recommend")
    out = subprocess.run([sys.executable, "run.py", *small_generated(tmp, *SETTINGS)], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    return tmp / "run", load_run(tmp / "run", "cpu")


def test_recommendations_are_the_evaluators_candidates_for_a_test_user(finished):
    """For a test user's history, each retrieval recommends the items the evaluator ranks (in order)."""
    _, run = finished
    exp = run.experiment
    examples = exp.data.eval_examples("test")
    vectors = exp.model.item_vectors()
    for row in range(3):
        example = examples.subset(slice(row, row + 1))
        user, length = int(example.users[0]), int(example.target_positions[0])
        history = [run.item_ids[i - 1] for i in exp.data.matrix[user, :length].tolist()]
        with torch.no_grad():
            ranked = {variant: candidates[0, :10].tolist()
                      for variant, candidates, _ in exp.evaluator._batch_rankings(example, ("genret", "dense", "uni"),
                                                                                   vectors)}
        for by, variant in (("genret", ("genret", None)), ("dense", ("dense", None)), ("uni", ("uni", 20))):
            got = recommend(run, history, k=10, by=by)
            assert [r.item for r in got] == [i for i in ranked[variant] if i > 0], (row, by)
            assert [r.rank for r in got] == [p + 1 for p, i in enumerate(ranked[variant]) if i > 0]
            assert all(r.item_id == run.item_ids[r.item - 1] and r.text == run.item_texts[r.item - 1] for r in got)
            scores = [r.score for r in got]
            assert scores == sorted(scores, reverse=True)
    assert recommend(run, history, k=10) == recommend(run, history, k=10, by="uni")  # LIGER reports by uni


def test_cold_start_items_are_recommended_by_dense_and_uni(finished):
    _, run = finished
    history = run.item_ids[:3]
    everything = recommend(run, history, k=len(run.item_ids), by="dense")
    cold = {r.item for r in everything if r.cold_start}
    assert len(everything) == len(run.item_ids) and cold  # dense ranks every item, cold-start ones included
    assert cold == {i + 1 for i, unseen in enumerate(run.experiment.model.unseen.tolist()) if unseen}
    pool = recommend(run, history, k=len(run.item_ids), by="uni")
    assert cold <= {r.item for r in pool}  # every cold-start item is in uni's candidates
    assert recommend(run, [1, 2], by="dense", internal=True) == recommend(run, run.item_ids[:2], by="dense")


def test_bad_requests_name_what_is_wrong(finished, tmp_path):
    run_dir, run = finished
    with pytest.raises(RecommendError, match="item id 'NOPE' is not in the dataset"):
        recommend(run, [run.item_ids[0], "NOPE"])
    with pytest.raises(RecommendError, match="the history is empty"):
        recommend(run, [])
    with pytest.raises(RecommendError, match="no project item id: they run from 1 to"):
        recommend(run, [0], internal=True)
    with pytest.raises(RecommendError, match="is not a run folder"):
        load_run(tmp_path)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir / ".hydra", unfinished / ".hydra")
    with pytest.raises(RecommendError, match="has no trained model \\(ckpt_best.pt is missing\\)"):
        load_run(unfinished)
    shutil.copy(run_dir / "ckpt_best.pt", unfinished / "ckpt_best.pt")  # best weights before the first checkpoint
    with pytest.raises(RecommendError, match="has not finished training \\(ckpt.pt is missing\\)"):
        load_run(unfinished)
    (unfinished / "ckpt.pt").write_bytes(b"garbage")
    with pytest.raises(RecommendError, match="ckpt.pt cannot be read .*it is damaged"):
        load_run(unfinished)
    ckpt = torch.load(run_dir / "ckpt.pt", weights_only=True)
    ckpt["state"]["finished"] = False
    torch.save(ckpt, unfinished / "ckpt.pt")
    with pytest.raises(RecommendError, match="has not finished training \\(stopped after epoch"):
        load_run(unfinished)
    with pytest.raises(RecommendError, match="uni_k .* must be at least 1, got -3"):
        recommend(run, run.item_ids[:2], uni_k=-3)


def test_long_histories_keep_the_items_a_training_history_holds(finished):
    """max_items_per_seq (20) cuts sequences with their target: 19 history items at most."""
    _, run = finished
    cap = run.cfg.data.max_items_per_seq - 1
    long = [run.item_ids[i % len(run.item_ids)] for i in range(cap + 7)]
    assert recommend(run, long, by="dense") == recommend(run, long[-cap:], by="dense")
    assert recommend(run, long, by="dense") != recommend(run, long[-(cap + 1):][:cap], by="dense")


def test_runs_saved_before_a_key_was_refused_still_load(finished, tmp_path):
    """A run's saved config may hold dataset.RQ-VAE.max_seq_len (read by nothing, refused on command
    lines since): it is dropped when the run is loaded."""
    import yaml

    from src.config import ConfigError, load_config, load_saved_config

    run_dir, _ = finished
    saved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    saved["dataset"]["RQ-VAE"]["max_seq_len"] = 256
    old = tmp_path / "config.yaml"
    old.write_text(yaml.safe_dump(saved))
    assert load_saved_config(old) == load_saved_config(run_dir / ".hydra" / "config.yaml")
    from omegaconf import OmegaConf

    with pytest.raises(ConfigError, match="max_seq_len' is a key of the published configs that nothing here reads"):
        load_config(OmegaConf.load(old))


def test_command_prints_the_ranked_items_or_the_error(finished):
    run_dir, run = finished
    history = run.item_ids[:4]
    script = [sys.executable, "scripts/recommend.py", str(run_dir)]
    out = subprocess.run([*script, *history, "--k", "5", "--by", "dense", "--json"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # stdout is the JSON alone (the stages' progress goes to stderr)
    assert [r["item"] for r in json.loads(out.stdout)] == [r.item for r in recommend(run, history, k=5, by="dense")]
    missing = subprocess.run([sys.executable, "scripts/recommend.py", str(run_dir / "nowhere"), "X"], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "is not a folder; give the run folder" in missing.stderr
    assert "Traceback" not in missing.stderr


def command_line():
    """scripts/recommend.py as a module, for its `main` and `table`."""
    spec = importlib.util.spec_from_file_location("recommend_cli", REPO / "scripts" / "recommend.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_table_shows_rank_item_score_and_text(finished):
    _, run = finished
    cli = command_line()
    found = recommend(run, run.item_ids[:4], k=3, by="uni")
    lines = cli.table(found, "uni").splitlines()
    assert lines[0].split()[:4] == ["rank", "item", "score", "cold"] and len(lines) == 1 + len(found)
    assert lines[1].split()[:2] == ["1", found[0].item_id] and f"{found[0].score:.4f}" in lines[1]


def test_a_run_writes_its_curves_locally(finished):
    """W&B disabled, the run folder still holds every curve: training, validation and RQ-VAE checks."""
    from src.tracking import read_curves

    run_dir, run = finished
    curves = read_curves(run_dir / "curves.jsonl")
    for name in ("train/loss", "train/sid_loss", "train/embedding_loss", "train/lr", "train/grad_norm",
                 "dense_in_val/NDCG@10", "genret_in_val/Recall@10"):
        assert curves[name].axis == "train/step" and curves[name].steps, name
    assert curves["rqvae/val_recon_loss"].axis == "rqvae/epoch" and curves["rqvae/val_recon_loss"].steps == (5, 10)
    assert len(curves["train/loss"].steps) == run.experiment.trainer.n_epochs


def constrained(run, monkeypatch):
    """Beam search kept to the items' IDs (`evaluation.constrained`), so that genret names items even where
    the small run's unconstrained beams name none."""
    evaluator = run.experiment.evaluator
    monkeypatch.setattr(evaluator, "settings", dataclasses.replace(evaluator.settings, constrained=True))


@pytest.mark.parametrize("by", ["genret", "dense", "uni"])
def test_excluded_history_items_leave_their_ranks_empty_and_the_rows_are_refilled(finished, monkeypatch, by):
    """--exclude-history: no history item is recommended; the other items keep their ranks and the rows are
    refilled from further down the same ranking, up to k."""
    _, run = finished
    constrained(run, monkeypatch)
    history = run.item_ids[:4]
    k = 10
    plain = recommend(run, history, k=k + len(history), by=by)
    assert {r.item_id for r in plain[:k]} & set(history), "the test needs a history item in the plain top k"
    kept = recommend(run, history, k=k, by=by, exclude_history=True)
    assert not {r.item_id for r in kept} & set(history)
    assert kept == [r for r in plain if r.item_id not in history][:k] and len(kept) == k


def test_fewer_rows_than_k_come_with_the_reason(finished, monkeypatch):
    """dense runs out of items; uni out of its candidates (the generated ones and the cold-start items, each
    once); either less the history items left out. With k rows there is no note."""
    _, run = finished
    constrained(run, monkeypatch)
    history, n_items = run.item_ids[:4], len(run.item_ids)
    assert recommend_with_reasons(run, history, k=5, by="dense").note is None
    answer = recommend_with_reasons(run, history, k=n_items + 5, by="dense")
    assert len(answer.items) == n_items and answer.note == f"dense ranks all {n_items} items: {n_items} rows"
    answer = recommend_with_reasons(run, history, k=n_items + 5, by="dense", exclude_history=True)
    assert len(answer.items) == n_items - 4
    assert answer.note.startswith(f"dense ranks all {n_items} items, 4 history items left out (ranks ")
    assert answer.note.endswith(f": {n_items - 4} rows")

    generated = {r.item for r in recommend(run, history, k=20, by="genret")}  # the same 100 beams as uni's
    cold = set(run.experiment.evaluator.cold_items.tolist())
    pool = generated | cold
    answer = recommend_with_reasons(run, history, k=n_items, by="uni")
    assert {r.item for r in answer.items} == pool and len(pool) < n_items
    assert answer.note.startswith("uni ranks the 20 generated candidates")
    assert f" and the {len(cold)} cold-start items" in answer.note
    assert answer.note.endswith(f", {len(pool)} items in all: {len(pool)} rows")
    if generated & cold:
        assert f"({len(generated & cold)} of them generated too)" in answer.note


def test_generated_ids_that_name_no_item_are_said_so(finished, monkeypatch):
    """Where no generated ID names an item: genret has nothing to recommend, uni ranks the cold-start items alone."""
    _, run = finished
    evaluator = run.experiment.evaluator
    real_beams = evaluator._beams

    def no_item(encoded, batch):
        beams = real_beams(encoded, batch)
        return BeamResult(beams.tokens, beams.scores, torch.zeros_like(beams.items))

    monkeypatch.setattr(evaluator, "_beams", no_item)
    history = run.item_ids[:4]
    answer = recommend_with_reasons(run, history, k=10, by="genret")
    assert answer.items == [] and answer.note == "none of the top 10 IDs genret generated names an item: nothing to " \
                                                "recommend"
    cold = len(evaluator.cold_items)
    answer = recommend_with_reasons(run, history, k=2, by="uni")  # k rows, but only cold-start items
    assert len(answer.items) == 2 and all(r.cold_start for r in answer.items)
    assert answer.note == (f"none of the 20 IDs uni generated names an item: uni ranks the {cold} cold-start items "
                           "alone: 2 rows")


def test_the_command_prints_the_reason_under_the_table(finished, capsys):
    run_dir, run = finished
    n_items = len(run.item_ids)
    assert command_line().main([str(run_dir), *run.item_ids[:4], "--k", str(n_items + 1), "--by", "dense",
                                "--exclude-history"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith(f"after 4 item(s), its items left out, from {run_dir}:")
    assert len(lines) == 3 + n_items - 4 and lines[-1].startswith(f"(dense ranks all {n_items} items, 4 history items")


def test_a_user_index_for_a_method_without_user_tokens_is_refused(finished, capsys):
    run_dir, run = finished
    assert not run.experiment.data.vocab.has_user_tokens
    with pytest.raises(RecommendUsageError, match="--user 3: this run's method has no user tokens"):
        recommend(run, run.item_ids[:2], user=3)
    assert recommend(run, run.item_ids[:2], by="dense") == recommend(run, run.item_ids[:2], by="dense", user=None)
    assert command_line().main([str(run_dir), *run.item_ids[:2], "--user", "3"]) == 2
    err = capsys.readouterr().err
    assert "Usage error: --user 3: this run's method has no user tokens" in err and "leave --user out" in err
    assert "Traceback" not in err


def test_a_device_this_machine_lacks_is_refused(finished, monkeypatch, capsys):
    run_dir, run = finished
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RecommendUsageError, match="--device cuda: this machine has no CUDA device"):
        load_run(run_dir, "cuda")
    with pytest.raises(RecommendUsageError, match="--device gpu: no device of that name; use cpu or cuda"):
        load_run(run_dir, "gpu")
    assert command_line().main([str(run_dir), *run.item_ids[:2], "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "Usage error: --device cuda: this machine has no CUDA device" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["ckpt.pt", "ckpt_best.pt"])
def test_a_run_folder_whose_checkpoint_holds_code_is_refused_unread(finished, tmp_path, name):
    """Both checkpoints are read as tensors and plain values only: one holding any other object is refused
    with a message naming it, and its code never runs."""
    run_dir, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir / ".hydra", copy / ".hydra")
    for file in ("ckpt.pt", "ckpt_best.pt"):
        shutil.copy(run_dir / file, copy / file)
    marker = tmp_path / "marker"
    saved = torch.load(copy / name, weights_only=True)
    torch.save({**saved, "extra": RunsCode(marker)}, copy / name)
    with pytest.raises((RecommendError, CheckpointError), match=f"{name} holds a Python object .*refused unread"):
        load_run(copy, "cpu")
    assert not marker.exists()
    out = subprocess.run([sys.executable, "scripts/recommend.py", str(copy), "X"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 1 and f"{copy / name} holds a Python object" in out.stderr
    assert "refused unread" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists()
