"""Whole-session environment steps/s and user-response-model training samples/s at KuaiSim's sizes, on the CPU.

Setting (hac_kuaisim.md §4.4, §3.2): B = 32 users in parallel, slate K = 6, full 100-step histories, the URM
at KuaiSim's sizes (latent 32, enc_dim 64, 2 layers, 4 heads, FF 64, scorer 128) over KuaiRand-Pure's vocabulary
(19,574 users, 5,659 items, Pure's feature cardinalities). Feature ids and logs are random
(:mod:`recrl_cli.sim.synthetic`): speed does not depend on the weights or the data, only on the sizes. Every start
row has >= 100 earlier rows, so every history is full.

Env figures time :meth:`WholeSessionEnv.step` plus the policy that makes the action: ``random`` (the env's own
cost: one URM forward for 32 histories, sampling, ring-buffer update, replacement, metrics) and ``oracle``
(plus scoring all 5,659 items for 32 users). ``fixed`` runs the URM in eval mode; ``faithful`` keeps dropout on
while simulating (§8 #9) and samples σσ(z). Training figures time :meth:`SimulatorAlgorithm.update` (history
gather, forward, backward, Adam, KuaiSim's reg) at batch 128. KuaiSim's only timing: 20 random steps of B = 16
on CPU in 12 s, ≈ 1.65 steps/s (§7); the goal is ≥ 30× that.

Timings are the best of ``--repeats`` windows (the machine is shared: other jobs only ever add time).

    python benchmarks/bench_kuaisim_env.py --threads 1 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.prepare.kuairand import BEHAVIOURS
from recrl_cli.sim.config import EnvConfig, SimulatorConfig
from recrl_cli.sim.data import KuaiRandData
from recrl_cli.sim.environment import WholeSessionEnv, response_weights
from recrl_cli.sim.policies import oracle_greedy, random_slate
from recrl_cli.sim.response_model import UserResponseModel
from recrl_cli.sim.synthetic import (
    POSITIVE_RATE,
    PURE_ITEMS,
    PURE_USERS,
    synthetic_feature_tables,
    synthetic_row_table,
)
from recrl_cli.sim.train import SimulatorAlgorithm

KUAISIM_STEPS_PER_S = 1.65  # hac_kuaisim.md §7: WholeSessionRecEnvironment.ipynb, 20 steps in 12 s on CPU


def best_rate(fn: Callable[[], object], count: int, repeats: int, warmup: int = 2) -> float:
    """Best ``count`` / seconds over ``repeats`` windows of ``count`` calls of ``fn``."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def synthetic_data(users: int, history: int, seed: int = 0) -> KuaiRandData:
    """Pure-sized feature tables and a row table of ``users`` users with 1.5·H rows each (all train)."""
    user_table, item_table = synthetic_feature_tables(PURE_USERS, PURE_ITEMS, seed)
    rows = synthetic_row_table(users, PURE_ITEMS, rows_per_user=history + history // 2, seed=seed)
    full = torch.nonzero(rows.user_pos >= history).squeeze(1)  # rows with a full H-row history
    manifest = {"tasks": list(BEHAVIOURS), "fingerprint": "synthetic"}
    return KuaiRandData(Path("synthetic"), manifest, rows, user_table, item_table,
                        {"train": full, "val": full[:1], "test": full[:1]})  # fmt: skip


def env_rates(data: KuaiRandData, args: argparse.Namespace, faithful: bool) -> dict[str, float]:
    torch.manual_seed(0)
    model = UserResponseModel(
        SimulatorConfig(history_length=args.history, faithful=faithful), data.users, data.items
    )
    cfg = EnvConfig(batch_users=args.users, slate_size=args.slate, faithful=faithful)
    weights = response_weights(torch.tensor(POSITIVE_RATE), cfg.single_response)
    env = WholeSessionEnv(model, cfg, data.rows, data.splits["train"], weights)
    gen = torch.Generator().manual_seed(0)
    return {name: best_rate(lambda p=policy: env.step(p(env, gen)), args.steps, args.repeats)
            for name, policy in (("random", random_slate), ("oracle", oracle_greedy))}  # fmt: skip


def train_rate(data: KuaiRandData, args: argparse.Namespace, faithful: bool) -> float:
    torch.manual_seed(0)
    cfg = RunConfig(algo="simulator", data=DataConfig(), train=TrainConfig(batch_size=args.train_batch, lr=1e-4),
                    model=SimulatorConfig(history_length=args.history, faithful=faithful))  # fmt: skip
    algo = SimulatorAlgorithm(cfg, data, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    n = len(data.splits["train"])
    return args.train_batch * best_rate(
        lambda: algo.update(torch.randint(n, (args.train_batch,), generator=gen)),
        args.train_steps,
        args.repeats,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=32, help="B, users simulated in parallel")
    parser.add_argument("--slate", type=int, default=6, help="K, slate size")
    parser.add_argument("--history", type=int, default=100, help="H, history length")
    parser.add_argument("--steps", type=int, default=20, help="env steps per timing window")
    parser.add_argument("--train-batch", type=int, default=128, help="URM training batch")
    parser.add_argument("--train-steps", type=int, default=5, help="URM updates per timing window")
    parser.add_argument("--repeats", type=int, default=5, help="timing windows per figure; the best is kept")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (shared 2-core machine: 1 is fastest)"
    )
    parser.add_argument("--log-users", type=int, default=2_000, help="users in the synthetic row table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # other jobs on the machine
    data = synthetic_data(args.log_users, args.history)

    console = Console(width=140)
    table = Table(title=f"KuaiSim env: B={args.users}, K={args.slate}, H={args.history}, "
                        f"{torch.get_num_threads()} thread(s), load avg {load:.1f} at start")  # fmt: skip
    for col in ("figure", "mode", "policy", "rate", "vs KuaiSim 1.65 steps/s"):
        table.add_column(col, justify="right" if col in ("rate", "vs KuaiSim 1.65 steps/s") else "left")
    for faithful in (False, True):
        mode = "faithful" if faithful else "fixed"
        for policy, rate in env_rates(data, args, faithful).items():
            table.add_row("env steps/s", mode, policy, f"{rate:,.1f}", f"{rate / KUAISIM_STEPS_PER_S:,.0f}×")
    for faithful in (False, True):
        rate = train_rate(data, args, faithful)
        table.add_row(f"URM train samples/s (batch {args.train_batch})", "faithful" if faithful else "fixed",
                      "-", f"{rate:,.0f}", "")  # fmt: skip
    console.print(table)
    console.print(
        f"best of {args.repeats} windows ({args.steps} env steps / {args.train_steps} updates each)"
    )


if __name__ == "__main__":
    main()
