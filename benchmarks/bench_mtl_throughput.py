"""MTL training and inference throughput of every base against this CPU's fp32 matmul bound (issue 3).

What is timed is the product's code path: :meth:`SupervisedMTL.update` (gather a batch of rows, forward,
BCE-with-logits over [B, T], backward, the product's Adam step) and :meth:`SupervisedMTL.predict` (eval mode,
no autograd), on random ids with RetailRocket-like cardinalities and the reference sizes (MTLConfig defaults).

Bound = matmul rate / FLOPs per sample, where FLOPs count only the matmuls (``recrl_cli.nets.flops``: 2·m·n·k
each, training = 3× forward). The embedding lookup and its gradient, dropout, activations, softmax gates and
the Adam update are memory-bound and left out, so 100 % is out of reach for any base; the gap is what they
cost. The rate is the best fp32 ``torch.matmul`` rate on the bases' two typical GEMM shapes (the bottom layer
[B × F·D] @ [F·D × 512] and the fused 8-expert layer [B × F·D] @ [F·D × 4096]), measured in this process,
interleaved with the model timings: before every timed round of every base. The rounds go round-robin over
the bases and every figure is the best of ``--repeats`` rounds (other jobs on the machine only ever add
time); "% of bound" uses the best rate of the whole run, so a rate measured while other jobs ran cannot
inflate it.

    python benchmarks/bench_mtl_throughput.py                  # all bases, batch 2048, all threads
    python benchmarks/bench_mtl_throughput.py --bases mmoe,ple --threads 2 --json out.json

On a shared machine, ``--threads 1 --clock cpu`` times this process's CPU time instead of wall time (models
and matmul rate alike), which leaves out the turns other jobs take on the core. With several threads, the
``OMP_WAIT_POLICY`` the process starts with matters there: libgomp's default lets a thread that waits at the
end of a parallel op spin, which on an oversubscribed machine burns the turn its preempted sibling needs;
``OMP_WAIT_POLICY=PASSIVE python benchmarks/...`` makes it sleep instead. The title and JSON record it.

``--tune-malloc`` applies :func:`recrl_cli.nets.allocator.retain_freed_cpu_memory` first (glibc only);
``--default-adam`` swaps in torch's default for-loop Adam, to show what the product's fused one saves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from recrl_cli.algorithms.supervised import SupervisedMTL
from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.tensors import PreparedData, SplitTensors
from recrl_cli.nets.allocator import retain_freed_cpu_memory
from recrl_cli.nets.flops import forward_flops_per_sample, train_flops_per_sample
from recrl_cli.nets.mtl import MTL_BASES, MTLConfig

# RetailRocket-like fields: item, category, then 7 small item properties (F = 9).
CARDINALITIES = (100_000, 1_000, 10, 20, 30, 50, 60, 80, 100)
TASKS = ("click", "pay")
MATMUL_WIDTHS = (512, 4096)  # output widths of the rate's GEMMs (bottom layer, 8 fused experts)


# Wall clock by default. ``--clock cpu`` (one thread only) uses this process's CPU time instead: on a shared
# machine it leaves out the time other jobs held the core, for the model and the matmul rate alike.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn: Callable[[], object], clock: str) -> float:
    start = CLOCKS[clock]()
    fn()
    return CLOCKS[clock]() - start


def synthetic_data(rows: int, seed: int, history: int = 0) -> PreparedData:
    """A train split of ``rows`` random ids [rows, F] (+ ``history`` H item ids of field 0 and H label codes,
    each slot filled with probability 1/2, left-padded like the prepared data) and 0/1 labels [rows, T]."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.stack([torch.randint(0, c, (rows,), generator=gen) for c in CARDINALITIES], dim=1)
    if history:
        filled = (torch.rand(rows, history, generator=gen) < 0.5).sort(dim=1).values  # padding on the left
        items = torch.randint(0, CARDINALITIES[0], (rows, history), generator=gen) * filled
        codes = torch.randint(1, 4, (rows, history), generator=gen) * filled
        features = torch.cat([features, items, codes], dim=1)
    labels = torch.randint(0, 2, (rows, len(TASKS)), generator=gen).float()
    zeros = torch.zeros(rows, dtype=torch.long)
    split = SplitTensors(features=features, labels=labels, session_ids=zeros, user_ids=zeros, positions=zeros)
    manifest = {
        "tasks": list(TASKS),
        "features": [{"name": f"f{i}", "cardinality": c} for i, c in enumerate(CARDINALITIES)],
    }
    return PreparedData(manifest=manifest, splits={"train": split})


