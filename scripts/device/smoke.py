"""Device smoke check: the model, a training step, the beam search, the evaluation and a short fit on
a tiny dataset, on the device (bfloat16 autocast on a GPU) against the same in float32 on the CPU.

    python scripts/device/smoke.py --out smoke.json [--device cpu]

Every check runs even when an earlier one fails; a failure prints its traceback in full. Writes
{check: {"ok", "detail", "error"}} as JSON and exits 1 if any check failed.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ID_generation.preprocessing.sequences import Sequences  # noqa: E402
from ID_generation.preprocessing.split import leave_one_out  # noqa: E402
from ID_generation.semantic_ids import SemanticIds  # noqa: E402
from src.cache import write_json  # noqa: E402
from src.evaluation import autocast  # noqa: E402
from src.experiment import build_experiment  # noqa: E402
from src.tracking import RunRecorder  # noqa: E402

TINY = ("dataset.TIGER.T5.encoder_layers=2", "dataset.TIGER.T5.decoder_layers=2", "dataset.TIGER.T5.d_model=32",
        "dataset.TIGER.T5.d_ff=64", "dataset.TIGER.T5.num_heads=2", "dataset.TIGER.T5.d_kv=16",
        "method.embedding_head_dict.hidden_sizes=[32]", "dataset.TIGER.trainer.batch_size=32",
        "dataset.TIGER.trainer.eval_batch_size=64", "dataset.TIGER.trainer.warmup_steps=2",
        "dataset.TIGER.trainer.steps=20", "dataset.TIGER.trainer.eval_frequence=1", "evaluation.uni_ks=[20]",
        "logging.mode=disabled", "dataset.TIGER.trainer.cuda_graphs=false",  # graphs: check_cuda_graph
        "dataset.TIGER.trainer.compile=false")  # the eager numerics; the benchmark measures the compiled step
N_ITEMS, N_USERS = 60, 96
# the checks on the tiny experiment that `setup` builds (the graph checks build their own)
NEEDS_SETUP = ("forward", "train_step", "beam_search", "wide_beams", "evaluation", "fit")
# bfloat16 autocast against float32: relative loss difference allowed, and beam agreement required
LOSS_RTOL, BEAM_OVERLAP, METRIC_ATOL = 3e-2, 0.7, 0.2


def tiny_inputs(seed: int = 0):
    """(split, semantic IDs, text embeddings) of a random tiny dataset."""
    g = torch.Generator().manual_seed(seed)
    sids = SemanticIds.from_rqvae_codes(torch.randint(0, 8, (N_ITEMS, 3), generator=g).numpy(), codebook_size=8)
    lengths = torch.randint(4, 12, (N_USERS,), generator=g).numpy()
    items = torch.randint(1, N_ITEMS + 1, (int(lengths.sum()),), generator=g).numpy()
    return leave_one_out(Sequences.from_lengths(lengths, items), 20), sids, torch.randn(N_ITEMS, 24, generator=g)


def experiments(device: torch.device, work: Path):
    """The same LIGER experiment (same initial weights) on the CPU and on `device`."""
    from hydra import compose, initialize_config_dir

    from src.config import load_config

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        cfg = load_config(compose(config_name="main", overrides=[*TINY, f"output_path={work}/cpu"]))
    split, sids, text = tiny_inputs()
    built = {}
    for name, dev in (("cpu", torch.device("cpu")), ("device", device)):
        built[name] = build_experiment(dataclasses.replace(cfg, output_path=work / name), split, sids, text, dev,
                                       RunRecorder(work / name, write=False))
    built["device"].model.load_state_dict(built["cpu"].model.state_dict())
    return built["cpu"], built["device"]


def losses(exp, batch_examples) -> torch.Tensor:
    """(3,) total, token and dense loss in evaluation mode (no dropout)."""
    exp.model.eval()
    with torch.no_grad(), autocast(exp.data.device):
        out = exp.model(exp.data.batch(batch_examples, exp.model.packing_groups))
    return torch.stack([out.loss, out.sid_loss, out.embedding_loss]).float().cpu()


def check_forward(cpu, dev, examples) -> str:
    a, b = losses(cpu, examples), losses(dev, examples)
    rel = ((a - b).abs() / a.abs()).max().item()
    assert torch.isfinite(b).all() and rel <= LOSS_RTOL, f"losses cpu {a.tolist()} device {b.tolist()} (rel {rel:.2e})"
    return f"losses {b.tolist()}, max relative difference {rel:.2e}"


def check_train_step(cpu, dev, examples) -> str:
    for exp in (cpu, dev):
        exp.model.eval()  # no dropout: the two steps must agree
        # the trainer's own optimiser starts at lr 0 (warm-up); this one moves the weights
        optimizer = torch.optim.AdamW(exp.model.parameters(), lr=1e-3, fused=exp.data.device.type == "cuda")
        with autocast(exp.data.device):
            out = exp.model(exp.data.batch(examples, exp.model.packing_groups))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(exp.model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    a, b = losses(cpu, examples), losses(dev, examples)
    rel = ((a - b).abs() / a.abs()).max().item()
    assert rel <= LOSS_RTOL, f"losses after one step: cpu {a.tolist()} device {b.tolist()} (rel {rel:.2e})"
    return f"losses after one AdamW step {b.tolist()}, max relative difference {rel:.2e}"


def top_items(exp, examples) -> torch.Tensor:
    """(B, 10) the items of each input's top-10 beams (under the device's autocast), on the CPU."""
    batch = exp.data.batch(examples, exp.model.packing_groups)
    with torch.no_grad(), autocast(exp.data.device):
        return exp.evaluator._generate(exp.model.encode(batch), batch)[:, :10].cpu()


def beam_overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean share of items two (B, 10) top-10 lists have in common, as multisets: near-ties may
    swap under bfloat16 (0: names no item)."""
    return sum(sum((Counter(x.tolist()) & Counter(y.tolist())).values()) / 10 for x, y in zip(a, b)) / len(a)


