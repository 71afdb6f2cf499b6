"""Offline ranking and calibration metrics: AUC, logloss, s-logloss, GAUC, MTF-GAUC (vectorised torch).

Every function takes 1-D tensors of N rows (CPU or CUDA, any float/int dtype), accumulates in float64 and
returns a Python float. No per-row Python loops: the grouped metrics use one global sort by (group, score),
tie blocks of equal (group, score) and segment sums (``index_add_``); N = 1e6 rows take well under a second.

Conventions shared by all functions:

* labels are binary (0/1, any dtype) except for :func:`logloss`/:func:`session_logloss`, which, like torch's
  ``binary_cross_entropy``, accept soft targets in [0, 1];
* a NaN score makes the ranking metrics return NaN (a diverged model should show up in the tables, not crash
  the evaluation); NaN probabilities propagate through the losses the same way;
* AUC-type metrics give tied scores half a pair (Mann-Whitney with average ranks);
* a metric that is undefined (one class only, no rows) is ``float("nan")``.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

_LOG_FLOOR = -100.0  # torch.nn.functional.binary_cross_entropy clamps log(p) and log(1-p) here
_WEIGHTINGS = ("positives", "impressions")


def _vector(x: Tensor, name: str, n: int | None = None, device: torch.device | None = None) -> Tensor:
    """Return ``x`` as a 1-D tensor on ``device``, checking its length against ``n``; ValueError otherwise."""
    x = torch.as_tensor(x, device=device)
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(x.shape)}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {n}")
    return x


def _binary(labels: Tensor) -> Tensor:
    """[N] 0/1 labels of any dtype -> [N] bool; ValueError for any other value."""
    if labels.dtype == torch.bool:
        return labels
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must be 0 or 1")
    return labels != 0


def _nonnegative(weights: Tensor) -> Tensor:
    """[N] sample weights -> float64; ValueError if any is negative or NaN."""
    w = weights.to(torch.float64)
    if not bool((w >= 0).all()):
        raise ValueError("sample weights must be non-negative numbers")
    return w


def _pair_sums(
    scores: Tensor, pos: Tensor, weights: Tensor | None, groups: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Weighted Mann-Whitney sums per group.

    Args: scores [N] (no NaN), pos [N] bool, weights [N] float64 or None (all 1), groups [N] int or None
    (one group).

    Returns four float64 tensors of shape [G] (groups in ascending id order):
    ``num[g] = Σ_{i pos} Σ_{j neg} ω_i ω_j [1(s_i > s_j) + ½·1(s_i = s_j)]``, ``w_pos[g] = Σ_{i pos} ω_i``,
    ``w_neg[g] = Σ_{j neg} ω_j`` and ``count[g]`` = rows of the group.

    How: sort by (group, score); rows of equal (group, score) form a tie block. For a positive i in block b,
    the inner sum over j is ``below(b) + ½·tied(b)``, where tied(b) is the negative weight of the block and
    below(b) the negative weight of earlier blocks of the same group (a global cumulative sum minus the
    group's offset). With unit weights Σ_i [below + ½ tied] is exactly the rank-sum U statistic with
    average ranks, ``R_pos - n_pos(n_pos+1)/2``, so one code path serves AUC, GAUC and MTF-GAUC.
    """
    n = scores.shape[0]
    if groups is None:
        order = torch.argsort(scores)
    else:
        # Lexicographic sort: by score, then stably by group, keeps scores ascending inside each group.
        by_score = torch.argsort(scores)
        order = by_score[torch.argsort(groups[by_score], stable=True)]
    s = scores[order]
    y = pos[order]
    w = torch.ones(n, dtype=torch.float64, device=s.device) if weights is None else weights[order]
    w_pos_row = torch.where(y, w, 0.0)
    w_neg_row = w - w_pos_row

    new_block = torch.ones(n, dtype=torch.bool, device=s.device)
    new_block[1:] = s[1:] != s[:-1]
    new_group = torch.zeros(n, dtype=torch.bool, device=s.device)
    new_group[0] = True
    if groups is not None:
        g = groups[order]
        new_group[1:] = g[1:] != g[:-1]
        new_block |= new_group
    block = torch.cumsum(new_block, 0) - 1  # [N] tie-block index of each row
    group = torch.cumsum(new_group, 0) - 1  # [N] dense group index of each row
    n_groups = int(group[-1]) + 1

    # Blocks and groups are at most N; sizing by N avoids a device sync for the block count.
    neg_in_block = torch.zeros(n, dtype=torch.float64, device=s.device).index_add_(0, block, w_neg_row)
    neg_up_to_block = torch.cumsum(neg_in_block, 0)  # inclusive, across groups
    neg_in_group = torch.zeros(n_groups, dtype=torch.float64, device=s.device).index_add_(0, group, w_neg_row)
    neg_before_group = torch.cumsum(neg_in_group, 0) - neg_in_group
    tied = neg_in_block[block]
    below = neg_up_to_block[block] - tied - neg_before_group[group]

    num = torch.zeros(n_groups, dtype=torch.float64, device=s.device)
    num.index_add_(0, group, w_pos_row * (below + 0.5 * tied))
    w_pos = torch.zeros(n_groups, dtype=torch.float64, device=s.device).index_add_(0, group, w_pos_row)
    count = torch.bincount(group, minlength=n_groups).to(torch.float64)
    return num, w_pos, neg_in_group, count


