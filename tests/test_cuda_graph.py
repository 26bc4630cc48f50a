"""The CUDA-graph step's routing, on the CPU: which batches warm up eagerly, which one is captured,
which replay it and which run eagerly. Capturing and replaying need a GPU: the device smoke check
(`scripts/device/smoke.py`, check `cuda_graph`) compares replayed steps with eager ones there."""
from __future__ import annotations

import pytest
import torch

from src.cuda_graph import GraphedStep, batch_signature
from src.data import SequenceData
from test_model import tiny


class Recorded(GraphedStep):
    """GraphedStep whose capture, replay and side-stream warm-up only record what they were given."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, int]] = []

    def _eager_on_side_stream(self, batch, weight):
        self.calls.append(("warm-up", len(batch)))
        return self.step(batch, weight)

    def _capture(self, batch, weight, signature):
        self.calls.append(("capture", len(batch)))
        self.graph, self.signature, self.static_batch = object(), signature, batch
        return self.step(batch, weight)

    def _replay(self, batch):
        self.calls.append(("replay", len(batch)))
        return self.step(batch, 1.0)


def batches(data: SequenceData, sizes: list[int], history_len: int):
    examples = data.train_examples()
    return [data.batch(examples.subset(slice(0, n)), 0, history_len) for n in sizes]


def test_warm_up_then_one_capture_then_replays_and_other_shapes_eager():
    model, data, _, _ = tiny()
    history_len = data.train_examples().longest_history
    steps = []
    graphed = Recorded(lambda batch, weight: steps.append(len(batch)) or torch.zeros(4), torch.optim.AdamW(
        model.parameters()), torch.device("cuda"), batch_size=4, warmup=2)
    sizes = [3, 4, 4, 4, 4, 3, 4]
    for batch in batches(data, sizes, history_len):
        graphed(batch, 1.0)
    assert graphed.calls == [("warm-up", 4), ("warm-up", 4), ("capture", 4), ("replay", 4), ("replay", 4)]
    assert steps == sizes  # every batch trained once: the smaller ones eagerly
    assert graphed.eager_steps == 2  # the smaller ones (the recorded warm-up does not count here)


def test_a_signature_covers_every_shape_and_the_loss_weight():
    model, data, _, _ = tiny()
    history_len = data.train_examples().longest_history
    a, b, c = batches(data, [4, 4, 3], history_len)
    assert batch_signature(a, 1.0) == batch_signature(b, 1.0) != batch_signature(c, 1.0)
    assert batch_signature(a, 1.0) != batch_signature(a, 0.5)
    longer = data.batch(data.train_examples().subset(slice(0, 4)), 0, history_len + 1)
    assert batch_signature(longer, 1.0) != batch_signature(a, 1.0)


def test_a_graph_needs_a_gpu_and_padded_batches():
    model, data, _, _ = tiny()
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="needs a CUDA device"):
        GraphedStep(lambda batch, weight: torch.zeros(4), optimizer, torch.device("cpu"), batch_size=4)
    packed = data.batch(data.train_examples().subset(slice(0, 4)), 2)
    with pytest.raises(ValueError, match="padded batches"):
        GraphedStep(lambda batch, weight: torch.zeros(4), optimizer, torch.device("cuda"), batch_size=4)(packed, 1.0)


def test_a_compiled_graphed_step_compiles_once_for_the_padded_shape_and_runs_other_shapes_eager(monkeypatch):
    """`trainer.compile=true` with `cuda_graphs`: compiled without dynamic shapes, the warm-up compiles
    the forward for the full batch, the capture reuses that compilation, and the smaller batch runs
    eagerly (`force_eager`) instead of compiling a second time; every batch's loss is its eager loss."""
    import src.runtime as runtime

    compiled_graphs = []

    def counting_backend(graph_module, example_inputs):
        compiled_graphs.append([tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)])
        return graph_module.forward

    model, data, _, _ = tiny()
    history_len = data.train_examples().longest_history
    sizes = [4, 4, 4, 3, 4]
    with torch.no_grad():
        eager_losses = [float(model(batch).loss) for batch in batches(data, sizes, history_len)]
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", counting_backend)
    runtime.compile_model(model, dynamic=False)
    try:
        losses = []
        graphed = Recorded(lambda batch, weight: losses.append(model(batch).loss.item()) or torch.zeros(4),
                           torch.optim.AdamW(model.parameters()), torch.device("cuda"), batch_size=4, warmup=1)
        for batch in batches(data, sizes, history_len):
            graphed(batch, 1.0)
    finally:
        runtime.uncompile_model(model)
        torch._dynamo.reset()
    assert graphed.calls == [("warm-up", 4), ("capture", 4), ("replay", 4), ("replay", 4)]
    assert len(compiled_graphs) == 1  # the full batch's shape alone: no recompilation for the smaller one
    assert all(isinstance(d, int) for shapes in compiled_graphs[0] for d in shapes)  # static sizes
    assert losses == pytest.approx(eager_losses, rel=1e-5)
