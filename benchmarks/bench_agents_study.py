"""The multi-seed study of HAC, DDPG, TD3 and A2C (issue 5, "Done when"): one `recrl ablate <agent> --seeds N`
per agent at the agents' fixed defaults, then one table of the test evaluation (exploration off, fresh users):
mean ± 95 % t-CI over seeds of total reward, depth and the fraction of the oracle − random gap.

    python benchmarks/bench_agents_study.py --simulator runs/simulator-<key> --data <prepared kuairand> \\
        --seeds 5 --iterations 300 [--parallel]
    python benchmarks/bench_agents_study.py --tables hac=runs/studies/<a>/study.csv,ddpg=runs/studies/<b>/study.csv
    python benchmarks/bench_agents_study.py --runs runs,runs_b     # every finished agent run dir under them

Each agent gets its own MLflow sqlite file in --workdir (parallel studies never lock one store); re-running the
same command skips the runs already finished (``recrl ablate``'s resume). ``--tables`` only prints the table of
existing study CSVs; ``--runs`` computes it from the run directories (``metrics.json`` of finished runs, grouped
by agent and protocol), for seeds run as separate ``recrl train --seed S`` processes. The random and oracle calibrations run on the same evaluation users in every run, so their
CI is 0 and one value per agent is printed.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

AGENTS = ("hac", "ddpg", "td3", "a2c")
SHOWN = ("total_reward", "depth", "gap_fraction")


def ablate_command(agent: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "recrl_cli", "ablate", agent, "--simulator", args.simulator, "--data", args.data,
            "--seeds", str(args.seeds), "--iterations", str(args.iterations), "--warmup-steps", str(args.warmup),
            "--eval-steps", str(args.eval_steps), "--threads", "1", "--runs-dir", str(args.workdir / "runs"),
            "--tracking-uri", f"sqlite:///{args.workdir / f'mlflow_{agent}.db'}"]  # fmt: skip


def run_studies(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Start one ablate per agent (all at once with --parallel); the study CSV each one printed."""
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    agents = args.agents.split(",")
    procs, tables = {}, []
    for agent in agents:
        started = time.perf_counter()
        procs[agent] = (subprocess.Popen(ablate_command(agent, args), env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True), started)  # fmt: skip
        if not args.parallel:
            tables.append((agent, finish(agent, *procs.pop(agent))))
    tables += [(agent, finish(agent, *p)) for agent, p in procs.items()]
    return tables


def finish(agent: str, proc: subprocess.Popen, started: float) -> Path:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"recrl ablate {agent} failed ({proc.returncode}):\n{out[-2000:]}")
    match = re.search(r"table:\s*(\S+study\.csv)", out.replace("\n", ""))
    if match is None:
        raise SystemExit(f"recrl ablate {agent} printed no study table:\n{out[-2000:]}")
    print(f"{agent}: {time.perf_counter() - started:.0f} s wall, {match.group(1)}", flush=True)
    return Path(match.group(1))


def read_table(path: Path) -> dict[str, dict[str, float]]:
    """{metric: {"mean", "ci", "n"}} of the one variant of a study CSV."""
    with open(path, newline="") as fh:
        return {r["metric"]: {"mean": float(r["mean"]), "ci": float(r["ci"]), "n": int(r["n"])}
                for r in csv.DictReader(fh)}  # fmt: skip


