"""Speed and memory of every stage, on whatever device is found.

    .venv/bin/python scripts/benchmark.py                      # Beauty files if found, else generated
    .venv/bin/python scripts/benchmark.py --data generated --out bench.json
    .venv/bin/python scripts/benchmark.py --tiny --out bench.json   # the offline default's sizes: a quick run

Measures preprocessing (from raw files, then cached) and building the training data, text-encoder
throughput, RQ-VAE seconds per epoch, training ms/step and sequences/s for TIGER and LIGER (after
warm-up, median of repeats), evaluation sequences/s for beam 10, beam 100, dense and uni, and peak
GPU and host memory. Prints a table and writes JSON. Text embeddings are random standardised vectors
of the published width (768): stage speeds do not depend on their content, and it keeps the
benchmark free of the slow CPU encoder (its throughput is measured on a sample instead, and left
out, as null, where the encoder cannot be loaded).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts" / "device"))

import torch  # noqa: E402
from planning import EAGER_RQVAE, RQVAE_MODES  # noqa: E402

from ID_generation.embeddings import EncoderUnavailableError, encode_texts, load_encoder  # noqa: E402
from ID_generation.preprocessing import leave_one_out, preprocess  # noqa: E402
from ID_generation.rqvae.model import RQVAE  # noqa: E402
from ID_generation.rqvae.training import GraphedEpochs, make_optimizer, train_epoch  # noqa: E402
from ID_generation.semantic_ids import SemanticIds  # noqa: E402
from src.cache import write_json  # noqa: E402
from src.config import GeneratorConfig, load_config  # noqa: E402
from src.cuda_graph import GraphedStep  # noqa: E402
from src.errors import first_line  # noqa: E402
from src.evaluation import autocast  # noqa: E402
from src.experiment import build_experiment  # noqa: E402
from src.retrieval import DENSE, GENRET, UNI  # noqa: E402
from src.runtime import compile_model, float32_matmul_precision, resolve_device  # noqa: E402
from src.tracking import RunRecorder  # noqa: E402

BEAUTY_SHAPE = GeneratorConfig(seed=0, n_users=22363, n_groups=560, items_per_group=20, cold_items_per_group=1,
                               min_seq_len=5, max_seq_len=20, p_follow=0.8)


def save_results(results: dict, out: str, device: torch.device) -> None:
    """Write the results with the peak memory so far: after every stage and variant, so that a run
    stopped midway still leaves what it measured."""
    results["peak_host_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        results["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    write_json(out, results)  # atomically: the device run reads it after killing the benchmark at its time box


def recorded_failure(what: str, exc: Exception) -> str:
    """What a failed variant or mode records (a finding; the other figures are still measured): the
    error in one line, as the results' value, printed too."""
    print(f"{what} failed: {type(exc).__name__}: {exc}", flush=True)
    return first_line(exc, 300)


def timed(fn, repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of `repeats` calls of fn, waiting for the device around each."""
    out = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


PROFILING = {"on": True}  # --quick: no profiles (each costs a run of the profiled call)


def profiled(fn, device: torch.device, top: int = 16) -> dict:
    """Where one call of fn spends its time (torch.profiler), to tell launch-bound from compute-bound:
    `wall_ms`, `busy_ms` (on a GPU the kernels' time, on a CPU the operators' self time), `launches`
    (GPU kernels, or CPU operators counted by the profiler), and the `top` entries by that time with
    their counts and milliseconds. On a GPU also `ops`: the operators that launched the most kernel
    time, by input shapes (`shapes`), with their kernels' `launches`, so a kernel is traced to the code
    that launched it (none for a CUDA graph's replay, whose kernels no operator launches). The
    profiler's own overhead inflates `wall_ms`. A profiler failure is recorded as `error`."""
    if not PROFILING["on"]:
        return {"skipped": "--quick"}
    try:
        return profile_of(fn, device, top)
    except Exception as exc:  # noqa: BLE001  a diagnostic: it never costs a measured figure
        return {"error": first_line(exc, 300)}


def profile_of(fn, device: torch.device, top: int) -> dict:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    gpu = device.type == "cuda"
    sync(device)
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if gpu else [])],
                 record_shapes=gpu) as prof:
        start = time.perf_counter()
        fn()
        sync(device)
        wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if not gpu or e.device_type == DeviceType.CUDA]
    busy_us = (lambda e: e.self_device_time_total) if gpu else (lambda e: e.self_cpu_time_total)
    events.sort(key=busy_us, reverse=True)
    result = {"wall_ms": round(wall * 1000, 3), "busy_ms": round(sum(map(busy_us, events)) / 1000, 3),
              "launches": sum(e.count for e in events),
              "top": [{"name": e.key[:80], "count": e.count, "ms": round(busy_us(e) / 1000, 3)} for e in events[:top]]}
    if gpu:
        result["ops"] = kernels_by_operator(prof.events(), top)
    return result


