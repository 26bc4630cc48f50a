"""The recommender stage assembled from the earlier stages' outputs: item tokens for the method,
the model, batching, evaluation settings and the trainer; and the end-of-run results table."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ID_generation.preprocessing.split import Split
from ID_generation.semantic_ids import N_USER_TOKENS, SemanticIds
from src.cache import digest, fingerprint
from src.config import ConfigError, RunConfig
from src.data import SequenceData
from src.distributed import SINGLE, Processes
from src.evaluation import EvalSettings, Evaluator
from src.metrics import headline_k
from src.model import ModelSpec, Recommender
from src.tracking import RunRecorder
from src.training import Trainer, selection_metric


@dataclass(frozen=True)
class Vocabulary:
    item_tokens: torch.Tensor                                   # (n_items, T), row i = item i + 1
    vocab_size: int
    pad: int
    eos: int
    user_token: Callable[[torch.Tensor], torch.Tensor] | None
    sids: SemanticIds | None                                    # for decoding; None with item ids


def vocabulary(cfg: RunConfig, sids: SemanticIds) -> Vocabulary:
    """Tokens of each item under the method: semantic IDs (SPEC §4 layout) or, for the published
    Dense (ID) ablation, one token per item id (pad 0, items 1..n, [user tokens,] EOS last)."""
    n_users = N_USER_TOKENS if cfg.method.include_user_id else 0
    if cfg.method.use_id == "item_id":
        n = len(sids)
        user_offset = n + 1
        user = (lambda users: user_offset + users % n_users) if n_users else None
        return Vocabulary(torch.arange(1, n + 1)[:, None], n + n_users + 2, 0, n + n_users + 1, user, None)
    sids = SemanticIds(sids.codes, sids.layout.codebook_size, n_user_tokens=n_users)
    layout = sids.layout
    return Vocabulary(sids.tokens(), layout.vocab_size, layout.pad, layout.eos,
                      layout.user_tokens if n_users else None, sids)


EVAL_BATCH_SIZE = {"cpu": 32, "cuda": 1024}  # `eval_batch_size: auto`; the metrics do not depend on it


def eval_settings(cfg: RunConfig, device: torch.device = torch.device("cpu")) -> EvalSettings:
    method, ev = cfg.method, cfg.evaluation
    genret = method.sid_loss_weight > 0 and method.use_id == "sid"
    dense = method.flag_use_output_embedding and method.embedding_loss_weight > 0
    uni = genret and dense
    beams = ev.num_beams or max(ev.uni_ks + ev.ks if uni else ev.ks)
    if uni and beams < max(ev.uni_ks) or genret and beams < max(ev.ks):
        raise ConfigError(f"evaluation.num_beams={beams} must be at least max(evaluation.uni_ks) and max(evaluation.ks)")
    return EvalSettings(ks=ev.ks, uni_ks=ev.uni_ks, num_beams=beams, constrained=ev.constrained,
                        batch_size=cfg.model.trainer.eval_batch_size or EVAL_BATCH_SIZE.get(device.type, 32), genret=genret, dense=dense, uni=uni)


@dataclass
class Experiment:
    model: Recommender
    data: SequenceData
    evaluator: Evaluator
    trainer: Trainer
    settings: EvalSettings


def build_experiment(cfg: RunConfig, split: Split, sids: SemanticIds, embeddings: torch.Tensor,
                     device: torch.device, recorder: RunRecorder, processes: Processes = SINGLE) -> Experiment:
    vocab = vocabulary(cfg, sids)
    spec = ModelSpec(vocab_size=vocab.vocab_size, pad=vocab.pad, eos=vocab.eos,
                     tokens_per_item=vocab.item_tokens.shape[1], max_items=cfg.data.max_items_per_seq,
                     n_positions=cfg.model.n_positions, t5=cfg.model.t5, method=cfg.method)
    torch.manual_seed(cfg.seed)
    model = Recommender(spec, embeddings, torch.as_tensor(split.seen_items)).to(device)
    data = SequenceData(split, vocab.item_tokens, device, vocab.user_token)
    settings = eval_settings(cfg, device)
    cold = np.union1d(split.cold_val_items, split.cold_test_items)
    evaluator = Evaluator(model, data, vocab.sids, settings, torch.as_tensor(cold), processes)
    key = fingerprint(dataclasses.asdict(cfg.model), dataclasses.asdict(cfg.method), dataclasses.asdict(cfg.evaluation), cfg.seed,
                      digest(sids.codes), digest(embeddings), data_digest(split))
    trainer = Trainer(model, data, evaluator, cfg.model.trainer, cfg.run_dir, recorder, cfg.seed,
                      selection_metric(cfg.method, cfg.evaluation.ks), key,
                      cfg.distributed.global_batch_size(cfg.model.trainer.batch_size, processes.world_size), processes)
    return Experiment(model, data, evaluator, trainer, settings)


def data_digest(split: Split) -> list[str]:
    """What identifies the training data of a checkpoint: the sequences (items and their order) and
    the examples drawn from them, so that changed data never resumes an old checkpoint."""
    return [digest(split.sequences.items), digest(split.sequences.offsets), digest(np.asarray(split.train_user)),
            digest(np.asarray(split.train_pos))]


def results_table(metrics: dict[str, float], settings: EvalSettings, which: str = "test") -> str:
    """Rows genret / dense / uni@K; columns in-set and cold-start Recall and NDCG at the first k."""
    k = headline_k(settings.ks)
    rows = ([("genret", "")] if settings.genret else []) + ([("dense", "")] if settings.dense else []) + \
           ([(f"uni@{g}", f"Gen{g}_") for g in settings.uni_ks] if settings.uni else [])
    header = f"{'':<10}{'in Recall@' + str(k):>14}{'in NDCG@' + str(k):>12}{'cold Recall@' + str(k):>16}{'cold NDCG@' + str(k):>14}"
    lines = [header, "-" * len(header)]
    for label, variant in rows:
        method = label.split("@")[0]
        values = [metrics.get(f"{method}_{group}_{which}/{variant}{m}@{k}") for group in ("in", "cold")
                  for m in ("Recall", "NDCG")]
        widths = (14, 12, 16, 14)
        lines.append(f"{label:<10}" + "".join(f"{v:>{w}.4f}" if v is not None else f"{'-':>{w}}"
                                            for v, w in zip(values, widths)))
    return "\n".join(lines)

