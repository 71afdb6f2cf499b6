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
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for stage in dict.fromkeys(r["stage"] for r in history):
        rows = [r for r in history if r["stage"] == stage]
        steps = [r["step"] for r in rows]
        loss_key = f"train/{stage}/epoch_loss"
        if any(loss_key in r for r in rows):
            ax_loss.plot(steps, [r.get(loss_key) for r in rows], marker="o", label=stage)
        auc_key = f"valid/{stage}/mean/auc"
        if any(auc_key in r for r in rows):
            ax_auc.plot(steps, [r.get(auc_key) for r in rows], marker="o", label=stage)
    ax_loss.set(title="training loss (epoch mean)", xlabel="step")
    ax_auc.set(title="validation mean AUC", xlabel="step")
    for ax in (ax_loss, ax_auc):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_study_bars(rows: Sequence[Mapping[str, Any]], metric: str, path: Path, title: str) -> None:
    """Bar chart of one metric per variant with 95 % CI error bars (rows: variant, mean, ci)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.6))
    names = [str(r["variant"]) for r in rows]
    means = [r["mean"] for r in rows]
    errors = [0.0 if r["ci"] != r["ci"] else r["ci"] for r in rows]  # NaN CI (one seed) → no bar
    ax.bar(names, means, yerr=errors, capsize=4, color="#4C72B0")
    finite = [m for m in means if m == m]
    if finite:
        low, high = min(finite), max(finite)
        pad = max(1e-4, (high - low) * 0.5 + max(errors, default=0.0))
        ax.set_ylim(low - pad, high + pad)
    ax.set(title=title, ylabel=metric)
    ax.tick_params(axis="x", rotation=30)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
