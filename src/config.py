"""Typed run configuration, validated once at the edge.

`run.py` hands the composed Hydra config to `load_config`, which returns frozen dataclasses; nothing
below `run.py` indexes raw config dicts. Each key is declared once, as a dataclass field: its
annotated type says how it is read (int, float, str, bool, Path, a tuple, `X | None`, a nested
group) and `key(...)` adds its limits, accepted values, `auto`, and its YAML name where that is not
the field's name. The published key names are kept (`dataset.RQ-VAE.code_book_size`,
`dataset.TIGER.T5.d_model`, `method.embedding_head_dict.embed_target`, ...) so the published
command-line overrides work. Rules that tie keys together are each dataclass's `check`. A key that no
field declares is refused, with the closest known key, so a misspelt override is not ignored.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, ListConfig, OmegaConf

from src.errors import ExpectedError

AMAZON_NAMES = ("Beauty", "Toys_and_Games", "Sports_and_Outdoors")
DATASET_TYPES = ("Amazon", "steam", "generated", "custom")
STAGES = ("preprocess", "embed", "semantic_ids", "train")
AMAZON_FEATURES = ("title", "price", "brand", "categories")
STEAM_FEATURES = ("title", "genre", "specs", "tags", "price", "publisher")
OFFLINE_ENCODER = "all-MiniLM-L6-v2"
TEXT_CLEANINGS = ("published", "tidy")  # see ID_generation/preprocessing/text.py
RQVAE_OPTIMIZERS = ("AdamW", "Adam")    # see OPTIMIZERS in ID_generation/rqvae/training.py
# torch.set_float32_matmul_precision: highest (full float32, as published) | high (TF32 on a GPU's
# tensor cores) | medium
FLOAT32_MATMUL_PRECISIONS = ("highest", "high", "medium")

# Keys of the published configs that nothing here reads, refused with the reason (a silently
# ignored setting would suggest it changes the run).
REFUSED_KEYS = {"dataset.RQ-VAE.max_seq_len": "the RQ-VAE encodes one item at a time, not sequences"}


class ConfigError(ExpectedError, ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""
    label = "Configuration error"
    exit_status = 2


# --------------------------------------------------------------------------------------------
# Declaring a key.


@dataclass(frozen=True)
class _Key:
    name: str | None = None          # the YAML key; a dotted name is a path below the parent group
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False            # lo itself is refused
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    auto: bool = False               # `X | None` whose None is spelled `auto` (null is refused)
    only_if: tuple[str, Any] | None = None  # (earlier field, value): read only then, else None


def key(name: str | None = None, **spec: Any) -> Any:
    """A config field: its YAML key `name` where that is not the field's name, and the limits of `_Key`.
    It gives no default value, so that fields without one may follow (every key must be in the YAML)."""
    return dataclasses.field(metadata={_Key: _Key(name, **spec)})


# --------------------------------------------------------------------------------------------
# The typed configuration.


@dataclass(frozen=True)
class GeneratorConfig:
    """Size and seed of the generated offline dataset (`dataset=generated`)."""
    seed: int = key(lo=0)
    n_users: int = key(lo=10)
    n_groups: int = key(lo=2)
    items_per_group: int = key(lo=2)
    cold_items_per_group: int = key(lo=0)
    min_seq_len: int = key(lo=5)
    max_seq_len: int = key(lo=5)
    p_follow: float = key(lo=0.0, hi=1.0)

    def check(self, path: str) -> None:
        if self.max_seq_len < self.min_seq_len:
            raise ConfigError(f"config key '{path}.max_seq_len' must be >= {path}.min_seq_len ({self.min_seq_len}), "
                              f"got {self.max_seq_len}")


@dataclass(frozen=True)
class DataConfig:
    type: str = key(choices=DATASET_TYPES)
    name: str
    raw_data_path: Path
    processed_data_path: Path
    max_items_per_seq: int = key(lo=3)
    features_needed: tuple[str, ...]  # accepted values depend on prompt_format (check)
    prompt_format: str = key(choices=("amazon", "steam"))
    text_cleaning: str = key(choices=TEXT_CLEANINGS)  # published | tidy (ID_generation/preprocessing/text.py)
    user_core: int = key(lo=1)
    item_core: int = key(lo=1)
    user_stride: int = key(lo=1)
    content_model: str
    embedding_batch_size: int = key(lo=1)
    generator: GeneratorConfig | None = key(only_if=("type", "generated"))

    def check(self, path: str) -> None:
        if self.type == "Amazon" and self.name not in AMAZON_NAMES:
            raise ConfigError(f"config key '{path}.name' must be one of {', '.join(AMAZON_NAMES)} for "
                              f"dataset=amazon, got {self.name!r}")
        if self.type == "steam" and self.name != "steam":
            raise ConfigError(f"config key '{path}.name' must be 'steam' for dataset=steam, got {self.name!r}")
        features = STEAM_FEATURES if self.prompt_format == "steam" else AMAZON_FEATURES
        if any(feature not in features for feature in self.features_needed):
            raise ConfigError(f"config key '{path}.features_needed' must be a non-empty list of values from "
                              f"{', '.join(features)}, got {list(self.features_needed)!r}")


@dataclass(frozen=True)
class RQVAEConfig:
    optimizer: str = key(choices=RQVAE_OPTIMIZERS)
    weight_decay: float = key(lo=0.0)
    batch_size: int = key(lo=1)
    epochs: int = key(lo=1)
    lr: float = key(lo=0.0, lo_open=True)
    beta: float = key(lo=0.0)
    input_dim: int | None = key(lo=1)  # None: the width of the text embeddings
    hidden_dim: tuple[int, ...] = key(lo=1)
    latent_dim: int = key(lo=1)
    num_layers: int = key(lo=1)
    dropout: float = key(lo=0.0, hi=1.0, hi_open=True)
    code_book_size: int = key(lo=2)
    val_ratio: float = key(lo=0.0, hi=1.0, hi_open=True)
    eval_every: int = key(lo=1)
    cuda_graphs: bool = key()  # GPU: epochs replayed from one CUDA graph (ID_generation/rqvae/training.py)
    compile: bool = key()  # the model's forward compiled for each batch shape (torch.compile, dynamic=False)
    # the float32 products of training and coding (src/runtime.py, float32_matmul_precision)
    float32_matmul_precision: str = key(choices=FLOAT32_MATMUL_PRECISIONS)
    cache_dir: Path
    # the semantic IDs in one portable file (ID_generation/rqvae/codes_file.py), a relative path taken from
    # the folder the run starts in (as cache_dir): read, without training, where it exists; written after
    # the stage where it does not. None: the cache alone
    codes_file: Path | None


@dataclass(frozen=True)
class T5Settings:
    encoder_layers: int = key(lo=1)
    decoder_layers: int = key(lo=1)
    d_model: int = key(lo=1)
    d_ff: int = key(lo=1)
    num_heads: int = key(lo=1)
    d_kv: int = key(lo=1)
    dropout_rate: float = key(lo=0.0, hi=1.0, hi_open=True)
    feed_forward_proj: str = key(choices=("relu", "gelu", "gated-gelu", "gated-relu"))
    initializer_factor: float = key(lo=0.0, lo_open=True)
    init_scheme: str = key(choices=("published", "normal"))  # src/model.py, init_t5
    # transformers | compact (src/t5.py): the T5 code, same parameters
    implementation: str = key(choices=("transformers", "compact"))
    packing_groups: int = key(lo=0)  # compact: training batches packed, attention in this many length groups; 0: padded


@dataclass(frozen=True)
class TrainerConfig:
    steps: int = key(lo=1)
    lr: float = key(lo=0.0, lo_open=True)
    patience: int = key(lo=1)
    scheduler: str = key(choices=("cosine", "linear", "constant"))
    warmup_steps: int = key(lo=0)
    weight_decay: float = key(lo=0.0)
    batch_size: int = key(lo=1)
    # None (`auto`): 32 (published) on a CPU, 4096 on a GPU (src/experiment.py)
    eval_batch_size: int | None = key(lo=1, auto=True)
    eval_frequence: int = key(lo=1)
    # stop after the epoch that runs past this many minutes; None: no limit
    time_budget_min: float | None = key(lo=0.0, lo_open=True)
    compile: bool | None = key(auto=True)  # torch.compile the training forward; None (`auto`): on a GPU only
    compile_scope: str = key(choices=("blocks", "model"))  # what compiles as one graph (src/runtime.py)
    # the training step captured as one CUDA graph (one GPU; batches in fixed-width length groups, or
    # padded to one shape where packing_groups is 0); None (`auto`): where one process trains on a GPU
    cuda_graphs: bool | None = key(auto=True)
    float32_matmul_precision: str = key(choices=FLOAT32_MATMUL_PRECISIONS)  # float32 products (run.py)


@dataclass(frozen=True)
class ModelConfig:
    n_positions: int = key(lo=1)
    save_every_n_epochs: int = key(lo=1)
    t5: T5Settings = key("T5")
    trainer: TrainerConfig


@dataclass(frozen=True)
class EmbeddingHeadConfig:
    use_new_init: bool
    embed_target: str = key(choices=("ground_truth", "ground_truth+item_id"))
    embed_proj_type: str = key(choices=("mlp", "linear"))
    normalize_logits: bool
    logits_temperature: float = key(lo=0.0, lo_open=True)
    text_embedding_dim: int | None = key(lo=1)  # None: the width of the text embeddings
    hidden_sizes: tuple[int, ...] = key(lo=1)
    embd_proj_dropout_rate: float = key(lo=0.0, hi=1.0, hi_open=True)
    embd_proj_in_dropout_rate: float = key(lo=0.0, hi=1.0, hi_open=True)


@dataclass(frozen=True)
class MethodConfig:
    include_user_id: bool
    use_id: str = key(choices=("sid", "item_id"))
    flag_add_input_embedding: bool
    flag_use_output_embedding: bool
    embedding_loss_weight: float = key(lo=0.0)
    sid_loss_weight: float = key(lo=0.0)
    evaluation_method: str = key(choices=("default", "dense"))
    embedding_head: EmbeddingHeadConfig = key("embedding_head_dict")

    def check(self, path: str) -> None:
        rules = [
            (self.sid_loss_weight == 0 and self.embedding_loss_weight == 0,
             f"{path}.sid_loss_weight and {path}.embedding_loss_weight are both 0: nothing would be trained"),
            (self.embedding_loss_weight > 0 and not self.flag_use_output_embedding,
             f"{path}.embedding_loss_weight > 0 needs {path}.flag_use_output_embedding=True (the dense head)"),
            (self.use_id == "item_id" and self.sid_loss_weight > 0,
             f"{path}.use_id=item_id (the Dense (ID) ablation) predicts no semantic IDs: set {path}.sid_loss_weight=0"),
            (self.embedding_head.embed_target == "ground_truth+item_id" and self.use_id != "item_id",
             f"{path}.embedding_head_dict.embed_target=ground_truth+item_id needs {path}.use_id=item_id"),
        ]
        for broken, message in rules:
            if broken:
                raise ConfigError(message)


@dataclass(frozen=True)
class EvaluationConfig:
    ks: tuple[int, ...] = key(lo=1)
    uni_ks: tuple[int, ...] = key(lo=1)
    num_beams: int | None = key(lo=1)  # None: max(uni_ks) when the hybrid runs, else max(ks) (published)
    constrained: bool


@dataclass(frozen=True)
class LoggingConfig:
    writer: str = key(choices=("wandb",))
    mode: str = key(choices=("offline", "online", "disabled"))
    project: str
    entity: str | None


@dataclass(frozen=True)
class DistributedConfig:
    # global: trainer.batch_size is split over the processes; per_device: each takes it
    batch_size: str = key(choices=("global", "per_device"))
    timeout_min: int = key(lo=1)  # how long a process waits for the others at a collective

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
    seed: int = key(lo=0)
    device_id: int = key(lo=0)
    output_path: Path | None
    test_method: str = key(choices=("tiger", "liger"))  # the test evaluation: src/retrieval.py, method_retrievals
    stop_after: str | None = key(choices=STAGES)
    data: DataConfig = key("dataset")
    rqvae: RQVAEConfig = key("dataset.RQ-VAE")
    model: ModelConfig = key("dataset.TIGER")
    method: MethodConfig
    evaluation: EvaluationConfig
    logging: LoggingConfig
    distributed: DistributedConfig

    def check(self, path: str) -> None:
        if "/" in self.experiment_id:
            raise ConfigError(f"config key 'experiment_id' must not contain '/', got {self.experiment_id!r}")

    @property
    def run_dir(self) -> Path:
        """`results/{test_method}/{dataset.type}_{dataset.name}/{experiment_id}_seed_{seed}`, or output_path."""
        if self.output_path is not None:
            return self.output_path
        return run_dir_for(self.test_method, self.data.type, self.data.name, self.experiment_id, self.seed)

    def folders(self) -> dict[str, Path | None]:
        """The folders (and the file) a run writes to, by the config key that sets each."""
        return {"output_path": self.run_dir, "dataset.raw_data_path": self.data.raw_data_path,
                "dataset.processed_data_path": self.data.processed_data_path,
                "dataset.RQ-VAE.cache_dir": self.rqvae.cache_dir, "dataset.RQ-VAE.codes_file": self.rqvae.codes_file}

    def check_folders(self) -> None:
        """ConfigError where a folder a run writes to is a file, or lies below one."""
        for key, folder in self.folders().items():
            if folder is None or key == "dataset.RQ-VAE.codes_file":
                continue
            ancestor = Path(folder).absolute()
            while not ancestor.exists():
                ancestor = ancestor.parent
            if not ancestor.is_dir():
                where = "is a file" if ancestor == Path(folder).absolute() else f"lies below {ancestor}, a file"
                raise ConfigError(f"config key '{key}' is {folder}, which {where}, not a folder; set {key} to a folder")

    def runs_stage(self, stage: str) -> bool:
        """Whether `stage` runs under `stop_after` (every stage up to and including it)."""
        if self.stop_after is None:
            return True
        return STAGES.index(stage) <= STAGES.index(self.stop_after)


def run_dir_for(test_method: str, dataset_type: str, dataset_name: str, experiment_id: str, seed: int) -> Path:
    return Path("results") / str(test_method) / f"{dataset_type}_{dataset_name}" / f"{experiment_id}_seed_{seed}"


# --------------------------------------------------------------------------------------------
# Reading it: one reader for every dataclass above, led by the field types and their `key(...)`.


def load_config(cfg: DictConfig) -> RunConfig:
    """Validate the composed Hydra config and return it as typed objects.

    Raises ConfigError naming the offending key and the accepted values.
    """
    seen: set[str] = set()
    run_config = read_group(RunConfig, cfg, "", seen)
    _refuse_unknown_keys(cfg, seen)
    return run_config


def load_saved_config(path: Path) -> RunConfig:
    """The typed config of a run from the `.hydra/config.yaml` it wrote. Keys that are refused on a
    command line (REFUSED_KEYS) but that runs made before their refusal still carry are dropped: they
    never did anything."""
    cfg = OmegaConf.load(path)
    for key_path in REFUSED_KEYS:
        *groups, name = key_path.split(".")
        node = OmegaConf.select(cfg, ".".join(groups)) if groups else cfg
        if isinstance(node, DictConfig) and name in node:
            del node[name]
    return load_config(cfg)


def read_group(cls: type, node: Any, path: str, seen: set[str]) -> Any:
    """An instance of dataclass `cls` from the config group `node` at the dotted `path`, its
    `check(path)` passed; every key read is added to `seen`."""
    if not isinstance(node, (DictConfig, dict)):
        raise ConfigError(f"config key '{path}' must be a group of keys, got {node!r}")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_Key, _Key())
        if spec.only_if is not None and values[spec.only_if[0]] != spec.only_if[1]:
            values[f.name] = None  # left unread, so a group given anyway is refused as unknown
            continue
        values[f.name] = _read_key(hints[f.name], spec, node, spec.name or f.name, path, seen)
    group = cls(**values)
    if hasattr(group, "check"):
        group.check(path)
    return group


def _read_key(tp: Any, spec: _Key, node: Any, name: str, parent: str, seen: set[str]) -> Any:
    *groups, name = name.split(".")
    for group in groups:  # a key declared below its parent group, e.g. `dataset.RQ-VAE`
        parent = _join(parent, group)
        if group not in node:
            raise ConfigError(f"config group '{parent}' is missing")
        node = node[group]
    path = _join(parent, name)
    optional = get_origin(tp) in (Union, types.UnionType)
    if optional:
        tp = next(arg for arg in get_args(tp) if arg is not type(None))
    if dataclasses.is_dataclass(tp):
        if name not in node:
            raise ConfigError(f"config group '{path}' is missing")
        return read_group(tp, node[name], path, seen)
    seen.add(path)
    if name not in node:
        raise ConfigError(f"config key '{path}' is missing; add it to the config or "
                          f"pass it as an override, e.g. +{path}=...")
    value = node[name]
    value = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
    if (value == "auto") if spec.auto else (optional and _none_if_null(value) is None):
        return None
    return _convert(tp, spec, value, path)


def _convert(tp: Any, spec: _Key, value: Any, path: str) -> Any:
    """`value` as type `tp` within `spec`'s limits; ConfigError naming `path` and what is accepted."""
    bounds = _range_text(spec.lo, spec.hi, spec.lo_open, spec.hi_open)

    def fail(expected: str):
        raise ConfigError(f"config key '{path}' must be {expected}, got {value!r}")

    if tp is bool:
        if not isinstance(value, bool):
            fail("true, false or auto" if spec.auto else "true or false")
        return value
    if tp in (int, float):
        number = int if tp is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, number) or not _within(value, spec):
            if spec.auto:  # "positive": the wording users have seen for eval_batch_size
                fail("a positive integer or auto" if (spec.lo, spec.hi) == (1, None) else f"an integer{bounds} or auto")
            fail(f"an integer{bounds}" if tp is int else f"a number{bounds}")
        return tp(value)
    if tp in (str, Path):
        if not isinstance(value, str) or not value:
            fail("a non-empty string")
        if spec.choices is not None and value not in spec.choices:
            fail(f"one of {', '.join(spec.choices)}")
        return tp(value)
    if get_origin(tp) is tuple and get_args(tp)[0] is int:
        if not isinstance(value, list) or not value or any(
                isinstance(v, bool) or not isinstance(v, int) or not _within(v, spec) for v in value):
            fail(f"a non-empty list of integers{bounds}")
        return tuple(value)
    if get_origin(tp) is tuple and get_args(tp)[0] is str:
        if spec.choices is not None:
            if not isinstance(value, list) or not value or any(v not in spec.choices for v in value):
                fail(f"a non-empty list of values from {', '.join(spec.choices)}")
        elif not isinstance(value, list) or not value or any(not isinstance(v, str) or not v for v in value):
            fail("a non-empty list of strings")
        return tuple(value)
    raise TypeError(f"config key '{path}': no reader for the type {tp!r}")  # a declaration error, not the user's