def print_table(tables: list[tuple[str, Path]]) -> None:
    print(
        "| agent | seeds | total_reward | depth | gap_fraction | random total_reward | oracle total_reward |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for agent, path in tables:
        t = read_table(path)
        cells = [f"{t[f'test/agent/{k}']['mean']:.3f} ± {t[f'test/agent/{k}']['ci']:.3f}" for k in SHOWN]
        n = t["test/agent/total_reward"]["n"]
        rand, oracle = t["test/random/total_reward"]["mean"], t["test/oracle/total_reward"]["mean"]
        print(f"| {agent} | {n} | " + " | ".join(cells) + f" | {rand:.3f} | {oracle:.3f} |")


IGNORED = {"simulator", "iterations", "warmup_steps", "eval_steps", "eval_seed", "eval_users", "eval_horizon"}


def variant_label(algo: str, model: dict) -> str:
    """``algo`` plus the model options that differ from that agent's defaults (e.g. ``hac behavior_coef=0``)."""
    from recrl_cli.agents.config import agent_config

    default = json.loads(json.dumps(dataclasses.asdict(agent_config(algo)), default=list))
    diff = [f"{k}={v}" for k, v in sorted(model.items())
            if k not in IGNORED and k in default and default[k] != v]  # fmt: skip
    return " ".join([algo, *diff])


def runs_table(roots: list[Path], reference: str = "hac") -> None:
    """The table from finished run directories (any mix of `recrl ablate` and `recrl train` runs), one row per
    agent and variant (the options that differ from the agent's defaults) and protocol: mean ± 95 % t-CI over
    seeds of the agent's total reward and gap fractions, the references (their seed means), and the paired
    difference in gap fraction to the ``reference`` variant of the same protocol (iterations, evaluation) on the
    seeds both have, with its two-sided p (paired t); the reference rows come first."""
    from recrl_cli.evaluation.stats import mean_ci, paired_difference

    groups: dict[tuple, dict[int, dict]] = {}
    for metrics_file in (p for root in roots for p in sorted(root.glob("*/metrics.json"))):  # roots in order
        cfg = json.loads((metrics_file.parent / "config.resolved.json").read_text())
        if cfg["algo"] not in AGENTS:
            continue
        m = cfg["model"]
        key = (variant_label(cfg["algo"], m), m["iterations"], m["eval_steps"], m.get("eval_users", 32))
        groups.setdefault(key, {})[cfg["train"]["seed"]] = json.loads(metrics_file.read_text())
    print(f"| variant | iterations | seeds | total_reward | gap_fraction | gap_vs_popular | paired Δ gap vs {reference} "
          "(p) | distinct items | random | popular | oracle |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    if not groups:
        raise SystemExit(f"error: no finished agent runs under {', '.join(map(str, roots))}")
    if not any(key[0] == reference for key in groups):
        labels = ", ".join(sorted({key[0] for key in groups}))
        raise SystemExit(f"error: --reference {reference!r} is not a variant of these runs ({labels})")
    refs_by_protocol = {key[1:]: runs for key, runs in groups.items() if key[0] == reference}
    order = sorted(groups, key=lambda key: (key[0] != reference, -key[1], key[0]))
    for key in order:
        (label, iters, _, _), runs = key, groups[key]
        first = refs_by_protocol.get(key[1:], {})
        cells = []
        for k in ("total_reward", "gap_fraction", "gap_vs_popular"):
            values = [r[f"test/agent/{k}"] for r in runs.values() if f"test/agent/{k}" in r]
            mean, ci = mean_ci(values) if values else (float("nan"), float("nan"))
            cells.append(f"{mean:.3f} ± {ci:.3f}")
        common = sorted(set(runs) & set(first))
        gaps = [[r[s]["test/agent/gap_fraction"] for s in common] for r in (runs, first)]
        if runs is first or len(common) < 2:
            cells.append("—")
        else:
            mean, ci, p_value = paired_difference(*gaps)
            cells.append(f"{mean:+.3f} ± {ci:.3f} ({p_value:.3f}, n = {len(common)})")
        items = [r["test/agent/coverage"] for r in runs.values() if "test/agent/coverage" in r]
        cells.append(f"{sum(items) / len(items):.1f}" if items else "—")  # shown to the evaluation users
        refs = [sum(r.get(f"test/{p}/total_reward", float("nan")) for r in runs.values()) / len(runs)
                for p in ("random", "popular", "oracle")]  # fmt: skip
        print(f"| {label} | {iters} | {len(runs)} | " + " | ".join(cells) + " | "
              + " | ".join(f"{v:.3f}" for v in refs) + " |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--simulator", help="`recrl train simulator` run directory")
    p.add_argument("--data", help="prepared KuaiRand directory the simulator was trained on")
    p.add_argument("--agents", default=",".join(AGENTS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--eval-steps", type=int, default=200)
    p.add_argument("--workdir", type=Path, default=Path("agents_study"))
    p.add_argument("--parallel", action="store_true", help="run the agents' studies at the same time")
    p.add_argument("--tables", help="agent=study.csv pairs, comma-separated: print their table, run nothing")
    p.add_argument("--runs", help="comma-separated runs directories: the table of their finished agent runs")
    p.add_argument(
        "--reference", default="hac", help="--runs: the variant the paired differences are against"
    )
    args = p.parse_args()
    if args.runs:
        runs_table([Path(r) for r in args.runs.split(",")], args.reference)
        return
    if args.tables:
        tables = [(a, Path(t)) for a, t in (pair.split("=", 1) for pair in args.tables.split(","))]
    else:
        if not args.simulator or not args.data:
            p.error("--simulator and --data are required unless --tables is given")
        tables = run_studies(args)
    print_table(tables)


if __name__ == "__main__":
    main()
