"""Training and inference throughput of every MTL base against this machine's fp32 matmul bound.

For each base: (a) the fp32 rate of ``torch.matmul`` on the models' dominant shape [B × F·D] @ [F·D × 512]
with all threads, (b) samples/s of a full train step (forward + BCE-with-logits + backward + Adam step) on
random RetailRocket-shaped ids, (c) the bound = rate / train FLOPs per sample. Inference samples/s (eval mode,
no autograd) is printed beside it. Every timing is the best of ``--repeats``; the bound uses the best matmul
rate seen in the whole run, so a rate measured while other jobs ran cannot inflate "% of bound".

    PYTHONPATH=. python benchmarks/bench_mtl_throughput.py --batch-size 2048 --steps 5 --bases mmoe,ple

``--tune-malloc`` raises glibc's mmap threshold so that the 52 MB embedding gradient allocated every step is
reused from the heap instead of being page-faulted in afresh (a process setting, Linux/glibc only).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

from recrl_cli.nets.flops import forward_flops_per_sample, train_flops_per_sample
from recrl_cli.nets.mtl import MTL_BASES, MTLConfig, build_base

# RetailRocket-like fields: item, category, then 7 small item properties (F = 9).
CARDINALITIES = (100_000, 1_000, 10, 20, 30, 50, 60, 80, 100)
NUM_TASKS = 2


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


def random_batches(batch: int, count: int, gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of ids [B, F] and labels [B, T] in {0, 1}, made once so RNG cost is not timed."""
    out = []
    for _ in range(count):
        x = torch.stack([torch.randint(0, c, (batch,), generator=gen) for c in CARDINALITIES], dim=1)
        y = torch.randint(0, 2, (batch, NUM_TASKS), generator=gen).float()
        out.append((x, y))
    return out


def bench_base(name: str, args: argparse.Namespace, batches: list, cfg: MTLConfig) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_base(name, CARDINALITIES, NUM_TASKS, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6, fused=args.fused_adam or None)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def train_steps() -> None:
        model.train()
        for i in range(args.steps):
            x, y = batches[i % len(batches)]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

    def infer_steps() -> None:
        model.eval()
        with torch.inference_mode():
            for i in range(args.steps):
                model(batches[i % len(batches)][0])

    n = args.steps * args.batch_size
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "rate": matmul_gflops(args.batch_size, len(CARDINALITIES) * cfg.embed_dim, 512, args.repeats),
        "train_flops": train_flops_per_sample(model),
        "fwd_flops": forward_flops_per_sample(model),
        "train_sps": n / best_time(train_steps, args.repeats),
        "infer_sps": n / best_time(infer_steps, args.repeats),
    }


def tune_malloc() -> None:
    """Serve large allocations from the heap and keep freed memory: no per-step page faults (glibc only)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=5, help="train/inference steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure; the best is kept")
    parser.add_argument("--bases", default=",".join(MTL_BASES), help="comma-separated base names")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all)")
    parser.add_argument("--fused-adam", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tune-malloc", action="store_true", help="see the module docstring")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tune_malloc:
        tune_malloc()
    names = [n.strip() for n in args.bases.split(",") if n.strip()]
    unknown = [n for n in names if n not in MTL_BASES]
    if unknown:
        parser.error(f"unknown base {unknown[0]!r}; choose from {', '.join(MTL_BASES)}")
    cfg = MTLConfig()
    batches = random_batches(args.batch_size, 4, torch.Generator().manual_seed(0))
    results = {name: bench_base(name, args, batches, cfg) for name in names}
    rate = max(r["rate"] for r in results.values())
    per_base = ", ".join(f"{r['rate']:.0f}" for r in results.values())

    table = Table(
        title=f"batch {args.batch_size}, {torch.get_num_threads()} threads, fp32, F={len(CARDINALITIES)}, "
        f"T={NUM_TASKS}, Adam fused={args.fused_adam}, malloc tuned={args.tune_malloc}; "
        f"matmul rate {rate:.0f} GFLOP/s (measured per base: {per_base})"
    )
    headers = (
        "base",
        "params",
        "train MFLOP/sample",
        "train samples/s",
        "bound samples/s",
        "% of bound",
        "infer samples/s",
        "infer % of bound",
    )
    for col in headers:
        table.add_column(col, justify="left" if col == "base" else "right")
    for name, r in results.items():
        bound = rate * 1e9 / r["train_flops"]
        infer_bound = rate * 1e9 / r["fwd_flops"]
        table.add_row(
            name,
            f"{r['params']:,}",
            f"{r['train_flops'] / 1e6:.2f}",
            f"{r['train_sps']:,.0f}",
            f"{bound:,.0f}",
            f"{100 * r['train_sps'] / bound:.0f} %",
            f"{r['infer_sps']:,.0f}",
            f"{100 * r['infer_sps'] / infer_bound:.0f} %",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
