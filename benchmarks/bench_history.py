"""Session-history state on planted-taste RetailRocket data: test AUC / logloss per history encoder.

    python benchmarks/bench_history.py --events 100000 --bases mmoe --history off,mean,attention [--seeds 5]

Generates raw files with ``recrl synth``'s generator (planted user taste), prepares them (with the history
links), trains each base once per ``model.history`` value and prints test click/pay AUC and logloss next to the
oracle (true probabilities), the item + position ceiling (the taste term replaced by the item's mean: the best a
state without the user can do) and the generator's history oracle (true latent vectors, seeing only the
history). Also wall and CPU seconds per run and per train sample. With ``--seeds N`` every base × history value
is trained with seeds seed .. seed + N - 1 on the same world, and each history value is paired by seed against the
first one (mean difference ± 95 % t-CI, p of the paired t-test).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from benchmarks.bench_mtl_accuracy import oracle_metrics
from recrl_cli.algorithms.registry import get_algorithm
from recrl_cli.config.loading import resolve_config
from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket
from recrl_cli.data.synth.retailrocket import write_retailrocket
from recrl_cli.evaluation.stats import paired_difference
from recrl_cli.pipeline import train_run
from recrl_cli.tracking.base import NullTracker


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="world seed and first training seed")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per run (paired summary if > 1)")
    parser.add_argument("--bases", default="mmoe")
    parser.add_argument("--history", default="off,mean,attention")
    parser.add_argument(
        "--set", action="append", default=[], help="extra option k=v (e.g. model.embed_dim=32)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/history"))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")

    raw, prepared = args.workdir / f"raw-{args.events}", args.workdir / f"prepared-{args.events}"
    summary = None
    if not (raw / "events.csv").is_file():
        summary = write_retailrocket(raw, num_events=args.events, seed=args.seed)
    truth = json.loads((raw / "ground_truth.json").read_text())
    if not (prepared / "manifest.json").is_file():
        prepare_retailrocket(raw, prepared, RetailRocketPrepareParams())
    oracle = oracle_metrics(raw, prepared)
    hist_oracle = truth.get("history_oracle_auc", {})
    print(f"events={args.events} threads={torch.get_num_threads()} rows_with_history="
          f"{summary['rows_with_history'] if summary else 'n/a'}")  # fmt: skip
    print(f"{'run':<22}{'click AUC':>10}{'pay AUC':>9}{'click LL':>10}{'pay LL':>9}{'epochs':>7}{'wall s':>8}"
          f"{'cpu s':>8}{'cpu µs/sample':>14}")  # fmt: skip
    print(f"{'oracle':<22}{oracle['click/auc']:>10.4f}{oracle['pay/auc']:>9.4f}{oracle['click/logloss']:>10.4f}"
          f"{oracle['pay/logloss']:>9.4f}")  # fmt: skip
    print(f"{'item+position ceiling':<22}{oracle['click/item_auc']:>10.4f}{oracle['pay/item_auc']:>9.4f}")
    if hist_oracle:
        print(f"{'history oracle (all)':<22}{hist_oracle['click']:>10.4f}{hist_oracle['pay']:>9.4f}")
    report = {"events": args.events, "oracle": oracle, "history_oracle": hist_oracle, "runs": {}}
    extra = dict(kv.split("=", 1) for kv in args.set)
    modes = args.history.split(",")
    for base in args.bases.split(","):
        for seed in range(args.seed, args.seed + args.seeds):
            for mode in modes:
                options = {"data.prepared_dir": str(prepared), "train.epochs": args.epochs, "train.seed": seed,
                           "train.device": "cpu", "train.threads": args.threads, "train.checkpoint_every": 0,
                           "model.history": mode, **extra}  # fmt: skip
                cfg = resolve_config(base, get_algorithm(base).config_cls, options=options)
                wall, cpu = time.perf_counter(), cpu_seconds()
                result = train_run(cfg, NullTracker(), experiment="bench", runs_root=args.workdir / "runs")
                wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
                m = result.metrics
                steps = max((h.get("step", 0) for h in result.history), default=0)
                samples = steps * cfg.train.batch_size
                name = f"{base} history={mode}" + (f" seed={seed}" if args.seeds > 1 else "")
                print(f"{name:<22}{m['test/click/auc']:>10.4f}{m['test/pay/auc']:>9.4f}"
                      f"{m['test/click/logloss']:>10.4f}{m['test/pay/logloss']:>9.4f}{len(result.history):>7}"
                      f"{wall:>8.1f}{cpu:>8.1f}{1e6 * cpu / max(1, samples):>14.1f}", flush=True)  # fmt: skip
                report["runs"][name] = {"base": base, "history": mode, "seed": seed, "metrics": m,
                                        "epochs": len(result.history), "wall_s": wall, "cpu_s": cpu}  # fmt: skip
                if args.json:
                    args.json.write_text(json.dumps(report, indent=2) + "\n")
        if args.seeds > 1:
            print_paired(base, modes, report["runs"])


def print_paired(base: str, modes: list[str], runs: dict) -> None:
    """Each history value minus the first one, paired by seed: mean ± 95 % t-CI (p) of four test metrics."""
    keys = ("test/click/auc", "test/pay/auc", "test/click/logloss", "test/pay/logloss")

    def values(mode: str, key: str) -> list[float]:
        rows = sorted(
            (r["seed"], r["metrics"][key]) for r in runs.values() if (r["base"], r["history"]) == (base, mode)
        )
        return [v for _, v in rows]

    print(f"paired by seed, {base}, minus history={modes[0]}:")
    for mode in modes[1:]:
        cells = []
        for key in keys:
            d, half, p = paired_difference(values(mode, key), values(modes[0], key))
            cells.append(f"{key.split('/', 1)[1]} {d:+.4f} ± {half:.4f} (p {p:.2f})")
        print(f"  history={mode}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