class MatmulRate:
    """Best fp32 GFLOP/s seen so far on [B × K] @ [K × n] for each n in ``MATMUL_WIDTHS``."""

    def __init__(self, batch: int, inner: int, clock: str) -> None:
        self.clock = clock
        self.pairs = [(torch.randn(batch, inner), torch.randn(inner, n)) for n in MATMUL_WIDTHS]
        self.best = 0.0
        self.measure()  # warm-up: MKL's first call per shape is slow

    def measure(self, products: int = 2) -> float:
        """Time ``products`` single products per shape; returns this round's best rate, updates ``self.best``.

        Each product is timed alone (≥ 5 GFLOP, tens of ms): the more short samples, the likelier one falls
        in a moment when no other job runs, and the best sample is the machine's rate.
        """
        rate = 0.0
        for a, b in self.pairs:
            flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
            for _ in range(products):
                rate = max(rate, flops / timed(lambda a=a, b=b: torch.matmul(a, b), self.clock) / 1e9)
        self.best = max(self.best, rate)
        return rate


class BaseRunner:
    """One base trained and scored through :class:`SupervisedMTL`; keeps its best train/inference times."""

    def __init__(self, name: str, args: argparse.Namespace, data: PreparedData) -> None:
        torch.manual_seed(0)
        train = TrainConfig(batch_size=args.batch_size)
        run = RunConfig(algo=name, data=DataConfig(), train=train, model=MTLConfig(history=args.history_mode))
        self.algo = SupervisedMTL(name, run, data, torch.device("cpu"))
        if args.default_adam:  # torch's default (for-loop) Adam with the same settings, for comparison
            self.algo.optimizer = torch.optim.Adam(
                self.algo.model.parameters(), lr=train.lr, weight_decay=train.weight_decay
            )
        rows = data.splits["train"].num_rows
        self.batches = torch.randperm(rows, generator=torch.Generator().manual_seed(1)).view(
            -1, args.batch_size
        )
        self.features = data.splits["train"].features
        self.steps = args.steps
        self.clock = args.clock
        self.best_train = self.best_infer = float("inf")
        self.rates: list[float] = []
        self.train()  # warm-up: Adam state, first-call costs
        self.infer()

    def train(self) -> None:
        for i in range(self.steps):
            self.algo.update(self.batches[i % len(self.batches)])

    def infer(self) -> None:
        for i in range(self.steps):
            self.algo.predict(self.features[self.batches[i % len(self.batches)]])

    def round(self, rate: MatmulRate) -> None:
        """One timed round: the matmul rate right before, then the train steps, then the inference steps."""
        self.rates.append(rate.measure())
        self.best_train = min(self.best_train, timed(self.train, self.clock))
        self.best_infer = min(self.best_infer, timed(self.infer, self.clock))

    def figures(self, batch_size: int) -> dict:
        model = self.algo.model
        samples = self.steps * batch_size
        return {
            "params": sum(p.numel() for p in model.parameters()),
            "train_flops_per_sample": train_flops_per_sample(model),
            "forward_flops_per_sample": forward_flops_per_sample(model),
            "train_samples_per_s": samples / self.best_train,
            "infer_samples_per_s": samples / self.best_infer,
            "matmul_gflops_during": max(self.rates),
        }


def add_bounds(results: dict[str, dict], gflops: float) -> None:
    """Bound samples/s and % of bound for training and inference, from the run's best matmul rate."""
    for r in results.values():
        r["train_bound_samples_per_s"] = gflops * 1e9 / r["train_flops_per_sample"]
        r["train_pct_of_bound"] = 100 * r["train_samples_per_s"] / r["train_bound_samples_per_s"]
        r["infer_bound_samples_per_s"] = gflops * 1e9 / r["forward_flops_per_sample"]
        r["infer_pct_of_bound"] = 100 * r["infer_samples_per_s"] / r["infer_bound_samples_per_s"]


