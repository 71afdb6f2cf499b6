"""Why RMTL's polish does (not) beat its base: polish variants on one pretrained base and critics per seed.

    python benchmarks/bench_rmtl_polish.py --events 100000 --seeds 5 --base mmoe

Per seed: pretrain the base and fit the critics ONCE (the normal RMTL stages), then run the polish stage once per
variant from the same pretrained weights and critics. Every polish run keeps its best polish epoch by validation
(``polish_forgets_pretrained``), so the table shows what polishing itself does, not the fallback to the
pretrained model that the default run applies. Reported per variant: test mean AUC, mean logloss and mean
s-logloss minus the pretrained base's (paired over seeds, mean ± 95 % CI, p), and minus the ``bce-continue``
control's (same steps, w = 1). Variants (name: overrides of ``model.*``):

- rmtl: 1 − λQ, λ 0.7, polish lr 1e-3 (the defaults)         - bce-continue: w = 1 (continue plain training)
- mean-weight: each task's mean RMTL weight as a constant     - rmtl-norm: RMTL weights / their batch mean
- rmtl-lam5: λ = 5 (a stronger modulation)                     - rmtl-lr1e-4 / bce-lr1e-4: polish lr 1e-4
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import resource
import time
from pathlib import Path

import torch

from recrl_cli.algorithms.rmtl.algorithm import RMTL
from recrl_cli.algorithms.rmtl.config import RMTLConfig
from recrl_cli.config.loading import resolve_config
from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket
from recrl_cli.data.synth.retailrocket import write_retailrocket
from recrl_cli.data.tensors import load_prepared
from recrl_cli.evaluation.stats import paired_difference
from recrl_cli.training.trainer import Trainer

VARIANTS = {
    "rmtl": {},
    "bce-continue": {"weighting": "bce-continue"},
    "mean-weight": {"weighting": "mean-weight"},
    "rmtl-norm": {"normalize_weights": True},
    "rmtl-lam5": {"lam": 5.0},
    "rmtl-lr1e-4": {"polish_lr": 1e-4},
    "bce-lr1e-4": {"weighting": "bce-continue", "polish_lr": 1e-4},
}
METRICS = ("mean/auc", "mean/logloss", "mean/s_logloss")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def polish(algo: RMTL, pretrained: dict, critics: dict, overrides: dict, seed: int) -> dict[str, float]:
    """Run the polish stage of ``algo`` from the pretrained weights with ``overrides``; test metrics."""
    algo.m = dataclasses.replace(algo.m, **overrides)
    algo.base.load_state_dict(pretrained)
    algo.critics.load_state_dict(critics)
    algo.polish_optimizer = torch.optim.Adam(
        algo.base.parameters(), lr=algo.m.polish_lr, weight_decay=algo.cfg.train.weight_decay
    )
    algo.mean_weight, algo.polish_improved = None, False
    stage = algo.stages()[-1]
    Trainer(algo, [stage], device=algo.device, seed=seed).fit()
    return algo.evaluate("test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--base", default="mmoe")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--set", action="append", default=[], help="extra option k=v")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/rmtl_polish"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    raw, prepared = args.workdir / f"raw-{args.events}", args.workdir / f"prepared-{args.events}"
    if not (raw / "events.csv").is_file():
        write_retailrocket(raw, num_events=args.events, seed=0)
    if not (prepared / "manifest.json").is_file():
        prepare_retailrocket(raw, prepared, RetailRocketPrepareParams())
    data = load_prepared(prepared, torch.device("cpu"))
    names = args.variants.split(",")
    results: dict[str, list[dict[str, float]]] = {"pretrained": [], **{n: [] for n in names}}
    extra = dict(kv.split("=", 1) for kv in args.set)
    wall, cpu = time.perf_counter(), cpu_seconds()
    for s in range(args.seeds):
        options = {"data.prepared_dir": str(prepared), "train.seed": s, "train.device": "cpu",
                   "train.checkpoint_every": 0, "model.base": args.base, "model.polish_forgets_pretrained": True,
                   **extra}  # fmt: skip
        cfg = resolve_config("rmtl", RMTLConfig, options=options)
        torch.manual_seed(s)
        algo = RMTL(cfg, data, torch.device("cpu"))
        stages = algo.stages()
        Trainer(algo, stages[:-1], device=algo.device, seed=s).fit()  # pretrain + critics
        pretrained = copy.deepcopy(algo.pretrained["weights"])
        critics = copy.deepcopy(algo.critics.state_dict())
        results["pretrained"].append(algo.pretrained["metrics"]["test"])
        weights = None
        for name in names:
            results[name].append(polish(algo, pretrained, critics, VARIANTS[name], s))
            if name == "rmtl":
                weights = algo.mean_weight
        print(f"seed {s} done ({time.perf_counter() - wall:.0f} s wall, {cpu_seconds() - cpu:.0f} cpu s)",
              weights, flush=True)  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{args.base}, {args.seeds} seeds, {args.events} events: test metric minus pretrained base "
          f"(and minus bce-continue), paired mean ± 95 % CI")  # fmt: skip
    print(f"{'variant':<14}" + "".join(f"{m:>34}" for m in METRICS))
    base = {m: [r[m] for r in results["pretrained"]] for m in METRICS}
    print(f"{'pretrained':<14}" + "".join(f"{sum(v) / len(v):>34.4f}" for v in base.values()))
    for name in names:
        cells = []
        for m in METRICS:
            vals = [r[m] for r in results[name]]
            d, h, p = paired_difference(vals, base[m])
            cell = f"{d:+.4f}±{h:.4f} p{p:.2f}"
            if name != "bce-continue" and "bce-continue" in results:
                d2, h2, _ = paired_difference(vals, [r[m] for r in results["bce-continue"]])
                cell += f" ({d2:+.4f}±{h2:.4f})"
            cells.append(f"{cell:>34}")
        print(f"{name:<14}" + "".join(cells))
    print(f"total {time.perf_counter() - wall:.0f} s wall, {cpu_seconds() - cpu:.0f} cpu s")


if __name__ == "__main__":
    main()
