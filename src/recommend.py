"""Recommendations from a finished run: its best model, semantic IDs and item texts, asked for the
top-k items after a history.

`load_run(run_dir)` rebuilds the run's inputs from its own configuration (`.hydra/config.yaml`):
every stage comes from its cache (the semantic IDs must be: they are never retrained here),
and the best weights (`ckpt_best.pt`, under the run's key) go into the model. `recommend(run,
history)` ranks items after a history given as the dataset's own item ids (or project ids) by
`genret`, `dense` or `uni`, exactly as the evaluation ranks them (`Evaluator.rankings`);
`recommend_with_reasons` also says why fewer than k items came back, when so.
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
from src.errors import CheckpointError, ExpectedError
from src.experiment import Experiment, build_experiment
from src.retrieval import DENSE, GENRET, UNI
from src.runtime import resolve_device
from src.tracking import RunRecorder
from src.training import best_weights_path, checkpoint_path, load_checkpoint


class RecommendError(ExpectedError):
    """A run folder, an item id or a request that recommendations cannot be made from."""


class RecommendUsageError(RecommendError):
    """An option this run or this machine cannot honour (a user index for a method without user
    tokens, a device that is not there)."""
    label = "Usage error"
    exit_status = 2


@dataclass(frozen=True)
class Recommendation:
    rank: int           # 1-based place in the ranking (a generated ID that names no item, or a history item left
                        # out with exclude_history, keeps its place)
    item: int           # the project's 1-based item id
    item_id: str        # the dataset's own id (ASIN, Steam product id, your data's id)
    score: float        # genret: summed log-probability of the beam; dense, uni: the dense head's score
    cold_start: bool    # never seen in training (reachable by dense and uni only)
    text: str


@dataclass(frozen=True)
class Recommendations:
    """`recommend_with_reasons`'s items, and a note on what limited them."""
    items: list[Recommendation]
    note: str | None = None  # why fewer than k items, or that no generated ID names an item; None: neither


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
    to it). RecommendError names what is missing (CheckpointError: unusable best weights). Both
    checkpoints are read as tensors and plain values only (`load_checkpoint`): one that holds any
    other object is refused unread, so a run folder from elsewhere cannot run code here."""
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
    device = resolve_device(cfg.device_id) if device is None else usable_device(device)
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


def usable_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device, or RecommendUsageError when it is no device name or not on this machine."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise RecommendUsageError(f"--device {device}: no device of that name; use cpu or cuda (cuda:N for "
                                  "the N-th GPU)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise RecommendUsageError(f"--device {device}: this machine has no CUDA device (or this torch build "
                                      "has no CUDA support); use --device cpu, or leave --device out")
        if device.index is not None and device.index >= count:
            raise RecommendUsageError(f"--device {device}: only {count} CUDA device(s) are visible (cuda:0 to "
                                      f"cuda:{count - 1}); pick one of them")
    elif device.type != "cpu":
        raise RecommendUsageError(f"--device {device}: recommendations run on cpu or cuda; use one of them")
    return device


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
    advice = "Delete it and run the run's command again to train it anew"
    try:
        saved = load_checkpoint(checkpoint, "cpu", advice)
    except CheckpointError as exc:  # damaged, or holding objects other than tensors and plain values
        raise RecommendError(str(exc)) from None
    state = saved.get("state") if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise RecommendError(f"{checkpoint} holds no training state; it is damaged. {advice}")
    if not state.get("finished", False):
        raise RecommendError(f"{run_dir} has not finished training (stopped after epoch {state.get('epoch')}, "
                             f"step {state.get('step')}); run its command again to finish it")


def default_retrieval(run: TrainedRun) -> str:
    """The retrieval a run is reported by: uni for LIGER, genret for TIGER, dense for dense-only runs."""
    modes = run.experiment.retrievals.modes
    return UNI if UNI in modes else modes[0]


def recommend(run: TrainedRun, history: Sequence[str | int], k: int = 10, by: str | None = None,
              internal: bool = False, user: int | None = None, uni_k: int | None = None,
              exclude_history: bool = False) -> list[Recommendation]:
    """The top `k` items after `history`: `recommend_with_reasons`'s items."""
    return recommend_with_reasons(run, history, k, by, internal, user, uni_k, exclude_history).items


