"""Entry point: `python run.py [Hydra overrides]`.

Chains the pipeline stages — preprocessing → item text embeddings → RQ-VAE semantic IDs → training
→ evaluation — each cached on disk, and records the run's results in `{run_dir}/metrics.json`.
This file only composes stages; each lives in its own module.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from ID_generation.embeddings import cached_width, item_embeddings
from ID_generation.preprocessing import leave_one_out, preprocess
from ID_generation.preprocessing.pipeline import dataset_stats, describe_dataset
from ID_generation.rqvae.stage import semantic_ids_stage
from src.config import ConfigError, RunConfig, check_encoder_width, load_config
from src.experiment import build_experiment, eval_settings, results_table
from src.runtime import resolve_device, seed_everything
from src.tracking import RunRecorder, WandbLogger


def run_pipeline(cfg: RunConfig, resolved_config: dict | None = None) -> RunRecorder:
    """Run every stage up to `cfg.stop_after`; return the recorder holding the run's metrics."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device_id)
    logger = None
    if cfg.logging.mode != "disabled":
        logger = WandbLogger(cfg.logging, cfg.experiment_id, cfg.run_dir, resolved_config or {})
    recorder = RunRecorder(cfg.run_dir, logger)
    print(f"Run folder: {cfg.run_dir}  (device: {device})")
    try:
        _run_stages(cfg, device, recorder)
    finally:
        recorder.finish()
    print(f"\nResults ({recorder.path}):\n{recorder.summary()}")
    return recorder


def _run_stages(cfg: RunConfig, device, recorder: RunRecorder) -> None:
    """The stages in order, each skipped after `stop_after`; results go to `recorder`."""
    with recorder.stage("preprocess"):
        data = preprocess(cfg.data)
        split = leave_one_out(data.sequences, cfg.data.max_items_per_seq, cfg.data.user_stride)
    recorder.log(dataset_stats(data, split))
    print(describe_dataset(cfg.data, data, split))

    if cfg.runs_stage("embed"):
        with recorder.stage("embed"):
            embeddings = item_embeddings(data.item_texts, cfg.data.content_model, cfg.data.processed_data_path,
                                         cfg.data.name, device, cfg.data.embedding_batch_size)
        check_encoder_width(cfg, embeddings.width)
        recorder.log({"data/embedding_width": embeddings.width})
        print(f"{len(data.item_texts):,} item embeddings of width {embeddings.width} from "
              f"{cfg.data.content_model} ({'cached' if embeddings.cached else 'computed'}: {embeddings.path})")

    if cfg.runs_stage("semantic_ids"):
        with recorder.stage("semantic_ids"):
            sids = semantic_ids_stage(
                embeddings.vectors, split.seen_items, cfg.rqvae, cfg.seed, device,
                tag=f"{cfg.data.name}_{cfg.data.content_model}",
                on_check=lambda logs: recorder.curve({f"rqvae/{k}": v for k, v in logs.items() if k != "epoch"},
                                                     "rqvae/epoch", int(logs["epoch"])))
        recorder.log(sids.report)
        print(sids.describe())

    if cfg.runs_stage("train"):
        experiment = build_experiment(cfg, split, sids.ids, embeddings.vectors, device, recorder)
        with recorder.stage("train"):
            result = experiment.trainer.fit()
        recorder.log({"train/best_epoch": result.best_epoch + 1, "train/steps": result.steps,
                      "train/epochs": result.epochs, f"train/best_{experiment.trainer.selection}": result.best_score})
        if cfg.stop_after is None:  # the test evaluation ends a full run
            with recorder.stage("test"):
                metrics = experiment.evaluator.evaluate("test")
            recorder.log(metrics)
            print("\nTest results\n" + results_table(metrics, experiment.settings))


def preflight(cfg: RunConfig) -> None:
    """Checks that need no stage to run: evaluation settings, a configured width against a cached
    encoder's width."""
    eval_settings(cfg)
    width = cached_width(cfg.data.processed_data_path, cfg.data.name, cfg.data.content_model)
    if width is not None:
        check_encoder_width(cfg, width)


@hydra.main(version_base=None, config_path="configs", config_name="main")
def main(config: DictConfig) -> None:
    try:
        cfg = load_config(config)
        preflight(cfg)
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    run_pipeline(cfg, OmegaConf.to_container(config, resolve=True))


if __name__ == "__main__":
    main()
