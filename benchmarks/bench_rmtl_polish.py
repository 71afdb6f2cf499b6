"""Why RMTL's polish does (not) beat its base: polish variants on one pretrained base and critics per seed.

    python benchmarks/bench_rmtl_polish.py --events 100000 --seeds 5 --base mmoe
    python benchmarks/bench_rmtl_polish.py --dataset kuairand --users 2000 --items 1500 --impressions 150000

Per seed: pretrain the base and fit the critics ONCE (the normal RMTL stages), then run the polish stage once per
variant from the same pretrained weights and critics. Every polish run keeps its best polish epoch by validation
(``polish_forgets_pretrained``), so the table shows what polishing itself does, not the fallback to the
pretrained model that the default run applies. Reported on the test split, per task and averaged over tasks (AUC,
logloss, s-logloss): each variant's mean ± 95 % t-CI over seeds, and its paired differences (same seeds) minus the
pretrained base and minus the ``bce-continue`` control (same steps, w = 1). Variants (name: overrides of
``model.*``):

- rmtl: 1 − λQ, λ 0.7, polish lr 1e-3 (the defaults)         - bce-continue: w = 1 (continue plain training)
- mean-weight: each task's mean RMTL weight as a constant     - rmtl-norm: RMTL weights / their batch mean
- rmtl-lam5: λ = 5 (a stronger modulation)                     - rmtl-lr1e-4 / bce-lr1e-4: polish lr 1e-4

Datasets: ``retailrocket`` (``--events`` synthetic events, tasks click / pay) or ``kuairand`` (``recrl synth
kuairand --version pure`` at ``--users`` / ``--items`` / ``--impressions``, KuaiSim's default preparation, the
MTL feature-row view with tasks is_click / long_view). KuaiRand's planted truth (``ground_truth.csv``) and the
constant train-rate predictor are scored on the same test rows as reference rows.

Why the weights do what they do, per seed and task, on the train rows at the pretrained model's predictions (the
actions the critics were fitted at): the RMTL weight w = 1 − λQ's mean and coefficient of variation; the critics'
quality as corr(Q, G) with G the realised discounted return of the row's session (Σ_j γ^j r_{i+j}, r = minus the
clipped BCE: the target Q estimates); corr(w, BCE of the row) (does the weighting up-weight the rows the base gets
wrong?) and corr(w, rows left in the session) (or merely long sessions?).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recrl_cli.algorithms.rmtl.algorithm import RMTL
from recrl_cli.algorithms.rmtl.config import RMTLConfig
from recrl_cli.algorithms.rmtl.mdp import build_session_mdp
from recrl_cli.algorithms.rmtl.polish import polish_weights
from recrl_cli.config.loading import resolve_config
from recrl_cli.errors import RecrlError
from recrl_cli.evaluation.evaluator import predict_in_batches
from recrl_cli.evaluation.stats import mean_ci, paired_difference
from recrl_cli.pipeline import load_data
from recrl_cli.training.device import seed_everything
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
METRICS = ("auc", "logloss", "s_logloss")
DIAGNOSTICS = ("w_mean", "w_cv", "corr_q_return", "corr_w_bce", "corr_w_rows_left")
RR_EVENTS = 100_000  # --events default (RetailRocket)
KR_SIZE = {"users": 2000, "items": 1500, "impressions": 150_000}  # --users/--items/--impressions defaults


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments end the bench with a single ``prog: error: ...`` line (exit 2), not usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; anything that cannot run is a one-line error before any work."""
    parser = OneLineParser(prog="bench_rmtl_polish.py", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="retailrocket", choices=("retailrocket", "kuairand"))
    parser.add_argument("--events", type=int, default=None, help=f"retailrocket only (default {RR_EVENTS})")
    for name, value in KR_SIZE.items():
        parser.add_argument(f"--{name}", type=int, default=None, help=f"kuairand only (default {value})")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the studies use 1)")
    parser.add_argument("--base", default="mmoe")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--set", action="append", default=[], help="extra option section.key=value")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/rmtl_polish"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    kuairand = args.dataset == "kuairand"
    wrong = [
        f"--{n}" for n in ("events", *KR_SIZE) if getattr(args, n) is not None and (n == "events") == kuairand
    ]
    if wrong:
        parser.error(f"{', '.join(wrong)}: not used by --dataset {args.dataset}")
    if kuairand:
        for name, value in KR_SIZE.items():
            setattr(args, name, value if getattr(args, name) is None else getattr(args, name))
    else:
        args.events = RR_EVENTS if args.events is None else args.events
    low = {"seeds": 2, "threads": 1, **({n: 10 for n in ("users", "items")} if kuairand else {}),
           **({"impressions": 100} if kuairand else {"events": 1000})}  # fmt: skip
    for name, least in low.items():
        if getattr(args, name) < least:
            why = " (a CI needs 2)" if name == "seeds" else ""
            parser.error(f"--{name} must be at least {least}{why}, got {getattr(args, name)}")
    args.variant_names = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in args.variant_names if v not in VARIANTS]
    if unknown or len(set(args.variant_names)) != len(args.variant_names):
        parser.error(f"--variants must be distinct names of {', '.join(VARIANTS)}; got {args.variants!r}")
    try:  # the config (base, --set keys and values) is checked before any data is written
        cfg = rmtl_config(args, args.workdir, 0)
    except RecrlError as exc:
        parser.error(str(exc))
    if not cfg.model.uses_critics:  # every variant polishes with the critics of the run's own weighting
        parser.error("--set model.weighting must leave the critics on (the variants choose the weighting)")
    return args