def _grouped_auc(
    scores: Tensor, labels: Tensor, weights: Tensor | None, groups: Tensor | None, group_weighting: str
) -> float:
    """Weighted average over groups of the per-group (weighted) AUC; groups lacking a class are skipped.

    ``group_weighting``: "positives" -> w(g) = Σ_pos ω, "impressions" -> w(g) = rows of g, "none" -> w(g) = 1.
    """
    pos = _binary(labels)
    if scores.shape[0] == 0 or bool(torch.isnan(scores).any()):
        return float("nan")
    num, w_pos, w_neg, count = _pair_sums(scores, pos, weights, groups)
    valid = (w_pos > 0) & (w_neg > 0)
    if not bool(valid.any()):
        return float("nan")
    group_auc = num[valid] / (w_pos[valid] * w_neg[valid])
    if group_weighting == "positives":
        gw = w_pos[valid]
    elif group_weighting == "impressions":
        gw = count[valid]
    else:
        gw = torch.ones_like(group_auc)
    return float((gw * group_auc).sum() / gw.sum())


def auc(scores: Tensor, labels: Tensor, weights: Tensor | None = None) -> float:
    """ROC AUC of scores [N] against 0/1 labels [N], optionally with sample weights [N] (>= 0).

    ``AUC = Σ_{i pos} Σ_{j neg} ω_i ω_j [1(s_i > s_j) + ½·1(s_i = s_j)] / (Σ_pos ω_i · Σ_neg ω_j)``,
    i.e. the probability that a random positive outscores a random negative, ties counting one half
    (Mann-Whitney with average ranks; ω = 1 without weights). Equals ``sklearn.metrics.roc_auc_score``
    (trapezoidal ROC area) including its ``sample_weight`` form. One class only (or zero weight on a
    class), no rows, or a NaN score -> NaN. O(N log N).
    """
    scores = _vector(scores, "scores")
    labels = _vector(labels, "labels", scores.shape[0], scores.device)
    if weights is not None:
        weights = _nonnegative(_vector(weights, "weights", scores.shape[0], scores.device))
    return _grouped_auc(scores, labels, weights, None, "none")


def _bce(probs: Tensor, labels: Tensor) -> Tensor:
    """Per-row BCE [N] in float64: ``-(y·max(log p, -100) + (1-y)·max(log(1-p), -100))`` (torch semantics)."""
    p = probs.to(torch.float64)
    y = labels.to(torch.float64)
    if bool(((p < 0) | (p > 1)).any()):
        raise ValueError("probabilities must lie in [0, 1]")
    if bool(((y < 0) | (y > 1)).any()):
        raise ValueError("labels must lie in [0, 1]")
    log_p = torch.clamp(torch.log(p), min=_LOG_FLOOR)
    log_q = torch.clamp(torch.log1p(-p), min=_LOG_FLOOR)
    return -(y * log_p + (1.0 - y) * log_q)


def logloss(probs: Tensor, labels: Tensor) -> float:
    """Mean binary cross-entropy of probabilities [N] in [0, 1] against labels [N] in [0, 1].

    ``logloss = (1/N) Σ_i -(y_i·max(log p_i, -100) + (1-y_i)·max(log(1-p_i), -100))``, computed in float64.
    The -100 floor is torch's ``binary_cross_entropy`` convention (what RMTL reports); sklearn's ``log_loss``
    instead clips p to [eps, 1-eps] (eps = machine epsilon of the dtype), so the two differ only where
    p is within eps of 0 or 1. No rows -> NaN; a value outside [0, 1] -> ValueError.
    """
    probs = _vector(probs, "probs")
    labels = _vector(labels, "labels", probs.shape[0], probs.device)
    if probs.shape[0] == 0:
        return float("nan")
    return float(_bce(probs, labels).mean())


def _segment_mean_of_means(values: Tensor, inverse: Tensor, n_segments: int) -> float:
    """``(1/S) Σ_s mean_{i ∈ s} values_i`` for values [N] float64 and segment index inverse [N] in [0, S)."""
    sums = torch.zeros(n_segments, dtype=torch.float64, device=values.device).index_add_(0, inverse, values)
    counts = torch.bincount(inverse, minlength=n_segments).to(torch.float64)
    return float((sums / counts).mean())


def session_logloss(probs: Tensor, labels: Tensor, session_ids: Tensor) -> float:
    """RMTL's s-Logloss: per-session mean BCE, then the unweighted mean over sessions.

    ``s-LL = (1/|S|) Σ_{s ∈ S} (1/|s|) Σ_{i ∈ s} BCE_i`` with BCE as in :func:`logloss`; probs, labels and
    session_ids are [N]; session ids are arbitrary integers (unsorted, not dense). No rows -> NaN.
    """
    probs = _vector(probs, "probs")
    labels = _vector(labels, "labels", probs.shape[0], probs.device)
    session_ids = _vector(session_ids, "session_ids", probs.shape[0], probs.device)
    if probs.shape[0] == 0:
        return float("nan")
    uniq, inverse = torch.unique(session_ids, return_inverse=True)
    return _segment_mean_of_means(_bce(probs, labels), inverse, uniq.shape[0])


