"""Training (docs/method.md §6): AdamW, warm-up + cosine schedule per step, gradient clipping at 1.0, bfloat16
autocast on a GPU (full precision on CPU), validation every `eval_frequence` epochs, early stopping,
the best model kept.

The training state (model, optimiser, scheduler, step, epoch, best score, every random state) is
saved atomically to `{run_dir}/ckpt.pt` every `dataset.TIGER.save_every_n_epochs` epochs (default 1),
after each epoch whose validation improved the best model, and after the last; a restarted run
resumes from it and ends exactly as an uninterrupted run would (with `trainer.cuda_graphs`, up to the
dropout masks: the graph is captured anew, see src/cuda_graph.py).
The best model's weights go to `{run_dir}/ckpt_best.pt`.

Data-parallel (several processes, see src/distributed.py): every process draws the same permutation
and takes its share of each global batch; the model is wrapped in DistributedDataParallel and each
process's loss is weighted by its share, so the averaged gradient is the global batch's mean
gradient. Only the main process writes checkpoints. A checkpoint holds the global batch order and
every process's random state, so a run resumes under any number of processes (with another number,
only dropout masks differ from an uninterrupted run).
"""
from __future__ import annotations

import math
import pickle
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import get_scheduler

from src import interrupts
from src.cache import atomic_write
from src.config import ConfigError, TrainerConfig
from src.cuda_graph import GraphedStep
from src.data import Batch, BatchPlan, Examples, SequenceData
from src.distributed import SINGLE, Processes
from src.errors import CheckpointError, DataError, TrainingDivergedError, first_line
from src.evaluation import Evaluator, autocast
from src.model import Recommender
from src.retrieval import DENSE, GENRET
from src.run_folder import RunFolderError
from src.runtime import compile_model, uncompile_model
from src.tracking import RunRecorder

GRAD_CLIP = 1.0
RNG_STEP_STRIDE = 1_000_003  # spreads the fresh random streams of resumed extra processes apart
PROGRESS_EVERY = 50  # steps between progress-bar updates (each waits for the device once)
GROUP_WIDTH_EPOCHS = 32  # epochs of the batch order whose batches set a graphed step's group widths
clock = time.monotonic  # seconds, for trainer.time_budget_min


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0                 # completed epochs
    best_score: float = -math.inf
    best_epoch: int = -1           # 0-based epoch of the best validation
    finished: bool = False
    out_of_time: bool = False      # stopped by trainer.time_budget_min, not by steps or patience
    last_losses: dict[str, float] = field(default_factory=dict)  # the last epoch's means


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_score: float
    steps: int
    epochs: int
    last_losses: dict[str, float]  # loss, sid_loss, embedding_loss, grad_norm: the last epoch's means
    out_of_time: bool              # stopped early by trainer.time_budget_min
    # mean seconds of this process's validations (None: none ran); a timing, not part of the result
    validation_s: float | None = field(default=None, compare=False)


def checkpoint_path(run_dir: Path) -> Path:
    """The training state a restarted run resumes from."""
    return Path(run_dir) / "ckpt.pt"


def best_weights_path(run_dir: Path) -> Path:
    """The best model's weights, under the checkpoint's key (`{"config_key": ..., "model": state dict}`)."""
    return Path(run_dir) / "ckpt_best.pt"


