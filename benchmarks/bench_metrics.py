"""Benchmark recrl's vectorised metrics against sklearn / pandas / per-group loops and print a table.

Usage (repo root, package installed or ``PYTHONPATH=.``):
``python benchmarks/bench_metrics.py [--sizes 1e5 1e6] [--naive-max 2e5] [--repeats 3]``

Data: N rows, scores rounded to 3 decimals (ties), ~35 % positives, weights in [0.1, 3.1], N/20 users and
N/10 sessions with sparse, shuffled ids. Per-group reference loops (one sklearn call per user) are only run
up to ``--naive-max`` rows because they take tens of seconds beyond. The "|diff|" column is the absolute
difference between recrl's value and the reference's, so the table checks accuracy as well as speed.
"""

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

from recrl_cli.evaluation.metrics import auc, gauc, logloss, mtf_gauc, session_logloss, task_metrics

try:  # pandas is what the RMTL reference code uses for s-Logloss; optional here
    import pandas as pd
except ImportError:  # pragma: no cover
    pd = None


def _best(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(best wall time in seconds over ``repeats`` calls, the value returned)."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def _make(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(n, generator=g).clamp(1e-4, 1 - 1e-4)
    return {
        "s": (probs * 1000).round() / 1000,
        "p": probs,
        "y": (torch.rand(n, generator=g) < 0.35).long(),
        "w": torch.rand(n, generator=g) * 3 + 0.1,
        "u": torch.randint(0, max(n // 20, 1), (n,), generator=g) * 7919 + 11,
        "sid": torch.randint(0, max(n // 10, 1), (n,), generator=g) * 104729 - 5,
    }


def _per_group(keys: np.ndarray, fn: Callable[..., float | None], *cols: np.ndarray) -> list:
    """Sort once, then call ``fn`` on each group's slices in a Python loop; returns (group size, value)."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    cuts = np.flatnonzero(k[1:] != k[:-1]) + 1
    out = []
    for parts in zip(*(np.split(c[order], cuts) for c in cols), strict=True):
        v = fn(*parts)
        if v is not None:
            out.append((len(parts[0]), v))
    return out


def _ref_gauc(s, y, u) -> float:
    res = _per_group(u, lambda ss, yy: roc_auc_score(yy, ss) if 0 < yy.sum() < len(yy) else None, s, y)
    pos = _per_group(u, lambda yy: float(yy.sum()) if 0 < yy.sum() < len(yy) else None, y)
    return sum(p * a for (_, p), (_, a) in zip(pos, res, strict=True)) / sum(p for _, p in pos)


def _ref_mtf(s, y, w, u) -> float:
    def one(ss, yy, ww):
        return roc_auc_score(yy, ss, sample_weight=ww) if 0 < yy.sum() < len(yy) else None

    res = _per_group(u, one, s, y, w)
    return sum(n * a for n, a in res) / sum(n for n, _ in res)


def _ref_slogloss(p, y, sid) -> float:
    bce = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    if pd is not None:  # RMTL: df.groupby(session).mean().mean()
        return float(pd.DataFrame({"s": sid, "b": bce}).groupby("s")["b"].mean().mean())
    return float(np.mean([v for _, v in _per_group(sid, lambda b: float(b.mean()), bce)]))


Row = tuple[str, int, float, float | None, str, float | None]  # metric, N, ours s, ref s, ref name, |diff|


def _rows(n: int, naive_max: int, repeats: int) -> list[Row]:
    d = _make(n)
    npd = {k: v.numpy() for k, v in d.items()}
    npd["p64"] = d["p"].double().numpy()
    naive_ok = n <= naive_max
    cases = [
        ("auc", lambda: auc(d["s"], d["y"]), lambda: roc_auc_score(npd["y"], npd["s"]), "sklearn", True),
        (
            "auc (weighted)",
            lambda: auc(d["s"], d["y"], d["w"]),
            lambda: roc_auc_score(npd["y"], npd["s"], sample_weight=npd["w"]),
            "sklearn",
            True,
        ),
        ("logloss", lambda: logloss(d["p"], d["y"]), lambda: log_loss(npd["y"], npd["p64"]), "sklearn", True),
        (
            "session_logloss",
            lambda: session_logloss(d["p"], d["y"], d["sid"]),
            lambda: _ref_slogloss(npd["p64"], npd["y"], npd["sid"]),
            "pandas groupby" if pd is not None else "numpy loop",
            True,
        ),
        (
            "gauc",
            lambda: gauc(d["s"], d["y"], d["u"]),
            lambda: _ref_gauc(npd["s"], npd["y"], npd["u"]),
            "sklearn/user loop",
            naive_ok,
        ),
        (
            "mtf_gauc",
            lambda: mtf_gauc(d["s"], d["y"], d["w"], d["u"]),
            lambda: _ref_mtf(npd["s"], npd["y"], npd["w"], npd["u"]),
            "sklearn/user loop",
            naive_ok,
        ),
    ]
    rows = []
    for name, ours, ref, ref_name, run_ref in cases:
        t_ours, v_ours = _best(ours, repeats)
        if run_ref:
            t_ref, v_ref = _best(ref, 1)
            rows.append((name, n, t_ours, t_ref, ref_name, abs(v_ours - v_ref)))
        else:
            rows.append((name, n, t_ours, None, ref_name + " (skipped)", None))
    probs2 = torch.stack([d["p"], d["p"].flip(0)], 1)
    labels2 = torch.stack([d["y"], d["y"]], 1)
    t_tm, _ = _best(
        lambda: task_metrics(probs2, labels2, task_names=["a", "b"], session_ids=d["sid"], user_ids=d["u"]),
        repeats,
    )
    rows.append(("task_metrics (T=2)", n, t_tm, None, "-", None))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6])
    ap.add_argument("--naive-max", type=float, default=2e5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeats}")
    head = f"{'metric':<20}{'N':>9}{'recrl s':>10}{'ref s':>10}{'speed-up':>10}  {'reference':<30}"
    head += f"{'|diff|':>9}"
    print(head)
    print("-" * len(head))
    for size in args.sizes:
        for name, n, t_ours, t_ref, ref_name, diff in _rows(int(size), int(args.naive_max), args.repeats):
            ref_s = f"{t_ref:10.4f}" if t_ref is not None else f"{'-':>10}"
            speed = f"{t_ref / t_ours:9.1f}x" if t_ref is not None else f"{'-':>10}"
            diff_s = f"{diff:9.1e}" if diff is not None else f"{'-':>9}"
            print(f"{name:<20}{n:>9}{t_ours:10.4f}{ref_s}{speed}  {ref_name:<30}{diff_s}")


if __name__ == "__main__":
    main()