def kernels_by_operator(events, top: int) -> list[dict]:
    """The `top` aten operators, by name and input shapes, whose own kernels took the most GPU time:
    calls, kernels launched and milliseconds."""
    totals: dict[tuple[str, str], list] = {}
    for e in events:
        if e.name.startswith("aten::") and e.kernels:
            entry = totals.setdefault((e.name, str(e.input_shapes)[:120]), [0, 0, 0.0])
            entry[0] += 1
            entry[1] += len(e.kernels)
            entry[2] += sum(k.duration for k in e.kernels)
    ranked = sorted(totals.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [{"name": name, "shapes": shapes, "count": count, "launches": launches, "ms": round(us / 1000, 3)}
            for (name, shapes), (count, launches, us) in ranked]


def current_rss_mb() -> float | None:
    """This process's resident host memory now (Linux), in MB; None where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * resource.getpagesize() / 2**20


def tensor_mb(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config(args, work: Path, method: str, variant: str | None = None):
    """The benchmark's config of `method` for a variant of VARIANT_SUFFIX (None: the config's model)."""
    from hydra import compose, initialize_config_dir

    implementation = "transformers" if variant == "transformers" else "compact" if variant else None
    # the baseline runs eager, as published; a step compiled only where named; the compact path as a run
    # would (compiled on a GPU) unless --no-compile
    compile_ = ("true" if variant in COMPILED else "false" if variant in ("transformers", *GRAPHED)
                else "false" if args.no_compile else None)
    overrides = [f"method={method}", "logging.mode=disabled", f"output_path={work}/run_{method}_{variant}",
                 *([f"dataset.TIGER.T5.implementation={implementation}"] if implementation else []),
                 *([f"dataset.TIGER.trainer.compile={compile_}"] if compile_ else []),
                 *(["dataset.TIGER.trainer.compile_scope=model"] if variant == "compiled_model" else []),
                 # every variant names its step: `auto` would graph the eager baselines on a GPU
                 *([f"dataset.TIGER.trainer.cuda_graphs={str(variant in GRAPHED).lower()}"] if variant else []),
                 *(["dataset.TIGER.trainer.float32_matmul_precision=high"] if variant == "graphed_tf32" else []),
                 *(["dataset.TIGER.T5.packing_groups=0"] if variant in ("padded", "graphed_padded") else []),
                 *([f"dataset.TIGER.trainer.eval_batch_size={args.eval_batch_size[0]}"] if args.eval_batch_size
                   else []),
                 f"dataset.processed_data_path={work}/processed", f"dataset.RQ-VAE.cache_dir={work}/ids"]
    if args.tiny:
        overrides += ["dataset=generated", f"dataset.raw_data_path={work}/raw"]
    elif args.data == "beauty":
        overrides += ["dataset=amazon", f"dataset.raw_data_path={args.raw}", "dataset.content_model=all-MiniLM-L6-v2"]
    else:
        overrides += ["dataset=amazon", "dataset.type=generated", "dataset.name=synthetic",
                      f"dataset.raw_data_path={work}/raw", "dataset.content_model=all-MiniLM-L6-v2"]
        overrides += [f"+dataset.generator.{k}={v}" for k, v in dataclasses.asdict(BEAUTY_SHAPE).items()]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return load_config(compose(config_name="main", overrides=overrides))


def bench_data(args, work: Path, results: dict) -> tuple:
    cfg = config(args, work, "setting")
    uncached = timed(lambda: preprocess(cfg.data), 1, torch.device("cpu"))[0]
    cached = statistics.median(timed(lambda: preprocess(cfg.data), 3, torch.device("cpu")))
    data = preprocess(cfg.data)
    start = time.perf_counter()
    split = leave_one_out(data.sequences, cfg.data.max_items_per_seq, cfg.data.user_stride)
    results.update({"preprocess_uncached_s": uncached, "preprocess_cached_s": cached,
                    "split_s": time.perf_counter() - start, "items": len(data.item_texts),
                    "users": len(data.sequences), "train_examples": len(split.train_user)})
    return data, split


def bench_encoder(data, device: torch.device, results: dict, n: int) -> None:
    try:
        encoder = load_encoder("all-MiniLM-L6-v2", device)
    except (EncoderUnavailableError, ImportError, OSError) as exc:
        print(f"encoder not measured: {exc}")
        results["encoder_texts_per_s"] = None
        return
    texts = data.item_texts[:n]
    seconds = statistics.median(timed(lambda: encode_texts(encoder, texts, 32 if device.type == "cpu" else 256),
                                      2, device))
    results["encoder_texts_per_s"] = n / seconds


def bench_rqvae(cfg, embeddings, split, device: torch.device, results: dict, epochs: int,
                mode: tuple[bool, bool, str] = EAGER_RQVAE) -> None:
    """Seconds per RQ-VAE epoch (published sizes) trained in `mode`, (cuda_graphs, compile,
    float32_matmul_precision), as `rqvae_s_per_epoch{suffix}` with the mode's suffix (`RQVAE_MODES`,
    scripts/device/device_run.py): eager; the epoch replayed from a CUDA graph (GPU, `_graphed`); the model
    also compiled for its batch shapes first (`dataset.RQ-VAE.compile`, `_compiled_graphed`); TF32 products
    (`_tf32`). A graphed mode's warm-up (three eager epochs, the capture, any compiling) is
    `rqvae_warmup_s{suffix}`, its failure `rqvae_error{suffix}`. One epoch of each is profiled
    (`profile_rqvae{suffix}`)."""
    graphed, compiled, precision = mode
    suffix = RQVAE_MODES[mode]
    r = cfg.rqvae
    x = embeddings[torch.as_tensor(split.seen_items - 1)].to(device)
    model = RQVAE(x.shape[1], r.hidden_dim, r.latent_dim, r.num_layers, r.code_book_size, r.dropout).to(device)
    opt = make_optimizer(model, r)
    with float32_matmul_precision(precision):
        if not graphed:
            epoch = functools.partial(train_epoch, model, opt, x, r.batch_size, r.beta)
            timed(epoch, 1, device)  # warm-up
            results[f"rqvae_s_per_epoch{suffix}"] = statistics.median(timed(epoch, epochs, device))
            results[f"profile_rqvae{suffix}"] = profiled(epoch, device)
            return
        try:
            if compiled:
                compile_model(model, dynamic=False)
            epoch = GraphedEpochs(model, opt, x, r.batch_size, r.beta)
            results[f"rqvae_warmup_s{suffix}"] = sum(timed(epoch, 4, device))  # three eager epochs, then the capture
            results[f"rqvae_s_per_epoch{suffix}"] = statistics.median(timed(epoch, epochs, device))
            results[f"profile_rqvae{suffix}"] = profiled(epoch, device)  # one replay: the graph's kernels
        except Exception as exc:  # noqa: BLE001  a graph that fails is a finding, recorded
            results[f"rqvae_error{suffix}"] = recorded_failure("CUDA graph", exc)


# the variants timed side by side: the compact T5 (as a run trains it), `transformers`' (published),
# on a GPU the compact T5 on padded batches (is packing worth its extra kernels there?), the compact
# step captured as a CUDA graph (batches in length groups of fixed widths), the same on batches padded
# to the longest history (one shape: fewer kernels, more padding), the grouped one with TF32 float32
# products (LIGER's text projection of every item), and with --compile-graphed compiled for its one
# shape first; with --compile-scopes the eager (packed) step compiled block by block or whole
VARIANT_SUFFIX = {"compact": "", "transformers": "_transformers", "padded": "_padded", "graphed": "_graphed",
                  "graphed_padded": "_graphed_padded", "graphed_tf32": "_graphed_tf32",
                  "compiled_graphed": "_compiled_graphed", "compiled_blocks": "_compiled_blocks",
                  "compiled_model": "_compiled_model"}
GRAPHED = ("graphed", "graphed_padded", "graphed_tf32", "compiled_graphed")
COMPILED = ("compiled_graphed", "compiled_blocks", "compiled_model")  # compiled whatever the device
STAGES = ("encoder", "rqvae", "train", "eval")
METHODS = {"tiger": "base", "liger": "setting"}  # the benchmark's models: the method config each times


def fresh_inductor_cache():
    """A context in which inductor compiles from nothing: empty on-disk and in-memory caches (its own
    `fresh_cache`, named `fresh_inductor_cache` in older torch)."""
    import torch._inductor.utils as inductor_utils

    return (getattr(inductor_utils, "fresh_cache", None) or inductor_utils.fresh_inductor_cache)()


def first_batch_loss(exp, batch_size: int) -> float:
    """The loss of the first training batch in evaluation mode (no dropout), eager (also a model whose
    blocks are compiled): equal for equal weights."""
    exp.model.eval()
    with torch.no_grad(), autocast(exp.data.device), torch.compiler.set_stance("force_eager"):
        loss = float(exp.model.forward(exp.data.batch(exp.trainer.examples.subset(slice(0, batch_size)),
                                                      exp.model.packing_groups)).loss)
    exp.model.train()
    return loss


def mean_real_tokens(exp, batch_size: int, n_batches: int = 20) -> float:
    """Mean real (unpadded) encoder tokens in a training batch, over the benchmark's first batches."""
    chunks = exp.data.shuffled(exp.trainer.examples, batch_size, torch.Generator().manual_seed(0))
    per_item, user = exp.data.vocab.tokens_per_item, exp.data.vocab.has_user_tokens
    counts = [float((chunk.target_positions * per_item + user).sum()) for _, chunk in zip(range(n_batches), chunks)]
    return statistics.mean(counts)


