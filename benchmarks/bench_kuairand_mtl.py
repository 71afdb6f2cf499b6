"""The MTL bases / RMTL on synthetic KuaiRand beside the planted truth, on the same held-out rows.

`recrl synth kuairand` writes the true probability of every log row (``ground_truth.csv``); the prepared row
table keeps (user_id, video_id, time_ms), so the truth of every row of a split is known. This prints, per task
(is_click, long_view, the MTL view's tasks), AUC / logloss / s-logloss of: the planted truth, the constant
predictor (the train rate) and every run directory given (its ``metrics.json``, plus RMTL's pretrained base).

    recrl synth kuairand --version pure --users 1000 --impressions 300000 --out RAW
    recrl prepare kuairand --raw RAW --out PREP
    recrl train mmoe --data PREP --threads 1 ...          # -> runs/mmoe-<key>
    recrl train rmtl --base mmoe --data PREP --threads 1 ...
    python benchmarks/bench_kuairand_mtl.py --raw RAW --prepared PREP runs/mmoe-<key> runs/rmtl-<key>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from recrl_cli.data.kuairand_mtl import MTL_TASKS, load_kuairand_mtl
from recrl_cli.data.kuairand_tensors import load_split_rows
from recrl_cli.data.prepare.kuairand import BEHAVIOURS
from recrl_cli.evaluation.metrics import task_metrics
from recrl_cli.sim.truth import row_truth

METRICS = ("auc", "logloss", "s_logloss")


def reference_rows(raw: Path, prepared: Path, split: str) -> dict[str, dict[str, float]]:
    """{"planted truth": metrics, "constant (train rate)": metrics} on ``split`` (keys ``<task>/<metric>``)."""
    data = load_kuairand_mtl(prepared, splits=("train", split))
    held = data.splits[split]
    truth = row_truth(raw, prepared, load_split_rows(prepared, split))  # [S, 7]
    probs = truth[:, [BEHAVIOURS.index(t) for t in MTL_TASKS]]
    rate = data.splits["train"].labels.mean(0)  # [T]
    out = {}
    for name, p in (("planted truth", probs), ("constant (train rate)", rate.expand_as(held.labels))):
        out[name] = task_metrics(p, held.labels, task_names=list(MTL_TASKS), session_ids=held.session_ids,
                                 user_ids=held.user_ids)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="`recrl synth kuairand --out` folder")
    parser.add_argument("--prepared", type=Path, required=True, help="`recrl prepare kuairand --out` folder")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (metrics.json) to put beside")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = reference_rows(args.raw, args.prepared, args.split)
    for run in args.runs:
        metrics = json.loads((run / "metrics.json").read_text())
        prefix = f"pretrained/{args.split}/"
        if any(k.startswith(prefix) for k in metrics):
            rows[f"{run.name} (pretrained base)"] = {k[len(prefix) :]: v for k, v in metrics.items()
                                                     if k.startswith(prefix)}  # fmt: skip
        rows[run.name] = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{args.split}/")}
    header = ["row"] + [f"{t} {m}" for t in MTL_TASKS for m in METRICS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, values in rows.items():
        cells = [f"{values.get(f'{t}/{m}', float('nan')):.4f}" for t in MTL_TASKS for m in METRICS]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
