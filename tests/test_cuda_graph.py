"""The CUDA-graph step's routing, on the CPU: which batches warm up eagerly, which one is captured,
which replay it and which run eagerly. Capturing and replaying need a GPU: the device smoke check
(`scripts/device/smoke.py`, check `cuda_graph`) compares replayed steps with eager ones there."""
from __future__ import annotations

import pytest
import torch
from torch.utils._pytree import tree_leaves

from conftest import RecordedOperations
from src.cuda_graph import GraphedStep
from src.data import SequenceData
from test_model import tiny


class Recorded(GraphedStep):
    """GraphedStep whose capture, replay and side-stream warm-up only record what they were given (and
    run the step eagerly on the batch)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, int]] = []

    def _eager_on_side_stream(self, batch, weight):
        self.calls.append(("warm-up", len(batch)))
        return self.step(batch, weight)

    def _capture(self, plan, weight, signature):
        self.calls.append(("capture", len(plan)))
        self.graph, self.signature, self.static_index = object(), signature, plan.index()
        self.static_batch = self.data.fixed_batch(self.static_index, plan.shape)
        return self.step(self.static_batch, weight)

    def _replay(self, plan):
        self.calls.append(("replay", len(plan)))
        return self.step(self.data.build(plan), 1.0)


def recorded(data: SequenceData, step, model, warmup: int = 1) -> Recorded:
    return Recorded(step, data, torch.optim.AdamW(model.parameters()), torch.device("cuda"), batch_size=4,
                    warmup=warmup)


def plans(data: SequenceData, sizes: list[int], history_len: int):
    examples = data.train_examples()
    return [data.plan(examples.subset(slice(0, n)), 0, history_len) for n in sizes]


def test_warm_up_then_one_capture_then_replays_and_other_shapes_eager():
    model, data, _, _ = tiny()
    history_len = data.train_examples().longest_history
    steps = []
    graphed = recorded(data, lambda batch, weight: steps.append(len(batch)) or torch.zeros(4), model, warmup=2)
    sizes = [3, 4, 4, 4, 4, 3, 4]
    for plan in plans(data, sizes, history_len):
        graphed(plan, 1.0)
    assert graphed.calls == [("warm-up", 4), ("warm-up", 4), ("capture", 4), ("replay", 4), ("replay", 4)]
    assert steps == sizes  # every batch trained once: the smaller ones eagerly
    assert graphed.eager_steps == 2  # the smaller ones (the recorded warm-up does not count here)


def test_a_fixed_shape_covers_every_size_and_the_graph_the_loss_weight_too():
    """A plan's shape fixes every size of its batch: equal shapes build batches of equal shapes, and a
    graph replays only for its shape and its loss weight."""
    model, data, _, _ = tiny()
    examples = data.train_examples()
    history_len = examples.longest_history
    a, b, c = plans(data, [4, 4, 3], history_len)
    assert a.shape == b.shape != c.shape and a.shape is not None
    assert [t.shape for t in vars(data.build(a)).values() if isinstance(t, torch.Tensor)] == \
        [t.shape for t in vars(data.build(b)).values() if isinstance(t, torch.Tensor)]
    assert data.plan(examples.subset(slice(0, 4)), 0, history_len + 1).shape != a.shape
    assert data.plan(examples.subset(slice(0, 4))).shape is None  # trimmed to its longest history
    graphed = recorded(data, lambda batch, weight: torch.zeros(4), model, warmup=0)
    for plan, weight in [(a, 1.0), (b, 1.0), (b, 0.5)]:
        graphed(plan, weight)
    assert graphed.calls == [("capture", 4), ("replay", 4)] and graphed.eager_steps == 1


def test_a_graph_needs_a_gpu():
    model, data, _, _ = tiny()
    with pytest.raises(ValueError, match="needs a CUDA device"):
        GraphedStep(lambda batch, weight: torch.zeros(4), data, torch.optim.AdamW(model.parameters()),
                    torch.device("cpu"), batch_size=4)


def fixed_width_plans(data: SequenceData, starts: list[int], widths: list[int], size: int = 4):
    examples = data.train_examples()
    return [data.plan(examples.subset(slice(a, a + size)), len(widths), examples.longest_history, widths)
            for a in starts]


def test_fixed_width_batches_are_captured_and_packed_ones_of_other_sizes_run_eagerly():
    """Fixed-width batches of other histories share one shape and replay one graph; a packed batch,
    whose sizes follow its histories, is never captured (even as the first full batch) and runs eagerly."""
    model, data, _, _ = tiny()
    examples = data.train_examples()
    widths = [examples.longest_history, examples.longest_history]
    first, second = fixed_width_plans(data, [0, 4], widths)
    assert first.shape == second.shape is not None
    packed = data.plan(examples.subset(slice(0, 4)), 2)
    assert packed.shape is None
    steps = []
    graphed = recorded(data, lambda batch, weight: steps.append(len(batch)) or torch.zeros(4), model)
    for plan in [packed, first, second, packed, first]:
        graphed(plan, 1.0)
    assert graphed.calls == [("warm-up", 4), ("capture", 4), ("replay", 4)]
    assert graphed.eager_steps == 2 and len(steps) == 5
    assert graphed.static_batch.layout.fixed_width


def test_a_replay_copies_the_plans_index_in_and_launches_the_graph_and_nothing_else():
    """The graph builds the batch from the captured index: a replay copies the next plan's index into it,
    sets the learning rates and launches: the host runs a handful of operations, where building the
    batch outside the graph takes ten times as many."""
    model, data, _, _ = tiny()
    examples = data.train_examples()
    widths = examples.subset(slice(0, 8)).group_longest(2)
    first, second = fixed_width_plans(data, [0, 4], [max(widths)] * 2)
    assert not torch.equal(first.index(), second.index())  # the copy has something to show
    optimizer = torch.optim.AdamW(model.parameters())
    graphed = GraphedStep(lambda batch, weight: torch.zeros(4), data, optimizer, torch.device("cuda"), batch_size=4)
    replayed = []
    graphed.graph = type("Graph", (), {"replay": lambda self: replayed.append(True)})()
    graphed.static_index, graphed.static_out = first.index(), torch.zeros(4)
    graphed.lrs = [torch.zeros(()) for _ in optimizer.param_groups]
    graphed.signature = (second.shape, 1.0)
    with RecordedOperations() as replay:
        graphed(second, 1.0)
    assert torch.equal(graphed.static_index, second.index())
    assert replayed == [True] and graphed.replays == 1
    assert sorted(replay.names) == sorted(["stack", "copy_", "clone", *["fill_"] * len(optimizer.param_groups)])
    data.build(first)  # the parts its shape alone fixes are built once
    with RecordedOperations() as building:
        data.build(second)
    assert len(building.names) > 10 * len(replay.names), building.names


def test_a_failed_capture_leaves_training_eager_with_a_warning(capsys):
    class FailingCapture(Recorded):
        def _capture(self, plan, weight, signature):
            self.optimizer.param_groups[0]["capturable"] = True  # as a capture sets it before recording
            raise RuntimeError("operation not permitted when stream is capturing")

    model, data, _, _ = tiny()
    history_len = data.train_examples().longest_history
    steps = []
    graphed = FailingCapture(lambda batch, weight: steps.append(len(batch)) or torch.zeros(4), data,
                             torch.optim.AdamW(model.parameters()), torch.device("cuda"), batch_size=4, warmup=1)
    for plan in plans(data, [4, 4, 4, 4], history_len):
        graphed(plan, 1.0)
    assert graphed.calls == [("warm-up", 4)]  # one capture tried, then never again
    assert steps == [4, 4, 4, 4] and graphed.eager_steps == 3 and graphed.graph is None
    assert graphed.capture_error == "RuntimeError: operation not permitted when stream is capturing"
    assert not graphed.optimizer.param_groups[0]["capturable"]
    assert "capturing the training step as a CUDA graph failed" in capsys.readouterr().out


@pytest.mark.parametrize("scope", ["model", "blocks"])
@pytest.mark.parametrize("layout", ["padded", "fixed_width"])
def test_a_compiled_graphed_step_compiles_once_for_its_shape_and_runs_other_shapes_eager(monkeypatch, layout, scope):
    """`trainer.compile=true` with `cuda_graphs`: compiled without dynamic shapes (the whole model, or
    block by block), the warm-up compiles the forward for the full batch (padded, or in fixed-width
    length groups), the capture reuses that compilation, and the smaller batch runs eagerly
    (`force_eager`) instead of compiling a second time; every batch's loss is its eager loss."""
    import src.runtime as runtime

    compiled_graphs = []

    def counting_backend(graph_module, example_inputs):
        compiled_graphs.append([tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)])
        return graph_module.forward

    model, data, _, _ = tiny()
    history_len = data.train_examples().longest_history
    sizes = [4, 4, 4, 3, 4]
    if layout == "padded":
        inputs = plans(data, sizes, history_len)
    else:
        examples = data.train_examples()
        inputs = [data.plan(examples.subset(slice(0, n)), 2, history_len, [history_len] * 2) for n in sizes]
    with torch.no_grad():
        eager_losses = [float(model(data.build(plan)).loss) for plan in inputs]
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", counting_backend)
    torch._dynamo.reset()
    runtime.compile_model(model, dynamic=False, scope=scope)
    try:
        losses, compiled_after = [], []
        graphed = recorded(data, lambda batch, weight: losses.append(model(batch).loss.item()) or torch.zeros(4),
                           model)
        for plan in inputs:
            graphed(plan, 1.0)
            compiled_after.append(len(compiled_graphs))
    finally:
        runtime.uncompile_model(model)
        torch._dynamo.reset()
    assert graphed.calls == [("warm-up", 4), ("capture", 4), ("replay", 4), ("replay", 4)]
    # the full batch's shape alone, at the warm-up: no recompilation for the smaller batch. Block by block,
    # one graph for each kind of block and shape: the encoder's self-attention and feed-forward, the
    # decoder's self-, cross-attention and feed-forward, LIGER's text projection of the history's items
    # and of every item
    assert compiled_after == [1 if scope == "model" else 7] * len(sizes)
    assert all(isinstance(d, int) for graph in compiled_graphs for shape in graph for d in shape)  # static sizes
    assert losses == pytest.approx(eager_losses, rel=1e-5)


