"""Figures and tables saved as run artifacts (matplotlib with the non-interactive Agg backend)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_history_csv(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    """One row per epoch with every metric recorded by the trainer."""
    keys: list[str] = []
    for record in history:
        keys.extend(k for k in record if k not in keys)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def plot_learning_curve(history: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Training loss and validation mean AUC per epoch, one panel each."""
    plt = _pyplot()
    from recrl_cli.training.trainer import stage_key

    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(10, 3.6))
    stages = list(dict.fromkeys(r["stage"] for r in history))
    for stage in stages:
        rows = [r for r in history if r["stage"] == stage]
        steps = [r["step"] for r in rows]
        # A line is labelled by its stage only where there are several (RMTL's pretrain and polish): a single
        # supervised loop's validation curve is "validation", not its stage's name.
        label = stage if len(stages) > 1 else None
        loss_key = stage_key("train", stage, "epoch_loss")
        if any(loss_key in r for r in rows):
            ax_loss.plot(steps, [r.get(loss_key) for r in rows], marker="o", label=label)
        auc_key = stage_key("valid", stage, "mean/auc")
        if any(auc_key in r for r in rows):
            ax_auc.plot(steps, [r.get(auc_key) for r in rows], marker="o", label=label)
    ax_loss.set(title="training loss (epoch mean)", xlabel="step")
    ax_auc.set(title="validation mean AUC", xlabel="step")
    for ax in (ax_loss, ax_auc):
        ax.grid(alpha=0.3)
        if ax.lines and len(stages) > 1:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


REFERENCE_STYLES = {"random": ("#888888", ":"), "popular": ("#DD8452", "--"), "oracle": ("#55A868", "-."),
                    "agent": ("#C44E52", "--")}  # fmt: skip
OTHER_STYLES = (("#8172B3", "--"), ("#937860", ":"), ("#DA8BC3", "-."))
# Curves drawn as outcome panels (with the evaluation's reference lines); every other curve is a loss.
OUTCOMES = {"avg_reward": "reward per user and step", "depth": "session depth (users who left)",
            "total_reward": "session total reward (users who left)", "ctr": "click-through rate of the lists",
            "list_reward": "reward per list", "request_reward": "fusion: reward per request"}  # fmt: skip