def step_flops(exp, batch_size: int) -> float:
    """Floating-point operations of one training step's forward and backward on the benchmark's first
    batch, counted by PyTorch's FlopCounterMode on the compact, packed path: the useful work (real
    tokens only), the same numerator for both implementations' TFLOP/s."""
    from torch.utils.flop_counter import FlopCounterMode

    chunk = next(iter(exp.data.shuffled(exp.trainer.examples, batch_size, torch.Generator().manual_seed(0))))
    counter = FlopCounterMode(display=False)
    # forward() and force_eager: eager, also where the model or its blocks are compiled (dynamo would
    # otherwise skip the compiled blocks' code for good after seeing it under a dispatch mode)
    with counter, autocast(exp.data.device), torch.compiler.set_stance("force_eager"):
        exp.model.forward(exp.data.batch(chunk, exp.model.packing_groups)).loss.backward()
    exp.model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def graph_counts(trainer, key: str, results: dict) -> None:
    """A graphed step's replays and eager steps (warm-up, smaller or non-fitting batches) over the
    benchmark's steps, and its batch sizes: `train_encoder_tokens_*` encoder positions a batch computes
    on (padded: B × S; length groups: Σ n_g × W_g) and, for length groups, their widths in items."""
    step = trainer.step
    results[f"train_graph_replays_{key}"], results[f"train_graph_eager_steps_{key}"] = step.replays, step.eager_steps
    batch = step.static_batch
    if batch is not None:
        layout = batch.layout
        results[f"train_encoder_tokens_{key}"] = batch.tokens.numel() if layout is None else len(layout.rows)
    if trainer.group_widths is not None:
        results[f"train_group_widths_{key}"] = list(trainer.group_widths)


