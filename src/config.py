"""Typed run configuration, validated once at the edge.

`run.py` hands the composed Hydra config to `load_config`, which checks every key (type, range,
accepted values) and returns frozen dataclasses. Nothing below `run.py` indexes raw config dicts.
Published key names are kept (`dataset.RQ-VAE.code_book_size`, `dataset.TIGER.T5.d_model`,
`method.embedding_head_dict.embed_target`, ...) so the published command-line overrides work.
"""
from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from src.errors import ExpectedError

AMAZON_NAMES = ("Beauty", "Toys_and_Games", "Sports_and_Outdoors")
DATASET_TYPES = ("Amazon", "steam", "generated", "custom")
STAGES = ("preprocess", "embed", "semantic_ids", "train")
AMAZON_FEATURES = ("title", "price", "brand", "categories")
STEAM_FEATURES = ("title", "genre", "specs", "tags", "price", "publisher")
OFFLINE_ENCODER = "all-MiniLM-L6-v2"
TEXT_CLEANINGS = ("published", "tidy")  # see ID_generation/preprocessing/text.py


class ConfigError(ExpectedError, ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""


# --------------------------------------------------------------------------------------------
# Reading typed values out of a DictConfig, with errors that name the key.


class _Reader:
    """Reads keys under one config node; every error names the full dotted key path."""

    def __init__(self, node: Any, path: str, seen: set[str] | None = None):
        if not isinstance(node, (DictConfig, dict)):
            raise ConfigError(f"config key '{path}' must be a group of keys, got {node!r}")
        self.node, self.path = node, path
        self.seen = set() if seen is None else seen  # every key read, shared by the readers of one config

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str) -> Any:
        self.seen.add(self.key(name))
        if name not in self.node:
            raise ConfigError(f"config key '{self.key(name)}' is missing; add it to the config or "
                              f"pass it as an override, e.g. +{self.key(name)}=...")
        value = self.node[name]
        return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value

    def sub(self, name: str) -> "_Reader":
        if name not in self.node:
            raise ConfigError(f"config group '{self.key(name)}' is missing")
        return _Reader(self.node[name], self.key(name), self.seen)

    def _fail(self, name: str, expected: str, value: Any) -> None:
        raise ConfigError(f"config key '{self.key(name)}' must be {expected}, got {value!r}")

    def str_(self, name: str, choices: Iterable[str] | None = None, optional: bool = False) -> str | None:
        value = _none_if_null(self.raw(name))
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            self._fail(name, "a non-empty string", value)
        if choices is not None and value not in tuple(choices):
            self._fail(name, f"one of {', '.join(map(str, choices))}", value)
        return value

    def int_(self, name: str, lo: int | None = None, hi: int | None = None, optional: bool = False) -> int | None:
        value = _none_if_null(self.raw(name))
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self._fail(name, "an integer" + _range_text(lo, hi), value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self._fail(name, "an integer" + _range_text(lo, hi), value)
        return value

    def float_(self, name: str, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False, optional: bool = False) -> float | None:
        value = _none_if_null(self.raw(name))
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._fail(name, "a number" + _range_text(lo, hi, lo_open, hi_open), value)
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            self._fail(name, "a number" + _range_text(lo, hi, lo_open, hi_open), value)
        return float(value)

    def int_or_auto(self, name: str) -> int | None:
        """A positive integer, or None for `auto` (chosen for the device)."""
        value = self.raw(name)
        if value == "auto":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self._fail(name, "a positive integer or auto", value)
        return value

    def bool_or_auto(self, name: str) -> bool | None:
        """true, false, or None for `auto` (chosen for the device)."""
        value = self.raw(name)
        if value == "auto":
            return None
        if not isinstance(value, bool):
            self._fail(name, "true, false or auto", value)
        return value

    def bool_(self, name: str) -> bool:
        value = self.raw(name)
        if not isinstance(value, bool):
            self._fail(name, "true or false", value)
        return value

    def int_list(self, name: str, lo: int = 1) -> tuple[int, ...]:
        value = self.raw(name)
        if not isinstance(value, list) or not value or any(
                isinstance(v, bool) or not isinstance(v, int) or v < lo for v in value):
            self._fail(name, f"a non-empty list of integers >= {lo}", value)
        return tuple(value)

    def str_list(self, name: str, choices: Iterable[str]) -> tuple[str, ...]:
        value = self.raw(name)
        choices = tuple(choices)
        if not isinstance(value, list) or not value or any(v not in choices for v in value):
            self._fail(name, f"a non-empty list of values from {', '.join(choices)}", value)
        return tuple(value)


def _none_if_null(value: Any) -> Any:
    # The published main.yaml spells a missing output_path as the string "None".
    return None if value is None or (isinstance(value, str) and value in ("None", "none", "null")) else value


def _range_text(lo, hi, lo_open=False, hi_open=False) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi}"
    return ""


