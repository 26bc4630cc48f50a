"""The recommender stage assembled from the earlier stages' outputs: the method's vocabulary, the
model, batching, evaluation settings and the trainer; and the end-of-run results table."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ID_generation.preprocessing.split import Split
from ID_generation.semantic_ids import SemanticIds
from src.cache import digest, fingerprint
from src.config import ConfigError, RunConfig
from src.data import SequenceData
from src.distributed import SINGLE, Processes
from src.evaluation import EvalSettings, Evaluator
from src.metrics import headline_k
from src.model import ModelSpec, Recommender
from src.retrieval import DENSE, GENRET, GROUPS, MEASURES, UNI, Retrievals, method_retrievals, metric_name
from src.tracking import RunRecorder
from src.training import Trainer
from src.vocabulary import Vocabulary

# `eval_batch_size: auto`; the metrics do not depend on it. A beam search makes as many operator calls per
# batch whatever its size (about 12,400 at the published size, profiled on the CPU), which a GPU waits on:
# few large batches there, capped by the evaluator's memory budget (`Evaluator.rows_per_batch`)
EVAL_BATCH_SIZE = {"cpu": 32, "cuda": 4096}
CPU = torch.device("cpu")


def eval_settings(cfg: RunConfig, device: torch.device = CPU) -> EvalSettings:
    """The evaluation settings of a run: the method's retrievals (src/retrieval.py), the beams the
    test evaluation needs, the batch size for `device`. ConfigError for a test_method the method
    cannot be tested by."""
    ev, retrievals = cfg.evaluation, method_retrievals(cfg.method, cfg.test_method)
    modes = retrievals.modes
    beams = ev.num_beams or max(ev.uni_ks + ev.ks if UNI in retrievals.test_modes else ev.ks)
    if UNI in retrievals.test_modes and beams < max(ev.uni_ks) or GENRET in modes and beams < max(ev.ks):
        raise ConfigError(f"evaluation.num_beams={beams} must be at least max(evaluation.uni_ks) "
                          f"and max(evaluation.ks)")
    return EvalSettings(ks=ev.ks, uni_ks=ev.uni_ks, num_beams=beams, constrained=ev.constrained,
                        batch_size=cfg.model.trainer.eval_batch_size or EVAL_BATCH_SIZE.get(device.type, 32),
                        modes=modes)


@dataclass
class Experiment:
    model: Recommender
    data: SequenceData
    evaluator: Evaluator
    trainer: Trainer
    settings: EvalSettings
    retrievals: Retrievals


def build_experiment(cfg: RunConfig, split: Split, sids: SemanticIds, embeddings: torch.Tensor,
                     device: torch.device, recorder: RunRecorder, processes: Processes = SINGLE) -> Experiment:
    vocab = Vocabulary.for_method(cfg.method, sids)
    spec = ModelSpec(vocab=vocab, max_items=cfg.data.max_items_per_seq, n_positions=cfg.model.n_positions,
                     t5=cfg.model.t5, method=cfg.method)
    torch.manual_seed(cfg.seed)
    model = Recommender(spec, embeddings, torch.as_tensor(split.seen_items)).to(device)
    data = SequenceData(split, vocab, device)
    settings = eval_settings(cfg, device)
    cold = np.union1d(split.cold_val_items, split.cold_test_items)
    evaluator = Evaluator(model, data, vocab, settings, torch.as_tensor(cold), processes)
    retrievals = method_retrievals(cfg.method, cfg.test_method)
    key = fingerprint(dataclasses.asdict(cfg.model), dataclasses.asdict(cfg.method), dataclasses.asdict(cfg.evaluation),
                      cfg.seed, digest(sids.codes), digest(embeddings), data_digest(split))
    trainer = Trainer(model, data, evaluator, cfg.model.trainer, cfg.run_dir, recorder, cfg.seed,
                      retrievals.selection_metric(cfg.evaluation.ks), key,
                      cfg.distributed.global_batch_size(cfg.model.trainer.batch_size, processes.world_size), processes,
                      save_every=cfg.model.save_every_n_epochs)
    return Experiment(model, data, evaluator, trainer, settings, retrievals)


def data_digest(split: Split) -> list[str]:
    """What identifies the training data of a checkpoint: the sequences (items and their order) and
    the examples drawn from them, so that changed data never resumes an old checkpoint."""
    return [digest(split.sequences.items), digest(split.sequences.offsets), digest(np.asarray(split.train_user)),
            digest(np.asarray(split.train_pos))]


def results_table(metrics: dict[str, float], settings: EvalSettings, modes: tuple[str, ...],
                  split: str = "test") -> str:
    """Rows genret / dense / uni@K of `modes`; columns in-set and cold-start Recall and NDCG at the headline k."""
    k = headline_k(settings.ks)
    rows = [(mode, None) for mode in (GENRET, DENSE) if mode in modes] + \
           ([(UNI, generated) for generated in settings.uni_ks] if UNI in modes else [])
    columns = [(group, measure) for group in GROUPS for measure in MEASURES]
    titles = [f"{group} {measure}@{k}" for group, measure in columns]
    widths = (14, 12, 16, 14)
    header = f"{'':<10}" + "".join(f"{title:>{w}}" for title, w in zip(titles, widths))
    lines = [header, "-" * len(header)]
    for mode, generated in rows:
        values = [metrics.get(metric_name(mode, group, split, measure, k, generated)) for group, measure in columns]
        label = mode if generated is None else f"{mode}@{generated}"
        lines.append(f"{label:<10}" + "".join(f"{v:>{w}.4f}" if v is not None else f"{'-':>{w}}"
                                            for v, w in zip(values, widths)))
    return "\n".join(lines)
