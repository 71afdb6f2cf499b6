"""UnifiedRL vs every fusion baseline over seeds: simulated A/B change vs ES, MTF-GAUC, NCIS and the premise check.

Synthetic KuaiRand (``recrl synth kuairand`` logs at the given size, prepared) and a ground-truth simulator
(seed 0), trained briefly through the pipeline. The fused ranker is ``--ranker``: ``taste-free`` (the default, what
``recrl train unifiedrl`` fuses without ``--ranker``: the simulator's copy without its users' taste rows, built by
the run itself), ``self`` (the simulator ranks for itself: no fusion room) or ``trained`` (a different, smaller
simulator, seed 1, half the width, trained here as well: the benchmark's ranker before 2026-12-03). Then for each
seed every method runs the whole protocol of ``recrl train <method>`` (CEM μ_bp, logs, offline training,
evaluation) through the same pipeline function the CLI calls, with the config's quick defaults unless overridden
by ``--set``-style ``key=value`` arguments. The same seed gives every method the same μ_bp⁰ and the same
evaluation users (common random numbers), so the "Δ % vs ES" columns are paired within a seed; the table shows
their mean ± 95 % CI over seeds.

    python benchmarks/bench_unifiedrl_compare.py --users 400 --items 400 --impressions 40000 --sim-epochs 3 \
        --build-world WORLD
    python benchmarks/bench_unifiedrl_compare.py --world WORLD --seeds 5 --ranker taste-free --out compare.json
    python benchmarks/bench_unifiedrl_compare.py --from-json compare.json     # re-print the tables
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from recrl_cli.cli.resolve import run_config_from_cli
from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.evaluation.stats import mean_ci, paired_difference
from recrl_cli.mtf.ranker import SELF, TASTE_FREE
from recrl_cli.pipeline import train_run
from recrl_cli.sim.config import SimulatorConfig
from recrl_cli.tracking.base import NullTracker

METHODS = {"ES": ("mtf-es", []), "DDPG (D1)": ("mtf-ddpg", []), "TD3+BC (D1)": ("mtf-td3bc", []),
           "IQL (D1)": ("mtf-iql", []), "BCQ / BatchRL-MTF (D1)": ("mtf-bcq", []),
           "CQL+SAC (D1)": ("mtf-cql", []), "UnifiedRL w/o PTM (D2)": ("unifiedrl", [("ptm", "false")]),
           "UnifiedRL (D3)": ("unifiedrl", [])}  # fmt: skip
SHOWN = ("policy/reward_change_pct", "policy/reward_change_ci", "policy/valid_consumption_change_pct",
         "policy/watch_minutes_change_pct", "policy/mtf_gauc_by_request", "policy/ncis/request_reward",
         "policy/premise/share_dims_in_box", "ptm/rounds_kept", "fixed/reward_change_pct")  # fmt: skip
TRAINED = "trained"  # --ranker trained: a second, smaller simulator trained here (seed 1)
RANKERS = (TASTE_FREE, TRAINED, SELF)


def world_dirs(root: Path) -> tuple[Path, Path, Path | None]:
    """(prepared data, ground-truth simulator, second simulator or None) of a world built by ``--build-world``;
    a folder that holds no such world is a one-line error."""
    runs = sorted((root / "runs").glob("simulator-*"), key=lambda p: p.stat().st_mtime)
    if not runs or not (root / "prepared").is_dir():
        raise SystemExit(
            f"error: {root} holds no benchmark world (prepared/ and runs/simulator-*); build one with --build-world"
        )
    return root / "prepared", runs[0], runs[1] if len(runs) > 1 else None


def simulators(root: Path, args: argparse.Namespace, ranker: bool = True) -> tuple[Path, Path, Path | None]:
    """(prepared data, ground-truth simulator run, ranker run) built under ``root``; the ranker (seed 1, half the
    width) only when ``ranker``, else None (the taste-free view and ``self`` need no second training)."""
    write_kuairand(
        root / "raw", num_users=args.users, num_items=args.items, num_impressions=args.impressions, seed=7
    )
    prepare_kuairand(root / "raw", root / "prepared", KuaiRandPrepareParams())
    dirs = []
    for seed, width in ((0, 16), (1, 8))[: 2 if ranker else 1]:
        model = SimulatorConfig(user_latent=width, item_latent=width, enc_dim=width, n_layers=1, n_heads=2,
                                ff_dim=32, state_hidden=32, history_length=20)  # fmt: skip
        cfg = RunConfig(algo="simulator", data=DataConfig(dataset="kuairand", prepared_dir=str(root / "prepared")),
                        train=TrainConfig(epochs=args.sim_epochs, batch_size=256, device="cpu", threads=args.threads,
                                          seed=seed), model=model)  # fmt: skip
        dirs.append(train_run(cfg, NullTracker(), experiment="sim", runs_root=root / "runs").run_dir)
    return root / "prepared", dirs[0], dirs[1] if ranker else None


def summarise(results: dict[str, list[dict[str, float]]], console: Console) -> None:
    """Per method mean ± CI over seeds; then UnifiedRL (D3) minus each method, paired by seed."""
    seeds = min(len(r) for r in results.values())
    first = next(iter(results.values()))[0]
    ranker = ("the simulator's taste-free view" if first.get("ranker_is_taste_free_view") == 1.0
              else "the simulator itself" if first.get("ranker_is_simulator") == 1.0 else "a trained ranker")  # fmt: skip
    table = Table(title=f"fusion methods over {seeds} seeds (mean ± 95 % CI over seeds), ranker: {ranker}")
    table.add_column("method")
    for k in SHOWN:
        table.add_column(k.removeprefix("policy/").replace("_change_pct", " Δ%"), justify="right")
    for label, runs in results.items():
        cells = []
        for k in SHOWN:
            mean, ci = mean_ci([r.get(k, float("nan")) for r in runs[:seeds]])
            cells.append("" if mean != mean else f"{mean:.3f} ± {ci:.3f}")
        table.add_row(label, *cells)
    console.print(table)
    if "UnifiedRL (D3)" not in results:
        return
    ref = results["UnifiedRL (D3)"][:seeds]
    table = Table(title="UnifiedRL (D3) minus each method, paired by seed (mean ± 95 % CI, p)")
    table.add_column("vs")
    paired = ("policy/reward_change_pct", "policy/valid_consumption_change_pct", "policy/mtf_gauc")
    for k in paired:
        table.add_column(k.removeprefix("policy/"), justify="right")
    for label, runs in results.items():
        if label == "UnifiedRL (D3)":
            continue
        cells = []
        for k in paired:
            d, ci, pv = paired_difference([r[k] for r in ref], [r[k] for r in runs[:seeds]])
            cells.append(f"{d:+.3f} ± {ci:.3f} (p {pv:.2f})")
        table.add_row(label, *cells)
    console.print(table)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--impressions", type=int, default=20_000)
    p.add_argument("--sim-epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--ranker",
        choices=RANKERS,
        default=TASTE_FREE,
        help="What the fusion env ranks with: the simulator's taste-free view (the CLI's default without "
        "--ranker), a second simulator trained here, or the simulator itself.",
    )
    p.add_argument("--out", type=Path, default=None, help="Write every run's metrics as JSON here.")
    p.add_argument(
        "--from-json", type=Path, default=None, help="Only print the tables of a saved --out file."
    )
    p.add_argument(
        "--methods",
        default="",
        help="Comma-separated subset of the method labels' first words "
        "(ES, DDPG, TD3+BC, IQL, BCQ, CQL+SAC, UnifiedRL); default: all.",
    )
    p.add_argument(
        "--world",
        type=Path,
        default=None,
        help="Reuse a world built by --build-world here (or by bench_unifiedrl_ab.py --build-world) "
        "instead of building one.",
    )
    p.add_argument(
        "--build-world",
        type=Path,
        default=None,
        help="Build the world (data and simulator, plus the ranker with --ranker trained) at the sizes given "
        "here into this folder and stop; reuse it with --world (bench_fusion_headroom.py and "
        "bench_unifiedrl_room.py read it too).",
    )
    p.add_argument("overrides", nargs="*", help="key=value model options shared by every method.")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=220)
    if args.build_world:
        console.print(simulators(args.build_world, args, ranker=args.ranker == TRAINED))
        return
    if args.from_json:
        if not args.from_json.is_file():
            p.error(f"--from-json: no such file {args.from_json}")
        summarise(json.loads(args.from_json.read_text()), console)
        return
    console.print(f"threads={args.threads}, load average {os.getloadavg()[0]:.2f} at start")
    extra = [tuple(o.split("=", 1)) for o in args.overrides]
    wanted = {w.strip() for w in args.methods.split(",") if w.strip()}
    methods = {k: v for k, v in METHODS.items() if not wanted or k.split()[0] in wanted}
    results: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.world is not None:
            prepared, sim_dir, ranker_dir = world_dirs(args.world)
            if args.ranker == TRAINED and ranker_dir is None:
                p.error(
                    f"--ranker trained: {args.world} holds no second simulator run (build it with a ranker)"
                )
        else:
            prepared, sim_dir, ranker_dir = simulators(root, args, ranker=args.ranker == TRAINED)
        # The taste-free view and "self" are built by each run from the simulator, as the CLI does.
        ranker = str(ranker_dir) if args.ranker == TRAINED else args.ranker
        console.print(f"ranker: {args.ranker}")
        start = time.perf_counter()
        for seed in range(args.seeds):
            for label, (algo, own) in methods.items():
                pairs = [("simulator", str(sim_dir)), ("ranker", ranker), ("logs_dir", str(root / "logs")),
                         ("threads", str(args.threads)), *extra, *own]  # fmt: skip
                cfg = run_config_from_cli(algo, config=None, sets=None, extra=pairs, seed=seed, device="cpu",
                                          data_dir=prepared)  # fmt: skip
                cpu0 = time.process_time()
                run = train_run(cfg, NullTracker(), experiment="bench", runs_root=root / "runs")
                metrics = {k.removeprefix("test/"): v for k, v in run.metrics.items()}
                metrics["bench/cpu_s"] = time.process_time() - cpu0  # the whole run, A/B included
                results[label].append(metrics)
                console.print(
                    f"seed {seed} {label}: reward Δ {metrics['policy/reward_change_pct']:+.2f} % "
                    f"({metrics['bench/cpu_s']:.1f} CPU s)"
                )
                if args.out:  # after every run, so a stopped benchmark keeps what it measured
                    args.out.write_text(json.dumps(results, indent=1))
        elapsed = time.perf_counter() - start
    summarise(results, console)
    console.print(
        f"{len(methods) * args.seeds} runs in {elapsed:.0f} s ({time.process_time():.0f} CPU s); load average {os.getloadavg()[0]:.2f} at end"
    )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