class FakeCuda:
    """The CUDA calls `capture` makes, recorded on the CPU: streams entered and left, the capture begun
    and ended (ending can fail, before or after the allocator stops routing to the graph's pool, as
    torch versions order it), and the allocator's pool calls."""

    def __init__(self, monkeypatch, end_fails: str | None = None):
        self.calls: list[str] = []
        self.routing = False  # the allocator routes the capture stream's allocations to the pool
        fake = self

        class Graph:
            def capture_begin(self, pool=None):
                fake.calls.append("capture_begin")
                fake.routing = True

            def capture_end(self):
                fake.calls.append("capture_end")
                if end_fails == "before_routing_ends":
                    raise RuntimeError("CUDA error: operation failed due to a previous error during capture")
                fake.routing = False
                if end_fails == "after_routing_ends":
                    raise RuntimeError("CUDA error: instantiating the graph failed")

        class Stream:
            def __enter__(self):
                fake.calls.append("stream_enter")

            def __exit__(self, *args):
                fake.calls.append("stream_exit")

        def end_allocate_to_pool(device, pool):
            if not fake.routing:
                raise RuntimeError("endAllocatePool: not currently recording to mempool_id")
            fake.calls.append("end_allocate_to_pool")
            fake.routing = False

        for name, value in {"CUDAGraph": Graph, "graph_pool_handle": lambda: (0, 1), "synchronize": lambda: None,
                            "empty_cache": lambda: None, "Stream": lambda: None, "stream": lambda s: Stream(),
                            "current_device": lambda: 0}.items():
            monkeypatch.setattr(torch.cuda, name, value)
        monkeypatch.setattr(torch._C, "_cuda_endAllocateToPool", end_allocate_to_pool, raising=False)
        monkeypatch.setattr(torch._C, "_cuda_releasePool", lambda device, pool: fake.calls.append("release_pool"),
                            raising=False)


