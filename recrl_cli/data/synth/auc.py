"""ROC AUC of planted truth against realised labels, for the synth summaries ("oracle AUC").

numpy, no torch: the synth writers run before any model and must stay light. The training metrics
use ``recrl_cli.evaluation.metrics.auc`` (torch, weighted, grouped); both follow the same rank-sum
definition with average ranks for ties, so they agree on the same inputs.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def rank_auc(score: pl.Series | np.ndarray, label: pl.Series | np.ndarray) -> float:
    """ROC AUC of (N,) scores for (N,) binary labels by the Mann-Whitney rank sum; NaN if one class."""
    score, label = np.asarray(score, dtype=np.float64), np.asarray(label, dtype=bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    return float((avg_rank[inverse][label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
