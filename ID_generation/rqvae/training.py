"""Training the RQ-VAE (docs/method.md §4): AdamW (as published; `dataset.RQ-VAE.optimizer`), reconstruction MSE
+ β × commitment, a held-out share of the items for validation, and periodic checks of the codes.

The whole training set lives on the device and batches are slices of a per-epoch permutation: no
DataLoader, and no host synchronisation except at the periodic checks. On a GPU with
`dataset.RQ-VAE.cuda_graphs`, every epoch after three eager ones replays one captured CUDA graph
(`GraphedEpochs`): an epoch's shapes never change, so the whole epoch is one launch. With
`dataset.RQ-VAE.compile` the model's forward (and so its backward) is compiled for the epoch's two
batch shapes (the full batches and the last one), in the first epoch; a graph then replays inductor's
fused kernels. The periodic checks run eager.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import trange

from src import interrupts
from src.config import ConfigError, RQVAEConfig
from src.cuda_graph import capture, eager_on_side_stream
from src.errors import first_line
from src.runtime import compile_model

from .model import RQVAE, random_order

GRAD_CLIP = 1.0  # as published
# `dataset.RQ-VAE.optimizer` (src/config.py, RQVAE_OPTIMIZERS): AdamW as published (decoupled weight
# decay); Adam adds weight_decay to the gradient (L2) instead.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam}


@dataclass
class TrainedRQVAE:
    model: RQVAE
    final: dict[str, float]                 # the last periodic check (see `check`)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds_per_epoch: float = 0.0


def split_validation(n: int, val_ratio: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train rows, validation rows): a seeded random `val_ratio` share held out (at least one row
    when val_ratio > 0 and n > 1)."""
    order = torch.randperm(n, generator=generator)
    n_val = min(max(round(n * val_ratio), 1 if val_ratio > 0 else 0), n - 1)
    return order[n_val:], order[:n_val]


def train_rqvae(x: torch.Tensor, cfg: RQVAEConfig, seed: int,
                on_check: Callable[[dict[str, float]], None] | None = None) -> TrainedRQVAE:
    """Train on x (N, input_dim) — already on the training device — and return the model."""
    generator = torch.Generator().manual_seed(seed)
    train_rows, val_rows = split_validation(len(x), cfg.val_ratio, generator)
    x_train, x_val = x[train_rows.to(x.device)], x[val_rows.to(x.device)]
    torch.manual_seed(seed)
    model = RQVAE(x.shape[1], cfg.hidden_dim, cfg.latent_dim, cfg.num_layers, cfg.code_book_size,
                  cfg.dropout).to(x.device)
    if cfg.compile:
        compile_model(model, dynamic=False)
    optimizer = make_optimizer(model, cfg)
    run_epoch = (GraphedEpochs(model, optimizer, x_train, cfg.batch_size, cfg.beta) if cfg.cuda_graphs
                 else functools.partial(train_epoch, model, optimizer, x_train, cfg.batch_size, cfg.beta))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = trange(cfg.epochs, desc="RQ-VAE", unit="epoch", mininterval=1.0)
    with interrupts.safe_points():
        for epoch in bar:
            sums = first_compiled_epoch(run_epoch) if cfg.compile and epoch == 0 else run_epoch()
            interrupts.check(f"interrupted in the RQ-VAE at epoch {epoch + 1} of {cfg.epochs}; rerun the same "
                             "command to train it again (it keeps no checkpoint; the stages before it are cached)")
            _end_of_epoch(epoch, sums, model, x_train, x_val, cfg, bar, history, on_check)
    seconds = time.perf_counter() - start
    return TrainedRQVAE(model, history[-1], history, seconds / cfg.epochs)