def check_beams(cpu, dev, examples) -> str:
    overlap = beam_overlap(top_items(cpu, examples), top_items(dev, examples))
    assert overlap >= BEAM_OVERLAP, f"top-10 beams agree on {overlap:.2f} of their items"
    return f"top-10 beams agree on {overlap:.1%} of their items"


def check_wide_beams(dev, examples, rows: int = 70_000) -> str:
    """More inputs × beams in one search than a GPU grid dimension holds (65,535; an H200's cuDNN
    attention failed at 4,096 inputs × 100 beams): the test inputs, each copied, give the beams of
    the inputs searched once (src/beam_decoder.py attends in slices)."""
    beams = dev.evaluator.settings.num_beams
    examples = examples.subset(torch.argsort(examples.target_positions, descending=True, stable=True))
    copies = math.ceil(rows / (len(examples) * beams))
    wide = examples.subset(torch.arange(len(examples)).repeat_interleave(copies))  # stays sorted: copies adjacent
    overlap = beam_overlap(top_items(dev, examples), top_items(dev, wide)[::copies])
    assert overlap >= BEAM_OVERLAP, f"top-10 beams of {len(wide) * beams} rows agree on {overlap:.2f} of their items"
    return f"{len(wide)} inputs × {beams} beams: top-10 beams agree with the {len(examples)} inputs' on {overlap:.1%}"


def check_evaluation(cpu, dev) -> str:
    a, b = cpu.evaluator.evaluate("test"), dev.evaluator.evaluate("test")
    assert a.keys() == b.keys() and a, f"metric names differ: {sorted(a)} vs {sorted(b)}"
    worst = max(abs(a[k] - b[k]) for k in a)
    assert all(math.isfinite(v) for v in b.values()) and worst <= METRIC_ATOL, f"cpu {a}\ndevice {b}"
    return f"{len(b)} test metrics, largest difference {worst:.3f}"


