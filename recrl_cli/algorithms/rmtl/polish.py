"""RMTL's polish loss (rmtl.md §2.6): per-sample, per-task weighted BCE with the critics' stop-gradient weights.

L = (1/T) Σ_k mean_i w_{i,k} · BCE(ŷ_{i,k}, y_{i,k}). The paper writes Σ_k; the reference code averages over the
tasks (``½ Σ_k`` for its two, ``train/utils.py`` L227-230), which we follow so that w ≡ 1 (``bce-continue``) is
exactly the pretrain loss and every weighting is a multiple of the same learning-rate scale.

Weightings (Q [B, T] ≤ 0 from the critics at the model's current prediction, detached):

============  =====================  ==============================================================
name          w_{i,k}                 what it is
============  =====================  ==============================================================
rmtl          1 − λ·Q_{i,k}           the method (paper Eq. 10, code ``polish_loss``)
wl            1 − λ·y_{i,k}·Q_{i,k}   paper ablation "WL" (label × Q; xuezhong fork method 1)
nlc           −Q_{i,k}                paper ablation "NLC" (no linear transform; method 4)
cw            c (0.5)                 paper ablation "CW" (constant weight; method 2)
bce-continue  1                       control: keep training with plain BCE for the same steps
mean-weight   mean_i(1 − λ·Q_{i,k})   control: RMTL's average weight per task as a constant
============  =====================  ==============================================================

The two controls separate the per-sample modulation from the plain loss scale: with λ = 1 the reference's weights
average ≈ 4.5 with a ±10 % spread (§2.6), i.e. mostly a larger learning rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recrl_cli.errors import ConfigError


def polish_weights(
    weighting: str,
    labels: torch.Tensor,
    q: torch.Tensor | None = None,
    *,
    lam: float = 0.7,
    cw_weight: float = 0.5,
    mean_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Loss weights [B, T] for labels [B, T] and critic values q [B, T] (ignored by cw / bce-continue).

    ``mean_weight`` [T] is the per-task constant of ``mean-weight`` (see :func:`mean_rmtl_weight`).
    """
    if weighting == "rmtl":
        return 1.0 - lam * _needs(q, weighting)
    if weighting == "wl":
        return 1.0 - lam * labels * _needs(q, weighting)
    if weighting == "nlc":
        return -_needs(q, weighting)
    if weighting == "cw":
        return torch.full_like(labels, cw_weight)
    if weighting == "bce-continue":
        return torch.ones_like(labels)
    if weighting == "mean-weight":
        return _needs(mean_weight, weighting).to(labels.dtype).expand_as(labels)
    raise ConfigError(f"unknown polish weighting {weighting!r}")


def _needs(value: torch.Tensor | None, weighting: str) -> torch.Tensor:
    if value is None:
        raise ValueError(f"weighting {weighting!r} needs critic values")
    return value


def normalized(weights: torch.Tensor) -> torch.Tensor:
    """weights [B, T] divided by their per-task batch mean (``model.normalize_weights``): mean 1 per task, so the
    polish keeps the per-sample modulation of the weights and drops their scale (a learning-rate change)."""
    return weights / weights.mean(0, keepdim=True).clamp_min(1e-12)


def mean_rmtl_weight(q: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-task mean of the RMTL weight over rows: q [N, T] → [T] = mean_i (1 − λ·Q_{i,k})."""
    return 1.0 - lam * q.double().mean(0).to(q.dtype)


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(1/T) Σ_k mean_i w_{i,k}·BCE(σ(z_{i,k}), y_{i,k}) from logits, labels, weights [B, T] → scalar."""
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (weights.detach() * bce).mean()
