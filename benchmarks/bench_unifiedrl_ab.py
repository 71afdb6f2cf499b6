"""How precise is the simulated A/B of a fusion policy against ES, and what does the precision cost?

Trains one ``recrl train unifiedrl`` policy (quick defaults unless ``key=value`` overrides), then replays the A/B
of that policy and of ES on a growing number of sessions (``--users`` per wave × waves) and prints, per session
count: the reward change vs ES, its paired 95 % CI (common random numbers, delta method), the CI the same
sessions give unpaired, the paired sessions ±0.5 % would need (1/√n scaling), and the CPU seconds per policy.

    python benchmarks/bench_unifiedrl_ab.py --world WORLD --users 256 --waves 1,2,4
    (WORLD: a folder from ``--build-world``; built in a temporary folder when not given)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_unifiedrl_compare import simulators, world_dirs

from recrl_cli.cli.resolve import run_config_from_cli
from recrl_cli.mtf.algorithm import MTFAlgorithm
from recrl_cli.mtf.evaluate import ab_sessions
from recrl_cli.mtf.metrics import paired_pct_change, unpaired_pct_change
from recrl_cli.sim.data import load_kuairand_data


def train(algo: str, prepared: Path, sim: Path, ranker: Path | str, logs: Path, seed: int, extra,
          until: str | None = None) -> MTFAlgorithm:  # fmt: skip
    """Run the stages of ``recrl train <algo>`` in process; ``ranker`` a ranker run or a built-in name
    (taste-free, self); ``until``: stop before the stage of that name (``"train0"``: CEM μ_bp and the first
    round's logs only, the learner untouched)."""
    pairs = [("simulator", str(sim)), ("ranker", str(ranker)), ("logs_dir", str(logs)), *extra]
    cfg = run_config_from_cli(
        algo, config=None, sets=None, extra=pairs, seed=seed, device="cpu", data_dir=prepared
    )
    alg = MTFAlgorithm(algo, cfg, load_kuairand_data(prepared), torch.device("cpu"))
    for stage in alg.stages():
        if stage.name == until:
            break
        for i in range(stage.num_rows):
            stage.update(torch.tensor([i]))
        if stage.on_end is not None:
            stage.on_end()
    return alg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, default=None)
    p.add_argument("--build-world", type=Path, default=None, help="Build the benchmark world here and stop.")
    p.add_argument("--users", type=int, default=256)
    p.add_argument("--waves", default="1,2,4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", help="key=value model options of the trained policy.")
    args = p.parse_args()
    torch.set_num_threads(1)
    ns = argparse.Namespace(users=200, items=300, impressions=20_000, sim_epochs=2, threads=1)
    if args.build_world:
        simulators(args.build_world, ns)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.world
        if root is None:
            root = Path(tmp) / "world"
            simulators(root, ns)
        prepared, sim, ranker = world_dirs(root)
        extra = [tuple(o.split("=", 1)) for o in args.overrides]
        alg = train("unifiedrl", prepared, sim, ranker, Path(tmp) / "logs", args.seed, extra)
        print(
            "| sessions | reward Δ % vs ES | paired 95 % CI | unpaired CI | sessions for ±0.5 % | CPU s / policy |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for waves in (int(w) for w in args.waves.split(",")):
            seeds = [alg.m.eval_seed + i for i in range(waves)]
            res, cpu = {}, {}
            for who, pol in (("es", alg.mu_bp0), ("policy", alg.learner.act)):
                t = time.process_time()
                res[who] = ab_sessions(lambda s: alg.make_env(s, args.users), pol, seeds)
                cpu[who] = time.process_time() - t
            pct, paired = paired_pct_change(res["policy"]["reward"], res["es"]["reward"])
            _, unpaired = unpaired_pct_change(res["policy"]["reward"], res["es"]["reward"])
            n = len(res["es"]["reward"])
            need = n * (paired / 0.5) ** 2
            print(
                f"| {n} | {pct:+.2f} | ±{paired:.2f} | ±{unpaired:.2f} | {need:.0f} | {sum(cpu.values()) / 2:.1f} |"
            )


if __name__ == "__main__":
    main()