def _end_of_epoch(epoch: int, sums: torch.Tensor, model: RQVAE, x_train: torch.Tensor, x_val: torch.Tensor,
                  cfg: RQVAEConfig, bar, history: list[dict[str, float]],
                  on_check: Callable[[dict[str, float]], None] | None) -> None:
    """Every `eval_every` epochs and after the last: the periodic check, recorded and reported."""
    if (epoch + 1) % cfg.eval_every and epoch + 1 != cfg.epochs:
        return
    n_batches = -(-len(x_train) // cfg.batch_size)
    with torch.compiler.set_stance("force_eager"):  # rare: not worth compiling its shapes too
        checked = check(model, x_train, x_val, cfg.beta)
    logs = {"epoch": epoch + 1, "train_loss": float(sums[0]) / n_batches,
            "train_recon_loss": float(sums[1]) / n_batches, "train_commitment_loss": float(sums[2]) / n_batches,
            **checked}
    history.append(logs)
    bar.set_postfix(recon=f"{logs['train_recon_loss']:.4f}",
                    val_recon=f"{logs.get('val_recon_loss', float('nan')):.4f}")
    if on_check is not None:
        on_check(logs)


def first_compiled_epoch(run_epoch: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The first epoch of a compiled model, where it compiles (for the full batches and the last one): a
    compiler failure names the config key that turns compiling off (the codes of an eager RQ-VAE
    differ by float rounding, so it is the user's choice, not a silent fallback)."""
    from torch._dynamo.exc import TorchDynamoException

    try:
        return run_epoch()
    except TorchDynamoException as exc:
        raise ConfigError(f"config key 'dataset.RQ-VAE.compile' is true, but compiling the RQ-VAE failed "
                          f"({first_line(exc)}); set it to false") from exc


def make_optimizer(model: torch.nn.Module, cfg: RQVAEConfig) -> torch.optim.Optimizer:
    """The optimizer named by `cfg.optimizer`, fused when the model is on a GPU."""
    fused = next(model.parameters()).device.type == "cuda"
    return OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def train_epoch(model: RQVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, batch_size: int,
                beta: float, graph_safe: bool = False) -> torch.Tensor:
    """One pass over x in random batches; returns the summed (total, recon, commitment) losses (3,)
    as a device tensor, so nothing waits for the device here. graph_safe: the batch order drawn as a
    CUDA graph can replay it (`random_order`)."""
    model.train()
    sums = torch.zeros(3, device=x.device)
    order = random_order(len(x), x.device, graph_safe)
    for start in range(0, len(x), batch_size):
        total, recon, commitment = model.loss(x[order[start:start + batch_size]], beta)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        sums += torch.stack([total.detach(), recon.detach(), commitment.detach()])
    return sums


class GraphedEpochs:
    """`train_epoch` on fixed data x, called once per epoch: three eager epochs on a side stream (they
    also create AdamW's state), then one captured as a CUDA graph and replayed for it and every later
    epoch. Random draws are graph-safe from the first epoch (`RQVAE.use_graph_safe_random`), so every
    epoch draws the same way; they differ from an eager run's, hence the semantic-ID cache's own key."""

    def __init__(self, model: RQVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, batch_size: int,
                 beta: float, warmup: int = 3):
        if x.device.type != "cuda":
            raise ConfigError(f"config key 'dataset.RQ-VAE.cuda_graphs' is true, but the RQ-VAE trains on {x.device}; "
                              "a CUDA graph needs a GPU: set it to false")
        model.use_graph_safe_random()
        self.epoch = functools.partial(train_epoch, model, optimizer, x, batch_size, beta, graph_safe=True)
        self.optimizer, self.device, self.warmup_left = optimizer, x.device, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None
        self.replays = 0

    def __call__(self) -> torch.Tensor:
        """This epoch's summed (total, recon, commitment) losses (3,), on the device."""
        if self.graph is None:
            if self.warmup_left > 0:
                self.warmup_left -= 1
                return eager_on_side_stream(self.epoch, self.device)
            try:
                self.graph, self.out = capture(self.epoch, self.optimizer)
            except Exception as exc:  # eager epochs would draw otherwise than the graph the codes are keyed by
                raise ConfigError(f"config key 'dataset.RQ-VAE.cuda_graphs' is true, but capturing the RQ-VAE epoch "
                                  f"as a CUDA graph failed ({first_line(exc)}); set it to false") from exc
        self.graph.replay()
        self.replays += 1
        return self.out.clone()


@torch.no_grad()
def check(model: RQVAE, x_train: torch.Tensor, x_val: torch.Tensor, beta: float) -> dict[str, float]:
    """Validation losses on the held-out rows and the within-cluster cosine similarity of the input
    vectors per code prefix length (train and validation), as the published periodic check."""
    model.eval()
    logs: dict[str, float] = {}
    if len(x_val):
        total, recon, commitment = model.loss(x_val, beta)
        logs.update(val_loss=float(total), val_recon_loss=float(recon), val_commitment_loss=float(commitment))
    for name, data in (("train", x_train), ("val", x_val)):
        if len(data) > 1:
            for level, value in enumerate(within_cluster_cosine(data, model.codes(data)), start=1):
                logs[f"{name}_cos_sim@L{level}"] = value
    model.train()
    return logs


def within_cluster_cosine(x: torch.Tensor, codes: torch.Tensor) -> list[float]:
    """For each prefix length l, the mean over clusters (items sharing their first l codes, clusters
    of two or more) of the mean pairwise cosine similarity of their vectors x (N, d).

    Uses sum_{i<j} cos(v_i, v_j) = (|sum_i v_i|^2 - n) / 2 for unit vectors: exact, O(N d).
    """
    unit = F.normalize(x.float(), dim=1)
    values = []
    for level in range(1, codes.shape[1] + 1):
        _, cluster = torch.unique(codes[:, :level], dim=0, return_inverse=True)
        n = torch.bincount(cluster).float()
        sums = torch.zeros(len(n), x.shape[1], device=x.device).index_add_(0, cluster, unit)
        pairs = n * (n - 1) / 2
        multi = n > 1
        mean_cos = ((sums.pow(2).sum(1) - n) / 2)[multi] / pairs[multi]
        values.append(float(mean_cos.mean()) if multi.any() else float("nan"))
    return values