def rmtl_config(args: argparse.Namespace, prepared: Path, seed: int):
    """The RMTL run config of one seed: the bench's fixed options, then the user's ``--set`` overrides."""
    options = {"data.prepared_dir": str(prepared), "train.seed": seed, "train.device": "cpu",
               "train.checkpoint_every": 0, "model.base": args.base,
               "model.polish_forgets_pretrained": True}  # fmt: skip
    return resolve_config("rmtl", RMTLConfig, options=options, overrides=args.set)


def dataset_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """Write (once) and prepare (once) the synthetic data of ``args``; returns (raw dir, prepared dir)."""
    if args.dataset == "retailrocket":
        from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket
        from recrl_cli.data.synth.retailrocket import write_retailrocket

        raw, prepared = args.workdir / f"raw-{args.events}", args.workdir / f"prepared-{args.events}"
        if not (raw / "events.csv").is_file():
            write_retailrocket(raw, num_events=args.events, seed=0)
        if not (prepared / "manifest.json").is_file():
            prepare_retailrocket(raw, prepared, RetailRocketPrepareParams())
        return raw, prepared
    from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
    from recrl_cli.data.synth.kuairand import write_kuairand

    tag = f"kuairand-u{args.users}-i{args.items}-n{args.impressions}"
    raw, prepared = args.workdir / f"raw-{tag}", args.workdir / f"prepared-{tag}"
    if not (raw / "ground_truth.json").is_file():  # the generator's last file: the folder is complete
        write_kuairand(
            raw, num_users=args.users, num_items=args.items, num_impressions=args.impressions, seed=0
        )
    if not (prepared / "manifest.json").is_file():
        prepare_kuairand(raw, prepared, KuaiRandPrepareParams())
    return raw, prepared


def reference_rows(args: argparse.Namespace, raw: Path, prepared: Path) -> dict[str, dict[str, float]]:
    """KuaiRand: the planted truth's and the constant predictor's test metrics, plus the truth's mean probability
    and the observed rate per task (``<task>/mean_p``, ``<task>/rate``: the truth columns are P(click) and the
    unconditional P(long view) = P(click)·P(long | click), so they must match the label rates). RetailRocket: none
    (its oracle is in ``recrl synth``'s summary, on all rows)."""
    if args.dataset != "kuairand":
        return {}
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_kuairand_mtl import reference_rows as kuairand_reference

    from recrl_cli.data.kuairand_mtl import MTL_TASKS, load_kuairand_mtl
    from recrl_cli.data.kuairand_tensors import load_split_rows
    from recrl_cli.data.prepare.kuairand import BEHAVIOURS
    from recrl_cli.sim.truth import row_truth

    rows = kuairand_reference(raw, prepared, "test")
    truth = row_truth(raw, prepared, load_split_rows(prepared, "test"))[
        :, [BEHAVIOURS.index(t) for t in MTL_TASKS]
    ]
    labels = load_kuairand_mtl(prepared, splits=("test",)).splits["test"].labels
    for k, task in enumerate(MTL_TASKS):
        rows["planted truth"][f"{task}/mean_p"] = float(truth[:, k].mean())
        rows["planted truth"][f"{task}/rate"] = float(labels[:, k].mean())
    return rows


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two vectors [N] (float64)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


