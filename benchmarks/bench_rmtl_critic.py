"""RMTL critic TD throughput against this machine's fp32 matmul bound (and the official code's ≈1.4 s/step).

Times the exact code path of ``recrl train rmtl``'s critic stage, :meth:`RMTL.critic_update`, on RetailRocket-shaped
synthetic sessions: the batch is a slice of one per-epoch permutation (as the trainer's ``batch_indices``), states,
next states, actions and rewards are gathered from device tensors built once, and :meth:`CriticLearner.step` runs
the target forward (no grad), the online forward, the backward, Adam (dense MLPs, row-wise tables) and the soft
target update (every 2nd step). Sizes are the reference's (critic embed 128, bottom (512, 256), tower (128, 64),
dropout 0.2, 2 critics) on the default state: 9 prepared RetailRocket fields + 2 session-context fields.

Bound: critic FLOPs per step = B × (online forward + target forward + backward ≈ 2 forwards) = 8·B·MACs, with MACs
of all T critics per sample as :meth:`TaskCritics.macs_per_sample` counts them, divided by the measured fp32 rate
of the dominant matmul [B × F·D] @ [F·D × 512]. Timings are the best of ``--repeats`` (the machine is shared: other
jobs only ever add time), with the matmul rate and the steps measured interleaved.

    python benchmarks/bench_rmtl_critic.py --steps 5 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

from recrl_cli.algorithms.rmtl import RMTL, RMTLConfig
from recrl_cli.config.loading import resolve_config
from recrl_cli.data.tensors import PreparedData, SplitTensors

# RetailRocket at full size (≈ prepared vocabularies): item, category, parent_category, available, price_bucket,
# prop_888, prop_364, prop_776, position_bucket.
FIELDS = {"item": 120_000, "category": 1_100, "parent_category": 360, "available": 4, "price_bucket": 22,
          "prop_888": 5_000, "prop_364": 300, "prop_776": 60, "position_bucket": 10}  # fmt: skip
TASKS = ("click", "pay")
OFFICIAL_S_PER_STEP = 1.4  # rmtl.md §7.1, the official TD3_ESMMBC update on 2 CPU cores


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Best wall time of ``fn`` over ``repeats`` runs (other jobs on the machine only ever add time)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(m: int, k: int, n: int) -> float:
    """fp32 GFLOP/s of [m×k] @ [k×n] (5 products per timing, best of 2)."""
    a, b = torch.randn(m, k), torch.randn(k, n)

    def run() -> None:
        for _ in range(5):
            torch.matmul(a, b)

    return 5 * 2 * m * k * n / best_time(run, 2) / 1e9


def synthetic_train_split(rows: int, gen: torch.Generator) -> SplitTensors:
    """Sessions of mean length 5 with Zipf-like item ids and ~5 % / ~1 % click / pay rates."""
    starts = torch.rand(rows, generator=gen) < 0.2
    starts[0] = True
    sessions = torch.cumsum(starts.long(), 0) - 1
    first = torch.nonzero(starts).squeeze(1)
    positions = torch.arange(rows) - first[sessions]
    cols = []
    for name, card in FIELDS.items():
        if name == "position_bucket":
            cols.append(positions.clamp(max=card - 1))
        else:  # heavy head, long tail
            cols.append((torch.rand(rows, generator=gen).pow(3) * card).long().clamp(max=card - 1))
    labels = torch.stack([torch.rand(rows, generator=gen) < p for p in (0.05, 0.01)], dim=1).float()
    return SplitTensors(torch.stack(cols, 1), labels, sessions, sessions.clone(), positions)


def build_algorithm(rows: int, batch_size: int, threads: int) -> tuple[RMTL, float]:
    """An RMTL with the reference critic sizes on synthetic data; returns it and the one-off MDP build time."""
    manifest = {"tasks": list(TASKS), "features": [{"name": n, "cardinality": c} for n, c in FIELDS.items()]}
    data = PreparedData(
        manifest=manifest, splits={"train": synthetic_train_split(rows, torch.Generator().manual_seed(0))}
    )
    options = {  # a small actor: only its predictions enter the buffer, the critics keep the reference sizes
        "train.threads": threads, "model.embed_dim": 16, "model.bottom_dims": (32,), "model.tower_dims": (16,),
        "model.critic_batch_size": batch_size, "model.critic_init_from_actor": False,
    }  # fmt: skip
    torch.manual_seed(0)
    algo = RMTL(resolve_config("rmtl", RMTLConfig, options=options), data, torch.device("cpu"))
    start = time.perf_counter()
    algo._prepare_critics()  # actor probabilities for every row + the session MDP, once
    return algo, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=5, help="TD steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure; the best is kept")
    parser.add_argument("--rows", type=int, default=200_000, help="transitions in the synthetic buffer")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all)")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one timing")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    algo, build_s = build_algorithm(args.rows, args.batch_size, args.threads)
    critics = algo.critics
    order = torch.randperm(args.rows, generator=torch.Generator().manual_seed(1))  # one epoch's permutation
    cursor = [0]

    def td_steps() -> None:
        for _ in range(args.steps):
            start = cursor[0] % (args.rows - args.batch_size)
            cursor[0] += args.batch_size
            algo.critic_update(order[start : start + args.batch_size])

    state_dims = critics.num_fields * critics.arch["embed_dim"]
    step_flops = 2 * critics.macs_per_sample() * args.batch_size * 4  # fwd online + fwd target + bwd (2 fwds)
    td_steps()  # warm-up (allocations, Adam state, the fused kernel's first call)
    # Interleave the matmul rate and the step timing so a burst of load from other jobs hits both alike.
    rate, seconds = 0.0, float("inf")
    for _ in range(args.repeats):
        rate = max(rate, matmul_gflops(args.batch_size, state_dims, critics.arch["bottom_dims"][0]))
        seconds = min(seconds, best_time(td_steps, 1, warmup=0) / args.steps)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            td_steps()
        Console(width=200).print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    bound = step_flops / (rate * 1e9)
    table = Table(
        title=f"RMTL critic TD step (RMTL.critic_update), batch {args.batch_size}, {torch.get_num_threads()} threads, "
        f"state fields {critics.num_fields}, T={len(TASKS)}, D={critics.arch['embed_dim']}, fp32"
    )
    for col in ("matmul GFLOP/s", "GFLOP/step", "steps/s", "ms/step", "bound ms/step", "% of bound",
                "vs official 1.4 s/step"):  # fmt: skip
        table.add_column(col, justify="right")
    table.add_row(
        f"{rate:.0f}", f"{step_flops / 1e9:.1f}", f"{1 / seconds:.2f}", f"{1e3 * seconds:.0f}",
        f"{1e3 * bound:.0f}", f"{100 * bound / seconds:.0f} %", f"{OFFICIAL_S_PER_STEP / seconds:.1f}×",
    )  # fmt: skip
    console = Console(width=160)
    console.print(table)
    console.print(f"one-off: actor probabilities + session MDP for {args.rows:,} rows in {build_s:.2f} s")


if __name__ == "__main__":
    main()
