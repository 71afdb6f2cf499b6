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
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """AUC, logloss, s-logloss and GAUC per task (keys ``<task>/<metric>`` and ``mean/<metric>``).

    ``gather`` (data-parallel runs: :func:`recrl_cli.training.distributed.gather_rows`) joins every process's
    shard of predictions, labels, sessions and users first, so the metrics are over the whole split.
    """
    probs = predict_in_batches(predict, split.features, batch_size)
    labels, sessions, users = split.labels, split.session_ids, split.user_ids
    if gather is not None:
        probs = probs.reshape(-1, labels.shape[1])  # an empty shard predicts zeros(0), not [0, T]
        probs, labels, sessions, users = (gather(t) for t in (probs, labels, sessions, users))
    return task_metrics(probs, labels, task_names=list(tasks), session_ids=sessions, user_ids=users)
