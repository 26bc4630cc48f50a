"""Training: an interrupted and restarted run ends exactly like an uninterrupted one; early
stopping keeps the best model; logged losses are means over the epoch."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from conftest import RunsCode, load
from ID_generation.preprocessing.sequences import Sequences
from ID_generation.preprocessing.split import leave_one_out
from ID_generation.semantic_ids import SemanticIds
from src.distributed import SINGLE
from src.errors import CheckpointError
from src.experiment import build_experiment
from src.retrieval import method_retrievals
from src.tracking import RunRecorder
from src.training import Trainer

TINY = ("dataset.TIGER.T5.encoder_layers=1", "dataset.TIGER.T5.decoder_layers=1", "dataset.TIGER.T5.d_model=16",
        "dataset.TIGER.T5.d_ff=32", "dataset.TIGER.T5.num_heads=2", "dataset.TIGER.T5.d_kv=8",
        "method.embedding_head_dict.hidden_sizes=[8]", "dataset.TIGER.trainer.batch_size=8",
        "dataset.TIGER.trainer.eval_batch_size=16", "dataset.TIGER.trainer.warmup_steps=2",
        "evaluation.uni_ks=[5]", "logging.mode=disabled")


class Curves:
    def __init__(self):
        self.points = []

    def summary(self, values):
        pass

    def curve(self, values, step_key, step):
        self.points.append((dict(values), step))

    def finish(self):
        pass


def experiment(tmp_path, *overrides, logger=None, processes=SINGLE, edit_items=None):
    """edit_items: changes the interaction items (numpy, in place) before the split, as edited data."""
    g = torch.Generator().manual_seed(0)
    sids = SemanticIds.from_rqvae_codes(torch.randint(0, 4, (25, 3), generator=g).numpy(), codebook_size=4)
    lengths = torch.randint(4, 10, (20,), generator=g).numpy()
    items = torch.randint(1, 26, (int(lengths.sum()),), generator=g).numpy()
    if edit_items is not None:
        edit_items(items)
    split = leave_one_out(Sequences.from_lengths(lengths, items), 20)
    cfg = load(*TINY, f"output_path={tmp_path}", *overrides)
    return build_experiment(cfg, split, sids, torch.randn(25, 12, generator=g), torch.device("cpu"),
                            RunRecorder(tmp_path, logger, write=processes.is_main), processes)


@pytest.mark.parametrize("implementation", ["transformers", "compact"])  # compact: packed batches
def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch, implementation):
    settings = ("dataset.TIGER.trainer.steps=40", "dataset.TIGER.trainer.eval_frequence=2",
                f"dataset.TIGER.T5.implementation={implementation}")
    whole = experiment(tmp_path / "whole", *settings)
    result = whole.trainer.fit()
    reference = whole.evaluator.evaluate("test")

    real_save = Trainer.save_checkpoint
    calls = []

    def crash_after_third_epoch(self):
        real_save(self)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies right after a checkpoint

    monkeypatch.setattr(Trainer, "save_checkpoint", crash_after_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        experiment(tmp_path / "split", *settings).trainer.fit()
    monkeypatch.setattr(Trainer, "save_checkpoint", real_save)
    restarted = experiment(tmp_path / "split", *settings)  # a new process: fresh objects
    resumed = restarted.trainer.fit()
    assert resumed == result and result.steps == 40
    for (name, a), b in zip(whole.model.state_dict().items(), restarted.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert restarted.evaluator.evaluate("test") == reference


def test_checkpoints_every_n_epochs_after_improvements_and_after_the_last(tmp_path, monkeypatch):
    """dataset.TIGER.save_every_n_epochs=3: ckpt.pt after epochs 3, 6, ..., after each epoch whose
    validation wrote new best weights (so ckpt_best.pt never runs ahead of it), and after the last;
    a run killed between two checkpoints resumes from the older one and ends as an uninterrupted run."""
    settings = ("dataset.TIGER.trainer.steps=80", "dataset.TIGER.trainer.eval_frequence=2",
                "dataset.TIGER.save_every_n_epochs=3")
    whole = experiment(tmp_path / "whole", *settings)
    saved_at, improved_at = [], []
    real_save, real_validate = Trainer.save_checkpoint, Trainer._validate
    monkeypatch.setattr(Trainer, "save_checkpoint", lambda self: (saved_at.append(self.state.epoch), real_save(self)))
    monkeypatch.setattr(Trainer, "_validate", lambda self, epoch: (
        improved := real_validate(self, epoch), improved and improved_at.append(epoch + 1))[0])
    result = whole.trainer.fit()
    last = whole.trainer.state.epoch
    assert last > 4 and improved_at
    assert saved_at == [e for e in range(1, last + 1) if e % 3 == 0 or e == last or e in improved_at]
    assert 5 not in saved_at, "the test needs epoch 5 between two checkpoints; change its settings"
    monkeypatch.undo()

    def die_in_epoch_five(self, bar, real=Trainer._train_epoch):
        if self.state.epoch == 4:
            raise KeyboardInterrupt  # after the checkpoint of epoch 3 or 4, before the next one
        return real(self, bar)

    monkeypatch.setattr(Trainer, "_train_epoch", die_in_epoch_five)
    with pytest.raises(KeyboardInterrupt):
        experiment(tmp_path / "split", *settings).trainer.fit()
    monkeypatch.undo()
    saved = torch.load(tmp_path / "split" / "ckpt.pt", weights_only=True)["state"]
    assert saved["epoch"] == max(e for e in saved_at if e <= 4) and saved["best_epoch"] + 1 <= saved["epoch"]
    assert experiment(tmp_path / "split", *settings).trainer.fit() == result


def test_checkpoint_from_other_settings_is_refused(tmp_path):
    experiment(tmp_path, "dataset.TIGER.trainer.steps=6").trainer.fit()
    with pytest.raises(CheckpointError, match="other settings"):
        experiment(tmp_path, "dataset.TIGER.trainer.steps=8").trainer.fit()


def test_checkpoint_of_other_data_is_refused(tmp_path):
    """Two reviews of one user swapped in time: the same settings, other data."""
    def swap(items):
        items[[0, 1]] = items[[1, 0]]

    experiment(tmp_path, "dataset.TIGER.trainer.steps=6").trainer.fit()
    with pytest.raises(CheckpointError, match="other settings or other data") as refused:
        experiment(tmp_path, "dataset.TIGER.trainer.steps=6", edit_items=swap).trainer.fit()
    assert "delete" not in str(refused.value).lower()  # the advice keeps the run that wrote it
    assert "another experiment_id=... or output_path=..." in str(refused.value)


def test_best_weights_of_another_run_are_refused(tmp_path):
    experiment(tmp_path, "dataset.TIGER.trainer.steps=6").trainer.fit()
    best = torch.load(tmp_path / "ckpt_best.pt", weights_only=True)
    torch.save({**best, "config_key": "another run"}, tmp_path / "ckpt_best.pt")
    with pytest.raises(CheckpointError, match="ckpt_best.pt was written by another run"):
        experiment(tmp_path, "dataset.TIGER.trainer.steps=6").trainer.fit()  # finished: loads the best weights


def test_deleted_best_weights_are_named_with_what_to_do(tmp_path):
    experiment(tmp_path, "dataset.TIGER.trainer.steps=6").trainer.fit()
    (tmp_path / "ckpt_best.pt").unlink()
    with pytest.raises(CheckpointError, match="ckpt_best.pt is missing.*delete .*ckpt.pt to train this run again"):
        experiment(tmp_path, "dataset.TIGER.trainer.steps=6").trainer.fit()


@pytest.mark.parametrize("name", ["ckpt.pt", "ckpt_best.pt"])
@pytest.mark.parametrize("damage", [b"", b"garbage" * 20, None])  # None: truncated to half
def test_damaged_checkpoint_is_named_with_what_to_do(tmp_path, name, damage):
    experiment(tmp_path, "dataset.TIGER.trainer.steps=6").trainer.fit()
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if damage is None else damage)
    with pytest.raises(CheckpointError, match=f"(?s){name} cannot be read.*damaged. Delete it"):
        experiment(tmp_path, "dataset.TIGER.trainer.steps=6").trainer.fit()


@pytest.mark.parametrize("name", ["ckpt.pt", "ckpt_best.pt"])
def test_a_checkpoint_holding_code_is_refused_unread(tmp_path, name):
    """Checkpoints are read as tensors and plain values only: one that holds any other object (here one whose
    unpickling would write a file) is refused, naming the file, and its code never runs."""
    experiment(tmp_path / "run", "dataset.TIGER.trainer.steps=6").trainer.fit()
    path, marker = tmp_path / "run" / name, tmp_path / "marker"
    saved = torch.load(path, weights_only=True)  # what this project writes loads so
    torch.save({**saved, "extra": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=f"(?s){name} holds a Python object .*refused unread.*Delete it"):
        experiment(tmp_path / "run", "dataset.TIGER.trainer.steps=6").trainer.fit()  # resumes, then best weights
    assert not marker.exists()


def test_early_stopping_keeps_the_best_model(tmp_path):
    exp = experiment(tmp_path, "dataset.TIGER.trainer.steps=400", "dataset.TIGER.trainer.eval_frequence=1",
                     "dataset.TIGER.trainer.patience=2", "dataset.TIGER.trainer.lr=0.5")  # diverges: stops early
    result = exp.trainer.fit()
    assert result.epochs < exp.trainer.n_epochs and result.epochs == result.best_epoch + 4
    best = torch.load(tmp_path / "ckpt_best.pt", weights_only=True)["model"]
    assert all(torch.equal(best[k], v) for k, v in exp.model.state_dict().items())  # the model holds the best weights


def test_logged_training_loss_is_the_epoch_mean(tmp_path, monkeypatch):
    curves = Curves()
    exp = experiment(tmp_path, "dataset.TIGER.trainer.steps=12", "dataset.TIGER.trainer.eval_frequence=10",
                     logger=curves)
    losses = []
    real_forward = exp.model.forward
    monkeypatch.setattr(exp.model, "forward",
                        lambda batch: (out := real_forward(batch), losses.append(float(out.loss.detach())))[0])
    exp.trainer.fit()
    per_epoch = -(-len(exp.trainer.examples) // 8)  # batches in a full epoch
    train_points = [values for values, _ in curves.points if "train/loss" in values]
    assert len(train_points) == exp.trainer.n_epochs
    first_epoch = losses[:per_epoch]
    assert train_points[0]["train/loss"] == pytest.approx(sum(first_epoch) / len(first_epoch), rel=1e-5)


def test_selection_metric_follows_the_method():
    liger, tiger = load("method=setting").method, load("method=base").method
    assert method_retrievals(liger).selection_metric((10,)) == "dense_in_val/NDCG@10"
    assert method_retrievals(tiger).selection_metric((10,)) == "genret_in_val/NDCG@10"
    assert (method_retrievals(dataclasses.replace(liger, sid_loss_weight=0.0)).selection_metric((5, 20))
            == "dense_in_val/NDCG@20")


def test_patience_shorter_than_the_validation_interval_still_validates(tmp_path):
    exp = experiment(tmp_path, "dataset.TIGER.trainer.steps=60", "dataset.TIGER.trainer.eval_frequence=3",
                     "dataset.TIGER.trainer.patience=1", "method=base")
    result = exp.trainer.fit()
    assert result.best_epoch >= 0 and (tmp_path / "ckpt_best.pt").exists()


def test_time_budget_ends_training_after_a_validated_epoch(tmp_path, monkeypatch):
    exp = experiment(tmp_path, "dataset.TIGER.trainer.steps=400", "dataset.TIGER.trainer.eval_frequence=10",
                     "dataset.TIGER.trainer.time_budget_min=0.5", "dataset.TIGER.trainer.patience=50")
    clock = iter(range(0, 10_000, 12))  # every look at the clock: 12 s later
    monkeypatch.setattr("src.training.clock", lambda: next(clock))
    result = exp.trainer.fit()
    # the deadline is set at 0 s (30 s budget); epochs end at 12 s, 24 s, then 36 s: out of time
    assert result.out_of_time and result.epochs == 3 < exp.trainer.n_epochs
    assert result.best_epoch == 2 and (tmp_path / "ckpt_best.pt").exists()  # the last epoch was validated


def test_no_time_budget_by_default(tmp_path):
    exp = experiment(tmp_path, "dataset.TIGER.trainer.steps=12")
    assert exp.trainer.cfg.time_budget_min is None and not exp.trainer.fit().out_of_time


def test_divergence_stops_training_with_an_error_naming_step_loss_and_rate(tmp_path):
    from src.errors import TrainingDivergedError
    exp = experiment(tmp_path, "dataset.TIGER.trainer.lr=1e6", "dataset.TIGER.trainer.steps=60")
    with pytest.raises(TrainingDivergedError) as info:
        exp.trainer.fit()
    message = str(info.value)
    assert "non-finite at step" in message and "dataset.TIGER.trainer.lr (now 1e+06)" in message
    assert not (tmp_path / "ckpt_best.pt").exists() or exp.trainer.state.best_score > float("-inf")


def test_a_finite_run_is_not_stopped(tmp_path):
    result = experiment(tmp_path, "dataset.TIGER.trainer.steps=10").trainer.fit()
    assert result.steps == 10 and all(math.isfinite(v) for v in result.last_losses.values())


def test_cuda_graphs_need_one_process_on_a_gpu(tmp_path):
    from src.config import ConfigError

    with pytest.raises(ConfigError, match="cuda_graphs' is true, but this run trains on a CPU"):
        experiment(tmp_path, "dataset.TIGER.trainer.cuda_graphs=true")
    # compiled and graphed together is a valid setting (compiled for the one padded shape); still a GPU's
    with pytest.raises(ConfigError, match="cuda_graphs' is true, but this run trains on a CPU"):
        experiment(tmp_path, "dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.trainer.compile=true")


def test_cuda_graphs_auto_graphs_the_step_where_one_process_trains_on_a_gpu(tmp_path):
    """`trainer.cuda_graphs: auto` (the default): a graphed step where one process trains on a GPU (an
    H200's TIGER step 95 → 15.5 ms), eager on a CPU or with several processes, where a graph cannot run."""
    from types import SimpleNamespace

    exp = experiment(tmp_path)  # the default on a CPU: eager, no error
    assert exp.trainer.cfg.cuda_graphs is None and not exp.trainer.cuda_graphs
    auto = SimpleNamespace(cuda_graphs=None)
    for device, world, graphed in (("cuda", 1, True), ("cuda", 2, False), ("cpu", 1, False)):
        trainer = SimpleNamespace(cfg=auto, device=torch.device(device),
                                  processes=SimpleNamespace(enabled=world > 1, world_size=world))
        assert Trainer._uses_cuda_graphs(trainer) is graphed


def test_a_compiler_failure_leaves_training_eager_with_a_warning(tmp_path, monkeypatch, capsys):
    """torch 2.11's inductor failed at the first compiled step on an H200: the run says so and trains on,
    eager, to the result of a run that never compiled."""
    import src.training as training

    def failing_compile(model, dynamic=True, scope="model"):
        def broken(*args, **kwargs):
            raise RuntimeError("InductorError: AssertionError (simulated)")
        model._compiled_call_impl = broken

    monkeypatch.setattr(training, "compile_model", failing_compile)
    failed = experiment(tmp_path / "failed", "dataset.TIGER.trainer.compile=true", "dataset.TIGER.trainer.steps=6")
    result = failed.trainer.fit()
    assert "torch.compile failed (RuntimeError: InductorError" in capsys.readouterr().out
    assert not failed.trainer.compiled and failed.trainer.compile_error.startswith("RuntimeError")
    eager = experiment(tmp_path / "eager", "dataset.TIGER.trainer.steps=6").trainer.fit()
    assert result.steps == eager.steps == 6 and result.last_losses == pytest.approx(eager.last_losses)


def test_validation_runs_the_blocks_compiled_for_training_as_written(tmp_path, monkeypatch):
    """`compile_scope=blocks` (the default) compiles the sublayers that evaluation runs too. Compiled for
    training's shapes, they would recompile for each of evaluation's (batch sizes, beams); evaluation runs
    them eagerly instead, and its metrics are an uncompiled model's."""
    import src.runtime as runtime

    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    monkeypatch.setattr(runtime, "COMPILE_BACKEND", counting_backend)
    torch._dynamo.reset()
    exp = experiment(tmp_path / "compiled", "dataset.TIGER.trainer.compile=true")
    assert exp.trainer.compiled and exp.trainer.cfg.compile_scope == "blocks"
    trainer = exp.trainer
    chunk = next(iter(exp.data.shuffled(trainer.examples, trainer.batch_size, torch.Generator().manual_seed(0))))
    try:
        trainer.train_step(chunk)
        compiled_for_training = len(graphs)
        metrics = exp.evaluator.evaluate("val")
    finally:
        runtime.uncompile_model(exp.model)
        torch._dynamo.reset()
    assert compiled_for_training > 0 and len(graphs) == compiled_for_training
    assert metrics == exp.evaluator.evaluate("val")  # the same model, never compiled now


def test_a_checkpoint_of_a_gpu_run_with_cuda_graphs_resumes_on_a_cpu(tmp_path):
    """A checkpoint saved by a GPU run keeps its optimiser's fused and capturable flags (a CUDA graph
    sets the second); a run resuming it on a CPU steps with its own flags, not the saving run's (which
    describe another device's kernels), to the same number of steps."""
    settings = ("dataset.TIGER.trainer.steps=6", "dataset.TIGER.trainer.eval_frequence=1")
    exp = experiment(tmp_path, *settings)
    exp.trainer.fit()
    path = tmp_path / "ckpt.pt"
    saved = torch.load(path, weights_only=True)
    for group in saved["optimizer"]["param_groups"]:
        group["capturable"] = group["fused"] = True
    saved["state"].update(finished=False, epoch=1, step=3)
    torch.save(saved, path)
    resumed = experiment(tmp_path, *settings)
    result = resumed.trainer.fit()
    assert result.steps == 6
    assert all(not g["capturable"] and not g["fused"] for g in resumed.trainer.optimizer.param_groups)


def test_a_graphed_steps_batches_are_fixed_width_where_their_histories_fit(tmp_path):
    """`trainer.cuda_graphs` with a packing model (a GPU run; its batches are built alike on a CPU): the
    group widths come from the run's own batch order without drawing from it, every full batch of the
    first epoch then has one fixed shape, and a batch that exceeds the widths is packed as usual."""
    trainer = experiment(tmp_path).trainer
    before = trainer.generator.get_state()
    widths = trainer._group_widths()
    assert torch.equal(trainer.generator.get_state(), before)  # the batch order is untouched
    assert len(widths) == trainer.packing_groups and widths == sorted(widths, reverse=True)
    trainer.history_len, trainer.group_widths = trainer.examples.longest_history, widths
    full = [chunk for chunk in trainer.data.shuffled(trainer.examples, trainer.batch_size, trainer.generator)
            if len(chunk) == trainer.batch_size]
    plans = [trainer._plan(chunk) for chunk in full]
    assert len(plans) > 1 and len({plan.shape for plan in plans}) == 1 and plans[0].shape is not None
    assert all(trainer.data.build(plan).layout.fixed_width for plan in plans[:2])
    small = trainer._plan(full[0].subset(slice(0, 2)))  # fewer examples than groups: packed, as eager
    assert small.shape is None and not trainer.data.build(small).layout.fixed_width and len(small) == 2
    trainer.group_widths = [1] * len(widths)
    plan = trainer._plan(full[0])
    assert plan.shape is None and not trainer.data.build(plan).layout.fixed_width


def emulate_cuda_graphs_on_the_cpu(monkeypatch) -> None:
    """`trainer.cuda_graphs` on the CPU, with a graph's one property that matters to the trainer: a replay
    runs what was captured (building the batch from the captured index, and the step on it) on the
    captured tensors, which each replay overwrites in place (an input the replay forgot to copy would
    keep its captured values)."""
    import src.cuda_graph as cuda_graph

    class Replayed:
        def __init__(self, fn, out):
            self.fn, self.out = fn, out

        def replay(self):
            self.out.copy_(self.fn())

    init = cuda_graph.GraphedStep.__init__

    def cpu_init(self, step, data, optimizer, device, *args, **kwargs):
        init(self, step, data, optimizer, torch.device("cuda"), *args, **kwargs)
        self.device = device

    monkeypatch.setattr(Trainer, "_uses_cuda_graphs", lambda self: self.cfg.cuda_graphs)
    monkeypatch.setattr(cuda_graph.GraphedStep, "__init__", cpu_init)
    monkeypatch.setattr(cuda_graph, "eager_on_side_stream", lambda fn, device: fn())
    monkeypatch.setattr(cuda_graph, "capture", lambda fn, optimizer: (Replayed(fn, out := torch.zeros(4)), out))


@pytest.mark.parametrize("packing_groups", [4, 0])
def test_a_graphed_trainer_replaying_on_its_captured_batch_trains_as_the_eager_one(tmp_path, monkeypatch,
                                                                                  packing_groups):
    """Batches in fixed-width length groups (or padded to one shape), a graph emulated on the CPU: every
    step's losses and the final weights are the eager trainer's, so each replay saw its own batch."""
    emulate_cuda_graphs_on_the_cpu(monkeypatch)
    groups = f"dataset.TIGER.T5.packing_groups={packing_groups}"
    eager = experiment(tmp_path / "eager", groups)
    graphed = experiment(tmp_path / "graphed", groups, "dataset.TIGER.trainer.cuda_graphs=true")
    graphed.model.load_state_dict(eager.model.state_dict())
    eager.trainer.history_len = graphed.trainer.history_len
    eager.trainer.group_widths = graphed.trainer.group_widths
    assert (graphed.trainer.group_widths is not None) == (packing_groups > 0)
    chunks = list(eager.data.shuffled(eager.trainer.examples, 8, torch.Generator().manual_seed(0)))[:5] * 2
    losses = []
    for exp in (eager, graphed):
        exp.model.eval()  # no dropout: a graph need not draw the eager masks
        losses.append(torch.stack([exp.trainer.train_step(chunk) for chunk in chunks]))
    step = graphed.trainer.step
    assert step.replays >= 4 and step.graph is not None
    assert (step.static_batch.layout is not None) == (packing_groups > 0)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for p, q in zip(eager.model.parameters(), graphed.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_loading_a_checkpoint_after_a_capture_captures_anew(tmp_path, monkeypatch):
    """A graph captured before a checkpoint is loaded would go on updating the optimiser state the load
    replaced: resuming forgets it, and the next full batches warm up and capture again."""
    emulate_cuda_graphs_on_the_cpu(monkeypatch)
    exp = experiment(tmp_path, "dataset.TIGER.trainer.cuda_graphs=true")
    trainer = exp.trainer
    for chunk in list(exp.data.shuffled(trainer.examples, 8, torch.Generator().manual_seed(0)))[:5]:
        trainer.train_step(chunk)
    assert trainer.step.graph is not None
    trainer.save_checkpoint()
    trainer._resume()
    assert trainer.step.graph is None and trainer.step.warmup_left == trainer.step.warmup
    chunks = list(exp.data.shuffled(trainer.examples, 8, torch.Generator().manual_seed(1)))[:5]
    for chunk in chunks:
        trainer.train_step(chunk)
    assert trainer.step.graph is not None and trainer.step.static_batch is not None


def test_a_compiled_graphed_run_whose_first_batch_runs_eager_still_catches_a_compiler_failure(
        tmp_path, monkeypatch, capsys):
    """With a graph, the model is compiled for the captured shape alone: a first batch of another shape
    runs eagerly, and compiling (which may fail, as on the H200) happens at the first full batch, where a
    failure is still reported and training goes on eager."""
    import src.runtime as runtime

    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("InductorError: AssertionError (simulated)")

    emulate_cuda_graphs_on_the_cpu(monkeypatch)
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", failing_backend)
    exp = experiment(tmp_path, "dataset.TIGER.trainer.cuda_graphs=true", "dataset.TIGER.trainer.compile=true")
    trainer = exp.trainer
    try:
        chunk = next(iter(exp.data.shuffled(trainer.examples, trainer.batch_size, torch.Generator().manual_seed(0))))
        trainer.train_step(chunk.subset(slice(0, trainer.batch_size - 1)))  # another shape: eager, no compiling
        assert trainer.compile_pending and trainer.compile_error is None
        parts = trainer.train_step(chunk)
    finally:
        runtime.uncompile_model(exp.model)
        torch._dynamo.reset()
    assert torch.isfinite(parts).all() and not trainer.compiled
    assert trainer.compile_error.startswith("BackendCompilerFailed")
    assert "torch.compile failed" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["base", "setting"])
def test_a_training_step_never_makes_the_host_wait_for_the_device(tmp_path, method):
    """Once its batch is laid out (from host-side lengths), a training step (forward, backward, clipping,
    AdamW) runs without a host synchronisation: a GPU is never idle waiting for the host, and the step can
    be captured as a CUDA graph."""
    from conftest import host_waits

    exp = experiment(tmp_path, f"method={method}")
    trainer = exp.trainer
    chunk = next(iter(exp.data.shuffled(trainer.examples, trainer.batch_size, torch.Generator().manual_seed(0))))
    batch = trainer.data.build(trainer._plan(chunk))
    assert batch.layout is not None  # packed, the compact T5's default
    for group in trainer.optimizer.param_groups:  # fused, as on a GPU (the CPU's loop reads each step count)
        group["fused"] = True
    waits, parts = host_waits(lambda: trainer._step(batch, 1.0))
    assert not waits, waits
    assert parts.shape == (4,) and torch.isfinite(parts).all()


def benchmark_script():
    """scripts/benchmark.py as a module (it is a script, not a package)."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("benchmark", REPO / "scripts" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    return benchmark


def test_the_benchmark_reports_a_graphs_replays_and_the_positions_its_batches_compute_on(tmp_path, monkeypatch):
    """`scripts/benchmark.py`'s figures of a graphed step (graph emulated on the CPU): the encoder positions
    of a batch in fixed-width groups are Σ n_g × (W_g × tokens per item + user token), fewer than padded."""
    benchmark = benchmark_script()
    emulate_cuda_graphs_on_the_cpu(monkeypatch)
    exp = experiment(tmp_path, "dataset.TIGER.trainer.cuda_graphs=true")
    trainer, vocab = exp.trainer, exp.data.vocab
    for chunk in list(exp.data.shuffled(trainer.examples, trainer.batch_size, torch.Generator().manual_seed(1)))[:6]:
        trainer.train_step(chunk)
    results = {}
    benchmark.graph_counts(trainer, "liger_graphed", results)
    widths, sizes = trainer.group_widths, trainer.step.static_batch.layout.group_sizes
    assert results["train_group_widths_liger_graphed"] == widths
    assert results["train_encoder_tokens_liger_graphed"] == sum(
        n * (w * vocab.tokens_per_item + vocab.has_user_tokens) for n, w in zip(sizes, widths))
    assert results["train_encoder_tokens_liger_graphed"] < trainer.step.static_batch.tokens.numel()
    assert results["train_graph_replays_liger_graphed"] == trainer.step.replays > 0
    ran = trainer.how_steps_ran()
    assert {k: v for k, v in ran.items() if k in ("train/compiled", "train/graph_replays", "train/graph_eager_steps",
                                                  "train/step_mode")} == {
        "train/compiled": 0, "train/graph_replays": trainer.step.replays,
        "train/graph_eager_steps": trainer.step.eager_steps, "train/step_mode": "cuda_graphs"}
    assert (ran["train/steps_planned"], ran["train/warmup_steps"], ran["train/scheduler"]) == (
        trainer.cfg.steps, trainer.cfg.warmup_steps, "cosine")
    assert results["train_graph_eager_steps_liger_graphed"] == trainer.step.eager_steps >= 3  # the warm-up


def test_the_benchmark_profiles_a_graphed_step_unrolled_too(tmp_path, monkeypatch):
    """A graph's replay shows its kernels but no operator that launched them: the benchmark also profiles
    the captured step run eagerly on the captured batch (`profile_train_*_graphed_unrolled`), where a GPU
    profile's `ops` trace the kernels to their operators and shapes; and it times the host's part of a
    graphed step (`train_host_ms_*`)."""
    import argparse

    benchmark = benchmark_script()
    emulate_cuda_graphs_on_the_cpu(monkeypatch)
    exp = experiment(tmp_path, "dataset.TIGER.trainer.cuda_graphs=true")
    args = argparse.Namespace(steps=2, warmup=1, out=str(tmp_path / "bench.json"), baseline_rss_mb=None,
                              start_at=None)
    results = {}
    benchmark.bench_training({"graphed": exp}, "liger", exp.trainer.batch_size, args, torch.device("cpu"), results)
    assert results["train_graph_replays_liger_graphed"] > 0
    assert results["train_host_ms_liger_graphed"] > 0  # the host's part of a step (here the emulated replay's too)
    unrolled = results["profile_train_liger_graphed_unrolled"]
    assert "error" not in unrolled and unrolled["launches"] > 100
    assert any(entry["name"] == "aten::mm" for entry in unrolled["top"])  # operators, not one graph launch


def test_the_benchmark_times_the_packed_step_compiled_with_each_scope(tmp_path, monkeypatch):
    """`--compile-scopes`: the compact step compiled (whatever the device: `compile=true`, no graph), block
    by block or whole, timed under its own name, with whether it ran compiled and its warm-up (the compile
    time); timed here block by block, with a backend that counts the graphs it compiles."""
    import argparse

    import src.runtime as runtime

    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    benchmark = benchmark_script()
    args = argparse.Namespace(tiny=True, no_compile=True, eval_batch_size=None, data=None, raw=str(tmp_path))
    for scope in ("blocks", "model"):
        trainer_cfg = benchmark.config(args, tmp_path, "setting", f"compiled_{scope}").model.trainer
        assert (trainer_cfg.compile, trainer_cfg.compile_scope, trainer_cfg.cuda_graphs) == (True, scope, False)
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", counting_backend)
    torch._dynamo.reset()
    exp = experiment(tmp_path, "dataset.TIGER.trainer.compile=true")
    args = argparse.Namespace(steps=2, warmup=1, out=str(tmp_path / "bench.json"), baseline_rss_mb=None,
                              start_at=None)
    results = {}
    try:
        benchmark.bench_training({"compiled_blocks": exp}, "liger", exp.trainer.batch_size, args,
                                 torch.device("cpu"), results)
    finally:
        runtime.uncompile_model(exp.model)
        torch._dynamo.reset()
    # the blocks compiled, though the benchmark counted the step's FLOPs through them first (under a
    # dispatch mode, after which dynamo would never compile them)
    assert results["train_compiled_liger_compiled_blocks"] is True and len(graphs) > 0
    assert "train_compile_error_liger_compiled_blocks" not in results
    assert results["train_ms_liger_compiled_blocks"] > 0 and results["train_warmup_s_liger_compiled_blocks"] > 0
    assert math.isfinite(results["loss_liger_compiled_blocks"])


def test_the_benchmarks_gpu_profile_traces_kernels_to_the_operators_that_launched_them():
    """A GPU profile's `ops`: aten operators by name and input shapes, ranked by their own kernels' time,
    with calls and kernels counted; operators that launched nothing (and a graph's replay, whose kernels
    no operator launches) are left out."""
    from types import SimpleNamespace as Event

    from torch.autograd.profiler_util import Kernel

    def event(name, shapes, *durations):
        return Event(name=name, input_shapes=shapes, kernels=[Kernel("k", 0, d) for d in durations])

    events = [event("aten::mm", [[4, 8], [8, 2]], 30.0), event("aten::mm", [[4, 8], [8, 2]], 50.0),
              event("aten::mm", [[9, 9], [9, 9]], 40.0), event("aten::copy_", [[4], [4]], 5.0, 6.0),
              event("aten::view", [[4]]), event("cudaGraphLaunch", [], 500.0)]
    ops = benchmark_script().kernels_by_operator(events, top=2)
    assert ops == [{"name": "aten::mm", "shapes": "[[4, 8], [8, 2]]", "count": 2, "launches": 2, "ms": 0.08},
                   {"name": "aten::mm", "shapes": "[[9, 9], [9, 9]]", "count": 1, "launches": 1, "ms": 0.04}]
    assert benchmark_script().kernels_by_operator(events, top=5)[-1] == {
        "name": "aten::copy_", "shapes": "[[4], [4]]", "count": 1, "launches": 2, "ms": 0.011}


def test_the_benchmark_times_the_rqvae_graph_in_each_precision_under_the_keys_the_gpu_plan_reads(tmp_path,
                                                                                                 monkeypatch):
    """The graphed RQ-VAE epoch timed in full float32 and with TF32 products (the graph emulated: its epochs
    run eager on the CPU), each under the precision it names, the process's restored after; the GPU
    call's RQ-VAE plan (`planning.rqvae_plan`) takes the graphed figure."""
    import functools
    import types

    import numpy as np

    from ID_generation.rqvae.training import train_epoch
    from src.config import RQVAEConfig

    benchmark = benchmark_script()
    from planning import rqvae_plan  # on the path the benchmark put it on

    precisions = []

    class EagerEpochs:  # GraphedEpochs' epochs, without the graph a CPU cannot capture
        def __init__(self, model, optimizer, x, batch_size, beta):
            self.epoch = functools.partial(train_epoch, model, optimizer, x, batch_size, beta, graph_safe=True)

        def __call__(self):
            precisions.append(torch.get_float32_matmul_precision())
            return self.epoch()

    monkeypatch.setattr(benchmark, "GraphedEpochs", EagerEpochs)
    rqvae = RQVAEConfig(optimizer="AdamW", weight_decay=0.1, batch_size=32, epochs=1, lr=1e-3, beta=0.25,
                        input_dim=None, hidden_dim=(16,), latent_dim=8, num_layers=2, dropout=0.1, code_book_size=8,
                        val_ratio=0.1,
                        eval_every=1, cuda_graphs=True, compile=False, float32_matmul_precision="highest",
                        cache_dir=tmp_path, codes_file=None)
    cfg, split = types.SimpleNamespace(rqvae=rqvae), types.SimpleNamespace(seen_items=np.arange(1, 81))
    results = {}
    for precision in ("highest", "high"):
        benchmark.bench_rqvae(cfg, torch.randn(90, 24), split, torch.device("cpu"), results, 2,
                              (True, False, precision))
    assert torch.get_float32_matmul_precision() == "highest"
    assert precisions == ["highest"] * 7 + ["high"] * 7  # 4 warm-up epochs, 2 timed, 1 profiled
    for suffix in ("_graphed", "_graphed_tf32"):
        assert results[f"rqvae_s_per_epoch{suffix}"] > 0 and results[f"rqvae_warmup_s{suffix}"] > 0
        assert results[f"profile_rqvae{suffix}"]["launches"] > 0
    plan = rqvae_plan(results, epochs=8000)  # the GPU call's RQ-VAE: graphed, full float32, from the measured epoch
    assert plan["cuda_graphs"] and plan["estimate_measured"] and plan["float32_matmul_precision"] == "highest"
    assert plan["estimated_s"] == round(8000 * results["rqvae_s_per_epoch_graphed"], 1)


def test_the_benchmark_records_a_failed_capture_and_no_graphed_time(tmp_path, monkeypatch):
    """A graphed variant whose capture failed trains on eagerly: the benchmark records why, not its eager
    step time under the graph's name (which the GPU run's plan would read as the graph's speed)."""
    import argparse

    import src.cuda_graph as cuda_graph

    benchmark = benchmark_script()
    emulate_cuda_graphs_on_the_cpu(monkeypatch)

    def failing_capture(fn, optimizer):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(cuda_graph, "capture", failing_capture)
    exp = experiment(tmp_path, "dataset.TIGER.trainer.cuda_graphs=true")
    args = argparse.Namespace(steps=2, warmup=0, out=str(tmp_path / "bench.json"), baseline_rss_mb=None,
                              start_at=None)
    results = {}
    benchmark.bench_training({"graphed": exp}, "liger", exp.trainer.batch_size, args, torch.device("cpu"), results)
    assert results["train_graph_error_liger"] == "RuntimeError: operation not permitted when stream is capturing"
    assert "train_ms_liger_graphed" not in results and "train_speedup_liger_graphed" not in results
    ran = exp.trainer.how_steps_ran()  # as the run's metrics say it
    assert ran["train/graph_replays"] == 0 and ran["train/graph_eager_steps"] > 0 and ran["train/compiled"] == 0
    assert ran["train/capture_error"] == results["train_graph_error_liger"]


def test_the_benchmark_records_a_failed_evaluation_mode_and_times_the_others(tmp_path, monkeypatch):
    """An evaluation that fails at one size or mode (an H200's attention failed at 4,096 inputs × 100
    beams) is recorded with its error; the other modes and sizes are still timed."""
    import argparse

    from src.retrieval import GENRET

    benchmark = benchmark_script()
    exp = experiment(tmp_path)
    evaluate = exp.evaluator.evaluate_examples

    def failing_beam100(examples, modes):
        if GENRET in modes and exp.evaluator.settings.num_beams == 100:
            raise RuntimeError("mha_graph.execute failed\nmore lines")
        return evaluate(examples, modes)

    monkeypatch.setattr(exp.evaluator, "evaluate_examples", failing_beam100)
    args = argparse.Namespace(eval_examples=16, eval_batch_size=[8, 4])
    results = {}
    benchmark.bench_evaluation({"compact": exp}, "liger", args, torch.device("cpu"), results)
    assert results["liger_eval_beam100_error"] == results["liger_eval_beam100_error_batch4"] == (
        "RuntimeError: mha_graph.execute failed")
    assert "liger_eval_beam100_seqs_per_s" not in results
    for suffix in ("", "_batch4"):
        assert all(results[f"liger_eval_{label}_seqs_per_s{suffix}"] > 0 for label in ("beam10", "dense", "uni"))
