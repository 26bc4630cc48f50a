"""Process-wide setup: the device, the random seeds, the float32 products' precision, compilation."""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

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


def copy_async(target: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` (host) copied into `target` (same shape, on any device) without the host waiting, as
    `to_device_async` copies."""
    if target.device.type == "cuda":
        tensor = tensor.pin_memory()
    return target.copy_(tensor, non_blocking=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def float32_matmul_precision(precision: str) -> Iterator[None]:
    """`torch.set_float32_matmul_precision(precision)` inside the block (it is process-wide), the
    previous precision restored after it."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


COMPILE_BACKEND = "inductor"  # tests swap in "aot_eager": the same tracing and autograd, no code generation


def compile_model(model: torch.nn.Module, dynamic: bool = True, scope: str = "model") -> None:
    """Compile `model`'s forward (and so its backward) in place, as a whole (`scope` "model") or block by
    block ("blocks": `compiled_units`). `dynamic`: for shapes that change from batch to batch (packed
    batches), graphs with dynamic sizes instead of a recompilation per batch (duck sizing off, since
    sizes that happen to be equal in one batch, the length groups' sizes, must not become a guard);
    else for the one shape of the first call (a step captured as a CUDA graph: its batches are all
    padded alike), specialised to it. The parameter names, and so the checkpoints, stay as they are."""
    import torch._inductor.config as inductor_config
    import torch.fx.experimental._config as fx_config

    fx_config.use_duck_shape = False
    # Inductor's coalescing analysis of kernel tiling failed on these dynamic shapes (torch 2.11, H200:
    # `AssertionError` in tiling_utils; its config says it "does not yet apply to dynamic shapes"). It
    # only chooses tilings, so turning it off changes no result.
    if hasattr(inductor_config.triton, "coalesce_tiling_analysis"):
        inductor_config.triton.coalesce_tiling_analysis = False
    for unit in compiled_units(model, scope):
        unit.compile(backend=COMPILE_BACKEND, dynamic=dynamic)


def compiled_units(model: torch.nn.Module, scope: str) -> list[torch.nn.Module]:
    """The modules `compile_model` compiles: the model ("model"), or ("blocks") the outermost of its
    modules whose class sets `compile_block = True` (the model itself where it has none). Blocks of one
    class share their code, so each kind of block compiles once per shape and the others reuse it
    (PyTorch's "regional compilation"), in a fraction of the whole model's compile time
    (docs/speed.md)."""
    if scope not in ("model", "blocks"):
        raise ValueError(f"compile scope must be 'model' or 'blocks', got {scope!r}")
    return [model] if scope == "model" else outermost_blocks(model) or [model]


def outermost_blocks(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The module itself where its class sets `compile_block`, else its children's outermost blocks, each
    once, in module order."""
    if getattr(module, "compile_block", False):
        return [module]
    return list(dict.fromkeys(block for child in module.children() for block in outermost_blocks(child)))


def uncompile_model(model: torch.nn.Module) -> None:
    """Undo `compile_model`, whatever its scope: the forward runs eager again (where compiling failed)."""
    for module in model.modules():
        module._compiled_call_impl = None