def check_cuda_graph(device: torch.device, work: Path, compiled: bool = False) -> str:
    """`trainer.cuda_graphs`: the same steps (no dropout) eager and replayed from a CUDA graph, on batches
    in length groups of fixed widths, a smaller batch among them (run eager by the graphed trainer),
    give the same losses and weights. Then, with dropout, the graph on batches padded to one shape
    (`packing_groups=0`) trains and fits as a run does. compiled: the graphed model is compiled for its
    one shape first (`trainer.compile=true`), and the dropout run is left out (one compilation is
    enough)."""
    from hydra import compose, initialize_config_dir

    from src.config import load_config
    from src.cuda_graph import GraphedStep

    if device.type != "cuda":
        return "skipped: a CUDA graph needs a GPU"
    split, sids, text = tiny_inputs()
    runs = {}
    settings = {"eager": ("false", "false", 4), "graphed": ("true", str(compiled).lower(), 4),
                **({} if compiled else {"dropout": ("true", "false", 0)})}  # (cuda_graphs, compile, packing_groups)
    eager_tiny = [o for o in TINY if not o.startswith("dataset.TIGER.trainer.compile=")]
    for name, (graphs, compile_, groups) in settings.items():
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
            cfg = load_config(compose(config_name="main", overrides=[
                *eager_tiny, f"output_path={work}/{name}{'_compiled' * compiled}",
                f"dataset.TIGER.T5.packing_groups={groups}",
                f"dataset.TIGER.trainer.cuda_graphs={graphs}", f"dataset.TIGER.trainer.compile={compile_}",
                "dataset.TIGER.trainer.lr=0.001"]))
        runs[name] = build_experiment(cfg, split, sids, text, device, RunRecorder(work / name, write=False))
    for name in runs:
        if name != "eager":
            runs[name].model.load_state_dict(runs["eager"].model.state_dict())
    examples = runs["eager"].trainer.examples
    sizes = [32] * 6 + [20] + [32] * 3  # warm-up, capture, replays, an eager smaller batch, replays
    starts = [sum(sizes[:i]) % (len(examples) - 32) for i in range(len(sizes))]
    # the same fixed shapes and so the same kernels both ways: what differs is the graph alone; the
    # widths hold every full batch compared, so that each replays
    widths = [max(w) for w in zip(*(examples.subset(slice(a, a + n)).group_longest(4)
                                    for a, n in zip(starts, sizes) if n == 32))]
    for name in ("eager", "graphed"):
        runs[name].trainer.history_len = runs["graphed"].trainer.history_len
        runs[name].trainer.group_widths = widths
    parts, last_lr = {}, {}
    for name, exp in runs.items():
        # no dropout where compared (the masks need not be the eager ones); `dropout` captures it
        exp.model.train(name == "dropout")
        out = []
        for a, n in zip(starts, sizes):
            last_lr[name] = float(exp.trainer.optimizer.param_groups[0]["lr"])  # the rate this step uses
            out.append(exp.trainer.train_step(examples.subset(slice(a, a + n))))
        parts[name] = torch.stack(out).float().cpu()
    step = runs["graphed"].trainer.step
    # the scheduler's rate reached the captured AdamW: the last replay read the rate of its step
    graph_lr = step.lrs[0].item() if isinstance(step, GraphedStep) and step.lrs else None
    assert graph_lr is not None and abs(graph_lr - last_lr["graphed"]) <= 1e-6 * last_lr["graphed"], \
        f"the graph's learning rate {graph_lr}, the scheduler's {last_lr['graphed']}"
    assert isinstance(step, GraphedStep) and step.replays >= 4 and step.eager_steps >= 4, \
        f"replays {getattr(step, 'replays', None)}, eager steps {getattr(step, 'eager_steps', None)}"
    assert step.static_batch.layout is not None and step.static_batch.layout.fixed_width, "captured: not length groups"
    a, b = parts["eager"], parts["graphed"]
    rel = ((a - b).abs() / a.abs().clamp(min=1e-6)).max().item()
    weights = max(((p - q).norm() / p.norm().clamp(min=1e-6)).item() for p, q in
                  zip(runs["eager"].model.parameters(), runs["graphed"].model.parameters()))
    assert torch.isfinite(b).all() and rel <= LOSS_RTOL and weights <= LOSS_RTOL, \
        f"eager {a.tolist()}\ngraphed {b.tolist()} (losses rel {rel:.2e}, weights rel {weights:.2e})"
    detail = (f"{len(sizes)} steps in length groups of widths {widths} ({step.replays} replayed, "
              f"{step.eager_steps} eager): losses within {rel:.2e}, weights within {weights:.2e} of the eager steps'")
    if compiled:
        trainer = runs["graphed"].trainer
        assert trainer.compiled, f"compiling failed, the graph captured eager kernels: {trainer.compile_error}"
        return f"compiled for its one shape, then captured: {detail}"
    dropout = runs["dropout"].trainer.step
    assert torch.isfinite(parts["dropout"]).all() and dropout.replays == step.replays, \
        f"with dropout: {parts['dropout'].tolist()}, {dropout.replays} replays"
    # then a run's path on the same graph: epochs, validations, checkpoints and the best weights' reload
    before = dropout.replays
    fit = runs["dropout"].trainer.fit()
    assert fit.steps > 0 and all(map(math.isfinite, fit.last_losses.values())) and dropout.replays > before, \
        f"graphed fit: {fit}, {dropout.replays - before} more replays"
    return (f"{detail}; padded to one shape with dropout captured too, losses {parts['dropout'][-1, 0].item():.4f} "
            f"(eager without dropout {a[-1, 0].item():.4f}); then a graphed fit of {fit.steps} steps, "
            f"{fit.epochs} epochs validated, {dropout.replays - before} more replays")