def weight_diagnostics(algo: RMTL) -> dict[str, float]:
    """Per task ``<task>/<diagnostic>`` of the RMTL weights on every train row at the pretrained model's actions.

    Run right after the critic stage (base = pretrained weights). The return G [N, T] is the discounted sum of the
    MDP's rewards from the row to the end of its session (γ of the config), the quantity Q(s, a) estimates when
    the actor keeps the logged actions; ``rows_left`` = rows after this one in the session.
    """
    split, bs = algo.train_split, algo.cfg.train.eval_batch_size
    probs = predict_in_batches(algo.predict, split.features, bs)  # [N, T]
    rows = torch.arange(split.num_rows)
    # Q [N, T] exactly as the polish reads it (critics in eval mode unless the faithful dropout switch is on)
    q = torch.cat([algo._critic_values(r, probs[r]) for r in rows.split(bs)])
    w = polish_weights("rmtl", split.labels, q, lam=algo.m.lam)  # [N, T]
    bce = F.binary_cross_entropy(probs, split.labels, reduction="none")  # [N, T]
    mdp = build_session_mdp(split.session_ids, split.labels, probs)
    nxt, done = mdp.next_index.numpy(), mdp.done.numpy()
    ret, left = mdp.rewards.double().numpy().copy(), np.zeros(split.num_rows)
    for i in reversed(range(split.num_rows)):  # rows of a session are contiguous and in time order
        if not done[i]:  # NumPy rows: a per-row torch op would cost ~10x more in this loop
            ret[i] += algo.m.gamma * ret[nxt[i]]
            left[i] = left[nxt[i]] + 1
    ret, left = torch.from_numpy(ret), torch.from_numpy(left)
    out = {}
    for k, task in enumerate(algo.tasks):
        out[f"{task}/w_mean"] = float(w[:, k].mean())
        out[f"{task}/w_cv"] = float(w[:, k].std() / w[:, k].mean())
        out[f"{task}/corr_q_return"] = correlation(q[:, k], ret[:, k])
        out[f"{task}/corr_w_bce"] = correlation(w[:, k], bce[:, k])
        out[f"{task}/corr_w_rows_left"] = correlation(w[:, k], left)
    return out


def polish(
    algo: RMTL, model: RMTLConfig, pretrained: dict, critics: dict, overrides: dict, seed: int, history: list
) -> dict[str, float]:
    """Run the polish stage of ``algo`` from the pretrained weights with ``overrides`` of the run's model config
    ``model``; test metrics. The trainer's per-epoch records (validation metrics) are appended to ``history``."""
    # From the run's config, not algo.m: overrides applied to the previous variant's config would accumulate
    # (after bce-continue, "rmtl-lam5" would keep w = 1).
    algo.m = dataclasses.replace(model, **overrides)
    algo.base.load_state_dict(pretrained)
    algo.critics.load_state_dict(critics)
    algo.polish_optimizer = torch.optim.Adam(
        algo.base.parameters(), lr=algo.m.polish_lr, weight_decay=algo.cfg.train.weight_decay
    )
    algo.mean_weight, algo.polish_improved = None, False
    stage = algo.stages()[-1]
    history.extend(Trainer(algo, [stage], device=algo.device, seed=seed).fit())
    return algo.evaluate("test")


def metric_keys(tasks: list[str]) -> list[str]:
    """Table columns: AUC, logloss and s-logloss of every task, then their means over tasks."""
    return [f"{t}/{m}" for t in [*tasks, "mean"] for m in METRICS]


