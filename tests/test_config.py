"""The Hydra config tree: defaults, published overrides, validation errors, stop_after, run folder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from conftest import compose, load
from src.config import OFFLINE_ENCODER, ConfigError, check_encoder_width

PUBLISHED = ["dataset=amazon", "dataset.name=Beauty", "seed=42", "device_id=0", "method=setting",
             "test_method=liger", "experiment_id=liger_Beauty"]


def test_default_is_offline_liger_on_generated_data():
    cfg = load()
    assert cfg.data.type == "generated" and cfg.data.content_model == OFFLINE_ENCODER
    assert cfg.method.flag_add_input_embedding and cfg.method.flag_use_output_embedding
    assert cfg.test_method == "liger" and cfg.stop_after is None
    assert cfg.data.generator is not None and cfg.data.generator.n_users > 0


def test_published_command_line_gives_published_settings():
    cfg = load(*PUBLISHED)
    assert (cfg.data.type, cfg.data.name, cfg.seed, cfg.experiment_id) == ("Amazon", "Beauty", 42, "liger_Beauty")
    assert cfg.data.content_model == "sentence-t5-xxl" and cfg.data.max_items_per_seq == 20
    assert (cfg.rqvae.epochs, cfg.rqvae.code_book_size, cfg.rqvae.beta) == (8000, 256, 0.25)
    assert (cfg.model.t5.d_model, cfg.model.t5.num_heads, cfg.model.t5.d_kv) == (128, 6, 64)
    assert (cfg.model.trainer.steps, cfg.model.trainer.batch_size,
            cfg.model.trainer.warmup_steps) == (200000, 256, 10000)
    assert cfg.method.embedding_loss_weight == 1 and cfg.method.sid_loss_weight == 1
    assert cfg.run_dir == Path("results/liger/Amazon_Beauty/liger_Beauty_seed_42")
    # the fast path by default; evaluation batches chosen for the device (metrics do not depend on them)
    assert (cfg.model.t5.implementation, cfg.model.t5.packing_groups,
            cfg.model.trainer.eval_batch_size) == ("compact", 4, None)
    assert cfg.model.trainer.compile is None  # auto: compiled on a GPU, eager on a CPU


def test_eval_batch_size_auto_is_published_on_cpu_and_large_on_a_gpu():
    from src.experiment import eval_settings
    cfg = load(*PUBLISHED)
    assert eval_settings(cfg, torch.device("cpu")).batch_size == 32
    assert eval_settings(cfg, torch.device("cuda")).batch_size == 4096
    assert eval_settings(load(*PUBLISHED, "dataset.TIGER.trainer.eval_batch_size=7"),
                         torch.device("cuda")).batch_size == 7


def test_tiger_method_and_steam():
    cfg = load("dataset=steam", "method=base", "test_method=tiger")
    assert cfg.data.type == "steam" and cfg.data.user_stride == 7 and cfg.rqvae.epochs == 1500
    assert not cfg.method.flag_use_output_embedding and cfg.method.embedding_loss_weight == 0
    assert cfg.data.features_needed == ("title", "genre", "specs", "tags", "price", "publisher")


def test_every_published_key_path_overrides():
    cfg = load(*PUBLISHED, "dataset.raw_data_path=/r", "dataset.processed_data_path=/p",
               "dataset.content_model=all-MiniLM-L6-v2", "dataset.max_items_per_seq=30",
               "dataset.RQ-VAE.epochs=7", "dataset.RQ-VAE.code_book_size=64", "dataset.TIGER.trainer.steps=11",
               "dataset.TIGER.trainer.batch_size=8", "dataset.TIGER.T5.d_model=64",
               "method.embedding_loss_weight=0.5", "method.embedding_head_dict.embed_target=ground_truth+item_id",
               "method.embedding_head_dict.embed_proj_type=linear", "method.use_id=item_id",
               "method.sid_loss_weight=0", "method.embedding_head_dict.use_new_init=True", "logging.mode=disabled")
    assert cfg.data.raw_data_path == Path("/r") and cfg.data.processed_data_path == Path("/p")
    assert cfg.data.content_model == "all-MiniLM-L6-v2" and cfg.data.max_items_per_seq == 30
    assert (cfg.rqvae.epochs, cfg.rqvae.code_book_size) == (7, 64)
    assert (cfg.model.trainer.steps, cfg.model.trainer.batch_size, cfg.model.t5.d_model) == (11, 8, 64)
    head = cfg.method.embedding_head
    assert (cfg.method.embedding_loss_weight, head.embed_target,
            head.embed_proj_type) == (0.5, "ground_truth+item_id", "linear")
    assert cfg.method.use_id == "item_id" and cfg.method.sid_loss_weight == 0 and head.use_new_init
    assert cfg.logging.mode == "disabled"


@pytest.mark.parametrize("override, key, accepted", [
    ("dataset.name=Beuty", "dataset.name", "Toys_and_Games"),
    ("test_method=bert4rec", "test_method", "tiger, liger"),
    ("dataset.max_items_per_seq=abc", "dataset.max_items_per_seq", "an integer"),
    ("dataset.max_items_per_seq=2", "dataset.max_items_per_seq", ">= 3"),
    ("seed=1.5", "seed", "an integer"),
    ("dataset.RQ-VAE.code_book_size=1", "dataset.RQ-VAE.code_book_size", ">= 2"),
    ("dataset.RQ-VAE.dropout=1.0", "dataset.RQ-VAE.dropout", "[0.0, 1.0)"),
    ("dataset.TIGER.trainer.lr=0", "dataset.TIGER.trainer.lr", "> 0.0"),
    ("dataset.TIGER.T5.feed_forward_proj=swish", "dataset.TIGER.T5.feed_forward_proj", "relu"),
    ("method.embedding_head_dict.embed_target=labels", "method.embedding_head_dict.embed_target",
     "ground_truth+item_id"),
    ("method.flag_add_input_embedding=yes", "method.flag_add_input_embedding", "true or false"),
    ("logging.mode=verbose", "logging.mode", "offline, online, disabled"),
    ("stop_after=evaluate", "stop_after", "preprocess, embed, semantic_ids, train"),
    ("dataset.features_needed=[title,color]", "dataset.features_needed", "brand"),
    ("experiment_id=a/b", "experiment_id", "'/'"),
    ("distributed.batch_size=local", "distributed.batch_size", "global, per_device"),
    ("dataset.TIGER.trainer.eval_batch_size=big", "dataset.TIGER.trainer.eval_batch_size",
     "a positive integer or auto"),
    ("dataset.TIGER.T5.packing_groups=-1", "dataset.TIGER.T5.packing_groups", ">= 0"),
    ("dataset.TIGER.trainer.compile=maybe", "dataset.TIGER.trainer.compile", "true, false or auto"),
])
def test_invalid_value_names_key_and_accepted_values(override, key, accepted):
    with pytest.raises(ConfigError) as info:
        load("dataset=amazon", override)
    message = str(info.value)
    assert f"'{key}'" in message and accepted in message


def test_global_batch_size_under_several_processes():
    assert load().distributed.batch_size == "global"  # the published batch holds for any process count
    assert load().distributed.global_batch_size(256, 4) == 256
    assert load("distributed.batch_size=per_device").distributed.global_batch_size(256, 4) == 1024
    with pytest.raises(ConfigError,
                       match="'dataset.TIGER.trainer.batch_size' .2. must be at least the number of processes .4."):
        load().distributed.global_batch_size(2, 4)


def test_unknown_group_option_or_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="amazon"):  # lists the available options
        compose("dataset=movielens")
    with pytest.raises(ConfigCompositionException):
        compose("method=ours")
    with pytest.raises(ConfigCompositionException):
        compose("dataset.nmae=Beauty")


def test_encoder_width_must_match_when_set():
    cfg = load("dataset.RQ-VAE.input_dim=768")
    check_encoder_width(load(), 384)  # null widths follow the encoder
    with pytest.raises(ConfigError, match=r"dataset.RQ-VAE.input_dim.*384"):
        check_encoder_width(cfg, 384)
    cfg = load("method.embedding_head_dict.text_embedding_dim=512")
    with pytest.raises(ConfigError, match="method.embedding_head_dict.text_embedding_dim"):
        check_encoder_width(cfg, 384)


def test_stop_after_runs_stages_up_to_and_including():
    cfg = load("stop_after=embed")
    assert [s for s in ("preprocess", "embed", "semantic_ids", "train") if cfg.runs_stage(s)] == ["preprocess", "embed"]
    assert all(load().runs_stage(s) for s in ("preprocess", "embed", "semantic_ids", "train"))


def test_output_path_overrides_run_folder_and_published_none_spelling():
    assert load("output_path=/tmp/run7").run_dir == Path("/tmp/run7")
    assert load("output_path=None").run_dir == Path("results/liger/generated_synthetic/demo_seed_42")


@pytest.mark.parametrize("override, unknown, hint", [
    ("+dataset.TIGER.trainer.stepz=100", "dataset.TIGER.trainer.stepz", "dataset.TIGER.trainer.steps"),
    ("+epochs=5", "'epochs'", "dataset.RQ-VAE.epochs"),
    ("+dataset.TIGER.T5.d_modle=64", "dataset.TIGER.T5.d_modle", "dataset.TIGER.T5.d_model"),
])
def test_unknown_key_is_refused_naming_the_closest_known_key(override, unknown, hint):
    with pytest.raises(ConfigError) as info:
        load(override)
    message = str(info.value)
    assert "unknown config key" in message and unknown in message and f"did you mean '{hint}'" in message


def test_every_key_of_every_shipped_config_is_read():
    """No key in the shipped configs is silently ignored."""
    for group in ("dataset=amazon", "dataset=steam", "dataset=custom", "dataset=generated"):
        for method in (("method=base", "test_method=tiger"), ("method=setting", "test_method=liger")):
            load(group, *method)  # raises ConfigError on a key nothing reads


def test_published_key_that_nothing_reads_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"'dataset.RQ-VAE.max_seq_len' is a key of the published configs that "
                                          r"nothing here reads \(the RQ-VAE encodes one item at a time"):
        load("+dataset.RQ-VAE.max_seq_len=256")
    assert load("dataset.generator.max_seq_len=20").data.generator.max_seq_len == 20  # the generator's is read


def test_rqvae_optimizer_choices():
    assert load().rqvae.optimizer == "AdamW" and load("dataset.RQ-VAE.optimizer=Adam").rqvae.optimizer == "Adam"
    with pytest.raises(ConfigError, match="'dataset.RQ-VAE.optimizer' must be one of AdamW, Adam, got 'SGD'"):
        load("dataset.RQ-VAE.optimizer=SGD")


def test_test_method_chooses_the_test_evaluation():
    """liger: every retrieval of the method; tiger: the generative one alone (with TIGER's 10 beams);
    a method without generative retrieval cannot be tested the TIGER way."""
    from src.experiment import eval_settings
    from src.retrieval import method_retrievals

    liger = load("method=setting", "test_method=liger")
    assert method_retrievals(liger.method, liger.test_method).test_modes == ("genret", "dense", "uni")
    assert eval_settings(liger).num_beams == 100
    tiger_test = load("method=setting", "test_method=tiger")
    retrievals = method_retrievals(tiger_test.method, tiger_test.test_method)
    assert retrievals.test_modes == ("genret",) and retrievals.modes == ("genret", "dense", "uni")
    assert retrievals.selection == "dense" and eval_settings(tiger_test).num_beams == 10
    assert method_retrievals(load("method=base").method, "liger").test_modes == ("genret",)
    dense_only = load("method=setting", "test_method=tiger", "method.sid_loss_weight=0")
    with pytest.raises(ConfigError, match="test_method=tiger tests by generative retrieval alone, but this method "
                                          "predicts no semantic IDs .*use test_method=liger"):
        eval_settings(dense_only)


@pytest.mark.parametrize("dataset", ["amazon", "steam", "custom", "generated"])
def test_debug_quick_shrinks_any_dataset_and_only_when_asked(dataset):
    """`debug=quick` is composed after the dataset, so its sizes win over every dataset's; without it the
    dataset's own (published) sizes hold."""
    extra = ("dataset.name=my_data",) if dataset == "custom" else ()
    quick, plain = load(f"dataset={dataset}", *extra, "debug=quick"), load(f"dataset={dataset}", *extra)
    assert quick.data.user_stride == 10 and quick.rqvae.epochs == 20
    assert quick.model.trainer.steps == 300 and quick.model.t5.d_model == 64
    assert quick.evaluation.uni_ks == (20,) and quick.evaluation.num_beams == 20
    assert (plain.rqvae.epochs, plain.model.trainer.steps) != (20, 300)
    if dataset == "amazon":  # the published sizes stay the default of the published datasets
        assert (plain.data.user_stride, plain.rqvae.epochs, plain.model.trainer.steps) == (1, 8000, 200_000)