def _within(value: float, spec: _Key) -> bool:
    too_low = spec.lo is not None and (value <= spec.lo if spec.lo_open else value < spec.lo)
    too_high = spec.hi is not None and (value >= spec.hi if spec.hi_open else value > spec.hi)
    return not (too_low or too_high)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


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


def _refuse_unknown_keys(cfg: DictConfig, read: set[str]) -> None:
    """ConfigError naming a refused key of the published configs (with why), or every key of `cfg`
    that no reader asked for (a misspelt override such as `+dataset.TIGER.trainer.stepz=100` would
    otherwise be ignored), with the closest known key."""
    leaves = _leaf_keys(OmegaConf.to_container(cfg, resolve=False))
    for key_path in leaves:
        if key_path in REFUSED_KEYS:
            raise ConfigError(f"config key '{key_path}' is a key of the published configs that nothing here reads "
                              f"({REFUSED_KEYS[key_path]}); remove it")
    unknown = [k for k in leaves if not any(k == known or k.startswith(known + ".") for known in read)]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(read), n=1, cutoff=0.6)
        if not close:  # the same name elsewhere in the tree, e.g. `epochs` for `dataset.RQ-VAE.epochs`
            close = [k for k in sorted(read) if k.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]][:1]
        hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise ConfigError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(hints)}: nothing reads "
                      f"{'them' if len(unknown) > 1 else 'it'}; fix the name or remove the override")


