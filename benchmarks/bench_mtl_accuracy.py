"""AUC and logloss of every MTL base against the oracle (Bayes) on planted-truth RetailRocket data.

    python benchmarks/bench_mtl_accuracy.py --events 300000 --epochs 10

Generates raw files with ``recrl synth``'s generator, prepares them, trains each base with the
reference hyperparameters (early stopping on validation), and prints test AUC / logloss per task
next to the oracle's: the true per-item-session probabilities written by the generator, joined to
the test rows on (visitorid, itemid, timestamp). The gap to the oracle is what a model leaves on
the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl
import torch

from recrl_cli.algorithms.registry import get_algorithm
from recrl_cli.config.loading import resolve_config
from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket
from recrl_cli.data.synth.retailrocket import write_retailrocket
from recrl_cli.evaluation.metrics import auc, logloss
from recrl_cli.pipeline import train_run
from recrl_cli.tracking.base import NullTracker

BASES = ("singletask", "sharedbottom", "omoe", "mmoe", "ple", "esmm", "aitm")


def oracle_metrics(raw: Path, prepared: Path) -> dict[str, float]:
    """Oracle AUC/logloss on the test split from the generator's true probabilities."""
    truth = pl.read_csv(raw / "ground_truth.csv")
    test = pl.read_parquet(
        prepared / "test.parquet", columns=["visitorid", "itemid", "timestamp", "click", "pay"]
    )
    joined = test.join(truth, on=["visitorid", "itemid", "timestamp"], how="left")
    coverage = joined["p_click"].is_not_null().mean()
    joined = joined.drop_nulls("p_click")
    out = {"coverage": float(coverage)}
    for task in ("click", "pay"):
        labels = torch.tensor(joined[task].to_numpy(), dtype=torch.float64)
        probs = torch.tensor(joined[f"p_{task}"].to_numpy(), dtype=torch.float64)
        out[f"{task}/auc"] = auc(probs, labels)
        out[f"{task}/logloss"] = logloss(probs, labels)
        # The item + position ceiling (the taste term replaced by the item's mean over its visitors): what a
        # state without the user can reach; the oracle minus this is the gap only a history state can close.
        if f"p_{task}_item" in joined.columns:
            item = torch.tensor(joined[f"p_{task}_item"].to_numpy(), dtype=torch.float64)
            out[f"{task}/item_auc"] = auc(item, labels)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bases", default=",".join(BASES))
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/accuracy"))
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    raw, prepared = args.workdir / "raw", args.workdir / "prepared"
    if not (raw / "events.csv").is_file():
        write_retailrocket(raw, num_events=args.events, seed=args.seed)
    manifest = prepare_retailrocket(raw, prepared, RetailRocketPrepareParams())
    oracle = oracle_metrics(raw, prepared)
    rows = manifest["splits"]
    print(
        f"events={args.events} rows train/val/test={rows['train']['rows']}/{rows['val']['rows']}/"
        f"{rows['test']['rows']} oracle coverage={oracle['coverage']:.4f} threads={torch.get_num_threads()}"
    )
    header = f"{'model':<13}{'click AUC':>10}{'pay AUC':>9}{'click LL':>10}{'pay LL':>9}{'ΔAUC click':>11}{'ΔAUC pay':>10}{'epochs':>7}{'time s':>8}"
    print(header)
    print(
        f"{'oracle':<13}{oracle['click/auc']:>10.4f}{oracle['pay/auc']:>9.4f}"
        f"{oracle['click/logloss']:>10.4f}{oracle['pay/logloss']:>9.4f}"
    )
    if "click/item_auc" in oracle:
        print(f"{'item+pos ceil':<13}{oracle['click/item_auc']:>10.4f}{oracle['pay/item_auc']:>9.4f}")
    report = {
        "events": args.events,
        "rows": {k: v["rows"] for k, v in rows.items()},
        "oracle": oracle,
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "bases": {},
    }
    for base in args.bases.split(","):
        spec = get_algorithm(base)
        cfg = resolve_config(
            base,
            spec.config_cls,
            options={
                "data.prepared_dir": str(prepared),
                "train.epochs": args.epochs,
                "train.seed": args.seed,
                "train.device": args.device,
                "train.threads": args.threads,
            },
        )
        start = time.perf_counter()
        result = train_run(cfg, NullTracker(), experiment="bench", runs_root=args.workdir / "runs")
        seconds = time.perf_counter() - start
        m = result.metrics
        print(
            f"{base:<13}{m['test/click/auc']:>10.4f}{m['test/pay/auc']:>9.4f}{m['test/click/logloss']:>10.4f}"
            f"{m['test/pay/logloss']:>9.4f}{oracle['click/auc'] - m['test/click/auc']:>11.4f}"
            f"{oracle['pay/auc'] - m['test/pay/auc']:>10.4f}{len(result.history):>7}{seconds:>8.1f}",
            flush=True,
        )
        report["bases"][base] = {"metrics": m, "epochs": len(result.history), "seconds": seconds}
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
