"""The training step captured as one CUDA graph (`dataset.TIGER.trainer.cuda_graphs`), and the
helpers the RQ-VAE's epochs use for the same (`dataset.RQ-VAE.cuda_graphs`, ID_generation/rqvae/training.py).

A training step of this small model is thousands of short kernels; launched one by one from Python it
waits on the host (measured on an H200: about 110–130 ms a step eager, for well under 1 ms of
arithmetic). Captured once as a CUDA graph, forward, backward, gradient clipping and the fused AdamW
update replay as one launch. A graph replays fixed shapes at fixed addresses, so:

- batches have sizes fixed by the config: padded to one history length (`SequenceData.batch(...,
  history_len=...)`), or in length groups of fixed widths (`group_widths`: sorted by history length,
  each group padded to a width that held every batch of the run's first epochs);
- the graph also builds the batch on the device (gathering histories and tokens, laying out the groups)
  from the examples' (2, B) index alone (`SequenceData.fixed_batch`): a replay copies that index in and
  launches, where the host would otherwise build each batch (on Beauty 72 operator calls) and copy its
  18 tensors into the captured ones;
- the learning rate the scheduler sets on the host is copied into a device tensor the captured AdamW
  reads (the optimiser's `capturable` mode), so the schedule goes on as in an eager run;
- a batch of another shape (the epoch's last, smaller one; a batch whose histories exceed the group
  widths, laid out packed instead) runs the same step eagerly, also where the
  model is compiled (`trainer.compile=true`: compiled for the captured shape alone, so inductor's
  fused kernels replay; the other shape would otherwise cost a second compilation).

The first `warmup` full batches run eagerly on a side stream (real steps: they also create AdamW's
state), then the next one is captured and replayed. The results equal the eager step's up to dropout:
the graph draws its dropout masks from the same generator, but need not draw the eager step's masks.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from src.data import Batch, BatchPlan, SequenceData
from src.errors import first_line
from src.runtime import copy_async, to_device_async

StepFn = Callable[[Batch, float], torch.Tensor]


def eager_on_side_stream(fn: Callable[[], torch.Tensor], device: torch.device) -> torch.Tensor:
    """fn() run eagerly on a side stream, as CUDA graphs want the iterations before their capture."""
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        out = fn()
    current.wait_stream(side)
    return out


def capture(fn: Callable[[], torch.Tensor],
            optimizer: torch.optim.Optimizer) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """(graph, output) of fn() recorded as one CUDA graph: nothing runs until `graph.replay()`, which
    rewrites `output` in place. The optimiser fn steps is made capturable (its step count and
    learning rate read on the device) and its gradients set to None, so that the graph allocates
    the gradients it writes.

    What `torch.cuda.graph` does (synchronise, free the cache, record on a side stream into a private
    memory pool), less what its failure leaves behind: its exit ends the capture before it restores the
    stream, so a capture that fails leaves the process on the capture stream, and the allocator still
    routing to the graph's pool (every later `empty_cache`, as the next capture's, then fails an
    internal assertion). Here a failure restores the stream, ends the capture, frees the pool and
    raises fn's own error (a sync op's, say), not the capture's generic one."""
    for group in optimizer.param_groups:  # here, not earlier: resuming loads the saved groups' settings
        group["capturable"] = True
    optimizer.zero_grad(set_to_none=True)
    graph, pool = torch.cuda.CUDAGraph(), torch.cuda.graph_pool_handle()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    with torch.cuda.stream(torch.cuda.Stream()):  # the previous stream comes back however this ends
        graph.capture_begin(pool=pool)
        try:
            out = fn()
        except BaseException:
            with contextlib.suppress(Exception):  # the recording is invalid; this ends the stream's capture
                graph.capture_end()
            release_failed_pool(pool)
            raise
        try:
            graph.capture_end()
        except BaseException:
            release_failed_pool(pool)
            raise
    return graph, out


def release_failed_pool(pool) -> None:
    """Stop routing allocations to the memory pool of a capture that failed, and free it, unless the
    capture got as far as doing the first itself (then the graph object frees the pool: freeing it here
    too would fail an assertion in its destructor). PyTorch's allocator calls, as its `use_mem_pool`
    makes them."""
    device = torch.cuda.current_device()
    try:
        torch._C._cuda_endAllocateToPool(device, pool)
    except (RuntimeError, AttributeError):  # not routing to it any more (capture_end ended that), or no such call
        return
    with contextlib.suppress(RuntimeError):  # best effort: the capture's own error is what gets raised
        torch._C._cuda_releasePool(device, pool)