def check_rqvae_cuda_graph(device: torch.device, work: Path, compiled: bool = False) -> str:
    """`dataset.RQ-VAE.cuda_graphs`: 30 epochs of a small RQ-VAE, eager and replayed from a CUDA graph
    from the same start, both lower the reconstruction loss alike (their random draws differ).
    compiled: the graphed model compiled for its batch shapes first (`dataset.RQ-VAE.compile`)."""
    from hydra import compose, initialize_config_dir

    from ID_generation.rqvae.training import train_rqvae
    from src.config import load_config

    if device.type != "cuda":
        return "skipped: a CUDA graph needs a GPU"
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        cfg = load_config(compose(config_name="main", overrides=[*TINY, f"output_path={work}/rqvae"])).rqvae
    cfg = dataclasses.replace(cfg, epochs=30, eval_every=10, batch_size=64, code_book_size=16, hidden_dim=(64, 32),
                              latent_dim=16, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(8, 24, generator=g)[torch.randint(0, 8, (500,), generator=g)]
         + 0.3 * torch.randn(500, 24, generator=g)).to(device)
    final = {graphs: train_rqvae(x, dataclasses.replace(cfg, cuda_graphs=graphs, compile=graphs and compiled),
                                 seed=0).history
             for graphs in (False, True)}
    eager, graphed = (final[g][-1]["train_recon_loss"] for g in (False, True))
    first = final[True][0]["train_recon_loss"]
    assert math.isfinite(graphed) and graphed <= 1.5 * eager + 0.05, f"recon: eager {eager:.4f}, graphed {graphed:.4f}"
    return (f"reconstruction MSE after 30 epochs: eager {eager:.4f}, graphed{' and compiled' * compiled} "
            f"{graphed:.4f} (graphed after 10: {first:.4f})")