def bin_curve(rows: Sequence[Mapping[str, float]], points: int = 200) -> dict[str, list[tuple[int, float]]]:
    """Per-iteration values (one mapping per iteration) in at most ``points`` equal bins: {name: [(last
    iteration of the bin, mean over the bin's iterations that have the name)]}."""
    size = max(1, -(-len(rows) // points))
    out: dict[str, list[tuple[int, float]]] = {}
    for lo in range(0, len(rows), size):
        chunk, sums, counts = rows[lo : lo + size], {}, {}
        for row in chunk:
            for k, v in row.items():
                sums[k], counts[k] = sums.get(k, 0.0) + float(v), counts.get(k, 0) + 1
        for k in sums:
            out.setdefault(k, []).append((lo + len(chunk), sums[k] / counts[k]))
    return out


def plot_rl_curves(curves: Mapping[str, Sequence[tuple[int, float]]], metrics: Mapping[str, float], path: Path,
                   title: str) -> int:  # fmt: skip
    """An RL run's learning curve: up to three outcome panels (reward per step, session depth and total reward;
    or a list's CTR and reward) over the training iterations (exploration on), each with the evaluation's
    ``test/<policy>/<name>`` of every reference policy and the agent (exploration off) as horizontal lines,
    and every loss (symlog axis) in the fourth panel. Returns the number of lines drawn."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    shown = [name for name in OUTCOMES if curves.get(name)][:3]
    for ax, name in zip(axes.flat, shown, strict=False):
        points = curves[name]
        ax.plot([p[0] for p in points], [p[1] for p in points], color="#4C72B0", label="training")
        others = iter(OTHER_STYLES * 3)
        for key, value in metrics.items():
            parts = key.split("/")
            if len(parts) != 3 or parts[0] != "test" or parts[2] != name or value != value:
                continue
            color, style = REFERENCE_STYLES.get(parts[1]) or next(others, ("#333333", ":"))
            tag = "agent (eval)" if parts[1] == "agent" else parts[1]
            ax.axhline(value, color=color, linestyle=style, label=f"{tag} {value:.3g}")
        ax.set(title=OUTCOMES[name], xlabel="iteration")
    # A family with fewer outcomes (fusion: one) leaves no empty frames.
    for ax in list(axes.flat)[len(shown) : 3]:
        ax.set_visible(False)
    loss_ax = axes.flat[3]
    for name, points in curves.items():
        if name not in OUTCOMES and points:
            loss_ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
    loss_ax.set_yscale("symlog", linthresh=1e-2)
    loss_ax.set(title="losses (bin means)", xlabel="iteration")
    lines = 0
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        lines += len(ax.lines)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return lines


RATE_SUFFIXES = ("ctr", "rate", "share", "acc", "accuracy", "coverage", "auc")  # values in [0, 1]


def is_rate(metric: str) -> bool:
    """Whether a metric is a proportion in [0, 1]: its chart's axis never goes below 0, however wide the CI."""
    return metric.rsplit("/", 1)[-1].endswith(RATE_SUFFIXES)


def axis_floor(metric: str) -> float:
    """Where a study chart's bars start: 0.5 for an AUC (chance: a bar's height is the gain over guessing), 0 for
    everything else (rates, rewards, depths, changes), so that bar heights compare as proportions."""
    return 0.5 if metric.endswith("auc") else 0.0


def bar_limits(metric: str, means: Sequence[float], errors: Sequence[float]) -> tuple[float, float]:
    """The y-axis of a study chart: from :func:`axis_floor` (or below it, where a mean or CI is) to the highest
    CI end, plus a margin; a rate's axis stays inside [0, 1] (a wide CI of a CTR is cut at 0, not drawn below)."""
    finite = [(m, e) for m, e in zip(means, errors, strict=True) if m == m]
    floor = axis_floor(metric)
    low = min([floor, *(m - e for m, e in finite)])
    high = max([floor, *(m + e for m, e in finite)])
    pad = max(1e-4, 0.08 * (high - low))
    bottom, top = low - (pad if low < floor else 0.0), high + pad
    if is_rate(metric):
        bottom, top = max(bottom, 0.0), min(top, 1.0)
    return bottom, top


def plot_study_bars(rows: Sequence[Mapping[str, Any]], metric: str, path: Path, title: str) -> None:
    """Bar chart of one metric per variant with 95 % CI error bars (rows: variant, mean, ci).

    Bars start at :func:`axis_floor` (0, or chance for an AUC, drawn as a dashed line) and the axis always shows
    it: a zoomed axis made a 0.2 % difference look like a factor of two."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.6))
    names = [str(r["variant"]) for r in rows]
    means = [r["mean"] for r in rows]
    errors = [0.0 if r["ci"] != r["ci"] else r["ci"] for r in rows]  # NaN CI (one seed) → no bar
    floor = axis_floor(metric)
    heights = [m - floor if m == m else 0.0 for m in means]
    ax.bar(names, heights, bottom=floor, yerr=errors, capsize=4, color="#4C72B0")
    ax.set_ylim(*bar_limits(metric, means, errors))
    if floor:
        ax.axhline(floor, color="#888888", linestyle="--", linewidth=0.8, label=f"chance {floor:g}")
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set(title=title, ylabel=f"{metric} (mean ± 95 % CI)")
    ax.tick_params(axis="x", rotation=30)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_channel_shares(metrics: Mapping[str, float], path: Path, title: str) -> bool:
    """HRL-Rec's channel mix: grouped bars of each evaluated policy's share of impressions per channel, from the
    metrics ``shares/<policy>/<channel>`` (y-axis 0-1). Returns False (and draws nothing) when there are none."""
    shares: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "shares":
            shares.setdefault(parts[1], {})[parts[2]] = float(value)
    if not shares:
        return False
    channels = sorted({c for d in shares.values() for c in d})
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(channels) * len(shares) / 2 + 3), 3.8))
    width = 0.8 / len(shares)
    for i, (policy, values) in enumerate(shares.items()):
        xs = [c + (i - (len(shares) - 1) / 2) * width for c in range(len(channels))]
        ax.bar(xs, [values.get(ch, 0.0) for ch in channels], width=width, label=policy)
    ax.set_xticks(range(len(channels)), channels, rotation=30)
    ax.set_ylim(0.0, 1.0)
    ax.set(title=title, ylabel="share of impressions", xlabel="channel")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
