"""The default ``recrl train simulator`` on synthetic KuaiRand, scored against the planted truth (issue 14).

Trains with the default config (or ``--set section.key=value`` overrides, as the CLI takes them), timing the
training in wall and CPU seconds, then runs the world check (``recrl_cli.sim.check``) with the planted truth:
AUC per behaviour next to the truth's on the held-out rows, predicted vs observed rates, the share of the
planted user × item variance of the click logit recovered, the headroom table and item diversity.

    recrl synth kuairand --version pure --users 1000 --impressions 300000 --out RAW
    recrl prepare kuairand --raw RAW --out PREPARED
    python benchmarks/bench_sim_world.py --raw RAW --prepared PREPARED [--threads 2] [--set train.epochs=8]

Also prints training rows/s and the ratio to a matmul bound (the same FLOPs as one dense matmul at the rate
this machine reaches on a [4096 x 512] @ [512 x 512] float32 product, measured here), for the default one-pass
model and, with ``--per-row`` (a few timed steps only), KuaiSim's per-row window.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from recrl_cli.config.loading import resolve_config
from recrl_cli.mtf.ranker import built_in_ranker
from recrl_cli.sim.check import check_world
from recrl_cli.sim.config import SimulatorConfig
from recrl_cli.sim.data import load_kuairand_data
from recrl_cli.sim.train import SimulatorAlgorithm
from recrl_cli.training.trainer import Trainer


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def matmul_rate(threads: int) -> float:
    """FLOP/s of a [4096, 512] @ [512, 512] float32 matmul on this machine (best of 5)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(4096, 512), torch.randn(512, 512)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 4096 * 512 * 512 / best


def step_flops(algo: SimulatorAlgorithm, idx: torch.Tensor) -> float:
    """FLOPs of one training step (forward + backward), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        algo.update(idx)
    return float(counter.get_total_flops())


def timed_steps(algo: SimulatorAlgorithm, steps: int) -> dict[str, float]:
    """rows/s of ``steps`` training steps after one warm-up, and their ratio to the matmul bound."""
    stage = algo.stages()[0]
    order = torch.randperm(stage.num_rows, generator=torch.Generator().manual_seed(0))
    batches = order[: (steps + 1) * stage.batch_size].split(stage.batch_size)
    algo.update(batches[0])
    rows = 0
    w0, c0 = time.perf_counter(), cpu_seconds()
    for idx in batches[1:]:
        rows += int(algo.blocks.length[idx].sum()) if algo.one_pass else len(idx)
        algo.update(idx)
    wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
    flops = step_flops(algo, batches[1])
    rows_per_step = rows / len(batches[1:])
    return {"rows_per_s": rows / wall, "rows_per_cpu_s": rows / cpu, "flops_per_row": flops / rows_per_step}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", type=Path, required=True)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="section.key=value (CLI syntax)")
    ap.add_argument("--check-steps", type=int, default=200)
    ap.add_argument("--per-row", action="store_true", help="also time KuaiSim's per-row window (5 steps)")
    ap.add_argument("--speed-only", action="store_true", help="time steps only, no training")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bound = matmul_rate(args.threads)
    data = load_kuairand_data(args.prepared)

    def config(extra: list[str]):
        sets = [f"data.prepared_dir={args.prepared}", "data.dataset=kuairand", "model.check_steps=0", *extra]
        return resolve_config("simulator", SimulatorConfig, overrides=sets)

    out: dict = {"threads": args.threads, "matmul_gflops": bound / 1e9}
    for name, extra in (
        ("one_pass", []),
        *([("per_row", ["model.per_row_window=true"])] if args.per_row else []),
    ):
        torch.manual_seed(0)
        speed = timed_steps(SimulatorAlgorithm(config([*args.sets, *extra]), data, torch.device("cpu")),
                            5 if name == "per_row" else 20)  # fmt: skip
        speed["bound_ratio"] = speed["rows_per_s"] * speed["flops_per_row"] / bound
        out[f"speed/{name}"] = speed
        print(f"{name}: {speed['rows_per_s']:.0f} rows/s ({speed['rows_per_cpu_s']:.0f} per CPU-s), "
              f"{speed['flops_per_row'] / 1e6:.2f} MFLOP/row, {speed['bound_ratio']:.1%} of the matmul bound "
              f"({bound / 1e9:.1f} GFLOP/s)", flush=True)  # fmt: skip
    if args.speed_only:
        print(json.dumps(out, indent=2))
        return
    cfg = config(args.sets)
    torch.manual_seed(cfg.train.seed)
    algo = SimulatorAlgorithm(cfg, data, torch.device("cpu"))

    def log(metrics: dict[str, float], step: int) -> None:
        keys = [k for k in metrics if k.endswith(("is_click/auc", "long_view/auc", "epoch_loss"))]
        if keys:
            print(f"step {step}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys), flush=True)

    w0, c0 = time.perf_counter(), cpu_seconds()
    history = Trainer(
        algo, algo.stages(), device=torch.device("cpu"), seed=cfg.train.seed, log_metrics=log
    ).fit()
    out["train"] = {"wall_s": time.perf_counter() - w0, "cpu_s": cpu_seconds() - c0, "epochs": len(history)}
    print(f"training: {out['train']['epochs']} epochs, {out['train']['wall_s']:.0f} s wall, "
          f"{out['train']['cpu_s']:.0f} CPU-s", flush=True)  # fmt: skip
    w0, c0 = time.perf_counter(), cpu_seconds()
    # The fusion rows fuse what a fusion run without --ranker fuses, as `recrl train simulator`'s own check does.
    ranker, ranker_name = built_in_ranker(algo.model, "")
    check = check_world(algo.model, data, truth_dir=args.raw, steps=args.check_steps, seed=0,
                        ranker=None if ranker is algo.model else ranker, ranker_name=ranker_name)  # fmt: skip
    out["check"] = {**check.as_dict(), "wall_s": time.perf_counter() - w0, "cpu_s": cpu_seconds() - c0}
    from recrl_cli.cli.check import render_check

    render_check(check)
    print(f"check: {out['check']['wall_s']:.0f} s wall, {out['check']['cpu_s']:.0f} CPU-s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