def load_checkpoint(path: Path, map_location: str | torch.device, advice: str):
    """`torch.load` of a checkpoint with `weights_only=True`: tensors and plain Python values (dicts,
    lists, numbers, strings) are rebuilt, nothing else, so a file from elsewhere cannot run code while
    it is read. CheckpointError names the file, what is wrong and `advice` (what to do) when it is
    damaged or holds any other object (which is refused unread)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        foreign = re.search(r"GLOBAL (\S+)", str(exc))
        if foreign is not None:
            raise CheckpointError(
                f"{path} holds a Python object ({foreign.group(1)}) besides tensors and plain values; it was "
                "refused unread, since rebuilding it could run any code. A checkpoint of this project holds no "
                f"such object: use one this project wrote. {advice}") from None
        reason = _weights_only_reason(str(exc))
    except Exception as exc:  # noqa: BLE001  truncated, empty, garbage: all mean the same to the user
        reason = first_line(exc, 120)
    raise CheckpointError(f"{path} cannot be read ({reason}); it is damaged. {advice}")


def _weights_only_reason(message: str) -> str:
    """The line of a weights-only unpickling error that says what failed (its other lines are
    torch's general advice, one of which is to load the file unsafely)."""
    lines = [line.strip() for line in message.splitlines()]
    said = [line for line in lines if line and not line.startswith(("Weights only load failed", "Please file an issue",
                                                                   "Check the documentation"))]
    return f"UnpicklingError: {(said or ['not a checkpoint'])[0][:120]}"


class Trainer:
    """Trains a Recommender: epochs of shuffled batches, periodic validation that keeps the best
    model, early stopping, checkpoints to resume from, data-parallel when several processes run."""

    def __init__(self, model: Recommender, data: SequenceData, evaluator: Evaluator, cfg: TrainerConfig,
                 run_dir: Path, recorder: RunRecorder, seed: int, selection: str, config_key: str,
                 batch_size: int, processes: Processes = SINGLE, save_every: int = 1):
        """selection: the validation metric that picks the best model (`Retrievals.selection_metric`);
        config_key: what the checkpoints must have been written under; batch_size: examples per
        optimiser step over all processes (the global batch); save_every: epochs between checkpoints."""
        self.model, self.data, self.evaluator, self.cfg = model, data, evaluator, cfg
        self.recorder, self.selection, self.config_key = recorder, selection, config_key
        self.processes, self.seed, self.save_every = processes, seed, save_every
        self.batch_size = batch_size
        self.ckpt_path, self.best_path = checkpoint_path(run_dir), best_weights_path(run_dir)
        self.device = data.device
        self.examples = data.train_examples()
        self.cuda_graphs = graphs = self._uses_cuda_graphs()
        # A CUDA graph replays fixed sizes: batches padded to the longest training history, and where the
        # model packs its batches, in length groups of fixed widths (`group_widths`, set below).
        self.packing_groups = model.packing_groups
        self.history_len = self.examples.longest_history if graphs else None
        # `auto` compiles on a GPU, but not a graphed step (opt-in: compiled for its one padded shape)
        self.compiled = cfg.compile if cfg.compile is not None else self.device.type == "cuda" and not graphs
        if self.compiled:
            compile_model(model, dynamic=not graphs, scope=cfg.compile_scope)
        self.compile_pending = self.compiled  # compiling happens at the first step (which may fail)
        self.compile_error: str | None = None  # why compiling failed, where it did (training went on eager)
        self.net = self._data_parallel(model) if processes.enabled else model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           fused=self.device.type == "cuda")
        self.scheduler = get_scheduler(cfg.scheduler, self.optimizer, num_warmup_steps=cfg.warmup_steps,
                                       num_training_steps=cfg.steps)
        # step(plan, weight): the batch built and the step run eagerly, or both replayed from a CUDA graph
        self.step = (GraphedStep(self._step, data, self.optimizer, self.device, batch_size) if graphs
                     else self._built_step)
        self.generator = torch.Generator().manual_seed(seed)  # the batch order: the same in every process
        torch.manual_seed(seed + processes.rank)              # dropout: its own stream per process
        self.n_epochs = math.ceil(cfg.steps / max(1, math.ceil(len(self.examples) / self.batch_size)))
        self.group_widths = self._group_widths() if graphs and self.packing_groups > 0 else None
        self.state = TrainState()
        self.saved_step = 0  # the step of the checkpoint a rerun resumes from
        self._saved: dict | None = None  # ckpt.pt as check_checkpoints read it, for _resume
        self.validation_s: list[float] = []  # seconds of each validation this process ran

    def _uses_cuda_graphs(self) -> bool:
        """`trainer.cuda_graphs`, which needs one process on a GPU; `auto`: wherever that is the case."""
        if self.cfg.cuda_graphs is None:
            return self.device.type == "cuda" and not self.processes.enabled
        if not self.cfg.cuda_graphs:
            return False
        if self.device.type != "cuda" or self.processes.enabled:
            where = "a CPU" if self.device.type != "cuda" else f"{self.processes.world_size} processes"
            raise ConfigError(f"config key 'dataset.TIGER.trainer.cuda_graphs' is true, but this run trains on "
                              f"{where}; a CUDA graph needs one process on a GPU: set it to false")
        return True

    def _group_widths(self) -> list[int]:
        """The fixed history length of each length group of a graphed step's batches: the group's longest
        over the full batches of the run's first epochs (its own batch order, drawn from a copy of its
        generator), so that nearly every batch fits; one that does not runs eagerly, packed."""
        order = torch.Generator()
        order.set_state(self.generator.get_state())
        return self.data.group_widths(self.examples, self.batch_size, self.packing_groups, order,
                                      min(self.n_epochs, GROUP_WIDTH_EPOCHS))

    def _data_parallel(self, model: Recommender) -> DistributedDataParallel:
        """The model under DDP. Buffers (text embeddings, masks) never change, so they are not
        synchronised each step; DDP looks for unused parameters only when the method leaves some unused
        (e.g. the decoder of a dense-only ablation), found by one trial backward pass."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            model(self.data.batch(self.examples.subset(slice(0, 2)), model.packing_groups)).loss.backward()
        unused = [p for p in model.parameters() if p.requires_grad and p.grad is None]
        model.zero_grad(set_to_none=True)
        return DistributedDataParallel(model, forward_sync_buffers=False, find_unused_parameters=bool(unused))

    def fit(self) -> TrainResult:
        """Train (resuming from ckpt.pt if present), then load the best weights into the model."""
        self._resume()
        deadline = None if self.cfg.time_budget_min is None else clock() + 60 * self.cfg.time_budget_min
        with interrupts.safe_points():
            self._fit_epochs(deadline)
        self.processes.barrier()  # the main process has written the best weights
        self.model.load_state_dict(self.best_weights())
        return TrainResult(self.state.best_epoch, self.state.best_score, self.state.step, self.state.epoch,
                           self.state.last_losses, self.state.out_of_time,
                           sum(self.validation_s) / len(self.validation_s) if self.validation_s else None)

    def _fit_epochs(self, deadline: float | None) -> None:
        """Epochs until the planned steps, the patience or the time budget ends training."""
        bar = tqdm(total=self.cfg.steps, initial=self.state.step, desc="training", unit="step", mininterval=1.0,
                   disable=not self.processes.is_main)
        while not self.state.finished:
            epoch = self.state.epoch
            means = self.state.last_losses = self._train_epoch(bar)
            self.recorder.curve({f"train/{k}": v for k, v in {**means, "epoch": epoch + 1,
                                 "lr": self.scheduler.get_last_lr()[0]}.items()}, "train/step", self.state.step)
            last = epoch + 1 == self.n_epochs or self.state.step >= self.cfg.steps
            # out of time: this epoch is the last; it is validated, so a best model always exists
            self.state.out_of_time = not last and self._out_of_time(deadline)
            last = last or self.state.out_of_time
            improved = (epoch + 1) % self.cfg.eval_frequence == 0 or last
            improved = improved and self._validate(epoch)
            self.state.epoch = epoch + 1
            self.state.finished = last or self._patience_exhausted(epoch)
            # a new ckpt_best.pt is always matched by a checkpoint of its epoch (its best_score, best_epoch)
            if self.state.finished or improved or self.state.epoch % self.save_every == 0:
                self.save_checkpoint()
                self.saved_step = self.state.step
        bar.close()

    def how_steps_ran(self) -> dict[str, int | str]:
        """For the run's metrics: the schedule planned (steps, warm-up, scheduler, peak rate), how the steps
        ran (`train/step_mode`), whether the model ran compiled (and why not, where compiling failed), and
        with `cuda_graphs` this process's replayed and eager steps (and why capturing failed, where it did)."""
        graphed = isinstance(self.step, GraphedStep)
        mode = ("compiled_graphs" if self.compiled else "cuda_graphs") if graphed else \
            "compiled" if self.compiled else "eager"
        ran: dict[str, int | str] = {
            "train/steps_planned": self.cfg.steps, "train/warmup_steps": self.cfg.warmup_steps,
            "train/scheduler": self.cfg.scheduler, "train/peak_lr": self.cfg.lr,
            # how the step ran: eager, compiled, cuda_graphs or compiled_graphs; _padded: on padded batches
            "train/step_mode": mode + ("_padded" if self.packing_groups == 0 else ""),
            "train/compiled": int(self.compiled)}
        if self.compile_error:
            ran["train/compile_error"] = self.compile_error
        if graphed:
            ran.update({"train/graph_replays": self.step.replays, "train/graph_eager_steps": self.step.eager_steps})
            if self.step.capture_error:
                ran["train/capture_error"] = self.step.capture_error
        return ran

    def _interrupted_at(self) -> str:
        """Where training stopped and where a rerun goes on: the last checkpoint's step."""
        return (f"interrupted at step {self.state.step} (epoch {self.state.epoch + 1}); rerun the same command to "
                f"resume from step {self.saved_step}")

    def _out_of_time(self, deadline: float | None) -> bool:
        """Whether the time budget is spent, in any process (so that all stop together)."""
        return any(self.processes.gather(deadline is not None and clock() >= deadline))

    def _train_epoch(self, bar: tqdm) -> dict[str, float]:
        """One pass over the training examples; the mean losses and gradient norm over it (over the
        global batches: the same in every process). A non-finite loss or gradient norm stops training
        (`TrainingDivergedError`), found when the progress is next updated, without waiting for the
        device at every step."""
        self.net.train()
        sums = torch.zeros(4, device=self.device)
        first_bad = torch.full((4,), -1, dtype=torch.long, device=self.device)  # step each turned non-finite
        n = 0
        for chunk in self.data.shuffled(self.examples, self.batch_size, self.generator):
            if self.state.step >= self.cfg.steps:
                break
            mine, share = self._my_share(chunk)
            # DDP averages gradients over processes: weighting by share × processes makes that average
            # the global batch's mean gradient when the shares differ in size.
            parts = self.train_step(mine, share * self.processes.world_size)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(parts), self.state.step, first_bad)
            sums += torch.cat([parts[:3] * share, parts[3:] / self.processes.world_size])
            n += 1
            self.state.step += 1
            if not self.processes.enabled:  # several processes stop together, at the epoch's end
                interrupts.check(self._interrupted_at())
            if n % PROGRESS_EVERY == 0:
                self._stop_if_diverged(first_bad)
                bar.update(PROGRESS_EVERY)
                # this process's share scaled up: an estimate of the global loss, without a collective
                bar.set_postfix(epoch=self.state.epoch + 1,
                                loss=f"{float(sums[0]) * self.processes.world_size / n:.4f}")
        bar.update(n % PROGRESS_EVERY)
        self._stop_if_diverged(first_bad)
        if any(self.processes.gather(interrupts.requested() is not None)):
            interrupts.check(self._interrupted_at())
        means = (self.processes.sum_(sums) / max(n, 1)).tolist()
        return dict(zip(("loss", "sid_loss", "embedding_loss", "grad_norm"), means))

    def train_step(self, examples: Examples, weight: float = 1.0) -> torch.Tensor:
        """One optimiser step on `examples` (this process's share of a global batch), the loss scaled by
        `weight`, then the scheduler's step: (4,) loss, semantic-ID loss, dense loss (0 where the method
        has none) and gradient norm, on the device (read without waiting for it)."""
        plan = self._plan(examples)
        # compiling happens at the first step that runs the compiled model: with a graph, the first full
        # batch of the captured shape (another runs eagerly)
        if self.compile_pending and (not isinstance(self.step, GraphedStep) or self.step.fixed_shape(plan)):
            self.compile_pending = False
            parts = self._first_compiled_step(plan, weight)
        else:
            parts = self.step(plan, weight)
        self.scheduler.step()
        return parts

    def _plan(self, examples: Examples) -> BatchPlan:
        """The batch of a training step, planned: padded or packed as the model takes it; for a graphed step
        padded to the longest training history, and a full batch in length groups of fixed widths where its
        histories fit them (another runs eagerly, packed)."""
        widths = self.group_widths if len(examples) == self.batch_size else None
        if widths is not None and any(n > w for n, w in zip(examples.group_longest(self.packing_groups), widths)):
            widths = None
        return self.data.plan(examples, self.packing_groups, self.history_len, widths)

    def _built_step(self, plan: BatchPlan, weight: float) -> torch.Tensor:
        """`_step` on the plan's batch, built (an eager step)."""
        return self._step(self.data.build(plan), weight)

    def _step(self, batch: Batch, weight: float) -> torch.Tensor:
        """Forward under autocast, backward of loss × weight, gradient clipping, AdamW: `train_step`'s
        (4,) tensor. No host synchronisation, so that it can be captured as a CUDA graph."""
        with autocast(self.device, cache=not self.cuda_graphs):
            out = self.net(batch)
        self.optimizer.zero_grad(set_to_none=True)
        (out.loss * weight).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.optimizer.step()
        absent = torch.zeros((), device=self.device)  # a loss the method does not use
        return torch.cat([torch.stack([absent if p is None else p.detach()
                                       for p in (out.loss, out.sid_loss, out.embedding_loss)]),
                          grad_norm.detach()[None]])

    def _first_compiled_step(self, plan: BatchPlan, weight: float) -> torch.Tensor:
        """The first step of a compiled model, where compiling happens: if the compiler fails (torch
        2.11's inductor did on an H200, after minutes), say so and train eager instead of stopping."""
        try:
            return self.step(plan, weight)
        except Exception as exc:  # noqa: BLE001  any compiler failure; a model error fails again, eager, below
            self.compile_error = first_line(exc)
            print(f"warning: torch.compile failed ({self.compile_error}); training goes on eager. "
                  "Set dataset.TIGER.trainer.compile=false to skip compiling.", flush=True)
            uncompile_model(self.model)
            self.compiled = False
            self.optimizer.zero_grad(set_to_none=True)
            return self.step(plan, weight)

    def _stop_if_diverged(self, first_bad: torch.Tensor) -> None:
        """Raise TrainingDivergedError naming the first non-finite quantity, its step and the rate."""
        steps = first_bad.tolist()
        if max(steps) < 0:
            return
        which = min((s, name)
                    for s, name in zip(steps, ("total loss", "semantic-ID loss", "dense loss", "gradient norm"))
                    if s >= 0)
        raise TrainingDivergedError(
            f"training diverged: the {which[1]} became non-finite at step {which[0] + 1} "
            f"(epoch {self.state.epoch + 1}; the learning rate is now {self.scheduler.get_last_lr()[0]:.3g}); "
            f"lower dataset.TIGER.trainer.lr (now {self.cfg.lr:g}) "
            "or raise dataset.TIGER.trainer.warmup_steps. The last checkpoint is the last finished epoch.")

    def _my_share(self, chunk: Examples) -> tuple[Examples, float]:
        """This process's examples of a global batch and their fraction of it. A process whose share
        is empty (a last batch smaller than the number of processes) runs one example at weight 0,
        so that every process takes part in each gradient exchange."""
        mine = chunk.subset(self.processes.share(len(chunk)))
        if len(mine) == 0:
            return chunk.subset(slice(0, 1)), 0.0
        return mine, len(mine) / len(chunk)

    def _validate(self, epoch: int) -> bool:
        """Validate; write ckpt_best.pt and return True when the selection metric improved."""
        start = time.perf_counter()
        metrics = self.evaluator.evaluate("val", groups=("in",), modes=(GENRET, DENSE))  # ends reading the device
        self.validation_s.append(time.perf_counter() - start)
        self.recorder.curve({**metrics, "time/validation": self.validation_s[-1]}, "train/step", self.state.step)
        if self.selection not in metrics:
            raise DataError(f"validation produced no {self.selection}: the dataset has no in-set validation "
                               "examples (every validation target is a cold-start item)")
        score = metrics[self.selection]
        tqdm.write(f"  epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if score <= self.state.best_score:
            return False
        self.state.best_score, self.state.best_epoch = score, epoch
        if self.processes.is_main:
            with atomic_write(self.best_path, "wb") as handle:
                torch.save({"config_key": self.config_key, "model": self.model.state_dict()}, handle)
        return True

    def _patience_exhausted(self, epoch: int) -> bool:
        """Published rule: stop once `patience` epochs passed since the best one, after warm-up (and
        never before a first validation, so a best model always exists)."""
        return (self.state.best_epoch >= 0 and self.state.best_epoch + self.cfg.patience < epoch
                and self.state.step > self.cfg.warmup_steps)

    # -- checkpoints --------------------------------------------------------------------------

    def best_weights(self) -> dict:
        """The best model's state dict from ckpt_best.pt, which must have been written by this run's
        settings and data (the same key as ckpt.pt)."""
        if not self.best_path.exists():
            raise CheckpointError(f"{self.best_path} is missing, although {self.ckpt_path.name} has validated epochs; "
                                  f"delete {self.ckpt_path} to train this run again")
        saved = self._load(self.best_path)
        if not isinstance(saved, dict) or saved.get("config_key") != self.config_key:
            raise CheckpointError(self._foreign(self.best_path))
        return saved["model"]

    def _load(self, path: Path):
        """A checkpoint's content (`load_checkpoint`), with advice for this run if it cannot be used."""
        where = " from ckpt.pt" if path == self.best_path else ""
        return load_checkpoint(path, self.device if path == self.best_path else "cpu",
                               f"Delete it to start this run over{where}, or restore it from a copy")

    def save_checkpoint(self) -> None:
        """Write ckpt.pt (main process), with the random states of every process: tensors and plain
        Python values only, so that `load_checkpoint` reads it without running any of its code."""
        rng = self.processes.gather({"cpu": torch.get_rng_state(),
                                     "cuda": (torch.cuda.get_rng_state(self.device) if self.device.type == "cuda"
                                              else None)})
        if not self.processes.is_main:
            return
        state = {"config_key": self.config_key, "batch_size": self.batch_size, "state": asdict(self.state),
                 "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "generator": self.generator.get_state(), "rng": rng}
        with atomic_write(self.ckpt_path, "wb") as handle:
            torch.save(state, handle)

    def check_checkpoints(self) -> None:
        """RunFolderError (exit 2), before anything is written, where the run folder's checkpoints were
        written by a run of other settings or data: that run's record stays as it is."""
        for path in (self.ckpt_path, self.best_path):
            if path.exists():
                saved = self._load(path)
                if path == self.ckpt_path:
                    self._saved = saved  # read once: _resume takes it
                if not isinstance(saved, dict) or saved.get("config_key") != self.config_key:
                    raise RunFolderError(self._foreign(path))

    def _foreign(self, path: Path) -> str:
        """Why `path` is refused, and what keeps the run that wrote it."""
        return (f"{path} was written by another run: other settings or other data (the dataset's files, their "
                f"embeddings or semantic IDs changed since; that run's settings are in {path.parent / '.hydra'}). "
                "To keep that run, give this one its own folder: another experiment_id=... or output_path=...")

    def _resume(self) -> None:
        if not self.ckpt_path.exists():
            return
        saved = self._saved or self._load(self.ckpt_path)
        self._saved = None
        if saved["config_key"] != self.config_key:
            raise CheckpointError(self._foreign(self.ckpt_path))
        if saved.get("batch_size", self.batch_size) != self.batch_size:
            raise CheckpointError(f"{self.ckpt_path} was trained with a global batch of {saved['batch_size']}, "
                                  f"this run has {self.batch_size} (distributed.batch_size=per_device under another "
                                  "number of processes); resume with the same number, or use "
                                  "distributed.batch_size=global")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        for group in self.optimizer.param_groups:  # how this run steps, not how the saving one did
            group["fused"], group["capturable"] = self.device.type == "cuda", False  # (a graph sets it when captured)
        if isinstance(self.step, GraphedStep):
            self.step.reset()  # a graph captured before this would update the replaced optimiser state
        self.scheduler.load_state_dict(saved["scheduler"])
        self.generator.set_state(saved["generator"])
        self.state = TrainState(**saved["state"])
        self.saved_step = self.state.step
        # checkpoints written before data-parallel training held one process's random state
        self._restore_rng(saved.get("rng") or [{"cpu": saved["cpu_rng"], "cuda": None}])
        print(f"Resuming from {self.ckpt_path}: epoch {self.state.epoch}, step {self.state.step}"
              + (f" (saved by {len(saved['rng'])} processes, resumed by {self.processes.world_size})"
                 if len(saved.get("rng", [])) not in (0, self.processes.world_size) else ""))

    def _restore_rng(self, saved: list[dict]) -> None:
        """This process's saved random state; a process the interrupted run did not have starts a
        fresh stream, drawn from the seed, its rank and the step."""
        rank = self.processes.rank
        if rank >= len(saved):
            torch.manual_seed(self.seed + rank + RNG_STEP_STRIDE * self.state.step)
            return
        torch.set_rng_state(saved[rank]["cpu"])
        if saved[rank]["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(saved[rank]["cuda"], self.device)