def gauc(scores: Tensor, labels: Tensor, group_ids: Tensor, weighting: str = "positives") -> float:
    """Group AUC: the weighted mean over groups g (e.g. users) of AUC(g), ties counting one half.

    ``GAUC = Σ_g w(g)·AUC(g) / Σ_g w(g)`` over groups holding both classes (others are skipped), with
    ``weighting="positives"``: w(g) = positives of g (RecBole's GAUC) or ``"impressions"``: w(g) = rows of g.
    scores, labels, group_ids are [N]; group ids are arbitrary integers. No two-class group, no rows or a
    NaN score -> NaN; unknown weighting -> ValueError.
    """
    if weighting not in _WEIGHTINGS:
        raise ValueError(f"unknown GAUC weighting {weighting!r}; expected one of {', '.join(_WEIGHTINGS)}")
    scores = _vector(scores, "scores")
    labels = _vector(labels, "labels", scores.shape[0], scores.device)
    group_ids = _vector(group_ids, "group_ids", scores.shape[0], scores.device)
    return _grouped_auc(scores, labels, None, group_ids, weighting)


def mtf_gauc(scores: Tensor, labels: Tensor, sample_weights: Tensor, user_ids: Tensor) -> float:
    """UnifiedRL's MTF-GAUC: impression-weighted mean over users of the sample-weighted AUC.

    ``WAUC(u) = Σ_{i pos} Σ_{j neg} ω_i ω_j [1(s_i > s_j) + ½·1(s_i = s_j)] / (Σ_pos ω_i · Σ_neg ω_j)`` and
    ``MTF-GAUC = Σ_u n(u)·WAUC(u) / Σ_u n(u)``, n(u) = impressions (rows) of u. scores, labels,
    sample_weights (ω >= 0, e.g. reward + 1) and user_ids are [N]. Users whose rows are all one class, or
    whose positive or negative weight sums to 0, are skipped; none left, no rows or a NaN score -> NaN.
    """
    scores = _vector(scores, "scores")
    labels = _vector(labels, "labels", scores.shape[0], scores.device)
    weights = _nonnegative(_vector(sample_weights, "sample_weights", scores.shape[0], scores.device))
    user_ids = _vector(user_ids, "user_ids", scores.shape[0], scores.device)
    return _grouped_auc(scores, labels, weights, user_ids, "impressions")


def task_metrics(
    probs: Tensor,
    labels: Tensor,
    *,
    task_names: Sequence[str],
    session_ids: Tensor,
    user_ids: Tensor | None = None,
) -> dict[str, float]:
    """Per-task and task-averaged metrics of predictions probs [N, T] against labels [N, T].

    Keys, for each task name t: ``f"{t}/auc"``, ``f"{t}/logloss"``, ``f"{t}/s_logloss"`` (sessions from
    session_ids [N]) and, when user_ids [N] is given, ``f"{t}/gauc"`` (grouped by user, RecBole weighting);
    then ``"mean/<metric>"`` = the plain mean over the T tasks (NaN if any task is NaN). Shape mismatches
    -> ValueError.
    """
    probs = torch.as_tensor(probs)
    labels = torch.as_tensor(labels, device=probs.device)
    if probs.dim() != 2 or labels.shape != probs.shape:
        raise ValueError(
            f"probs and labels must both be [N, T]; got {tuple(probs.shape)} and {tuple(labels.shape)}"
        )
    names = list(task_names)
    if not names or len(names) != probs.shape[1] or len(set(names)) != len(names):
        raise ValueError(f"need {probs.shape[1]} distinct task names, got {names}")
    n = probs.shape[0]
    session_ids = _vector(session_ids, "session_ids", n, probs.device)
    if user_ids is not None:
        user_ids = _vector(user_ids, "user_ids", n, probs.device)
    # Sessions are shared by all tasks: find them once.
    uniq, inverse = torch.unique(session_ids, return_inverse=True)

    out: dict[str, float] = {}
    kinds = ["auc", "logloss", "s_logloss"] + ([] if user_ids is None else ["gauc"])
    for k, name in enumerate(names):
        p, y = probs[:, k], labels[:, k]
        bce = _bce(p, y) if n else p.new_zeros(0, dtype=torch.float64)
        out[f"{name}/auc"] = auc(p, y)
        out[f"{name}/logloss"] = float(bce.mean()) if n else float("nan")
        out[f"{name}/s_logloss"] = _segment_mean_of_means(bce, inverse, uniq.shape[0]) if n else float("nan")
        if user_ids is not None:
            out[f"{name}/gauc"] = gauc(p, y, user_ids)
    for kind in kinds:
        out[f"mean/{kind}"] = sum(out[f"{name}/{kind}"] for name in names) / len(names)
    return out
