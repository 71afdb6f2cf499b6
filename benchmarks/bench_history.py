"""Session-history state on planted-taste RetailRocket data: test AUC / logloss per history encoder.

    python benchmarks/bench_history.py --events 100000 --bases mmoe --history off,mean,attention

Generates raw files with ``recrl synth``'s generator (planted user taste), prepares them (with the history
links), trains each base once per ``model.history`` value and prints test click/pay AUC and logloss next to the
oracle (true probabilities), the item + position ceiling (the taste term replaced by the item's mean: the best a
state without the user can do) and the generator's history oracle (true latent vectors, seeing only the
history). Also wall and CPU seconds per run and per train sample.
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
from recrl_cli.pipeline import train_run
from recrl_cli.tracking.base import NullTracker


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bases", default="mmoe")
    parser.add_argument("--history", default="off,mean,attention")
    parser.add_argument(
        "--set", action="append", default=[], help="extra option k=v (e.g. model.embed_dim=32)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/history"))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

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
    for base in args.bases.split(","):
        for mode in args.history.split(","):
            options = {"data.prepared_dir": str(prepared), "train.epochs": args.epochs, "train.seed": args.seed,
                       "train.device": "cpu", "train.threads": args.threads, "train.checkpoint_every": 0,
                       "model.history": mode, **extra}  # fmt: skip
            cfg = resolve_config(base, get_algorithm(base).config_cls, options=options)
            wall, cpu = time.perf_counter(), cpu_seconds()
            result = train_run(cfg, NullTracker(), experiment="bench", runs_root=args.workdir / "runs")
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            m = result.metrics
            steps = max((h.get("step", 0) for h in result.history), default=0)
            samples = steps * cfg.train.batch_size
            name = f"{base} history={mode}"
            print(f"{name:<22}{m['test/click/auc']:>10.4f}{m['test/pay/auc']:>9.4f}{m['test/click/logloss']:>10.4f}"
                  f"{m['test/pay/logloss']:>9.4f}{len(result.history):>7}{wall:>8.1f}{cpu:>8.1f}"
                  f"{1e6 * cpu / max(1, samples):>14.1f}", flush=True)  # fmt: skip
            report["runs"][name] = {"metrics": m, "epochs": len(result.history), "wall_s": wall, "cpu_s": cpu}
            if args.json:
                args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