class GraphedStep:
    """`step(plan, weight) -> (k,) tensor`: the training step `step(batch, weight)` on the batch of `plan`,
    replayed from one CUDA graph for plans of `batch_size` examples whose sizes the config fixes
    (`BatchPlan.shape`), eager (the batch built by `data`) for any other plan, and for every plan after a
    failed capture (`capture_error`). The graph also builds the batch, from the plan's (2, B) index
    alone (`SequenceData.fixed_batch`): a replay copies that index in, sets the learning rate and
    launches the graph. `optimizer` is the AdamW that `step` updates (made capturable when the graph is captured).
    Counts: `replays`, `eager_steps`."""

    def __init__(self, step: StepFn, data: SequenceData, optimizer: torch.optim.Optimizer, device: torch.device,
                 batch_size: int, warmup: int = 3):
        if device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA device, got {device}")
        self.step, self.data, self.optimizer, self.device, self.batch_size = step, data, optimizer, device, batch_size
        self.warmup = self.warmup_left = warmup
        self.lrs: list[torch.Tensor] = []  # the learning rate of each parameter group, read by the graph
        self.graph: torch.cuda.CUDAGraph | None = None
        self.signature: tuple | None = None
        self.static_index: torch.Tensor | None = None  # (2, B) the captured batch's index, rewritten before a replay
        self.static_batch: Batch | None = None  # the batch the graph builds from it (its tensors rewritten by replays)
        self.static_out: torch.Tensor | None = None
        self.held: list[torch.Tensor] = []  # the captured gradients: alive while the graph writes them
        self.replays = self.eager_steps = 0
        self.capture_error: str | None = None  # why capturing failed, where it did (training went on eager)

    def __call__(self, plan: BatchPlan, weight: float) -> torch.Tensor:
        signature = (plan.shape, weight)
        if self.graph is not None and signature == self.signature:
            return self._replay(plan)
        if self.graph is None and self.capture_error is None and self.fixed_shape(plan):
            if self.warmup_left > 0:
                self.warmup_left -= 1
                return self._eager_on_side_stream(self.data.build(plan), weight)
            try:
                return self._capture(plan, weight, signature)
            except Exception as exc:  # noqa: BLE001  any capture failure: the step still runs, eagerly
                self._give_up_capturing(exc)
        self.eager_steps += 1
        batch = self.data.build(plan)
        if self.capture_error is not None and self.fixed_shape(plan):
            return self.step(batch, weight)  # the shape a compiled model was compiled for: its kernels, eagerly
        with torch.compiler.set_stance("force_eager"):  # a compiled model runs its forward as written
            return self.step(batch, weight)

    def fixed_shape(self, plan: BatchPlan) -> bool:
        """Whether the plan's batch has the shape the graph is captured for (a compiled model is compiled
        for it alone): `batch_size` examples, sizes fixed by the config."""
        return plan.shape is not None and plan.shape.size == self.batch_size

    def reset(self) -> None:
        """Forget the graph, so that the next full batches warm up and capture anew: after the optimiser's
        state is replaced (a checkpoint loaded), a graph would go on updating the old state's tensors."""
        self.graph = self.signature = self.static_index = self.static_batch = self.static_out = None
        self.held, self.lrs, self.warmup_left = [], [], self.warmup

    def _give_up_capturing(self, exc: Exception) -> None:
        """After a failed capture (nothing of the step ran: recording runs nothing), every step runs
        eagerly; the reason is kept in `capture_error` and printed."""
        self.capture_error = first_line(exc)
        self.graph = self.static_index = self.static_batch = None
        for group in self.optimizer.param_groups:
            group["capturable"] = False
        print(f"warning: capturing the training step as a CUDA graph failed ({self.capture_error}); training "
              "goes on eager. Set dataset.TIGER.trainer.cuda_graphs=false to skip capturing.", flush=True)

    def _eager_on_side_stream(self, batch: Batch, weight: float) -> torch.Tensor:
        """A real eager step, on a side stream as CUDA graphs want their warm-up iterations."""
        self.eager_steps += 1
        return eager_on_side_stream(lambda: self.step(batch, weight), self.device)

    def _capture(self, plan: BatchPlan, weight: float, signature: tuple) -> torch.Tensor:
        """Capture building the plan's batch from its index and the step on it (recording runs nothing),
        then replay it for this plan."""
        self.static_index = to_device_async(plan.index(), self.device)
        if plan.shape.group_widths is not None:
            self.data.fixed_parts(plan.shape)  # built here if need be: copying from the host cannot be captured

        def built_and_stepped() -> torch.Tensor:
            self.static_batch = self.data.fixed_batch(self.static_index, plan.shape)
            return self.step(self.static_batch, weight)

        groups = self.optimizer.param_groups
        host_lrs = [group["lr"] for group in groups]
        self.lrs = [torch.tensor(float(lr), device=self.device) for lr in host_lrs]
        try:
            for group, lr in zip(groups, self.lrs):
                group["lr"] = lr  # captured: the update reads the learning rate from this tensor
            graph, out = capture(built_and_stepped, self.optimizer)
        finally:
            for group, lr in zip(groups, host_lrs):
                group["lr"] = lr  # the scheduler, checkpoints and eager steps keep a number
        self.graph, self.signature, self.static_out = graph, signature, out
        self.held = [p.grad for group in groups for p in group["params"] if p.grad is not None]
        graph.replay()
        self.replays += 1
        return out.clone()

    def _set_lrs(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.lrs):
            lr.fill_(float(group["lr"]))

    def _replay(self, plan: BatchPlan) -> torch.Tensor:
        copy_async(self.static_index, plan.index())
        self._set_lrs()
        self.graph.replay()
        self.replays += 1
        return self.static_out.clone()
