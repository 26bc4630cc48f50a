"""Process-wide setup: the device, the random seeds, compilation."""
from __future__ import annotations

import random

import numpy as np
import torch


def resolve_device(device_id: int) -> torch.device:
    """`cuda:{device_id}` when a GPU is available, else the CPU."""
    if torch.cuda.is_available():
        if device_id >= torch.cuda.device_count():
            raise ValueError(f"config key 'device_id' is {device_id}, but only {torch.cuda.device_count()} "
                             "CUDA device(s) are visible")
        return torch.device(f"cuda:{device_id}")
    return torch.device("cpu")


def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` (host) on `device` without the host waiting: to a GPU through pinned memory, since a
    copy from pageable memory may wait for the device's earlier work (a training step's host would
    then wait on each step in turn)."""
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


COMPILE_BACKEND = "inductor"  # tests swap in "aot_eager": the same tracing and autograd, no code generation


def compile_model(model: torch.nn.Module, dynamic: bool = True) -> None:
    """Compile `model`'s forward (and so its backward) in place. `dynamic`: for shapes that change from
    batch to batch (packed batches), one graph with dynamic sizes instead of a recompilation per batch
    (duck sizing off, since sizes that happen to be equal in one batch, the length groups' sizes, must
    not become a guard); else for the one shape of the first call (a step captured as a CUDA graph:
    its batches are all padded alike), specialised to it. The parameter names, and so the
    checkpoints, stay as they are."""
    import torch._inductor.config as inductor_config
    import torch.fx.experimental._config as fx_config

    fx_config.use_duck_shape = False
    # Inductor's coalescing analysis of kernel tiling failed on these dynamic shapes (torch 2.11, H200:
    # `AssertionError` in tiling_utils; its config says it "does not yet apply to dynamic shapes"). It
    # only chooses tilings, so turning it off changes no result.
    if hasattr(inductor_config.triton, "coalesce_tiling_analysis"):
        inductor_config.triton.coalesce_tiling_analysis = False
    model.compile(backend=COMPILE_BACKEND, dynamic=dynamic)


def uncompile_model(model: torch.nn.Module) -> None:
    """Undo `compile_model`: the forward runs eager again (where compiling failed)."""
    model._compiled_call_impl = None