def sgd() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)


def test_a_capture_that_succeeds_leaves_its_pool_to_the_graph(monkeypatch):
    from src.cuda_graph import capture

    fake = FakeCuda(monkeypatch)
    optimizer = sgd()
    _, out = capture(lambda: torch.ones(3), optimizer)
    assert torch.equal(out, torch.ones(3)) and optimizer.param_groups[0]["capturable"]
    assert fake.calls == ["stream_enter", "capture_begin", "capture_end", "stream_exit"]


def test_a_step_that_fails_during_capture_leaves_the_stream_the_allocator_and_its_own_error(monkeypatch):
    """A sync op inside the captured step: its own error comes out, the capture is ended, the pool
    freed and the stream restored, so that the process can train on (and capture again)."""
    from src.cuda_graph import capture

    fake = FakeCuda(monkeypatch, end_fails="before_routing_ends")

    def step():
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    with pytest.raises(RuntimeError, match="operation not permitted when stream is capturing"):
        capture(step, sgd())
    assert fake.calls == ["stream_enter", "capture_begin", "capture_end", "end_allocate_to_pool", "release_pool",
                          "stream_exit"]
    assert not fake.routing


@pytest.mark.parametrize("end_fails", ["before_routing_ends", "after_routing_ends"])
def test_a_capture_whose_end_fails_frees_the_pool_only_where_the_graph_will_not(monkeypatch, end_fails):
    from src.cuda_graph import capture

    fake = FakeCuda(monkeypatch, end_fails=end_fails)
    with pytest.raises(RuntimeError, match="CUDA error"):
        capture(lambda: torch.ones(3), sgd())
    # past the allocator's end, the graph object owns the pool (freeing it twice fails an assertion)
    freed = ["end_allocate_to_pool", "release_pool"] if end_fails == "before_routing_ends" else []
    assert fake.calls == ["stream_enter", "capture_begin", "capture_end", *freed, "stream_exit"]
    assert not fake.routing