def check_fit(dev) -> str:
    result = dev.trainer.fit()
    assert all(math.isfinite(v) for v in result.last_losses.values()), result.last_losses
    return f"{result.steps} steps, {result.epochs} epochs, last losses {result.last_losses}"


def write_report(out: str, device: torch.device, report: dict, start: float) -> dict:
    """Write {"summary", "checks"} to `out`; the summary."""
    summary = {"device": str(device), "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "seconds": round(time.perf_counter() - start, 1),
               "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}
    write_json(out, {"summary": summary, "checks": report})  # atomically: a time limit may kill the check any time
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true",
                        help="also check the graphed step compiled for its one shape (`compiled_cuda_graph`) and "
                             "the graphed RQ-VAE compiled (`compiled_rqvae_cuda_graph`)")
    parser.add_argument("--checks", type=lambda text: text.split(","), default=None,
                        help="comma-separated checks to run (default: all); those on the tiny experiment build it "
                             "first (`setup`)")
    args = parser.parse_args()
    device = torch.device(args.device)
    report: dict[str, dict] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        state: dict = {}

        def setup() -> str:
            state["cpu"], state["dev"] = experiments(device, Path(tmp))
            state["examples"] = state["cpu"].data.train_examples().subset(slice(0, 32))
            return f"tiny LIGER ({N_USERS} users, {N_ITEMS} items) built on cpu and {device}"

        checks = [("setup", setup),
                  ("forward", lambda: check_forward(state["cpu"], state["dev"], state["examples"])),
                  ("train_step", lambda: check_train_step(state["cpu"], state["dev"], state["examples"])),
                  ("beam_search", lambda: check_beams(state["cpu"], state["dev"],
                                                      state["cpu"].data.eval_examples("test"))),
                  ("wide_beams", lambda: check_wide_beams(state["dev"], state["cpu"].data.eval_examples("test"))),
                  ("evaluation", lambda: check_evaluation(state["cpu"], state["dev"])),
                  ("fit", lambda: check_fit(state["dev"])),
                  ("cuda_graph", lambda: check_cuda_graph(device, Path(tmp))),
                  ("rqvae_cuda_graph", lambda: check_rqvae_cuda_graph(device, Path(tmp))),
                  *([("compiled_cuda_graph", lambda: check_cuda_graph(device, Path(tmp), compiled=True)),
                     ("compiled_rqvae_cuda_graph", lambda: check_rqvae_cuda_graph(device, Path(tmp), compiled=True))]
                    if args.compile else [])]
        known = [name for name, _ in checks]
        if args.checks is not None and not set(args.checks) <= set(known):
            parser.error(f"--checks: unknown {', '.join(sorted(set(args.checks) - set(known)))}; "
                         f"choose from {','.join(known)}")
        if args.checks is not None:  # setup where a chosen check needs the tiny experiment
            wanted = set(args.checks) | ({"setup"} if set(args.checks) & set(NEEDS_SETUP) else set())
            checks = [(name, check) for name, check in checks if name in wanted]
        for name, check in checks:
            if name in NEEDS_SETUP and not report["setup"]["ok"]:
                break
            try:
                report[name] = {"ok": True, "detail": check()}
            except Exception as exc:  # noqa: BLE001  every check runs; failures are reported in full
                report[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}", "error": traceback.format_exc()}
                print(f"FAILED {name}:\n{report[name]['error']}", flush=True)
            write_report(args.out, device, report, start)  # after each check: a time limit keeps what ran
    summary = write_report(args.out, device, report, start)
    for name, result in report.items():
        print(f"{'ok  ' if result['ok'] else 'FAIL'} {name:<12} {result['detail']}")
    print(f"smoke: {sum(r['ok'] for r in report.values())}/{len(report)} checks passed on {summary['name']} "
          f"in {summary['seconds']} s")
    sys.exit(0 if all(r["ok"] for r in report.values()) else 1)


if __name__ == "__main__":
    main()