@torch.no_grad()
def recommend_with_reasons(run: TrainedRun, history: Sequence[str | int], k: int = 10, by: str | None = None,
                           internal: bool = False, user: int | None = None, uni_k: int | None = None,
                           exclude_history: bool = False) -> Recommendations:
    """The top `k` items after `history` (oldest first; the dataset's item ids, or project ids with
    `internal`), ranked by `by` (genret | dense | uni; default `default_retrieval`), and a note on why
    there are fewer than k, or that no generated ID names an item. Only the last
    `dataset.max_items_per_seq` - 1 items are read, as many as a training history holds. user: the
    user's row in the split (0-based, after `dataset.user_stride`), for methods with user tokens only
    (default 0; RecommendUsageError for a method without them). uni_k: the generated candidates uni
    keeps (default: the first of `evaluation.uni_ks`, 20 as published). An ID that beam search
    generates but that names no item is left out; the ranks of the others stay. exclude_history: the
    items of `history` are left out too (their ranks stay) and the rows refilled from further down
    the ranking: dense from every item, uni from its candidates, genret from a beam search widened
    by the number of history items."""
    by = by or default_retrieval(run)
    exp = run.experiment
    if by not in exp.retrievals.modes:
        raise RecommendError(f"this run's method does not support {by} retrieval (--by); it supports "
                             f"{', '.join(exp.retrievals.modes)}")
    if not history:
        raise RecommendError("the history is empty; give at least one item id")
    if k < 1:
        raise RecommendError(f"k (--k) must be at least 1, got {k}")
    if user is not None and not exp.data.vocab.has_user_tokens:
        raise RecommendUsageError(f"--user {user}: this run's method has no user tokens "
                                  f"(method.include_user_id is false), so no user index is read; leave --user out")
    given = [run.item_of(item_id, internal) for item_id in history]
    # the model saw at most max_items_per_seq - 1 history items (the sequences' cut holds the target)
    items = given[-(run.cfg.data.max_items_per_seq - 1):]
    excluded = set(given) if exclude_history else set()
    depth = k + len(excluded)  # places enough for k rows after the history's items
    evaluator = copy.copy(exp.evaluator)  # the run's settings, widened only where the request needs it
    uni_k = evaluator.settings.uni_ks[0] if uni_k is None else uni_k
    if uni_k < 1:
        raise RecommendError(f"uni_k (--uni-k, the generated candidates uni keeps) must be at least 1, got {uni_k}")
    beams = max(evaluator.settings.num_beams, depth if by == GENRET else 0, uni_k if by == UNI else 0)
    evaluator.settings = dataclasses.replace(evaluator.settings, num_beams=beams, uni_ks=(uni_k,))
    batch = exp.data.history_batch(torch.tensor(items), 0 if user is None else user, exp.model.packing_groups)
    vectors = exp.model.item_vectors() if by in (DENSE, UNI) else None
    rankings = dict(evaluator.rankings(batch, (GENRET, UNI) if by == UNI else (by,), vectors, depth))
    ranking = rankings[by, uni_k if by == UNI else None]
    unseen = exp.model.unseen.tolist()  # (n_items,) items never seen in training
    found, left_out, places = [], [], 0
    for place, (item, score) in enumerate(zip(ranking.items[0].tolist(), ranking.scores[0].tolist()), start=1):
        if places == k:
            break
        if item in excluded:
            left_out.append(place)
            continue
        places += 1
        if item > 0:  # 0: a generated ID that names no item (genret), or no candidate left (dense, uni)
            found.append(Recommendation(place, item, run.item_ids[item - 1], score, unseen[item - 1],
                                        run.item_texts[item - 1]))
    if by == UNI:
        generated = rankings[GENRET, None].items[0, :uni_k].tolist()
        note = _uni_note(generated, set(evaluator.cold_items.tolist()), excluded, len(found), k)
    elif by == GENRET:
        note = _genret_note(ranking.items.shape[1], places, places - len(found), left_out, len(found), k)
    else:
        note = None if len(found) == k else (f"dense ranks all {len(run.item_ids)} items"
                                             + _left_out(left_out) + f": {_rows(len(found))}")
    return Recommendations(found, note)


def _rows(n: int) -> str:
    return f"{n} row{'' if n == 1 else 's'}"


def _left_out(places: list[int]) -> str:
    """`, N history item(s) left out (ranks ...)`, or nothing."""
    if not places:
        return ""
    return (f", {len(places)} history item{'' if len(places) == 1 else 's'} left out "
            f"(rank{'' if len(places) == 1 else 's'} {', '.join(map(str, places))})")


def _genret_note(generated: int, places: int, misses: int, left_out: list[int], rows: int, k: int) -> str | None:
    """Why genret shows fewer than k rows: generated IDs that name no item, history items left out, or
    fewer IDs generated than places (a vocabulary too small for the beams)."""
    if rows == k:
        return None
    if rows == 0:
        return (f"none of the top {places} IDs genret generated names an item" + _left_out(left_out)
                + ": nothing to recommend")
    reasons = [f"beam search generated only {generated} distinct IDs"] if places < k else []
    if misses:
        reasons.append(f"{misses} of the top {places} generated IDs name no item")
    return "genret: " + ", ".join(reasons) + _left_out(left_out) + f": {_rows(rows)}"


def _uni_note(generated: list[int], cold: set[int], excluded: set[int], rows: int, k: int) -> str | None:
    """What uni ranked, when it shows fewer than k rows or no generated ID names an item: the generated
    candidates (less those naming no item), the cold-start items (less those generated too), less the
    history items left out."""
    named = {item for item in generated if item > 0}
    if rows == k and named:
        return None
    pool = named | cold
    history = f", {len(pool & excluded)} of them history items left out" if pool & excluded else ""
    if not named:
        return (f"none of the {len(generated)} IDs uni generated names an item: uni ranks the {len(cold)} "
                f"cold-start items alone{history}: {_rows(rows)}")
    misses = len(generated) - len(named)
    both = len(named & cold)
    return (f"uni ranks the {len(generated)} generated candidates"
            + (f" ({misses} name no item)" if misses else "")
            + f" and the {len(cold)} cold-start items" + (f" ({both} of them generated too)" if both else "")
            + f", {len(pool)} items in all{history}: {_rows(rows)}")
