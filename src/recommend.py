"""Recommendations from a finished run: its best model, semantic IDs and item texts, asked for the
top-k items after a history.

`load_run(run_dir)` rebuilds the run's inputs from its own configuration (`.hydra/config.yaml`):
every stage comes from its cache (the semantic IDs must be: they are never retrained here),
and the best weights (`ckpt_best.pt`, under the run's key) go into the model. `recommend(run,
history)` ranks items after a history given as the dataset's own item ids (or project ids) by
`genret`, `dense` or `uni`, exactly as the evaluation ranks them (`Evaluator.rankings`).
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ID_generation.embeddings import item_embeddings
from ID_generation.preprocessing import leave_one_out, preprocess
from ID_generation.rqvae.stage import semantic_ids_stage, semantic_ids_tag
from src.config import RunConfig, load_saved_config
from src.errors import ExpectedError
from src.experiment import Experiment, build_experiment
from src.retrieval import DENSE, GENRET, UNI
from src.runtime import resolve_device
from src.tracking import RunRecorder
from src.training import best_weights_path, checkpoint_path


class RecommendError(ExpectedError):
    """A run folder, an item id or a request that recommendations cannot be made from."""


@dataclass(frozen=True)
class Recommendation:
    rank: int           # 1-based place in the ranking (a generated ID that names no item keeps its place)
    item: int           # the project's 1-based item id
    item_id: str        # the dataset's own id (ASIN, Steam product id, your data's id)
    score: float        # genret: summed log-probability of the beam; dense, uni: the dense head's score
    cold_start: bool    # never seen in training (reachable by dense and uni only)
    text: str


@dataclass
class TrainedRun:
    """A finished run, loaded: its config, experiment (model with the best weights) and items."""
    run_dir: Path
    cfg: RunConfig
    experiment: Experiment
    item_ids: list[str]        # the dataset's own id of each item, index = item - 1
    item_texts: list[str]
    index: dict[str, int] = field(init=False, repr=False)  # dataset id -> index

    def __post_init__(self):
        self.index = {item_id: i for i, item_id in enumerate(self.item_ids)}

    def item_of(self, item_id: str | int, internal: bool = False) -> int:
        """The project's item id of a dataset item id (or, with `internal`, a checked project id)."""
        if internal:
            if isinstance(item_id, bool) or not str(item_id).isdigit() or not 1 <= int(item_id) <= len(self.item_ids):
                raise RecommendError(f"item {item_id!r} is no project item id: they run from 1 to {len(self.item_ids)}")
            return int(item_id)
        index = self.index.get(str(item_id))
        if index is None:
            raise RecommendError(f"item id {item_id!r} is not in the dataset of {self.run_dir} "
                                 f"({len(self.item_ids):,} items, e.g. {', '.join(self.item_ids[:3])}); "
                                 "pass the dataset's own ids, or project ids with --internal")
        return index + 1


def load_run(run_dir: str | Path, device: str | torch.device | None = None) -> TrainedRun:
    """The finished run in `run_dir` with its best model, on `device` (default: the run's own choice,
    a GPU when there is one). Run from the folder the run was started in (its paths are relative
    to it). RecommendError names what is missing."""
    run_dir = Path(run_dir)
    config_file = run_dir / ".hydra" / "config.yaml"
    if not run_dir.is_dir():
        raise RecommendError(f"{run_dir} is not a folder; give the run folder of a finished run")
    if not config_file.exists():
        raise RecommendError(f"{run_dir} is not a run folder (it has no .hydra/config.yaml); give the folder "
                             "run.py wrote (results/{test_method}/{dataset}/{experiment_id}_seed_{seed})")
    _check_trained(run_dir)
    cfg = load_saved_config(config_file)
    cfg = dataclasses.replace(cfg, output_path=run_dir)  # nothing else changes: the weights are keyed by the settings
    device = resolve_device(cfg.device_id) if device is None else torch.device(device)
    data = preprocess(cfg.data)
    split = leave_one_out(data.sequences, cfg.data.max_items_per_seq, cfg.data.user_stride)
    embeddings = item_embeddings(data.item_texts, cfg.data.content_model, cfg.data.processed_data_path,
                                 cfg.data.name, device, cfg.data.embedding_batch_size)
    sids = semantic_ids_stage(embeddings.vectors, split.seen_items, cfg.rqvae, cfg.seed, device,
                              tag=semantic_ids_tag(cfg.data), cached_only=True)
    experiment = build_experiment(cfg, split, sids.ids, embeddings.vectors, device, RunRecorder(run_dir, write=False))
    experiment.model.load_state_dict(experiment.trainer.best_weights())
    experiment.model.eval()
    return TrainedRun(run_dir, cfg, experiment, data.raw_item_ids(), data.item_texts)


