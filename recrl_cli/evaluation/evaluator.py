"""Score a split with a predictor and compute the task-aware metrics on it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from recrl_cli.data.tensors import SplitTensors
from recrl_cli.evaluation.metrics import task_metrics


@torch.no_grad()
def predict_in_batches(
    predict: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Apply ``predict`` to features [N, F] in slices of ``batch_size``; returns probabilities [N, T]."""
    parts = [
        predict(features[start : start + batch_size]) for start in range(0, features.shape[0], batch_size)
    ]
    return torch.cat(parts) if parts else torch.zeros(0)


def evaluate_split(
    predict: Callable[[torch.Tensor], torch.Tensor],
    split: SplitTensors,
    tasks: Sequence[str],
    batch_size: int = 65536,
) -> dict[str, float]:
    """AUC, logloss, s-logloss and GAUC per task (keys ``<task>/<metric>`` and ``mean/<metric>``)."""
    probs = predict_in_batches(predict, split.features, batch_size)
    return task_metrics(
        probs, split.labels, task_names=list(tasks), session_ids=split.session_ids, user_ids=split.user_ids
    )