def test_after_a_failed_capture_full_batches_run_the_compiled_kernels_and_others_run_as_written(monkeypatch):
    """A compiled model is compiled for the captured shape alone: after a failed capture the full batches
    of that shape still run it compiled; another shape runs eagerly (`force_eager`), as before."""
    stances = []

    class Stance:
        def __init__(self, stance):
            self.stance = stance

        def __enter__(self):
            stances.append(self.stance)

        def __exit__(self, *args):
            pass

    monkeypatch.setattr(torch.compiler, "set_stance", Stance)
    model, data, _, _ = tiny()
    history_len = data.train_examples().longest_history
    graphed = recorded(data, lambda batch, weight: torch.zeros(4), model)
    graphed.capture_error = "RuntimeError: failed"
    for plan in plans(data, [4, 3, 4], history_len):
        graphed(plan, 1.0)
    assert stances == ["force_eager"] and graphed.eager_steps == 3 and graphed.calls == []


def test_reset_forgets_the_graph_and_warms_up_again():
    """After a checkpoint replaces the optimiser's state, the next full batches warm up and capture anew."""
    model, data, _, _ = tiny()
    history_len = data.train_examples().longest_history
    graphed = recorded(data, lambda batch, weight: torch.zeros(4), model)
    for plan in plans(data, [4, 4, 4], history_len):
        graphed(plan, 1.0)
    graphed.reset()
    assert graphed.graph is None and graphed.static_batch is None and graphed.static_index is None
    assert graphed.warmup_left == 1
    for plan in plans(data, [4, 4], history_len):
        graphed(plan, 1.0)
    assert graphed.calls == [("warm-up", 4), ("capture", 4), ("replay", 4), ("warm-up", 4), ("capture", 4)]


def on_the_host(args, kwargs) -> bool:
    """Whether an operator's call takes a tensor on the CPU."""
    return any(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in tree_leaves((args, kwargs)))


@pytest.mark.parametrize("packing_groups", [3, 0])
@pytest.mark.parametrize("user_tokens", [0, 2000])
def test_a_fixed_shape_batch_is_built_from_its_index_by_device_operations_alone(packing_groups, user_tokens):
    """What a graph captures of the batch: on the meta device (shapes, no values), building it from its
    index must not touch a host tensor (a copy from the host cannot be captured) nor read a value back (a
    host wait fails a capture); and the meta batch has the shapes of the batch built on the CPU."""
    from src.vocabulary import Vocabulary

    _, data, vocab, split = tiny()
    vocab = Vocabulary(vocab.item_codes, vocab.level_sizes, user_tokens)
    cpu, meta = SequenceData(split, vocab, torch.device("cpu")), SequenceData(split, vocab, torch.device("meta"))
    examples = data.train_examples().subset(slice(0, 7))
    widths = examples.group_longest(packing_groups) if packing_groups else None
    plan = cpu.plan(examples, packing_groups, examples.longest_history + 1, widths)
    assert plan.shape is not None
    meta.fixed_parts(plan.shape) if widths else None  # built once, before any capture (it copies from the host)
    index = plan.index().to("meta")
    with RecordedOperations(keep=on_the_host) as host:
        built = meta.fixed_batch(index, plan.shape)
    assert host.names == []  # not even a copy to the device
    expected = cpu.build(plan)
    for name, value in vars(expected).items():
        if isinstance(value, torch.Tensor):
            assert getattr(built, name).device.type == "meta" and getattr(built, name).shape == value.shape, name
    assert (built.layout is None) == (expected.layout is None) == (packing_groups == 0)
    if widths:
        assert [g.span for g in built.layout.groups] == [g.span for g in expected.layout.groups]
        assert built.layout.last.shape == expected.layout.last.shape and built.layout.last.device.type == "meta"
