"""Fusion headroom of a simulated world per ranker and candidate mix (issues 14 and 16).

For each (ranker, retrieved + random candidates) setting, over several env seeds, the four calibration policies
of :mod:`recrl_cli.mtf.calibration` in the fusion env that ``recrl train unifiedrl`` builds (the check's
:func:`recrl_cli.sim.check.fusion_headroom`): random fusion, the best fixed fusion, the best fusion per request
(best of M actions on the simulator's penalised expected reward) and the per-user best slate (greedy oracle).
Prints reward per request, mean ± standard error over seeds, and the per-seed ratios (paired: the same seed's
users and draws for every policy) of the best fusion and the oracle slate over the best fixed fusion.

    python benchmarks/bench_fusion_headroom.py --simulator runs/simulator-<key> --data PREPARED \\
        --ranker self --ranker runs/simulator-<key2> --candidates 40+10 --candidates 20+30 --seeds 3

``--ranker self`` = the simulator ranks for itself (the oracle ranker), ``--ranker taste-free`` = its copy without
the users' taste rows (:mod:`recrl_cli.mtf.ranker`). One torch thread by default; CPU seconds per setting are
printed.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from recrl_cli.agents.algorithm import load_simulator
from recrl_cli.mtf import calibration
from recrl_cli.mtf.ranker import TASTE_FREE, taste_free_view
from recrl_cli.sim.check import fusion_headroom
from recrl_cli.sim.config import EnvConfig
from recrl_cli.sim.data import load_kuairand_data


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def mean_se(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return m, se


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--simulator", required=True, help="simulator run directory or model.pt (the ground truth)"
    )
    p.add_argument("--data", required=True, help="prepared KuaiRand the simulator was trained on")
    p.add_argument("--ranker", action="append", default=None, help="'self' or a simulator run (repeatable)")
    p.add_argument("--candidates", action="append", default=None, help="RETRIEVED+RANDOM (repeatable)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100, help="requests per policy and seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--best-of", type=int, default=calibration.BEST_OF, help="M of the best fusion per request"
    )
    p.add_argument("--expected-only", action="store_true", help="no realised rollouts (a fifth of the cost)")
    p.add_argument("--json", default="", help="write every figure here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    calibration.BEST_OF = args.best_of
    dev = torch.device("cpu")
    model, _ = load_simulator(args.simulator, dev)
    data = load_kuairand_data(args.data, dev)
    out = []
    for ranker_ref in args.ranker or ["self"]:
        if ranker_ref == "self":
            ranker = None
        elif ranker_ref == TASTE_FREE:
            ranker = taste_free_view(model)
        else:
            ranker = load_simulator(ranker_ref, dev, option="--ranker")[0]
        for cand in args.candidates or ["40+10"]:
            retrieved, random = (int(x) for x in cand.split("+"))
            t0, w0 = cpu_seconds(), time.perf_counter()
            per_seed = [fusion_headroom(model, data, EnvConfig(), args.steps, seed, ranker=ranker,
                                        retrieved=retrieved, random=random, realised=not args.expected_only)
                        for seed in range(args.seeds)]  # fmt: skip
            cpu, wall = cpu_seconds() - t0, time.perf_counter() - w0
            row = {
                "ranker": ranker_ref,
                "candidates": cand,
                "cpu_s": cpu,
                "wall_s": wall,
                "per_seed": per_seed,
            }
            print(
                f"\n== ranker {ranker_ref}, {retrieved} retrieved + {random} random: {cpu:.0f} CPU-s, {wall:.0f} s"
            )
            keys = ("expected_reward",) if args.expected_only else ("expected_reward", "avg_reward")
            for policy in per_seed[0]:
                line = "  ".join(f"{k} {m:.4f} ± {se:.4f}" for k in keys
                                 for m, se in [mean_se([t[policy][k] for t in per_seed])])  # fmt: skip
                print(f"  {policy:12s} {line} per request")
            session = [t["best_fusion"]["expected_reward_per_session"] for t in per_seed]
            m, se = mean_se(session)
            print(
                f"  best fusion, one action per user session: expected_reward {m:.4f} ± {se:.4f} per request"
            )
            m, se = mean_se(
                [v / t["fixed"]["expected_reward"] - 1 for v, t in zip(session, per_seed, strict=True)]
            )
            row["expected_reward/best_fusion_session_vs_fixed"] = (m, se)
            print(f"  expected_reward: best_fusion_session vs fixed: {m:+.2%} ± {se:.2%} (paired over seeds)")
            for key in keys:
                for top in ("best_fusion", "per_user"):
                    for base in ("fixed", "random"):
                        ratios = [t[top][key] / t[base][key] - 1 for t in per_seed]
                        m, se = mean_se(ratios)
                        row[f"{key}/{top}_vs_{base}"] = (m, se)
                        print(f"  {key}: {top} vs {base}: {m:+.2%} ± {se:.2%} (paired over seeds)")
            out.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