def epochs_of_batches(exp, batch_size: int, generator: torch.Generator):
    """The training batches, epoch after epoch (a small dataset runs out before the timed steps do)."""
    while True:
        yield from exp.data.shuffled(exp.trainer.examples, batch_size, generator)


def train_step_seconds(exp, batch_size: int, args, device: torch.device) -> tuple[float, list[float]]:
    """(seconds of the warm-up steps, which include compiling or capturing a CUDA graph, seconds of each
    timed training step after them): the run's own step (`Trainer.train_step`: the batch, forward,
    backward, clipping, AdamW, the scheduler)."""
    trainer = exp.trainer
    chunks = epochs_of_batches(exp, batch_size, torch.Generator().manual_seed(0))
    # a CUDA graph is captured after its eager warm-up steps: those count as warm-up here
    warmup = args.warmup + (trainer.step.warmup_left + 1 if isinstance(trainer.step, GraphedStep) else 0)
    warmup_s = sum(timed(lambda: trainer.train_step(next(chunks)), warmup, device))
    if args.start_at is not None:  # timed at the same moment as another benchmark's steps (two runs at once)
        time.sleep(max(0.0, args.start_at - time.time()))
    return warmup_s, timed(lambda: trainer.train_step(next(chunks)), args.steps, device)


def host_step_seconds(exp, batch_size: int, args, device: torch.device) -> list[float]:
    """Seconds the host spends in each of `args.steps` training steps when nothing waits for the device
    between them (as in a run): for a replayed step, planning its batch, copying its index in and launching
    the graph. Below the step's time on the device (`train_ms_*`), the host never starves the device."""
    trainer = exp.trainer
    chunks = iter(exp.data.shuffled(trainer.examples, batch_size, torch.Generator().manual_seed(1)))
    sync(device)
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.train_step(next(chunks))
        seconds.append(time.perf_counter() - start)
    sync(device)
    return seconds


