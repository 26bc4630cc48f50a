"""The retrieval modes (docs/method.md §7), which of them a method runs, and the names of their
metrics: one definition of each.

- genret: the beams of a beam search over the item tokens, best first (an ID naming no item is a miss).
- dense:  every item scored by the dense head (cold-start items included), the top k.
- uni:    for each K of `evaluation.uni_ks`, the top-K generated items plus every cold-start item,
          reranked by the dense head, the top k.

Metric names: `{mode}_{group}_{split}/{Recall|NDCG}@{k}`, and for the hybrid
`uni_{group}_{split}/Gen{K}_{Recall|NDCG}@{k}`; group `in` (in-set targets) or `cold` (cold-start
targets), split `val` or `test`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from src.config import ConfigError, MethodConfig
from src.metrics import headline_k

GENRET, DENSE, UNI = "genret", "dense", "uni"
MODES = (GENRET, DENSE, UNI)
GROUPS = ("in", "cold")          # in-set and cold-start targets
MEASURES = ("Recall", "NDCG")


def metric_name(mode: str, group: str, split: str, measure: str, k: int, generated: int | None = None) -> str:
    """The name of one metric, e.g. `dense_in_test/NDCG@10`; `generated`: the hybrid's K
    (`uni_cold_test/Gen20_Recall@10`)."""
    return f"{mode}_{group}_{split}/{'' if generated is None else f'Gen{generated}_'}{measure}@{k}"


def metric_name_pattern(split: str) -> re.Pattern:
    """The inverse of `metric_name` for one split: a pattern whose named groups are mode, group, K
    (the hybrid's, or None), measure and k."""
    return re.compile(rf"^(?P<mode>{'|'.join(MODES)})_(?P<group>{'|'.join(GROUPS)})_{split}/"
                      rf"(?:Gen(?P<K>\d+)_)?(?P<measure>{'|'.join(MEASURES)})@(?P<k>\d+)$")


@dataclass(frozen=True)
class Retrievals:
    """What a run is evaluated by: the retrievals its method supports (validated during training),
    the one that selects the best model, and those of the test evaluation that ends the run."""
    modes: tuple[str, ...]       # in MODES order
    selection: str               # GENRET or DENSE: its in-set validation NDCG@k picks the best epoch
    test_modes: tuple[str, ...]  # `test_method`: tiger, the generative retrieval; liger, every one of `modes`

    def __contains__(self, mode: str) -> bool:
        return mode in self.modes

    def selection_metric(self, ks: tuple[int, ...]) -> str:
        """The validation metric that picks the best model, e.g. `dense_in_val/NDCG@10`."""
        return metric_name(self.selection, "in", "val", "NDCG", headline_k(ks))


def method_retrievals(method: MethodConfig, test_method: str = "liger") -> Retrievals:
    """The retrievals of a method (as published): genret when semantic IDs are trained, dense when
    the dense head is trained, uni when both are. The best model is selected by the dense head for
    LIGER (`method.evaluation_method=dense`) and for the dense-only ablations, by genret otherwise.
    `test_method=tiger` tests TIGER's way, by generative retrieval alone (ConfigError for a method
    that has none); `liger` tests every retrieval of the method."""
    genret = method.sid_loss_weight > 0 and method.use_id == "sid"
    dense = method.flag_use_output_embedding and method.embedding_loss_weight > 0
    modes = tuple(mode for mode, on in ((GENRET, genret), (DENSE, dense), (UNI, genret and dense)) if on)
    selection = DENSE if dense and (method.evaluation_method == "dense" or not genret) else GENRET
    if test_method == "tiger" and not genret:
        raise ConfigError("test_method=tiger tests by generative retrieval alone, but this method predicts no "
                          f"semantic IDs (method.sid_loss_weight={method.sid_loss_weight:g}, "
                          f"method.use_id={method.use_id}); "
                          "use test_method=liger")
    return Retrievals(modes, selection, (GENRET,) if test_method == "tiger" else modes)
