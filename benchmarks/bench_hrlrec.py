"""HRL-Rec benchmark: training throughput, then HRL-Rec vs its baselines and ablations over seeds with 95 % CIs.

    python benchmarks/bench_hrlrec.py --seeds 5 --iterations 100 --batch-users 16 --batch-size 32 --day-steps 6

1. Data: synthetic KuaiRand-Pure-format logs (``--users/--items/--impressions``), prepared, and a simulator
   trained on them through the pipeline (cached in ``--work``).
2. Throughput of the default HRL-Rec agent on that simulator: act (B lists of T = 10), one update on
   ``batch_size`` buffered lists, and one full online iteration (act + env step + rewards + buffer + update).
3. Comparison: every learning variant (HRL-Rec full, no-sup, no-sim, ddpg-only, click-only rewards, flat DDPG)
   x ``--seeds`` seeds, each trained online for ``--iterations`` env steps and evaluated on the same fresh users
   (``eval_seed``) for ``eval_days x day_steps`` env steps. The rule baselines (quota, single ranker, random)
   and the simulator references (popular, oracle) are evaluated inside every run on the same users; the
   variants' gap fractions on the list reward are printed too. Prints mean ± 95 % CI (Student t over seeds) and the
   paired difference to HRL-Rec full.
Everything printed is measured here; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.evaluation.stats import mean_ci, paired_difference
from recrl_cli.hrlrec.algorithm import HRLRecAlgorithm
from recrl_cli.hrlrec.config import HRLRecConfig
from recrl_cli.pipeline import train_run
from recrl_cli.sim.config import SimulatorConfig
from recrl_cli.tracking.base import NullTracker

VARIANTS = {  # name -> HRLRecConfig overrides
    "hrlrec": {},
    "no-sup": {"losses": "no-sup"},
    "no-sim": {"losses": "no-sim"},
    "ddpg-only": {"losses": "ddpg-only"},
    "click-only-reward": {"rewards": "click-only"},
    "flat-ddpg": {"variant": "flat-ddpg"},
    # The selector fix, one part at a time (benchmarks/HRLREC_NOTES.md, "channel collapse"):
    "no-switch": {"switch_weight": 0.0},  # no channel-level reward for the selector
    "no-prefix": {"prefix_similarity": False},  # critics without the action-vs-placed-prefix feature
    "nearest-channel": {"channel_knn": 1},  # the actor's nearest channel, the critic not consulted
    # The design before the fix: nearest channel, no channel reward, no prefix feature, no ε.
    "previous": {"channel_knn": 1, "switch_weight": 0.0, "prefix_similarity": False, "channel_epsilon": 0.0},
}
METRICS = (
    "ctr",
    "clicks",
    "dwell",
    "ild",
    "novelty",
    "reward",
    "ch_entropy",
    "top_share",
    "share_std",
    "share_kl",
)


def world(work: Path, args) -> tuple[Path, Path]:
    """(prepared dir, simulator run dir), built once per --work and data scale."""
    work = work / f"u{args.users}_i{args.items}_n{args.impressions}"
    prepared = work / "prepared"
    if not (prepared / "manifest.json").is_file():
        write_kuairand(work / "raw", num_users=args.users, num_items=args.items, num_impressions=args.impressions,
                       seed=0)  # fmt: skip
        prepare_kuairand(work / "raw", prepared, KuaiRandPrepareParams())
    sims = sorted((work / "runs").glob("simulator-*/model.pt"))
    if sims:
        return prepared, sims[0].parent
    cfg = RunConfig(algo="simulator", data=DataConfig(dataset="kuairand", prepared_dir=str(prepared)),
                    train=TrainConfig(epochs=args.sim_epochs, batch_size=256, device="cpu", threads=args.threads),
                    model=SimulatorConfig(history_length=20))  # fmt: skip
    return prepared, train_run(cfg, NullTracker(), experiment="sim", runs_root=work / "runs").run_dir


def run_cfg(prepared: Path, sim: Path, seed: int, args, **model) -> RunConfig:
    base = {"simulator": str(sim), "iterations": args.iterations, "eval_days": args.eval_days,
            "day_steps": args.day_steps, "warmup_steps": 10, "batch_users": args.batch_users,
            "batch_size": args.batch_size}  # fmt: skip
    return RunConfig(algo="hrlrec", data=DataConfig(dataset="kuairand", prepared_dir=str(prepared)),
                     train=TrainConfig(device="cpu", threads=args.threads, seed=seed),
                     model=HRLRecConfig(**{**base, **model}))  # fmt: skip


def throughput(prepared: Path, sim: Path, args) -> None:
    from recrl_cli.sim.data import load_kuairand_data

    algo = HRLRecAlgorithm(run_cfg(prepared, sim, 0, args), load_kuairand_data(prepared), torch.device("cpu"))
    m = algo.m
    algo.warm_up()
    obs = algo.env.observation()

    def timed(fn, n: int) -> float:
        fn()  # warm
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return n / (time.perf_counter() - start)

    act = timed(lambda: algo.agent.act(obs, explore=True), args.repeats)
    inter = algo.interaction  # one learner update on a batch sampled from the warmed-up replay buffer
    upd = timed(lambda: algo.learn(inter.buffer.sample(inter.batch_size, inter.sampler)), args.repeats)
    it = timed(lambda: algo._interact(torch.zeros(1)), args.repeats)
    print(f"\n## Throughput (B = {m.batch_users} users, T = {m.list_length}, batch {m.batch_size} lists, "
          f"{algo.channels.num_channels} channels, pool {len(algo.channels.pool())} items)\n")  # fmt: skip
    print("| operation | per second | lists per second |\n|---|---:|---:|")
    print(f"| act (explored, B lists) | {act:.2f} | {act * m.batch_users:.0f} |")
    print(f"| update (batch of {m.batch_size} lists) | {upd:.2f} | {upd * m.batch_size:.0f} |")
    print(f"| online iteration (act + env + update) | {it:.2f} | {it * m.batch_users:.0f} |")


def comparison(prepared: Path, sim: Path, args) -> None:
    results: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    for name in args.variants.split(","):
        over = VARIANTS[name]
        for seed in range(args.seeds):
            res = train_run(run_cfg(prepared, sim, seed, args, **over), NullTracker(), experiment="bench",
                            runs_root=args.work / "bench_runs")  # fmt: skip
            # The rule baselines are the same policies in every run (same users): take them from hrlrec's runs.
            rows = {name: "agent"}
            if name == "hrlrec":
                rows.update({b: b for b in ("quota", "single-ranker", "random", "popular", "oracle")})
            for label, who in rows.items():
                # top_share: the most shown channel's share of the policy's impressions (1 = collapsed).
                shares = [v for k, v in res.metrics.items() if k.startswith(f"shares/{who}/")]
                res.metrics[f"test/{who}/top_share"] = max(shares)
                for k in METRICS:
                    results.setdefault(label, {}).setdefault(k, []).append(res.metrics[f"test/{who}/{k}"])
            for k in ("gap_fraction", "gap_vs_popular"):  # on the list reward (recrl_cli.hrlrec.online)
                results.setdefault(name, {}).setdefault(k, []).append(res.metrics[f"test/agent/{k}"])
            for k in ("item_auc", "channel_acc"):
                if f"test/offline/{k}" in res.metrics:
                    results.setdefault(name, {}).setdefault(k, []).append(res.metrics[f"test/offline/{k}"])
            print(f"  {name} seed {seed}: ctr {res.metrics['test/agent/ctr']:.4f} top share "
                  f"{res.metrics['test/agent/top_share']:.2f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    print(f"\n## HRL-Rec vs baselines and ablations ({args.seeds} seeds, {args.iterations} online iterations, "
          f"evaluation {args.eval_days} days x {args.day_steps} steps; mean ± 95 % CI)\n")  # fmt: skip
    print("| policy | " + " | ".join(METRICS) + " |\n|---|" + "---:|" * len(METRICS))
    for label, cols in results.items():
        cells = [f"{mean_ci(cols[k])[0]:.4f} ± {mean_ci(cols[k])[1]:.4f}" for k in METRICS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(
        "\n## Gap fractions on the list reward ((agent − random or popular) / (oracle − that); mean ± 95 % CI)\n"
    )
    print("| variant | gap_fraction | gap_vs_popular |\n|---|---:|---:|")
    for label, cols in results.items():
        if "gap_fraction" in cols:
            cells = [
                f"{mean_ci(cols[k])[0]:.4f} ± {mean_ci(cols[k])[1]:.4f}"
                for k in ("gap_fraction", "gap_vs_popular")
            ]
            print(f"| {label} | " + " | ".join(cells) + " |")
    ref = results["hrlrec"]
    print("\n## Paired difference to HRL-Rec full (same seeds; mean ± 95 % CI, p)\n")
    print(
        "| policy | Δ ctr | Δ dwell | Δ ild | Δ ch_entropy | Δ top_share | Δ share_kl |\n|---|" + "---:|" * 6
    )
    for label, cols in results.items():
        if label == "hrlrec":
            continue
        cells = []
        for k in ("ctr", "dwell", "ild", "ch_entropy", "top_share", "share_kl"):
            d, ci, p = paired_difference(cols[k], ref[k])
            cells.append(f"{d:+.4f} ± {ci:.4f} (p {p:.3f})")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n## Offline (held-out logged lists)\n\n| variant | item_auc | channel_acc |\n|---|---:|---:|")
    for label, cols in results.items():
        if "item_auc" in cols:
            acc = cols.get("channel_acc")
            acc_s = f"{mean_ci(acc)[0]:.4f} ± {mean_ci(acc)[1]:.4f}" if acc else "-"
            print(
                f"| {label} | {mean_ci(cols['item_auc'])[0]:.4f} ± {mean_ci(cols['item_auc'])[1]:.4f} | {acc_s} |"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "recrl_hrlrec_bench",
        help="Cache of the synthetic data, the simulator and the runs.",
    )
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--impressions", type=int, default=60_000)
    p.add_argument("--sim-epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--eval-days", type=int, default=5)
    p.add_argument("--day-steps", type=int, default=10)
    p.add_argument("--batch-users", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated subset (hrlrec first).")
    p.add_argument("--skip-comparison", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}; "
          f"cpus {os.cpu_count()}, threads {args.threads}")  # fmt: skip
    prepared, sim = world(args.work, args)
    throughput(prepared, sim, args)
    if not args.skip_comparison:
        comparison(prepared, sim, args)
    print(f"\nload at the end: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
