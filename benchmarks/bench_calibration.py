"""Logloss of every MTL base against the constant predictor, with and without the calibrated start and guard.

    python benchmarks/bench_calibration.py --events 30000 --epochs 2 --batch 512 --bias-init zero --guard 0
    python benchmarks/bench_calibration.py --events 30000 --epochs 2 --batch 512   # prior bias + guard

Small nets (embed 8, bottom 32-16, tower 16, 4 experts), one thread, seed 0, planted RetailRocket data (seed 1).
Prints test logloss and AUC per task and the constant predictor's logloss (the train rate on the test labels).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from recrl_cli.algorithms.registry import get_algorithm
from recrl_cli.config.loading import resolve_config
from recrl_cli.data.prepare.retailrocket import prepare_retailrocket
from recrl_cli.data.synth.retailrocket import write_retailrocket
from recrl_cli.data.tensors import load_prepared
from recrl_cli.nets.mtl import MTL_BASES
from recrl_cli.nets.mtl.calibration import constant_logloss, task_rates
from recrl_cli.pipeline import train_run
from recrl_cli.tracking.base import NullTracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--bias-init", default="prior")
    parser.add_argument("--guard", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/calibration"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw, prepared = args.workdir / f"raw-{args.events}", args.workdir / f"prepared-{args.events}"
    if not (prepared / "manifest.json").is_file():
        write_retailrocket(raw, num_events=args.events, seed=1, force=True)
        prepare_retailrocket(raw, prepared)
    data = load_prepared(prepared, torch.device("cpu"), ("train", "test"))
    const = constant_logloss(task_rates(data.splits["train"].labels), data.splits["test"].labels).tolist()
    print(f"constant logloss (click, pay): {const[0]:.4f} {const[1]:.4f}")
    for base in MTL_BASES:
        options = {"data.prepared_dir": str(prepared), "train.epochs": args.epochs, "train.batch_size": args.batch,
                   "train.seed": 0, "train.device": "cpu", "train.checkpoint_every": 0,
                   "train.calibration_guard": bool(args.guard), "model.bias_init": args.bias_init,
                   "model.embed_dim": 8, "model.bottom_dims": [32, 16], "model.tower_dims": [16],
                   "model.expert_num": 4}  # fmt: skip
        cfg = resolve_config(base, get_algorithm(base).config_cls, options=options)
        m = train_run(cfg, NullTracker(), experiment="bench", runs_root=args.workdir / "runs").metrics
        ll = [m[f"test/{t}/logloss"] for t in data.tasks]
        au = [m[f"test/{t}/auc"] for t in data.tasks]
        print(f"{base:<13} logloss {ll[0]:.4f} {ll[1]:.4f}  AUC {au[0]:.4f} {au[1]:.4f}", flush=True)


if __name__ == "__main__":
    main()
