"""RMTL critic TD throughput against this machine's fp32 matmul bound (and the official code's ≈1.4 s/step).

Times the exact code path of ``recrl train rmtl``'s critic stage: a batch of transition ids is sliced from a
shuffled permutation of a tensorised buffer, states / next states / actions / rewards are gathered, and
:meth:`CriticLearner.step` runs the target forward (no grad), the online forward, the backward, Adam and the
soft target update (every 2nd step). Sizes are the reference's (embed 128, bottom (512, 256), tower (128, 64),
dropout 0.2, 2 critics) on F = 9 RetailRocket-like fields.

Bound: critic FLOPs per step = 2 critics × B × (online forward on (s, a) + target forward on (s', a') + backward
≈ 2 forwards) = 8·B·MACs_per_critic_sample, divided by the measured fp32 rate of the dominant matmul
[B × (F+1)·D] @ [(F+1)·D × 512]. Every timing is the best of ``--repeats`` (the machine is shared).

    python benchmarks/bench_rmtl_critic.py --steps 5 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

from recrl_cli.algorithms.rmtl.critics import CriticLearner, TaskCritics
from recrl_cli.algorithms.rmtl.mdp import build_session_mdp

CARDINALITIES = (100_000, 1_000, 10, 20, 30, 50, 60, 80, 100)  # item, category, 7 small properties (F = 9)
NUM_TASKS = 2
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


def matmul_gflops(m: int, k: int, n: int, repeats: int) -> float:
    """fp32 GFLOP/s of [m×k] @ [k×n] (10 products per timing)."""
    a, b = torch.randn(m, k), torch.randn(k, n)

    def run() -> None:
        for _ in range(10):
            torch.matmul(a, b)

    return 10 * 2 * m * k * n / best_time(run, repeats) / 1e9


def critic_macs_per_sample(critics: TaskCritics) -> int:
    """Multiply-adds of ONE critic's forward for one sample: the action Linear(1→D) plus every MLP layer."""
    macs = critics.action.in_features * critics.action.out_features
    return macs + sum(layer.weight.shape[1] * layer.weight.shape[2] for layer in critics.mlp.layers)


def make_buffer(rows: int, gen: torch.Generator):
    """A synthetic session buffer of ``rows`` transitions (sessions of 1..8 rows) and its state ids [N, F]."""
    ids = torch.stack([torch.randint(0, c, (rows,), generator=gen) for c in CARDINALITIES], dim=1)
    sessions = torch.cumsum(torch.rand(rows, generator=gen) < 0.2, 0)
    labels = (torch.rand(rows, NUM_TASKS, generator=gen) < 0.1).float()
    probs = torch.rand(rows, NUM_TASKS, generator=gen)
    return ids, build_session_mdp(sessions, labels, probs)


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
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    ids, mdp = make_buffer(args.rows, gen)
    critics = TaskCritics(CARDINALITIES, NUM_TASKS)
    learner = CriticLearner(critics, lr=1e-3, gamma=0.95, tau=0.2, target_update_every=2)
    order = torch.randperm(mdp.num_transitions, generator=gen)
    cursor = [0]

    def td_steps() -> None:
        for _ in range(args.steps):
            start = cursor[0] % (mdp.num_transitions - args.batch_size)
            cursor[0] += args.batch_size
            idx = order[start : start + args.batch_size]
            nxt = mdp.next_index[idx]
            learner.step(ids[idx], mdp.actions[idx], mdp.rewards[idx], mdp.done[idx], ids[nxt],
                         mdp.policy_actions[nxt])  # fmt: skip

    in_dim = (len(CARDINALITIES) + 1) * critics.arch["embed_dim"]
    step_flops = 2 * critic_macs_per_sample(critics) * NUM_TASKS * args.batch_size * 4
    td_steps()  # warm-up (allocations, Adam state)
    # Interleave the matmul rate and the step timing so a burst of load from other jobs hits both alike.
    rate, seconds = 0.0, float("inf")
    for _ in range(args.repeats):
        rate = max(rate, matmul_gflops(args.batch_size, in_dim, critics.arch["bottom_dims"][0], 1))
        seconds = min(seconds, best_time(td_steps, 1, warmup=0) / args.steps)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            td_steps()
        Console().print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    bound = step_flops / (rate * 1e9)
    table = Table(
        title=f"RMTL critic TD step, batch {args.batch_size}, {torch.get_num_threads()} threads, "
        f"F={len(CARDINALITIES)}, T={NUM_TASKS}, D={critics.arch['embed_dim']}, fp32"
    )
    for col in ("matmul GFLOP/s", "GFLOP/step", "steps/s", "ms/step", "bound ms/step", "% of bound",
                "vs official 1.4 s/step"):  # fmt: skip
        table.add_column(col, justify="right")
    table.add_row(
        f"{rate:.0f}", f"{step_flops / 1e9:.1f}", f"{1 / seconds:.2f}", f"{1e3 * seconds:.0f}",
        f"{1e3 * bound:.0f}", f"{100 * bound / seconds:.0f} %", f"{OFFICIAL_S_PER_STEP / seconds:.1f}×",
    )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