def print_tables(results: dict, references: dict, tasks: list[str], names: list[str]) -> None:
    """Markdown tables: every variant's mean ± 95 % CI over seeds; paired differences vs pretrained and vs
    bce-continue; the weight diagnostics (mean ± CI over seeds)."""
    keys = metric_keys(tasks)
    header = "| row | " + " | ".join(k.replace("/", " ") for k in keys) + " |"
    print(f"\ntest split, mean ± 95 % CI over {len(results['pretrained'])} seeds\n\n{header}")
    print("|---" * (len(keys) + 1) + "|")
    for name, values in references.items():
        print(f"| {name} | " + " | ".join(f"{values.get(k, float('nan')):.4f}" for k in keys) + " |")
    for name in ["pretrained", *names]:
        cells = [mean_ci([r[k] for r in results[name]]) for k in keys]
        print(f"| {name} | " + " | ".join(f"{m:.4f} ± {h:.4f}" for m, h in cells) + " |")
    for ref in ("pretrained", "bce-continue"):
        if ref not in results:
            continue
        print(f"\npaired difference minus {ref} (same seeds): mean ± 95 % CI (p)\n\n{header}")
        print("|---" * (len(keys) + 1) + "|")
        for name in (n for n in names if n != ref):
            cells = [
                paired_difference([r[k] for r in results[name]], [r[k] for r in results[ref]]) for k in keys
            ]
            print(f"| {name} | " + " | ".join(f"{d:+.4f} ± {h:.4f} (p {p:.2f})" for d, h, p in cells) + " |")
    print("\nRMTL weights on the train rows at the pretrained predictions, mean ± 95 % CI over seeds\n")
    print("| task | " + " | ".join(DIAGNOSTICS) + " |\n" + "|---" * (len(DIAGNOSTICS) + 1) + "|")
    for t in tasks:
        cells = [mean_ci([r[f"{t}/{d}"] for r in results["weights"]]) for d in DIAGNOSTICS]
        print(f"| {t} | " + " | ".join(f"{m:.4f} ± {h:.4f}" for m, h in cells) + " |")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    raw, prepared = dataset_dirs(args)
    # The manifest picks the data: RetailRocket's rows or KuaiRand's MTL feature-row view, as `recrl train rmtl`.
    data = load_data(prepared, torch.device("cpu"), "rmtl")
    references = reference_rows(args, raw, prepared)
    names = args.variant_names
    # Per seed: test metrics per variant ("pretrained" = the base), weight diagnostics, CPU s, trainer records.
    results: dict[str, list] = {
        "pretrained": [],
        **{n: [] for n in names},
        "weights": [],
        "cpu_s": [],
        "history": [],
    }
    wall, cpu = time.perf_counter(), cpu_seconds()
    for s in range(args.seeds):
        cfg = rmtl_config(args, prepared, s)
        seed_everything(s, args.threads)
        algo = RMTL(cfg, data, torch.device("cpu"))
        stages = algo.stages()
        start = cpu_seconds()
        # pretrain + critics; the per-epoch records say whether early stopping or the epoch cap ended the pretrain
        history = {"pretrain+critics": Trainer(algo, stages[:-1], device=algo.device, seed=s).fit()}
        cost = {"pretrain+critics": cpu_seconds() - start}
        pretrained = copy.deepcopy(algo.pretrained["weights"])
        critics = copy.deepcopy(algo.critics.state_dict())
        results["pretrained"].append(algo.pretrained["metrics"]["test"])
        results["weights"].append(weight_diagnostics(algo))
        for name in names:
            start = cpu_seconds()
            history[name] = []
            results[name].append(
                polish(algo, cfg.model, pretrained, critics, VARIANTS[name], s, history[name])
            )
            cost[name] = cpu_seconds() - start
        results["cpu_s"].append(cost)
        results["history"].append(history)
        epochs = sum(r["stage"] == "pretrain" for r in history["pretrain+critics"])
        print(f"seed {s} done ({time.perf_counter() - wall:.0f} s wall, {cpu_seconds() - cpu:.0f} cpu s, "
              f"{epochs} pretrain epochs):", {k: round(v) for k, v in cost.items()}, flush=True)  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps({"args": sys.argv[1:], "references": references, **results},
                                            indent=2) + "\n")  # fmt: skip
    size = f"{args.events} events" if args.dataset == "retailrocket" else (
        f"{args.users} users, {args.items} videos, {args.impressions} impressions")  # fmt: skip
    print(f"\n{args.dataset} ({size}; train {data.splits['train'].num_rows} / test {data.splits['test'].num_rows} "
          f"rows), base {args.base}, {args.seeds} seeds, {args.threads} thread(s)")  # fmt: skip
    print_tables(results, references, list(data.tasks), names)
    per_seed = {k: mean_ci([c[k] for c in results["cpu_s"]]) for k in results["cpu_s"][0]}
    print(
        "\nCPU s per seed (mean ± 95 % CI):",
        ", ".join(f"{k} {m:.0f} ± {h:.0f}" for k, (m, h) in per_seed.items()),
    )
    print(f"total {time.perf_counter() - wall:.0f} s wall, {cpu_seconds() - cpu:.0f} cpu s")


if __name__ == "__main__":
    main()