# --------------------------------------------------------------------------------------------
# The typed configuration.


@dataclass(frozen=True)
class GeneratorConfig:
    """Size and seed of the generated offline dataset (`dataset=generated`)."""
    seed: int
    n_users: int
    n_groups: int
    items_per_group: int
    cold_items_per_group: int
    min_seq_len: int
    max_seq_len: int
    p_follow: float


@dataclass(frozen=True)
class DataConfig:
    type: str
    name: str
    raw_data_path: Path
    processed_data_path: Path
    max_items_per_seq: int
    features_needed: tuple[str, ...]
    prompt_format: str
    text_cleaning: str      # published | tidy (ID_generation/preprocessing/text.py)
    user_core: int
    item_core: int
    user_stride: int
    content_model: str
    embedding_batch_size: int
    generator: GeneratorConfig | None


@dataclass(frozen=True)
class RQVAEConfig:
    optimizer: str
    weight_decay: float
    batch_size: int
    epochs: int
    lr: float
    beta: float
    input_dim: int | None  # None: the width of the text embeddings
    hidden_dim: tuple[int, ...]
    latent_dim: int
    num_layers: int
    dropout: float
    code_book_size: int
    val_ratio: float
    eval_every: int
    cache_dir: Path


@dataclass(frozen=True)
class T5Settings:
    encoder_layers: int
    decoder_layers: int
    d_model: int
    d_ff: int
    num_heads: int
    d_kv: int
    dropout_rate: float
    feed_forward_proj: str
    initializer_factor: float
    init_scheme: str        # published | normal (src/model.py, init_t5)
    implementation: str     # transformers | compact (src/t5.py): the T5 code, same parameters
    packing_groups: int     # compact: training batches packed, attention in this many length groups; 0: padded


@dataclass(frozen=True)
class TrainerConfig:
    steps: int
    lr: float
    patience: int
    scheduler: str
    warmup_steps: int
    weight_decay: float
    batch_size: int
    eval_batch_size: int | None  # None (`auto`): 32 (published) on a CPU, 1024 on a GPU (src/experiment.py)
    eval_frequence: int
    time_budget_min: float | None  # stop after the epoch that runs past this many minutes; None: no limit
    compile: bool | None           # torch.compile the training forward; None (`auto`): on a GPU only


@dataclass(frozen=True)
class ModelConfig:
    n_positions: int
    save_every_n_epochs: int
    t5: T5Settings
    trainer: TrainerConfig


@dataclass(frozen=True)
class EmbeddingHeadConfig:
    use_new_init: bool
    embed_target: str
    embed_proj_type: str
    normalize_logits: bool
    logits_temperature: float
    text_embedding_dim: int | None  # None: the width of the text embeddings
    hidden_sizes: tuple[int, ...]
    embd_proj_dropout_rate: float
    embd_proj_in_dropout_rate: float


@dataclass(frozen=True)
class MethodConfig:
    include_user_id: bool
    use_id: str
    flag_add_input_embedding: bool
    flag_use_output_embedding: bool
    embedding_loss_weight: float
    sid_loss_weight: float
    evaluation_method: str
    embedding_head: EmbeddingHeadConfig


