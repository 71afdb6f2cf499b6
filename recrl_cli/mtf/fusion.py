"""Eq. 1 of UnifiedRL: fuse a ranker's k per-candidate scores with a request-level action.

    final_score_j = Π_i (pred_ij + bias_i)^power_i   ranked in log space as   Σ_i power_i · log(pred_ij + bias_i)

The action lives in the normalised box [−1, 1]^A with A = 2k: the first k entries map affinely to the powers,
the last k to the biases (unifiedrl_hrlrec.md A2 [PROPOSAL]; the paper does not publish the real ranges):

    power_i = P_lo + (a_i + 1)/2 · (P_hi − P_lo)       default [0, 2]   (a = 0 -> power 1: the plain product)
    bias_i  = b_lo + (a_{k+i} + 1)/2 · (b_hi − b_lo)   default [0.001, 1] (bias > 0 keeps the log finite)

Exploration, penalties and logs all stay in the normalised space. The k = 5 fusion targets
(:data:`TARGETS`) are derived from the ranker's 7 behaviour probabilities and its play-time head, following the
KuaiRand protocol of A6 step 2: valid consumption, expected watch time, long view, any interaction, not-hate.

Shapes: B requests, C candidates, k targets, A = 2k action dims, M + 1 play-time bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recrl_cli.sim.play_time import VALID_SECONDS, expected_seconds, prob_at_least

TARGETS = ("valid_consumption", "watch_time", "long_view", "interaction", "not_hate")
CLICK, LONG_VIEW, LIKE, COMMENT, FORWARD, FOLLOW, HATE = range(7)  # BEHAVIOURS order of the prepared data


@dataclass(frozen=True)
class ActionMap:
    """The affine map from the normalised action to (powers, biases); see the module docstring."""

    power_low: float = 0.0
    power_high: float = 2.0
    bias_low: float = 1e-3
    bias_high: float = 1.0

    def __post_init__(self) -> None:
        if not self.power_low < self.power_high:
            raise ValueError(f"power range must be increasing, got [{self.power_low}, {self.power_high}]")
        if not 0.0 < self.bias_low < self.bias_high:
            raise ValueError(
                f"bias range must satisfy 0 < low < high, got [{self.bias_low}, {self.bias_high}]"
            )

    def __call__(self, action: Tensor) -> tuple[Tensor, Tensor]:
        """action [B, 2k] in [−1, 1] (clamped) -> (powers [B, k], biases [B, k])."""
        a = action.clamp(-1.0, 1.0)
        k = a.shape[-1] // 2
        u_pow, u_bias = (a[..., :k] + 1.0) / 2.0, (a[..., k:] + 1.0) / 2.0
        powers = self.power_low + u_pow * (self.power_high - self.power_low)
        biases = self.bias_low + u_bias * (self.bias_high - self.bias_low)
        return powers, biases


def fused_log_scores(preds: Tensor, powers: Tensor, biases: Tensor) -> Tensor:
    """log final_score: preds [B, C, k] (>= 0), powers [B, k], biases [B, k] -> [B, C]."""
    return (powers[:, None, :] * torch.log(preds + biases[:, None, :])).sum(-1)


def fused_product(preds: Tensor, powers: Tensor, biases: Tensor) -> Tensor:
    """Eq. 1 as written, Π_i (pred + bias)^power (the naive reference the tests compare against): [B, C]."""
    return torch.prod((preds + biases[:, None, :]) ** powers[:, None, :], dim=-1)


def fusion_targets(probs: Tensor, play_logits: Tensor, play_edges: Tensor) -> Tensor:
    """The k = 5 targets of :data:`TARGETS` in [0, 1]: probs [B, C, 7], play_logits [B, C, M + 1] -> [B, C, 5].

    valid consumption = P(click) · P(play >= 10 s | click); watch time = x / (1 + x) with x the expected play
    minutes P(click) · E[play | click] / 60 (a monotone squash into [0, 1)); interaction = 1 − Π (1 − p) over
    like, comment, forward, follow; not-hate = 1 − P(hate).
    """
    click = probs[..., CLICK]
    valid = click * prob_at_least(play_logits, play_edges, VALID_SECONDS)
    minutes = click * expected_seconds(play_logits, play_edges) / 60.0
    watch = minutes / (1.0 + minutes)
    interaction = 1.0 - torch.prod(1.0 - probs[..., [LIKE, COMMENT, FORWARD, FOLLOW]], dim=-1)
    return torch.stack([valid, watch, probs[..., LONG_VIEW], interaction, 1.0 - probs[..., HATE]], -1)