def bench_method(args, work, method: str, split, sids, embeddings, device, results: dict,
                 variants: tuple[str, ...] = ("compact", "transformers")) -> None:
    """Training step and evaluation of `variants` (VARIANT_SUFFIX) side by side, on the same weights,
    batches and examples: keys `train_ms_{tiger|liger}`, `{tiger|liger}_eval_*` for the compact T5
    (packed batches), the same with `_transformers` for the baseline (padded batches), and with one
    of GRAPHED on a GPU `train_ms_{tiger|liger}_graphed` (or `_graphed_padded`, `_graphed_tf32`,
    `_compiled_graphed`): the compact step as a CUDA graph (training only; measured after everything
    else, so that a failed capture costs no other figure)."""
    name = "liger" if method == "setting" else "tiger"
    exps = {variant: build_experiment(config(args, work, method, variant), split, sids, embeddings, device,
                                      RunRecorder(work / f"run_{method}_{variant}")) for variant in variants}
    for variant in variants[1:]:
        exps[variant].model.load_state_dict(exps[variants[0]].model.state_dict())
    cfg = config(args, work, method, "compact")
    exp, trainer = exps[variants[0]], exps[variants[0]].trainer
    # what the training data holds (published: ~9.7 GB of materialised examples): the id matrix, the
    # token table, the example index and the model's buffers (text embeddings, masks)
    results[f"{name}_train_data_mb"] = tensor_mb([exp.data.matrix, exp.data.token_table, trainer.examples.users,
                                                  trainer.examples.target_positions, *exp.model.buffers()])
    batch_size = cfg.model.trainer.batch_size
    if "train" in args.only:
        bench_training(exps, name, batch_size, args, device, results)
    evaluated = {k: v for k, v in exps.items() if k in ("compact", "transformers")}  # the others evaluate alike
    if "eval" in args.only and evaluated:
        bench_evaluation(evaluated, name, args, device, results)