@dataclass(frozen=True)
class EvaluationConfig:
    ks: tuple[int, ...]
    uni_ks: tuple[int, ...]
    num_beams: int | None   # None: max(uni_ks) when the hybrid runs, else max(ks) (published)
    constrained: bool


@dataclass(frozen=True)
class LoggingConfig:
    writer: str
    mode: str
    project: str
    entity: str | None


@dataclass(frozen=True)
class DistributedConfig:
    batch_size: str      # global: trainer.batch_size is split over the processes; per_device: each takes it
    timeout_min: int     # how long a process waits for the others at a collective

    def global_batch_size(self, batch_size: int, world_size: int) -> int:
        """Examples per optimiser step over `world_size` processes for a configured `batch_size`."""
        global_size = batch_size if self.batch_size == "global" else batch_size * world_size
        if global_size < world_size:
            raise ConfigError(f"config key 'dataset.TIGER.trainer.batch_size' ({batch_size}) must be at least the "
                              f"number of processes ({world_size}) with distributed.batch_size=global")
        return global_size


@dataclass(frozen=True)
class RunConfig:
    experiment_id: str
    seed: int
    device_id: int
    output_path: Path | None
    test_method: str
    stop_after: str | None
    data: DataConfig
    rqvae: RQVAEConfig
    model: ModelConfig
    method: MethodConfig
    evaluation: EvaluationConfig
    logging: LoggingConfig
    distributed: DistributedConfig

    @property
    def run_dir(self) -> Path:
        """`results/{test_method}/{dataset.type}_{dataset.name}/{experiment_id}_seed_{seed}`, or output_path."""
        if self.output_path is not None:
            return self.output_path
        return run_dir_for(self.test_method, self.data.type, self.data.name, self.experiment_id, self.seed)

    def runs_stage(self, stage: str) -> bool:
        """Whether `stage` runs under `stop_after` (every stage up to and including it)."""
        if self.stop_after is None:
            return True
        return STAGES.index(stage) <= STAGES.index(self.stop_after)


def run_dir_for(test_method: str, dataset_type: str, dataset_name: str, experiment_id: str, seed: int) -> Path:
    return Path("results") / str(test_method) / f"{dataset_type}_{dataset_name}" / f"{experiment_id}_seed_{seed}"


# --------------------------------------------------------------------------------------------
# Building it.


def load_config(cfg: DictConfig) -> RunConfig:
    """Validate the composed Hydra config and return it as typed objects.

    Raises ConfigError naming the offending key and the accepted values.
    """
    root = _Reader(cfg, "")
    run_config = _run_config(root)
    _refuse_unknown_keys(cfg, root.seen)
    return run_config


# Keys of the published configs that nothing here uses; accepted so that published command lines run.
UNUSED_PUBLISHED_KEYS = ("dataset.RQ-VAE.max_seq_len",)


def _refuse_unknown_keys(cfg: DictConfig, read: set[str]) -> None:
    """ConfigError naming every key of `cfg` that no reader asked for (a misspelt override such as
    `+dataset.TIGER.trainer.stepz=100` would otherwise be ignored), with the closest known key."""
    known = read | set(UNUSED_PUBLISHED_KEYS)
    unknown = [key for key in _leaf_keys(OmegaConf.to_container(cfg, resolve=False))
               if not any(key == k or key.startswith(k + ".") for k in known)]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        if not close:  # the same name elsewhere in the tree, e.g. `epochs` for `dataset.RQ-VAE.epochs`
            close = [k for k in sorted(known) if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]][:1]
        hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise ConfigError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(hints)}: nothing reads "
                      f"{'them' if len(unknown) > 1 else 'it'}; fix the name or remove the override")


