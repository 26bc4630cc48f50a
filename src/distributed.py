"""Data-parallel processes: who this process is, how the processes wait for and sum with each other,
and which share of a batch or an evaluation set is this process's.

One process (`python run.py`) is the default and needs no process group. Under `torchrun
--nproc_per_node=N run.py ...` (or a SLURM job of several tasks started by the submitit launcher)
`init_distributed` joins the process group: NCCL on GPUs, gloo on CPU. Every collective here is a
no-op in one process, so the training and evaluation code reads the same either way.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The process that writes checkpoints, metrics.json and the W&B run."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on the main process first; the others wait, then run it (reading the caches
        the main process wrote). Every process must enter it. If the main process fails in the block,
        the others stop too, instead of waiting for it until the timeout."""
        if not self.enabled:
            yield
        elif self.is_main:
            failed = True
            try:
                yield
                failed = False
            finally:
                self._any(failed)  # releases the others
        else:
            if self._any(False):
                raise RuntimeError("process 0 failed before training (its error is above); stopping")
            yield

    def _any(self, flag: bool) -> bool:
        """Whether any process passed True (a collective: every process must call it)."""
        device = torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
        return bool(self.sum_(torch.tensor([float(flag)], device=device)).item())

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the processes, in place; returns it."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value` (picklable), by rank."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def share(self, n: int) -> slice:
        """This process's contiguous share of n items: sizes differ by at most one, lower ranks first."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))


SINGLE = Processes()


def init_distributed(timeout_min: int) -> Processes:
    """Join the process group when started by torchrun (or as one task of a multi-task submitit job);
    otherwise the single process. `timeout_min`: how long a process waits at a collective, e.g. while
    the main process trains the RQ-VAE."""
    _export_submitit_environment()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return SINGLE
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(f"process {local_rank} of this node has no GPU: {torch.cuda.device_count()} "
                                   "visible; start at most that many processes per node")
            torch.cuda.set_device(local_rank)  # NCCL's collectives run on the current device
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_min))
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _export_submitit_environment() -> None:
    """Inside a submitit job of several tasks (hydra.launcher.tasks_per_node > 1), set the variables
    torchrun would have set, so each task joins the same process group."""
    if "WORLD_SIZE" in os.environ or "SUBMITIT_EXECUTOR" not in os.environ:
        return
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
