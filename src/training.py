"""Training (SPEC §6): AdamW, warm-up + cosine schedule per step, gradient clipping at 1.0, bfloat16
autocast on a GPU (full precision on CPU), validation every `eval_frequence` epochs, early stopping,
the best model kept.

The training state (model, optimiser, scheduler, step, epoch, best score, every random state) is
saved atomically after each epoch to `{run_dir}/ckpt.pt`; a restarted run resumes from it and ends
exactly as an uninterrupted run would. The best model's weights go to `{run_dir}/ckpt_best.pt`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import get_scheduler

from src.cache import atomic_write
from src.config import MethodConfig, TrainerConfig
from src.data import SequenceData
from src.evaluation import Evaluator, autocast
from src.metrics import headline_k
from src.model import Recommender
from src.tracking import RunRecorder

GRAD_CLIP = 1.0
PROGRESS_EVERY = 50  # steps between progress-bar updates (each waits for the device once)


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0                 # completed epochs
    best_score: float = -math.inf
    best_epoch: int = -1           # 0-based epoch of the best validation
    finished: bool = False


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_score: float
    steps: int
    epochs: int


def selection_metric(method: MethodConfig, ks: tuple[int, ...]) -> str:
    """The validation metric that picks the best model: the dense head's in-set NDCG for LIGER and
    the dense-only ablations, generative in-set NDCG otherwise (as published)."""
    k = headline_k(ks)
    dense = (method.evaluation_method == "dense" and method.embedding_loss_weight > 0) or method.sid_loss_weight == 0
    return f"{'dense' if dense else 'genret'}_in_val/NDCG@{k}"


class Trainer:
    def __init__(self, model: Recommender, data: SequenceData, evaluator: Evaluator, cfg: TrainerConfig,
                 run_dir: Path, recorder: RunRecorder, seed: int, selection: str, config_key: str):
        self.model, self.data, self.evaluator, self.cfg = model, data, evaluator, cfg
        self.recorder, self.selection, self.config_key = recorder, selection, config_key
        self.ckpt_path, self.best_path = Path(run_dir) / "ckpt.pt", Path(run_dir) / "ckpt_best.pt"
        self.device = data.device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           fused=self.device.type == "cuda")
        self.scheduler = get_scheduler(cfg.scheduler, self.optimizer, num_warmup_steps=cfg.warmup_steps,
                                       num_training_steps=cfg.steps)
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.examples = data.train_examples()
        self.n_epochs = math.ceil(cfg.steps / max(1, math.ceil(len(self.examples) / cfg.batch_size)))
        self.state = TrainState()

    def fit(self) -> TrainResult:
        """Train (resuming from ckpt.pt if present), then load the best weights into the model."""
        self._resume()
        bar = tqdm(total=self.cfg.steps, initial=self.state.step, desc="training", unit="step", mininterval=1.0)
        while not self.state.finished:
            epoch = self.state.epoch
            means = self._train_epoch(bar)
            self.recorder.curve({f"train/{k}": v for k, v in {**means, "epoch": epoch + 1,
                                 "lr": self.scheduler.get_last_lr()[0]}.items()}, "train/step", self.state.step)
            last = epoch + 1 == self.n_epochs or self.state.step >= self.cfg.steps
            if (epoch + 1) % self.cfg.eval_frequence == 0 or last:
                self._validate(epoch)
            self.state.epoch = epoch + 1
            self.state.finished = last or self._patience_exhausted(epoch)
            self.save_checkpoint()
        bar.close()
        self.model.load_state_dict(torch.load(self.best_path, map_location=self.device, weights_only=True))
        return TrainResult(self.state.best_epoch, self.state.best_score, self.state.step, self.state.epoch)

    def _train_epoch(self, bar: tqdm) -> dict[str, float]:
        """One pass over the training examples; the mean losses and gradient norm over it."""
        self.model.train()
        sums = torch.zeros(4, device=self.device)
        absent = torch.zeros((), device=self.device)  # a loss the method does not use
        n = 0
        for chunk in self.data.shuffled(self.examples, self.cfg.batch_size, self.generator):
            if self.state.step >= self.cfg.steps:
                break
            with autocast(self.device):
                out = self.model(self.data.batch(chunk))
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
            self.optimizer.step()
            self.scheduler.step()
            parts = (out.loss, out.sid_loss, out.dense_loss, grad_norm)
            sums += torch.stack([absent if p is None else p.detach() for p in parts])
            n += 1
            self.state.step += 1
            if n % PROGRESS_EVERY == 0:
                bar.update(PROGRESS_EVERY)
                bar.set_postfix(epoch=self.state.epoch + 1, loss=f"{float(sums[0]) / n:.4f}")
        bar.update(n % PROGRESS_EVERY)
        means = (sums / max(n, 1)).tolist()
        return dict(zip(("loss", "sid_loss", "embedding_loss", "grad_norm"), means))

    def _validate(self, epoch: int) -> None:
        metrics = self.evaluator.evaluate("val", groups=("in",), methods=("genret", "dense"))
        self.recorder.curve(metrics, "train/step", self.state.step)
        if self.selection not in metrics:
            raise RuntimeError(f"validation produced no {self.selection}: the dataset has no in-set validation "
                               "examples (every validation target is a cold-start item)")
        score = metrics[self.selection]
        tqdm.write(f"  epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if score > self.state.best_score:
            self.state.best_score, self.state.best_epoch = score, epoch
            with atomic_write(self.best_path, "wb") as handle:
                torch.save(self.model.state_dict(), handle)

    def _patience_exhausted(self, epoch: int) -> bool:
        """Published rule: stop once `patience` epochs passed since the best one, after warm-up (and
        never before a first validation, so a best model always exists)."""
        return (self.state.best_epoch >= 0 and self.state.best_epoch + self.cfg.patience < epoch
                and self.state.step > self.cfg.warmup_steps)

    # -- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        state = {"config_key": self.config_key, "state": asdict(self.state), "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "generator": self.generator.get_state(), "cpu_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        with atomic_write(self.ckpt_path, "wb") as handle:
            torch.save(state, handle)

    def _resume(self) -> None:
        if not self.ckpt_path.exists():
            return
        saved = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        if saved["config_key"] != self.config_key:
            raise RuntimeError(f"{self.ckpt_path} was written by a run with other settings; choose another "
                               "experiment_id (or output_path), or delete the checkpoint to start over")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["cpu_rng"])
        if saved["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        self.state = TrainState(**saved["state"])
        print(f"Resuming from {self.ckpt_path}: epoch {self.state.epoch}, step {self.state.step}")