def _leaf_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves (values that are not non-empty groups) of a nested dict."""
    keys = []
    for name, value in node.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        keys += _leaf_keys(value, key) if isinstance(value, dict) and value else [key]
    return keys


def _run_config(root: _Reader) -> RunConfig:
    experiment_id = root.str_("experiment_id")
    if "/" in experiment_id:
        raise ConfigError(f"config key 'experiment_id' must not contain '/', got {experiment_id!r}")
    output_path = root.str_("output_path", optional=True)
    data = _data_config(root.sub("dataset"))
    return RunConfig(
        experiment_id=experiment_id,
        seed=root.int_("seed", lo=0),
        device_id=root.int_("device_id", lo=0),
        output_path=Path(output_path) if output_path else None,
        test_method=root.str_("test_method", choices=("tiger", "liger")),
        stop_after=root.str_("stop_after", choices=STAGES, optional=True),
        data=data,
        rqvae=_rqvae_config(root.sub("dataset").sub("RQ-VAE")),
        model=_model_config(root.sub("dataset").sub("TIGER")),
        method=_method_config(root.sub("method")),
        evaluation=_evaluation_config(root.sub("evaluation")),
        logging=_logging_config(root.sub("logging")),
        distributed=_distributed_config(root.sub("distributed")),
    )


def _data_config(r: _Reader) -> DataConfig:
    dtype = r.str_("type", choices=DATASET_TYPES)
    name = r.str_("name")
    if dtype == "Amazon" and name not in AMAZON_NAMES:
        raise ConfigError(f"config key 'dataset.name' must be one of {', '.join(AMAZON_NAMES)} for "
                          f"dataset=amazon, got {name!r}")
    if dtype == "steam" and name != "steam":
        raise ConfigError(f"config key 'dataset.name' must be 'steam' for dataset=steam, got {name!r}")
    prompt_format = r.str_("prompt_format", choices=("amazon", "steam"))
    features = STEAM_FEATURES if prompt_format == "steam" else AMAZON_FEATURES
    return DataConfig(
        type=dtype,
        name=name,
        raw_data_path=Path(r.str_("raw_data_path")),
        processed_data_path=Path(r.str_("processed_data_path")),
        max_items_per_seq=r.int_("max_items_per_seq", lo=3),
        features_needed=r.str_list("features_needed", features),
        prompt_format=prompt_format,
        text_cleaning=r.str_("text_cleaning", choices=TEXT_CLEANINGS),
        user_core=r.int_("user_core", lo=1),
        item_core=r.int_("item_core", lo=1),
        user_stride=r.int_("user_stride", lo=1),
        content_model=r.str_("content_model"),
        embedding_batch_size=r.int_("embedding_batch_size", lo=1),
        generator=_generator_config(r.sub("generator")) if dtype == "generated" else None,
    )


def _generator_config(r: _Reader) -> GeneratorConfig:
    gen = GeneratorConfig(
        seed=r.int_("seed", lo=0),
        n_users=r.int_("n_users", lo=10),
        n_groups=r.int_("n_groups", lo=2),
        items_per_group=r.int_("items_per_group", lo=2),
        cold_items_per_group=r.int_("cold_items_per_group", lo=0),
        min_seq_len=r.int_("min_seq_len", lo=5),
        max_seq_len=r.int_("max_seq_len", lo=5),
        p_follow=r.float_("p_follow", lo=0.0, hi=1.0),
    )
    if gen.max_seq_len < gen.min_seq_len:
        raise ConfigError("config key 'dataset.generator.max_seq_len' must be >= "
                          f"dataset.generator.min_seq_len ({gen.min_seq_len}), got {gen.max_seq_len}")
    return gen


def _rqvae_config(r: _Reader) -> RQVAEConfig:
    return RQVAEConfig(
        optimizer=r.str_("optimizer", choices=("AdamW",)),
        weight_decay=r.float_("weight_decay", lo=0.0),
        batch_size=r.int_("batch_size", lo=1),
        epochs=r.int_("epochs", lo=1),
        lr=r.float_("lr", lo=0.0, lo_open=True),
        beta=r.float_("beta", lo=0.0),
        input_dim=r.int_("input_dim", lo=1, optional=True),
        hidden_dim=r.int_list("hidden_dim"),
        latent_dim=r.int_("latent_dim", lo=1),
        num_layers=r.int_("num_layers", lo=1),
        dropout=r.float_("dropout", lo=0.0, hi=1.0, hi_open=True),
        code_book_size=r.int_("code_book_size", lo=2),
        val_ratio=r.float_("val_ratio", lo=0.0, hi=1.0, hi_open=True),
        eval_every=r.int_("eval_every", lo=1),
        cache_dir=Path(r.str_("cache_dir")),
    )


def _model_config(r: _Reader) -> ModelConfig:
    t5, tr = r.sub("T5"), r.sub("trainer")
    return ModelConfig(
        n_positions=r.int_("n_positions", lo=1),
        save_every_n_epochs=r.int_("save_every_n_epochs", lo=1),
        t5=T5Settings(
            encoder_layers=t5.int_("encoder_layers", lo=1),
            decoder_layers=t5.int_("decoder_layers", lo=1),
            d_model=t5.int_("d_model", lo=1),
            d_ff=t5.int_("d_ff", lo=1),
            num_heads=t5.int_("num_heads", lo=1),
            d_kv=t5.int_("d_kv", lo=1),
            dropout_rate=t5.float_("dropout_rate", lo=0.0, hi=1.0, hi_open=True),
            feed_forward_proj=t5.str_("feed_forward_proj", choices=("relu", "gelu", "gated-gelu", "gated-relu")),
            initializer_factor=t5.float_("initializer_factor", lo=0.0, lo_open=True),
            init_scheme=t5.str_("init_scheme", choices=("published", "normal")),
            implementation=t5.str_("implementation", choices=("transformers", "compact")),
            packing_groups=t5.int_("packing_groups", lo=0),
        ),
        trainer=TrainerConfig(
            steps=tr.int_("steps", lo=1),
            lr=tr.float_("lr", lo=0.0, lo_open=True),
            patience=tr.int_("patience", lo=1),
            scheduler=tr.str_("scheduler", choices=("cosine", "linear", "constant")),
            warmup_steps=tr.int_("warmup_steps", lo=0),
            weight_decay=tr.float_("weight_decay", lo=0.0),
            batch_size=tr.int_("batch_size", lo=1),
            eval_batch_size=tr.int_or_auto("eval_batch_size"),
            eval_frequence=tr.int_("eval_frequence", lo=1),
            time_budget_min=tr.float_("time_budget_min", lo=0.0, lo_open=True, optional=True),
            compile=tr.bool_or_auto("compile"),
        ),
    )


def _method_config(r: _Reader) -> MethodConfig:
    method = _method_fields(r)
    rules = [
        (method.sid_loss_weight == 0 and method.embedding_loss_weight == 0,
         "method.sid_loss_weight and method.embedding_loss_weight are both 0: nothing would be trained"),
        (method.embedding_loss_weight > 0 and not method.flag_use_output_embedding,
         "method.embedding_loss_weight > 0 needs method.flag_use_output_embedding=True (the dense head)"),
        (method.use_id == "item_id" and method.sid_loss_weight > 0,
         "method.use_id=item_id (the Dense (ID) ablation) predicts no semantic IDs: set method.sid_loss_weight=0"),
        (method.embedding_head.embed_target == "ground_truth+item_id" and method.use_id != "item_id",
         "method.embedding_head_dict.embed_target=ground_truth+item_id needs method.use_id=item_id"),
    ]
    for broken, message in rules:
        if broken:
            raise ConfigError(message)
    return method


def _method_fields(r: _Reader) -> MethodConfig:
    head = r.sub("embedding_head_dict")
    return MethodConfig(
        include_user_id=r.bool_("include_user_id"),
        use_id=r.str_("use_id", choices=("sid", "item_id")),
        flag_add_input_embedding=r.bool_("flag_add_input_embedding"),
        flag_use_output_embedding=r.bool_("flag_use_output_embedding"),
        embedding_loss_weight=r.float_("embedding_loss_weight", lo=0.0),
        sid_loss_weight=r.float_("sid_loss_weight", lo=0.0),
        evaluation_method=r.str_("evaluation_method", choices=("default", "dense")),
        embedding_head=EmbeddingHeadConfig(
            use_new_init=head.bool_("use_new_init"),
            embed_target=head.str_("embed_target", choices=("ground_truth", "ground_truth+item_id")),
            embed_proj_type=head.str_("embed_proj_type", choices=("mlp", "linear")),
            normalize_logits=head.bool_("normalize_logits"),
            logits_temperature=head.float_("logits_temperature", lo=0.0, lo_open=True),
            text_embedding_dim=head.int_("text_embedding_dim", lo=1, optional=True),
            hidden_sizes=head.int_list("hidden_sizes"),
            embd_proj_dropout_rate=head.float_("embd_proj_dropout_rate", lo=0.0, hi=1.0, hi_open=True),
            embd_proj_in_dropout_rate=head.float_("embd_proj_in_dropout_rate", lo=0.0, hi=1.0, hi_open=True),
        ),
    )


def _evaluation_config(r: _Reader) -> EvaluationConfig:
    return EvaluationConfig(ks=r.int_list("ks"), uni_ks=r.int_list("uni_ks"),
                            num_beams=r.int_("num_beams", lo=1, optional=True), constrained=r.bool_("constrained"))


def _logging_config(r: _Reader) -> LoggingConfig:
    return LoggingConfig(
        writer=r.str_("writer", choices=("wandb",)),
        mode=r.str_("mode", choices=("offline", "online", "disabled")),
        project=r.str_("project"),
        entity=r.str_("entity", optional=True),
    )


def _distributed_config(r: _Reader) -> DistributedConfig:
    return DistributedConfig(batch_size=r.str_("batch_size", choices=("global", "per_device")),
                             timeout_min=r.int_("timeout_min", lo=1))


def check_encoder_width(cfg: RunConfig, width: int) -> None:
    """Fail if a width set explicitly in the config disagrees with the text encoder's width."""
    for key, value in (("dataset.RQ-VAE.input_dim", cfg.rqvae.input_dim),
                       ("method.embedding_head_dict.text_embedding_dim", cfg.method.embedding_head.text_embedding_dim)):
        if value is not None and value != width:
            raise ConfigError(
                f"config key '{key}' is {value}, but the text encoder '{cfg.data.content_model}' gives "
                f"{width}-dimensional embeddings; set {key}=null (take the encoder's width) or {key}={width}")