def _leaf_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves (values that are not non-empty groups) of a nested dict."""
    keys = []
    for name, value in node.items():
        path = f"{prefix}.{name}" if prefix else str(name)
        keys += _leaf_keys(value, path) if isinstance(value, dict) and value else [path]
    return keys


# --------------------------------------------------------------------------------------------
# Checks at run time, and the run folder for Hydra.


def check_encoder_width(cfg: RunConfig, width: int) -> None:
    """Fail if a width set explicitly in the config disagrees with the text encoder's width."""
    for key_path, value in (("dataset.RQ-VAE.input_dim", cfg.rqvae.input_dim),
                            ("method.embedding_head_dict.text_embedding_dim",
                             cfg.method.embedding_head.text_embedding_dim)):
        if value is not None and value != width:
            raise ConfigError(
                f"config key '{key_path}' is {value}, but the text encoder '{cfg.data.content_model}' gives "
                f"{width}-dimensional embeddings; set {key_path}=null (take the encoder's width) or {key_path}={width}")


def _run_dir_resolver(output_path, test_method, dataset_type, dataset_name, experiment_id, seed) -> str:
    """Hydra's run folder is the run's results folder, so .hydra/ and the log sit beside metrics.json.
    Hydra creates it before any of run.py's code runs, so a folder that cannot be created is
    reported here, by its message alone (exit 2, a configuration error), instead of by a traceback
    from Hydra's set-up."""
    from src.run_folder import note_missing_folders

    output_path = _none_if_null(output_path)
    folder = (Path(output_path) if output_path
              else run_dir_for(test_method, dataset_type, dataset_name, experiment_id, seed))
    reason = unwritable_reason(folder)
    if reason is None:
        note_missing_folders(folder)  # Hydra creates them next; a refused run removes them again
        reason = creation_failure(folder)
    if reason is not None:
        print(f"Configuration error: the run folder {folder.resolve()} cannot be created: {reason}; set "
              "output_path to a folder this run can write (or run from a writable folder)", file=sys.stderr)
        raise SystemExit(2)
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


def creation_failure(folder: Path) -> str | None:
    """Why `folder` cannot be created, found by creating it (and removing again what was created): also
    where permissions say yes but the file system says no (/proc, a read-only mount, even as root)."""
    missing = []
    path = folder.absolute()
    while not path.exists():
        missing.append(path)
        path = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        for created in missing:  # deepest first
            try:
                created.rmdir()
            except OSError:
                pass
    return None


def _sweep_dir_resolver(output_path, experiment_id) -> str:
    """A sweep's root folder (each job in a subfolder): output_path, else results/multirun/{experiment_id}."""
    output_path = _none_if_null(output_path)
    return str(output_path) if output_path else str(Path("results") / "multirun" / str(experiment_id))


OmegaConf.register_new_resolver("run_dir", _run_dir_resolver, replace=True)
OmegaConf.register_new_resolver("sweep_dir", _sweep_dir_resolver, replace=True)
