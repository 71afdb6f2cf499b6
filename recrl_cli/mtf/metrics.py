"""Offline MTF metrics (unifiedrl_hrlrec.md A5): MTF-GAUC, NCIS with a known behaviour density, the premise
check, and the paired % change of the simulated A/B. Everything vectorised (numpy / torch), no per-row loops.

MTF-GAUC = Σ_u w(u)·WAUC(u) / Σ_u w(u), w(u) = impressions of u, users with one class only skipped, and

    WAUC(u) = Σ_{i: y=1} Σ_{j: y=0} ω_i ω_j [1(s_i > s_j) + ½·1(s_i = s_j)] / (Σ_{y=1} ω_i · Σ_{y=0} ω_j)

NCIS (normalised capped importance sampling): V̂ = Σ_n ρ̄_n G_n / Σ_n ρ̄_n, ρ̄_n = min(Π_t π_e(a_t|s_t)/π_b(a_t|s_t), c),
π_b the exactly known exploration density, π_e the deterministic policy smoothed by a box kernel of half-width h:
π_e(a|s) = (2h)^−A · 1(‖a − μ_e(s)‖_∞ <= h).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats as sps
from torch import Tensor

from recrl_cli.evaluation.stats import mean_ci


def mtf_gauc(group: np.ndarray, score: np.ndarray, label: np.ndarray, weight: np.ndarray) -> float:
    """Weighted GAUC over groups: group [n] (ints), score [n], label [n] (0/1), weight [n] (> 0). NaN if no group
    has both classes."""
    group = np.asarray(group)
    score = np.asarray(score, dtype=np.float64)
    label = np.asarray(label).astype(bool)
    weight = np.asarray(weight, dtype=np.float64)
    order = np.lexsort((score, group))  # by group, then ascending score
    g, s, y, w = group[order], score[order], label[order], weight[order]
    n = len(g)
    if n == 0:
        return float("nan")
    # Tie blocks: runs of equal (group, score).
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    block = np.cumsum(new_block) - 1
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    gid = np.cumsum(new_group) - 1
    n_blocks, n_groups = block[-1] + 1, gid[-1] + 1
    neg_block = np.bincount(block, weights=w * ~y, minlength=n_blocks)
    cum = np.cumsum(neg_block)  # negatives in blocks up to and including this one (across groups)
    block_gid = np.zeros(n_blocks, dtype=np.int64)
    block_gid[block] = gid
    group_neg = np.bincount(gid, weights=w * ~y, minlength=n_groups)
    group_start = np.concatenate([[0.0], np.cumsum(group_neg)[:-1]])  # negatives of earlier groups
    below = cum - neg_block - group_start[block_gid]  # same-group negatives with a strictly lower score
    credit = below[block] + 0.5 * neg_block[block]  # [n] per row
    num = np.bincount(gid, weights=w * y * credit, minlength=n_groups)
    pos = np.bincount(gid, weights=w * y, minlength=n_groups)
    impressions = np.bincount(gid, minlength=n_groups).astype(np.float64)
    ok = (pos > 0) & (group_neg > 0)
    if not ok.any():
        return float("nan")
    wauc = num[ok] / (pos[ok] * group_neg[ok])
    return float((impressions[ok] * wauc).sum() / impressions[ok].sum())


def log_density(eps: Tensor, noise: str, width: float) -> Tensor:
    """log π_b of the exploration offsets eps [n, A] (a − μ_bp(s)): uniform ±width or Gaussian σ = width -> [n]."""
    a = eps.shape[-1]
    if noise == "uniform":
        inside = (eps.abs() <= width + 1e-6).all(-1)
        return torch.where(inside, eps.new_tensor(-a * math.log(2.0 * width)), eps.new_tensor(-math.inf))
    if noise == "gaussian":
        return (-0.5 * (eps / width) ** 2 - math.log(width) - 0.5 * math.log(2 * math.pi)).sum(-1)
    raise ValueError(f"unknown behaviour density {noise!r}")


def importance_log_weights(action: Tensor, target: Tensor, eps: Tensor, noise: str, width: float,
                           kernel: float) -> Tensor:  # fmt: skip
    """log π_e(a|s) − log π_b(a|s) per request: action, target (μ_e(s)), eps (a − μ_bp(s)) all [n, A] -> [n]."""
    a = action.shape[-1]
    inside = ((action - target).abs() <= kernel).all(-1)
    log_pe = torch.where(inside, action.new_tensor(-a * math.log(2.0 * kernel)), action.new_tensor(-math.inf))
    return log_pe - log_density(eps, noise, width)


def ncis(log_weights: Tensor, returns: Tensor, cap: float) -> tuple[float, float]:
    """(V̂, effective sample size (Σρ̄)²/Σρ̄²): log_weights [n] (one per trajectory), returns [n]. NaN if Σρ̄ = 0."""
    rho = torch.exp(log_weights.double()).clamp(max=cap)
    total = rho.sum()
    if float(total) <= 0.0:
        return float("nan"), 0.0
    return float((rho * returns.double()).sum() / total), float(total**2 / (rho**2).sum())


def sessions(slot: Tensor, step: Tensor, done: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    """Complete sessions of a log ordered by request then slot (as :func:`collect` writes it): slot, step, done [n]
    -> (session id [n] (−1 on requests of a session still open at the log's end), number of sessions)."""
    n = slot.shape[0]
    steps = n // batch
    d = done.view(steps, batch).long()
    # A session of a slot ends at its done; its id counts the dones before it on that slot.
    ordinal = d.cumsum(0) - d  # [T, B] index of the slot's session each request belongs to
    finished = d.sum(0)  # complete sessions per slot
    open_ = ordinal >= finished[None, :]
    offset = torch.cat([finished.new_zeros(1), finished.cumsum(0)[:-1]])
    sid = torch.where(open_, torch.full_like(ordinal, -1), offset[None, :] + ordinal)
    return sid.reshape(-1), int(finished.sum())


def paired_pct_change(policy: Tensor, reference: Tensor, level: float = 0.95) -> tuple[float, float]:
    """% change of mean(policy) over mean(reference) on paired units (sessions) [n] and its CI half-width.

    The change is 100·(R − 1) with R = mean(p) / mean(e), a ratio of two paired means. Its CI is the delta
    method's: Var(R) ≈ Var(p_i − R·e_i) / (n·mean(e)²), with a Student-t quantile (n − 1 degrees of freedom).
    Unlike t over p_i − e_i scaled by a fixed mean(e), this counts the reference mean's own noise too. Pairing
    enters through p_i − R·e_i: with common random numbers most of the per-session noise (which user, which
    draws) is shared by p_i and e_i and cancels; a policy against itself gives exactly 0 ± 0.
    (NaN, NaN) if the reference mean is 0; the half-width is NaN for n < 2.
    """
    p, e = policy.double().cpu().numpy(), reference.double().cpu().numpy()
    if p.shape != e.shape:
        raise ValueError(f"paired samples need equal lengths, got {p.shape[0]} and {e.shape[0]}")
    ref = float(e.mean())
    if ref == 0.0:
        return float("nan"), float("nan")
    ratio = float(p.mean()) / ref
    _, half = mean_ci(p - ratio * e, level)  # mean of p − R·e is 0 by construction; only its spread counts
    return 100.0 * (ratio - 1.0), 100.0 * half / abs(ref)


def unpaired_pct_change(policy: Tensor, reference: Tensor, level: float = 0.95) -> tuple[float, float]:
    """The same % change as :func:`paired_pct_change` with the CI of two independent samples [n_p], [n_e]:
    Var(R) ≈ (Var(p)/n_p + R²·Var(e)/n_e) / mean(e)² (normal quantile). What the A/B would give without common
    random numbers; logged beside the paired CI so the gain from pairing is visible."""
    p, e = policy.double().cpu().numpy(), reference.double().cpu().numpy()
    ref = float(e.mean())
    if ref == 0.0 or len(p) < 2 or len(e) < 2:
        return float("nan"), float("nan")
    ratio = float(p.mean()) / ref
    var = (p.var(ddof=1) / len(p) + ratio**2 * e.var(ddof=1) / len(e)) / ref**2
    z = float(sps.norm.ppf(0.5 + level / 2.0))
    return 100.0 * (ratio - 1.0), 100.0 * z * math.sqrt(var)


def sessions_for_ci(policy: Tensor, reference: Tensor, target: float = 0.5, level: float = 0.95) -> float:
    """Paired sessions n* that would bring the % change's CI half-width down to ``target`` % (1/√n scaling from
    the observed spread of p_i − R·e_i [n]): n* = n·(half / target)². NaN where the CI is NaN."""
    _, half = paired_pct_change(policy, reference, level)
    return float("nan") if half != half else math.ceil(len(policy) * (half / target) ** 2)
