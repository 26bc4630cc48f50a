"""Entry point: `python run.py [Hydra overrides]`, or `torchrun --nproc_per_node=N run.py [...]` for
data-parallel training, or `python run.py -m hydra/launcher=local|slurm key=a,b ...` for a sweep.

Chains the pipeline stages — preprocessing → item text embeddings → RQ-VAE semantic IDs → training
→ evaluation — each cached on disk, and records the run's results in `{run_dir}/metrics.json`.
This file only composes stages; each lives in its own module.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src import interrupts
from src.cache import name_folders, run_folder_lock
from src.config import ConfigError, RunConfig, check_encoder_width, load_config
from src.distributed import SINGLE, Processes, init_distributed, shutdown_distributed
from src.errors import ExpectedError, report
from src.run_folder import (
    check_settings,
    remove_created_folders,
    repeated_overrides,
    write_hydra_record,
)
from src.tracking import ConsoleLog, RunRecorder, check_credentials, run_logger

# The stages' modules (transformers among them) are imported where a stage runs, so that a
# configuration error is answered in about a second instead of after seconds of imports.


@dataclasses.dataclass(frozen=True)
class HydraRecord:
    """What Hydra would have written into .hydra/ (run.py writes it once the run folder accepted the run)."""
    config: DictConfig
    hydra: DictConfig | None
    overrides: list[str]


def run_pipeline(cfg: RunConfig, resolved_config: dict | None = None, processes: Processes = SINGLE,
                 record: HydraRecord | None = None, console: ConsoleLog | None = None) -> RunRecorder:
    """Run every stage up to `cfg.stop_after`; return the recorder holding the run's metrics. Under
    several processes every one calls this; only the main one writes results.

    Nothing is written into the run folder until it accepted the run (src/run_folder.py): no run of other
    settings there (`record`'s config against the folder's), and, for a run that trains, no checkpoint
    of other settings or data. `console`: the console's lines, kept in the run folder's run.log from then on."""
    from src.runtime import resolve_device, seed_everything
    from src.training import checkpoint_path

    seed_everything(cfg.seed)
    device = resolve_device(processes.local_rank if processes.enabled else cfg.device_id)
    main = processes.is_main
    with run_folder_lock(cfg.run_dir) if main else contextlib.nullcontext(lambda: None) as claim:
        if main and record is not None:
            check_settings(cfg.run_dir, record.config, cfg.stop_after)
        resuming = checkpoint_path(cfg.run_dir).exists()
        recorder = RunRecorder(cfg.run_dir, write=main, pending=True)

        def accept() -> None:
            claim()
            if main and record is not None:
                write_hydra_record(cfg.run_dir, record.config, record.hydra, record.overrides)
            if main and console is not None:
                console.open(cfg.run_dir / "run.log")
            recorder.accept(resuming, run_logger(cfg.logging, cfg.experiment_id, cfg.run_dir, resolved_config or {})
                            if main else None)

        print(f"Run folder: {cfg.run_dir}  (device: {device}"
              + (f", {processes.world_size} processes)" if processes.enabled else ")"))
        preset = record.hydra.runtime.choices.get("debug") if record is not None and record.hydra is not None else None
        if preset:
            print(f"debug={preset}: a shrunk run (configs/debug/{preset}.yaml) to check that the data and the "
                  "pipeline work; its figures say nothing about the method")
            recorder.log({"run/debug": preset})
        try:
            _run_stages(cfg, device, recorder, processes, accept)
        finally:
            recorder.finish()
    print("\n" + run_summary(recorder.metrics, cfg.run_dir))
    return recorder


def run_summary(metrics: dict, run_dir: Path) -> str:
    """What a person reads at a run's end (the test table is printed above it): the training's best epoch
    and where the files are; every value stays in metrics.json."""
    lines = []
    selection = next((key for key in metrics if key.startswith("train/best_") and key != "train/best_epoch"), None)
    if selection is not None:
        lines.append(f"Best model: epoch {metrics.get('train/best_epoch')} of {metrics.get('train/epochs')} "
                     f"({metrics.get('train/steps')} of {metrics.get('train/steps_planned')} steps), chosen by "
                     f"{selection.removeprefix('train/best_')} = {metrics[selection]:.4f}"
                     + (" (stopped by the time budget)" if metrics.get("train/out_of_time") else ""))
    files = [name for name in ("metrics.json", "curves.jsonl", "ckpt_best.pt", "run.log") if (run_dir / name).exists()]
    lines.append(f"Run folder: {run_dir}: {', '.join(files)} ({len(metrics)} values in metrics.json)")
    return "\n".join(lines)


def _run_stages(cfg: RunConfig, device, recorder: RunRecorder, processes: Processes,
                accept: Callable[[], None] = lambda: None) -> None:
    """The stages in order, each skipped after `stop_after`; results go to `recorder`. The stages
    before training run in the main process first; the others then read what it cached. `accept` is
    called once the run folder can take the run: at once for a run that does not train, else once its
    checkpoints (if any) are known to be its own."""
    import torch

    from src.experiment import build_experiment, results_table
    if not cfg.runs_stage("train"):
        accept()
    with processes.main_first():
        split, embeddings, sids = _prepare(cfg, device, recorder)
    if cfg.runs_stage("train"):
        # process-wide, after the RQ-VAE: the float32 products of training and evaluation
        torch.set_float32_matmul_precision(cfg.model.trainer.float32_matmul_precision)
        experiment = build_experiment(cfg, split, sids.ids, embeddings.vectors, device, recorder, processes)
        experiment.trainer.check_checkpoints()
        accept()
        with recorder.stage("train"):
            result = experiment.trainer.fit()
        recorder.log({"train/best_epoch": result.best_epoch + 1, "train/steps": result.steps,
                      "train/epochs": result.epochs, "train/out_of_time": int(result.out_of_time),
                      **({"time/validation_mean": round(result.validation_s, 3)} if result.validation_s else {}),
                      f"train/best_{experiment.trainer.selection}": result.best_score,
                      **{f"train/last_epoch_{k}": v for k, v in result.last_losses.items()},
                      **experiment.trainer.how_steps_ran()})
        if cfg.stop_after is None:  # the test evaluation ends a full run
            with recorder.stage("test"), interrupts.safe_points():
                metrics = experiment.evaluator.evaluate("test", modes=experiment.retrievals.test_modes)
                interrupts.check("interrupted during the test; rerun the same command: training is finished, "
                                 "only the test runs again")
            recorder.log(metrics)
            print("\nTest results\n" + results_table(metrics, experiment.settings, experiment.retrievals.test_modes))


def _prepare(cfg: RunConfig, device, recorder: RunRecorder):
    """Preprocessing, embeddings and semantic IDs (as far as `stop_after` allows): (split,
    embeddings, semantic IDs), None for a stage not run."""
    from ID_generation.embeddings import item_embeddings
    from ID_generation.preprocessing import leave_one_out, preprocess
    from ID_generation.preprocessing.pipeline import dataset_stats, describe_dataset
    from ID_generation.rqvae.stage import semantic_ids_stage, semantic_ids_tag

    embeddings = sids = None
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
                tag=semantic_ids_tag(cfg.data),
                on_check=lambda logs: recorder.curve({f"rqvae/{k}": v for k, v in logs.items() if k != "epoch"},
                                                     "rqvae/epoch", int(logs["epoch"])))
        recorder.log(sids.report)
        print(sids.describe())
    return split, embeddings, sids


def preflight(cfg: RunConfig, processes: Processes, overrides: Sequence[str] = ()) -> None:
    """Checks that need no stage to run: evaluation settings, the batch size against the number of
    processes, a configured width against a cached encoder's width, W&B's credentials for
    logging.mode=online; warnings for a key given more than once and a warm-up that outlasts training."""
    from ID_generation.embeddings import cached_width
    from src.experiment import eval_settings

    for key, values in repeated_overrides(overrides):  # e.g. a script's own key, overridden after it
        print(f"warning: '{key}' is given {len(values)} times ({', '.join(values)}); the last, {values[-1]}, is used",
              file=sys.stderr)
    trainer = cfg.model.trainer
    if cfg.runs_stage("train") and trainer.warmup_steps > trainer.steps:
        print(f"warning: dataset.TIGER.trainer.warmup_steps={trainer.warmup_steps} is more than "
              f"dataset.TIGER.trainer.steps={trainer.steps}: the learning rate never reaches "
              f"dataset.TIGER.trainer.lr={trainer.lr:g}", file=sys.stderr)
    check_credentials(cfg.logging)
    eval_settings(cfg)
    cfg.distributed.global_batch_size(cfg.model.trainer.batch_size, processes.world_size)
    width = cached_width(cfg.data.processed_data_path, cfg.data.name, cfg.data.content_model)
    if width is not None:
        check_encoder_width(cfg, width)


STARTED = {"main": False}  # whether Hydra got as far as calling main (its own errors come before)


@hydra.main(version_base=None, config_path="configs", config_name="main")
def main(config: DictConfig) -> None:
    STARTED["main"] = True
    interrupts.install()
    # The run folder is Hydra's job folder: the configured one for a single run, one per job in a sweep.
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    overrides = list(hydra_config.overrides.task)
    try:
        cfg = dataclasses.replace(load_config(config), output_path=run_dir)
        name_folders(cfg.folders())  # a write that fails names the key of its folder
        cfg.check_folders()
        processes = init_distributed(cfg.distributed.timeout_min)
        preflight(cfg, processes, overrides)
    except ConfigError as exc:
        remove_created_folders()  # an invalid config leaves no folder behind
        print(f"Configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    console = ConsoleLog()
    if processes.is_main:
        console.install()  # the console's lines, kept in run.log once the run folder accepted the run
    try:
        with contextlib.ExitStack() as stack:
            if not processes.is_main:  # the others stay quiet on stdout (their errors still reach stderr)
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            run_pipeline(cfg, OmegaConf.to_container(config, resolve=True), processes,
                         HydraRecord(config, OmegaConf.create(OmegaConf.to_container(hydra_config)), overrides),
                         console)
            # every process done (the main one's W&B and files too) before any tears the group down: gloo
            # aborts a process that leaves while another still holds its connection
            processes.barrier()
    except ExpectedError as exc:  # the message says what to do (a ConfigError too, found once a stage ran)
        remove_created_folders()  # where the run was refused before it wrote anything
        sys.exit(report(exc))
    finally:
        console.uninstall()
        shutdown_distributed()


def entry() -> None:
    """main(), with Hydra's own errors (a config group or key it cannot find, before main runs) exiting 2,
    as every configuration error does."""
    try:
        main()
    except SystemExit as exc:
        if exc.code == 1 and not STARTED["main"]:
            sys.exit(2)
        raise


if __name__ == "__main__":
    entry()