def _run_dir_resolver(output_path, test_method, dataset_type, dataset_name, experiment_id, seed) -> str:
    """Hydra's run folder is the run's results folder, so .hydra/ and the log sit beside metrics.json.
    Hydra creates it before any of run.py's code runs, so a folder that cannot be created is
    reported here, by its message alone (exit 1), instead of by a traceback from Hydra's set-up."""
    output_path = _none_if_null(output_path)
    folder = Path(output_path) if output_path else run_dir_for(test_method, dataset_type, dataset_name, experiment_id, seed)
    reason = unwritable_reason(folder)
    if reason is not None:
        print(f"Error: the run folder {folder.resolve()} cannot be created: {reason}; choose another output_path "
              "(or run from a writable folder)", file=sys.stderr)
        raise SystemExit(1)
    return str(folder)


def unwritable_reason(folder: Path) -> str | None:
    """Why `folder` cannot be created or written, or None: its nearest existing ancestor is a file,
    or a folder this process may not write in."""
    ancestor = folder.resolve()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable"
    return None


def _sweep_dir_resolver(output_path, experiment_id) -> str:
    """A sweep's root folder (each job in a subfolder): output_path, else results/multirun/{experiment_id}."""
    output_path = _none_if_null(output_path)
    return str(output_path) if output_path else str(Path("results") / "multirun" / str(experiment_id))


OmegaConf.register_new_resolver("run_dir", _run_dir_resolver, replace=True)
OmegaConf.register_new_resolver("sweep_dir", _sweep_dir_resolver, replace=True)
