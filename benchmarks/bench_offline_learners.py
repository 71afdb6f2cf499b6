"""Training steps/s of the offline learners (UnifiedRL and its baselines) at the paper's batch size.

Setting: batch 256 (UnifiedRL's table), state S = 128, action A = 10 (the paper's 10-D fusion action), Q = 2
reward components, every learner at its default config (hidden 256-128); UnifiedRL also at m = 2, 10, 24 critics
per set (q·m = 4, 20, 48 critics in one batched ensemble). Data: 20,000 random transitions in a
:class:`TransitionStore` (speed depends on sizes only). One step = sample a batch by index + ``update``.

A second table times what the batched ensemble replaces: one critic regression step (forward, MSE, backward,
Adam) of 48 critics as ONE :class:`EnsembleQ` against a Python loop over 48 separate MLPs.

Timings are the best of ``--repeats`` windows (the machine is shared: other jobs only ever add time).

    python benchmarks/bench_offline_learners.py --threads 1,2 --steps 20 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from recrl_cli.nets.layers import MLP
from recrl_cli.offline.batch import TransitionStore
from recrl_cli.offline.nets import EnsembleQ
from recrl_cli.offline.registry import LEARNERS, build_learner

S, A, Q, BATCH = 128, 10, 2, 256


def best_rate(fn: Callable[[], object], count: int, repeats: int, warmup: int = 2) -> float:
    """Best ``count`` / seconds over ``repeats`` windows of ``count`` calls of ``fn``."""
    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for _ in range(count):
            fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return count / best


def random_store(n: int, device: torch.device) -> TransitionStore:
    g = torch.Generator().manual_seed(0)
    mu = torch.rand(n, A, generator=g) * 1.4 - 0.7
    data = {"state": torch.randn(n, S, generator=g), "next_state": torch.randn(n, S, generator=g),
            "action": (mu + torch.rand(n, A, generator=g) * 0.3 - 0.15).clamp(-1, 1),
            "reward": torch.rand(n, Q, generator=g), "done": (torch.rand(n, generator=g) < 0.1).float(),
            "mu_bp": mu, "next_mu_bp": mu.roll(1, 0), "lower": torch.full((n, A), -0.15),
            "upper": torch.full((n, A), 0.15)}  # fmt: skip
    return TransitionStore.from_tensors({k: v.to(device) for k, v in data.items()})


def learner_rate(
    name: str, store: TransitionStore, args: argparse.Namespace, **overrides
) -> tuple[float, float]:
    """(updates/s, matmul GFLOP per update counted by torch's FlopCounterMode on one update)."""
    learner = build_learner(name, S, A, (1.0,) * Q, store.device, 0, **overrides)
    g = torch.Generator(store.device).manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        learner.update(store.sample(BATCH, g))
    rate = best_rate(lambda: learner.update(store.sample(BATCH, g)), args.steps, args.repeats)
    return rate, counter.get_total_flops() / 1e9


def matmul_rate(device: torch.device) -> float:
    """GFLOP/s of a [256, 2048] @ [2048, 2048] matmul: the bound the learners' matmuls could reach."""
    a, b = torch.randn(256, 2048, device=device), torch.randn(2048, 2048, device=device)
    return best_rate(lambda: a @ b, 20, 3) * 2 * 256 * 2048 * 2048 / 1e9


def critic_step_rates(
    store: TransitionStore, args: argparse.Namespace, members: int = 48
) -> dict[str, float]:
    """Steps/s of one regression step of ``members`` critics: batched ensemble vs a loop over modules."""
    b = store.sample(BATCH, torch.Generator(store.device).manual_seed(0))
    y = torch.randn(members, BATCH, device=store.device)
    ensemble = EnsembleQ(members, S, A, (256, 128)).to(store.device)
    looped = nn.ModuleList(MLP(S + A, (256, 128), 0.0, 1) for _ in range(members)).to(store.device)
    opt_e, opt_l = torch.optim.Adam(ensemble.parameters()), torch.optim.Adam(looped.parameters())

    def batched() -> None:
        loss = (ensemble(b.state, b.action) - y).square().mean(-1).sum()
        opt_e.zero_grad(set_to_none=True)
        loss.backward()
        opt_e.step()

    def loop() -> None:
        x = torch.cat([b.state, b.action], -1)
        loss = sum((net(x).squeeze(-1) - y[i]).square().mean() for i, net in enumerate(looped))
        opt_l.zero_grad(set_to_none=True)
        loss.backward()
        opt_l.step()

    return {
        "batched": best_rate(batched, args.steps, args.repeats),
        "loop": best_rate(loop, args.steps, args.repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="Comma-separated torch thread counts (CPU).")
    parser.add_argument("--steps", type=int, default=20, help="Updates per timing window.")
    parser.add_argument("--repeats", type=int, default=3, help="Timing windows; the best is reported.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    args = parser.parse_args()
    device = torch.device(args.device)
    threads = [int(t) for t in args.threads.split(",")] if device.type == "cpu" else [torch.get_num_threads()]
    store = random_store(20_000, device)
    rows: list[tuple[str, dict]] = [(name, {}) for name in LEARNERS if name != "unifiedrl"]
    rows = [(f"unifiedrl m={m} ({Q * m} critics)", {"critics": m}) for m in (2, 10, 24)] + rows
    table = Table(title=f"offline learner updates/s, batch {BATCH}, S={S}, A={A}, Q={Q}, device {device}")
    table.add_column("learner")
    table.add_column("GFLOP/step", justify="right")
    for t in threads:
        table.add_column(f"{t}T steps/s", justify="right")
        table.add_column(f"{t}T ms/step", justify="right")
        table.add_column(f"{t}T % of mm bound", justify="right")
    results: dict[str, list[float]] = {label: [] for label, _ in rows}
    flops: dict[str, float] = {}
    crit: dict[int, dict[str, float]] = {}
    bound: dict[int, float] = {}
    for t in threads:
        torch.set_num_threads(t)
        bound[t] = matmul_rate(device)
        for label, overrides in rows:
            name = "unifiedrl" if label.startswith("unifiedrl") else label
            rate, flops[label] = learner_rate(name, store, args, **overrides)
            results[label].append(rate)
        crit[t] = critic_step_rates(store, args)
    for label, rates in results.items():
        cells = [(f"{r:.1f}", f"{1000 / r:.1f}", f"{100 * r * flops[label] / bound[t]:.0f} %")
                 for r, t in zip(rates, threads, strict=True)]  # fmt: skip
        table.add_row(label, f"{flops[label]:.2f}", *[x for c in cells for x in c])
    console = Console(width=160)  # the table is wide; keep it whole when piped to a file
    console.print(table)
    console.print("matmul bound ([256, 2048] @ [2048, 2048]): "
                  + ", ".join(f"{t} thread(s) {r:.0f} GFLOP/s" for t, r in bound.items()))  # fmt: skip
    ens = Table(title="48 critics, one regression step (fwd + bwd + Adam), steps/s")
    for col in ("threads", "one EnsembleQ", "loop over 48 MLPs", "speed-up"):
        ens.add_column(col, justify="right")
    for t, r in crit.items():
        ens.add_row(str(t), f"{r['batched']:.1f}", f"{r['loop']:.1f}", f"{r['batched'] / r['loop']:.2f}x")
    console.print(ens)


if __name__ == "__main__":
    main()