def bench_training(exps: dict, name: str, batch_size: int, args, device: torch.device, results: dict) -> None:
    """Step time, sequences/s, real tokens/s and achieved TFLOP/s of each variant: the compact T5
    compiled where a run would compile it (its warm-up time, compilation included, is
    `train_warmup_s_*`; a compiler failure is recorded and the step timed eager, as a run goes on),
    `transformers`' eager, as published, and on a GPU the compact step as a CUDA graph (a failure is
    recorded as `train_graph_error_*`)."""
    exp = next(iter(exps.values()))
    if f"train_gflop_per_step_{name}" not in results:
        results[f"train_real_tokens_per_batch_{name}"] = mean_real_tokens(exp, batch_size)
        results[f"train_gflop_per_step_{name}"] = step_flops(exp, batch_size) / 1e9
    tokens, flops = results[f"train_real_tokens_per_batch_{name}"], results[f"train_gflop_per_step_{name}"] * 1e9
    for variant, run in exps.items():
        suffix = VARIANT_SUFFIX[variant]
        torch.set_float32_matmul_precision(run.trainer.cfg.float32_matmul_precision)  # process-wide, as a run sets it
        results[f"loss_{name}{suffix}"] = first_batch_loss(run, batch_size)
        error_key = f"train_graph_error_{name}{'' if variant == 'graphed' else suffix}"
        try:
            warmup_s, steps_s = train_step_seconds(run, batch_size, args, device)
        except Exception as exc:  # noqa: BLE001  a graph that fails is a finding; the other variants stay timed
            if variant not in GRAPHED:
                raise
            results[error_key] = recorded_failure("CUDA graph", exc)
            continue
        if isinstance(run.trainer.step, GraphedStep) and run.trainer.step.capture_error:
            results[error_key] = run.trainer.step.capture_error  # it trained on eager: no graphed figure
            continue
        if variant in ("compact", *COMPILED):
            results[f"train_compiled_{name}{suffix}"] = run.trainer.compiled
            if run.trainer.compile_error:
                results[f"train_compile_error_{name}{suffix}"] = run.trainer.compile_error
        results[f"train_warmup_s_{name}{suffix}"] = warmup_s
        step_s = statistics.median(steps_s)
        results[f"train_ms_{name}{suffix}"] = step_s * 1000
        results[f"train_seqs_per_s_{name}{suffix}"] = batch_size / step_s
        results[f"train_tokens_per_s_{name}{suffix}"] = tokens / step_s
        results[f"train_tflops_{name}{suffix}"] = flops / step_s / 1e12
        if isinstance(run.trainer.step, GraphedStep):  # how many of its steps replayed, and the shapes
            results[f"train_host_ms_{name}{suffix}"] = statistics.median(
                host_step_seconds(run, batch_size, args, device)) * 1000
            graph_counts(run.trainer, f"{name}{suffix}", results)
        first = next(iter(run.data.shuffled(run.trainer.examples, batch_size, torch.Generator().manual_seed(0))))
        results[f"profile_train_{name}{suffix}"] = profiled(functools.partial(run.trainer.train_step, first), device)
        if isinstance(run.trainer.step, GraphedStep) and run.trainer.step.static_batch is not None:
            # the captured step run eagerly on its batch: the same kernels, launched one by one, so that
            # the profile's `ops` trace them to the operators and shapes that launch them (a replay has none)
            step = run.trainer.step
            results[f"profile_train_{name}{suffix}_unrolled"] = profiled(
                functools.partial(step.step, step.static_batch, 1.0), device)
        save_results(results, args.out, device)
    torch.set_float32_matmul_precision("highest")
    baseline = results.get(f"train_ms_{name}_transformers")
    for suffix in (VARIANT_SUFFIX[variant] for variant in ("compact", *GRAPHED, *COMPILED)):
        if baseline and f"train_ms_{name}{suffix}" in results:
            results[f"train_speedup_{name}{suffix}"] = baseline / results[f"train_ms_{name}{suffix}"]
    rss = current_rss_mb()  # after the variants trained: resident memory above the framework's
    if rss is not None and args.baseline_rss_mb is not None and not set(GRAPHED) & set(exps):
        results[f"train_host_rss_mb_above_baseline_{name}"] = rss - args.baseline_rss_mb


