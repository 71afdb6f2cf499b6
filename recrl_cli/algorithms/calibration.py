"""``train.calibration_guard``: early stopping never keeps a model whose validation logloss is worse than the
constant predictor's on any task.

Early stopping maximises ``train.monitor`` (mean AUC by default). AUC ignores calibration, so without a guard the
kept epoch can rank well and still predict probabilities worse than the training base rate would (issue 17: MMoE's
click logloss 0.1319 against the constant's 0.1259). The guard adds, to every validation result,

- ``<task>/const_logloss``: the logloss of the constant predictor p = training rate of the task;
- ``calibrated``: 1.0 when the model's logloss is at most that on every task, else 0.0;
- ``guarded/<monitor>``: the monitored value when calibrated, else NaN (the trainer never counts NaN as an
  improvement, so an uncalibrated epoch is never the one kept).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from recrl_cli.config.monitor import missing_monitor
from recrl_cli.nets.mtl.calibration import constant_logloss, task_rates
from recrl_cli.training import distributed

GUARD_PREFIX = "guarded/"


class CalibrationGuard:
    """Constant-predictor yardstick of one run.

    Args:
        train_labels: [N, T] this process's train labels (data-parallel: summed over processes).
        tasks: task names, in label column order.
        enabled: ``train.calibration_guard``.
        sharded: whether the splits are data-parallel shards (rates and val labels are then combined).
    """

    def __init__(
        self, train_labels: torch.Tensor, tasks: Sequence[str], *, enabled: bool, sharded: bool
    ) -> None:
        self.tasks, self.enabled, self.sharded = list(tasks), enabled, sharded
        if sharded:
            sums = distributed.all_sum(
                torch.cat(
                    [train_labels.double().sum(0), train_labels.new_tensor([train_labels.shape[0]]).double()]
                )
            )
            self.rates = (sums[:-1] / sums[-1].clamp_min(1)).clamp(1e-6, 1 - 1e-6)
        else:
            self.rates = task_rates(train_labels)
        self._const: list[float] | None = None

    def monitor_key(self, monitor: str) -> str:
        """The key early stopping selects on (the monitor itself, or its guarded copy)."""
        return GUARD_PREFIX + monitor if self.enabled else monitor

    def const_logloss(self, val_labels: torch.Tensor) -> list[float]:
        """Constant predictor's logloss per task on the validation labels [N, T] (computed once)."""
        if self._const is None:
            labels = distributed.gather_rows(val_labels) if self.sharded else val_labels
            self._const = constant_logloss(self.rates, labels).tolist()
        return self._const

    def annotate(self, metrics: dict[str, float], val_labels: torch.Tensor, monitor: str) -> dict[str, float]:
        """``metrics`` (one validation result) plus the guard's keys; returns the same dict."""
        const = self.const_logloss(val_labels)
        ok = True
        for task, c in zip(self.tasks, const, strict=True):
            metrics[f"{task}/const_logloss"] = c
            ll = metrics.get(f"{task}/logloss", math.nan)
            ok = ok and not math.isnan(ll) and ll <= c
        metrics["calibrated"] = float(ok)
        if monitor not in metrics:
            raise missing_monitor(monitor, metrics)
        if self.enabled:
            metrics[self.monitor_key(monitor)] = metrics.get(monitor, math.nan) if ok else math.nan
        return metrics


def guarded_validate(
    evaluate: Callable[[], dict[str, float]], guard: CalibrationGuard, val_labels: torch.Tensor, monitor: str
) -> Callable[[], dict[str, float]]:
    """A stage's ``validate`` callable: ``evaluate()`` annotated by ``guard``."""
    return lambda: guard.annotate(evaluate(), val_labels, monitor)