def render(results: dict[str, dict], meta: dict) -> Table:
    table = Table(
        title=f"MTL throughput vs matmul bound: batch {meta['batch_size']}, {meta['threads']} threads, "
        f"{meta['clock']} clock, OMP_WAIT_POLICY={meta['omp_wait_policy']}, fp32, "
        f"F={len(CARDINALITIES)}, T={len(TASKS)}, malloc tuned={meta['tune_malloc']}, "
        f"Adam={'torch default' if meta['default_adam'] else 'product (fused)'}; "
        f"matmul rate {meta['matmul_gflops']:.0f} GFLOP/s (best of the run)"
    )
    headers = (
        "base",
        "params",
        "train MFLOP/sample",
        "train samples/s",
        "bound samples/s",
        "% of bound",
        "infer samples/s",
        "infer bound",
        "infer % of bound",
    )
    for col in headers:
        table.add_column(col, justify="left" if col == "base" else "right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['params']:,}",
            f"{r['train_flops_per_sample'] / 1e6:.2f}",
            f"{r['train_samples_per_s']:,.0f}",
            f"{r['train_bound_samples_per_s']:,.0f}",
            f"{r['train_pct_of_bound']:.0f} %",
            f"{r['infer_samples_per_s']:,.0f}",
            f"{r['infer_bound_samples_per_s']:,.0f}",
            f"{r['infer_pct_of_bound']:.0f} %",
        )
    return table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bases", default=",".join(MTL_BASES), help="comma-separated base names (default all)"
    )
    parser.add_argument("--batch-size", type=int, default=2048, help="rows per step (product default 2048)")
    parser.add_argument("--steps", type=int, default=2, help="train/inference steps per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per base; the best is kept")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall time, or (with --threads 1) CPU time, which leaves out other jobs' turns on the core",
    )
    parser.add_argument("--tune-malloc", action="store_true", help="retain freed memory in glibc's heap")
    parser.add_argument(
        "--default-adam", action="store_true", help="torch's default Adam instead of the product's fused one"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures to this JSON file")
    parser.add_argument(
        "--history", type=int, default=10, help="history slots per row (0: the id-only state)"
    )
    parser.add_argument("--history-mode", default="mean", help="model.history: off, mean or attention")
    args = parser.parse_args()
    names = [n.strip() for n in args.bases.split(",") if n.strip()]
    unknown = [n for n in names if n not in MTL_BASES]
    if unknown or not names:
        parser.error(f"unknown base {unknown[0]!r}" if unknown else "no base given")
    for opt in ("batch_size", "steps", "repeats"):
        if getattr(args, opt) < 1:
            parser.error(f"--{opt.replace('_', '-')} must be >= 1")
    if args.threads < 0:
        parser.error("--threads must be >= 0")
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu needs --threads 1 (the CPU time of several threads is not elapsed time)")
    args.bases = names
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tuned = retain_freed_cpu_memory() if args.tune_malloc else False
    cfg = MTLConfig()
    data = synthetic_data(4 * args.batch_size, seed=0, history=args.history)
    rate = MatmulRate(args.batch_size, len(CARDINALITIES) * cfg.embed_dim, args.clock)
    # All bases live at once and the rounds go round-robin over them, so that every base samples the
    # whole run: a burst of other jobs then costs each base some rounds, not one base all of its rounds.
    runners = {name: BaseRunner(name, args, data) for name in args.bases}
    for _ in range(args.repeats):
        for runner in runners.values():
            runner.round(rate)
    results = {name: runner.figures(args.batch_size) for name, runner in runners.items()}
    add_bounds(results, rate.best)
    meta = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "clock": args.clock,
        # libgomp's barrier policy: read from the environment at start-up (see the module docstring).
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "tune_malloc": tuned,
        "default_adam": args.default_adam,
        "matmul_gflops": rate.best,
        "matmul_shapes": [[args.batch_size, len(CARDINALITIES) * cfg.embed_dim, n] for n in MATMUL_WIDTHS],
        "cardinalities": list(CARDINALITIES),
    }
    Console(width=170).print(render(results, meta))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**meta, "bases": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