def bench_evaluation(exps: dict, name: str, args, device: torch.device, results: dict) -> None:
    """Evaluation sequences/s of each implementation: beam 10, beam 100, dense, uni, in batches of the
    config's size; for the compact T5 also at each further `--eval-batch-size` (`_batch{N}`), and a
    profile of each at the config's size (`profile_eval_*`). A failure is recorded
    (`{tiger|liger}_eval_{mode}_error*`) and the other modes and sizes still timed."""
    examples = exps["compact"].data.eval_examples("val", cold=False).subset(slice(0, args.eval_examples))
    more_sizes = (args.eval_batch_size or [])[1:]
    for impl, run in exps.items():
        evaluator, n = run.evaluator, len(examples)
        configured = evaluator.settings.batch_size
        for batch_size in [configured, *(more_sizes if impl == "compact" else [])]:
            suffix = VARIANT_SUFFIX[impl] + ("" if batch_size == configured else f"_batch{batch_size}")
            for label, mode, beams in (("beam10", GENRET, 10), ("beam100", GENRET, 100), ("dense", DENSE, None),
                                       ("uni", UNI, 100)):
                if mode not in evaluator.settings.modes:
                    continue
                evaluator.settings = dataclasses.replace(evaluator.settings, batch_size=batch_size,
                                                         num_beams=beams or evaluator.settings.num_beams)
                evaluate = functools.partial(evaluator.evaluate_examples, examples, (mode,))
                try:
                    evaluate()  # warm-up: the GPU's kernels and workspaces for these shapes (the first was 8× slower)
                    seconds = statistics.median(timed(evaluate, 2, device))
                except Exception as exc:  # noqa: BLE001  a failing mode or size is a finding; the others stay timed
                    results[f"{name}_eval_{label}_error{suffix}"] = recorded_failure("evaluation", exc)
                    continue
                results[f"{name}_eval_{label}_seqs_per_s{suffix}"] = n / seconds
                if impl == "compact" and batch_size == configured:
                    results[f"profile_eval_{name}_{label}"] = profiled(evaluate, device)
        evaluator.settings = dataclasses.replace(evaluator.settings, batch_size=configured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("beauty", "generated"), default=None)
    parser.add_argument("--raw", default="ID_generation/preprocessing/raw_data",
                        help="the folder holding amazon/ with the Beauty files (default: the config's raw_data_path)")
    parser.add_argument("--out", default="benchmark.json")
    parser.add_argument("--tiny", action="store_true", help="the offline default's data and model sizes, few repeats")
    parser.add_argument("--eval-batch-size", type=lambda text: [int(n) for n in text.split(",")], default=None,
                        help="sequences per evaluation batch (default: the config's: 32 on a CPU, as published); "
                             "further comma-separated sizes are timed too, for the compact T5 "
                             "(`*_seqs_per_s_batch{N}`): is evaluation bound by launches or by arithmetic?")
    parser.add_argument("--no-compile", action="store_true",
                        help="time the compact step eager too (trainer.compile=false), as a run with it would")
    parser.add_argument("--compile-graphed", action="store_true",
                        help="on a GPU, also time the graphed step compiled for its one shape (trainer.compile=true "
                             "with cuda_graphs), last: `train_ms_*_compiled_graphed`, and the graphed RQ-VAE epoch "
                             "compiled (RQ-VAE.compile=true): `rqvae_s_per_epoch_compiled_graphed` (and `_tf32`)")
    parser.add_argument("--compile-scopes", type=lambda text: text.split(","), default=[],
                        help="also time the compact (packed) step compiled with each comma-separated "
                             "trainer.compile_scope (blocks, model), on any device, its compile time in the "
                             "warm-up: `train_ms_*_compiled_{scope}`, `train_warmup_s_*_compiled_{scope}`")
    parser.add_argument("--variants", type=lambda text: text.split(","), default=list(VARIANT_SUFFIX),
                        help="comma-separated training variants to time (default: every one this device runs; "
                             "evaluation is timed on the compact and transformers variants named); "
                             f"of {','.join(VARIANT_SUFFIX)}")
    parser.add_argument("--methods", type=lambda text: text.split(","), default=["tiger", "liger"],
                        help="comma-separated models to time, of tiger,liger (default both)")
    parser.add_argument("--start-at", type=float, default=None, metavar="UNIX_TIME",
                        help="after the warm-up, wait until this moment to time the training steps (and time 200): "
                             "two benchmarks started together time their steps side by side")
    parser.add_argument("--quick", action="store_true",
                        help="what a GPU call's plan needs, within a minute: 10 timed steps, 1,024 evaluation "
                             "sequences, no profiles")
    parser.add_argument("--only", type=lambda text: set(text.split(",")), default=set(STAGES),
                        help=f"comma-separated stages to measure, of {','.join(STAGES)} (default: all; "
                             "preprocessing always runs)")
    args = parser.parse_args()
    args.baseline_rss_mb = current_rss_mb()  # torch, transformers and the project imported, nothing built
    if not set(args.compile_scopes) <= {"blocks", "model"}:
        parser.error(f"--compile-scopes: choose from blocks,model, got {','.join(args.compile_scopes)}")
    if not args.only <= set(STAGES):
        parser.error(f"--only: unknown stage(s) {', '.join(sorted(args.only - set(STAGES)))}; "
                     f"choose from {', '.join(STAGES)}")
    for name, given, known in (("--variants", args.variants, VARIANT_SUFFIX), ("--methods", args.methods, METHODS)):
        if not set(given) <= set(known):
            parser.error(f"{name}: unknown {', '.join(sorted(set(given) - set(known)))}; choose from {','.join(known)}")
    methods = [METHODS[name] for name in args.methods]
    device = resolve_device(0)
    cpu = device.type == "cpu"
    args.data = args.data or ("beauty" if (Path(args.raw) / "amazon" / "reviews_Beauty_5.json.gz").exists()
                              else "generated")
    args.steps, args.warmup = (3, 1) if args.tiny else (5, 2) if cpu else (30, 5)
    if args.start_at is not None:
        args.steps = 200
    args.eval_examples = 64 if args.tiny else 256 if cpu else 4096
    if args.quick:  # what a plan needs, soon: fewer repeats and examples, no profiles
        args.steps, args.warmup, args.eval_examples = min(args.steps, 10), min(args.warmup, 2), min(args.eval_examples,
                                                                                                     1024)
        PROFILING["on"] = False
    results = {"device": torch.cuda.get_device_name(device) if not cpu else platform.processor() or "cpu",
               "torch": torch.__version__, "data": "tiny" if args.tiny else args.data,
               "date": time.strftime("%Y-%m-%d")}
    save = functools.partial(save_results, results, args.out, device)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, split = bench_data(args, work, results)
        if "encoder" in args.only:
            bench_encoder(data, device, results, 32 if args.tiny else 128 if cpu else 2048)
            save()
        cfg = config(args, work, "setting")
        inputs = torch.Generator().manual_seed(0)  # the same embeddings and codes in every run: comparable losses
        embeddings = torch.randn(len(data.item_texts), 768, generator=inputs)
        if "rqvae" in args.only:
            bench_rqvae(cfg, embeddings, split, device, results, 2 if cpu else 20)
            save()
        codebook = cfg.rqvae.code_book_size
        codes = torch.randint(0, codebook, (len(data.item_texts), 3), generator=inputs).numpy()
        sids = SemanticIds.from_rqvae_codes(codes, codebook)
        eager = [v for v in (("compact", "transformers") if cpu else ("compact", "transformers", "padded"))
                 if v in args.variants]
        for method in methods if args.only & {"train", "eval"} and eager else ():
            bench_method(args, work, method, split, sids, embeddings, device, results, tuple(eager))
            save()
        for variant in (f"compiled_{scope}" for scope in args.compile_scopes):
            for method in methods if "train" in args.only else ():
                torch._dynamo.reset()
                with fresh_inductor_cache():  # as on a fresh machine: the warm-up holds the whole compile time
                    bench_method(args, work, method, split, sids, embeddings, device, results, variants=(variant,))
                save()
        # CUDA graphs last: a capture that fails may leave the device unusable, and costs nothing else then
        for mode in RQVAE_MODES if not cpu and "rqvae" in args.only else ():
            if mode[0] and not mode[1]:  # graphed, in each precision
                bench_rqvae(cfg, embeddings, split, device, results, 20, mode)
                save()
        # both methods' graphed steps before either compiles, so that a long compilation costs no other figure
        for variant in ("graphed", "graphed_padded", "graphed_tf32",
                        *(["compiled_graphed"] if args.compile_graphed else [])):
            for method in methods if not cpu and "train" in args.only and variant in args.variants else ():
                bench_method(args, work, method, split, sids, embeddings, device, results, variants=(variant,))
                save()
                gc.collect()  # the trainer and its graph hold each other: free the graph's memory pool now
        for mode in RQVAE_MODES if not cpu and "rqvae" in args.only and args.compile_graphed else ():
            if mode[1]:  # compiled (and graphed), in each precision: last of all
                bench_rqvae(cfg, embeddings, split, device, results, 20, mode)
                save()
    width = max(map(len, results))
    print("\n".join(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                    for k, v in results.items()))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
