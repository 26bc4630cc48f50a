"""The published experiment scripts: their overrides parse, build the intended method, and start."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, load
from ID_generation.preprocessing.sequences import Sequences
from ID_generation.preprocessing.split import leave_one_out
from ID_generation.semantic_ids import SemanticIds
from src.experiment import build_experiment, eval_settings
from src.tracking import RunRecorder

TINY = ("dataset.TIGER.T5.encoder_layers=1", "dataset.TIGER.T5.decoder_layers=1", "dataset.TIGER.T5.d_model=16",
        "dataset.TIGER.T5.d_ff=32", "dataset.TIGER.T5.num_heads=2", "dataset.TIGER.T5.d_kv=8",
        "method.embedding_head_dict.hidden_sizes=[8]")


def recorded_commands(script: str, tmp_path: Path, *extra: str) -> list[list[str]]:
    """Run the script with a stand-in interpreter that records each command line."""
    log = tmp_path / "calls.jsonl"
    fake = tmp_path / "fake_python"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    fake.chmod(0o755)
    subprocess.run(["bash", f"scripts/{script}", *extra], cwd=REPO, check=True, env={**os.environ, "PYTHON": str(fake)})
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("script, n_runs, methods", [
    ("tiger.sh", 4, {"tiger"}), ("ours.sh", 4, {"liger"}),
    ("ablation.sh", 5, {"dense_id", "dense_sid", "liger", "tiger_text", "tiger"}),
])
def test_every_run_parses_and_receives_the_extra_overrides(script, n_runs, methods, tmp_path):
    commands = recorded_commands(script, tmp_path, "dataset.TIGER.trainer.steps=7")
    assert len(commands) == n_runs
    kinds = set()
    for args in commands:
        assert args[0] == "run.py" and args[-1] == "dataset.TIGER.trainer.steps=7"
        cfg = load(*args[1:])
        assert cfg.seed == 42 and cfg.model.trainer.steps == 7
        kinds.add(_kind(cfg))
    assert kinds == methods


def _kind(cfg) -> str:
    m = cfg.method
    if m.use_id == "item_id":
        return "dense_id"
    if m.sid_loss_weight == 0:
        return "dense_sid"
    if m.flag_use_output_embedding:
        return "liger"
    return "tiger_text" if m.flag_add_input_embedding else "tiger"


EXPECTED = {  # evaluations each method supports, and its beam width (published)
    "dense_id": (False, True, False, None), "dense_sid": (False, True, False, None),
    "liger": (True, True, True, 100), "tiger_text": (True, False, False, 10), "tiger": (True, False, False, 10),
}


def test_every_ablation_builds_its_model_and_trains_a_step(tmp_path):
    g = torch.Generator().manual_seed(0)
    sids = SemanticIds.from_rqvae_codes(torch.randint(0, 4, (25, 3), generator=g).numpy(), codebook_size=4)
    lengths = torch.randint(4, 9, (10,), generator=g).numpy()
    split = leave_one_out(Sequences.from_lengths(lengths,
                                                 torch.randint(1, 26, (int(lengths.sum()),), generator=g).numpy()), 20)
    for args in recorded_commands("ablation.sh", tmp_path):
        run_dir = tmp_path / args[-1].split("=")[1]  # experiment_id=... closes each command
        cfg = load(*args[1:], *TINY, f"output_path={run_dir}")
        settings = eval_settings(cfg)
        genret, dense, uni, beams = EXPECTED[_kind(cfg)]
        assert settings.modes == tuple(m for m, on in zip(("genret", "dense", "uni"), (genret, dense, uni)) if on)
        assert beams is None or settings.num_beams == beams
        exp = build_experiment(cfg, split, sids, torch.randn(25, 12, generator=g), torch.device("cpu"),
                               RunRecorder(run_dir))
        if _kind(cfg) == "dense_id":
            assert exp.model.spec.vocab.vocab_size == 25 + 2 and exp.model.spec.vocab.tokens_per_item == 1
        out = exp.model(exp.data.batch(exp.data.train_examples()))
        out.loss.backward()
        assert (torch.isfinite(out.loss) and (out.sid_loss is not None) == genret
                and (out.embedding_loss is not None) == dense)
        assert exp.evaluator.evaluate("val", groups=("in",))  # its evaluations run


def test_ablation_script_starts_for_real(beauty_raw, tmp_path):
    """Each of its five runs in its own folder (here below tmp_path, named by its experiment_id)."""
    out = subprocess.run(["bash", "scripts/ablation.sh", "stop_after=preprocess", "logging.mode=disabled",
                          f"dataset.raw_data_path={beauty_raw}", f"dataset.processed_data_path={tmp_path}/processed",
                          f"hydra.run.dir={tmp_path}/runs/${{experiment_id}}"], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("22,363 users, 12,101 items") == 5
    assert len(list((tmp_path / "runs").glob("*/.hydra/config.yaml"))) == 5
    # the five in one folder: the second is refused, the first's record kept
    shared = subprocess.run(["bash", "scripts/ablation.sh", "stop_after=preprocess", "logging.mode=disabled",
                             f"dataset.raw_data_path={beauty_raw}", f"dataset.processed_data_path={tmp_path}/processed",
                             f"output_path={tmp_path}/one"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert shared.returncode == 2 and "holds a run with other settings: method." in shared.stderr