def _check_trained(run_dir: Path) -> None:
    """RecommendError unless the run folder holds best weights and a checkpoint of a finished training
    (ckpt.pt is always written after the last epoch)."""
    if not best_weights_path(run_dir).exists():
        raise RecommendError(f"{run_dir} has no trained model ({best_weights_path(run_dir).name} is missing): its "
                             "training has not reached a validation; finish the run first")
    checkpoint = checkpoint_path(run_dir)
    if not checkpoint.exists():
        raise RecommendError(f"{run_dir} has not finished training ({checkpoint.name} is missing); run its command "
                             "again to finish it")
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        state = saved["state"]
    except Exception as exc:  # noqa: BLE001  truncated, empty, garbage: all mean the same here
        raise RecommendError(f"{checkpoint} cannot be read ({type(exc).__name__}); it is damaged: delete it and run "
                             "the run's command again to train it anew") from None
    if not state.get("finished", False):
        raise RecommendError(f"{run_dir} has not finished training (stopped after epoch {state.get('epoch')}, "
                             f"step {state.get('step')}); run its command again to finish it")


def default_retrieval(run: TrainedRun) -> str:
    """The retrieval a run is reported by: uni for LIGER, genret for TIGER, dense for dense-only runs."""
    modes = run.experiment.retrievals.modes
    return UNI if UNI in modes else modes[0]


@torch.no_grad()
def recommend(run: TrainedRun, history: Sequence[str | int], k: int = 10, by: str | None = None,
              internal: bool = False, user: int = 0, uni_k: int | None = None) -> list[Recommendation]:
    """The top `k` items after `history` (oldest first; the dataset's item ids, or project ids with
    `internal`), ranked by `by` (genret | dense | uni; default `default_retrieval`). Only the last
    `dataset.max_items_per_seq` - 1 items are read, as many as a training history holds. user: the
    user's row in the split (0-based, after `dataset.user_stride`), read only by methods with user
    tokens. uni_k: the generated candidates uni keeps (default: the first of `evaluation.uni_ks`, 20
    as published). An ID that beam search generates but that names no item is left out; the ranks
    of the others stay."""
    by = by or default_retrieval(run)
    exp = run.experiment
    if by not in exp.retrievals.modes:
        raise RecommendError(f"this run's method does not support {by} retrieval; it supports "
                             f"{', '.join(exp.retrievals.modes)}")
    if not history:
        raise RecommendError("the history is empty; give at least one item id")
    if k < 1:
        raise RecommendError(f"k must be at least 1, got {k}")
    # the model saw at most max_items_per_seq - 1 history items (the sequences' cut holds the target)
    items = [run.item_of(item_id, internal) for item_id in history][-(run.cfg.data.max_items_per_seq - 1):]
    evaluator = copy.copy(exp.evaluator)  # the run's settings, widened only where the request needs it
    uni_k = evaluator.settings.uni_ks[0] if uni_k is None else uni_k
    if uni_k < 1:
        raise RecommendError(f"uni_k (the generated candidates uni keeps) must be at least 1, got {uni_k}")
    beams = max(evaluator.settings.num_beams, k if by == GENRET else 0, uni_k if by == UNI else 0)
    evaluator.settings = dataclasses.replace(evaluator.settings, num_beams=beams, uni_ks=(uni_k,))
    batch = exp.data.history_batch(torch.tensor(items), user, exp.model.packing_groups)
    vectors = exp.model.item_vectors() if by in (DENSE, UNI) else None
    (_, ranking), = evaluator.rankings(batch, (by,), vectors, k)
    unseen = exp.model.unseen.tolist()  # (n_items,) items never seen in training
    return [Recommendation(rank, item, run.item_ids[item - 1], score, unseen[item - 1], run.item_texts[item - 1])
            for rank, (item, score) in enumerate(zip(ranking.items[0, :k].tolist(), ranking.scores[0, :k].tolist()),
                                                 start=1) if item > 0]
