"""The agents' targets and losses as pure functions (hac_kuaisim.md §5.3, §5.6), fixed per §8 #2–#4.

Shapes: n sampled transitions, A hyper-action width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def td_target(reward: torch.Tensor, done: torch.Tensor, gamma: float, next_value: torch.Tensor,
              done_bug: bool = False) -> torch.Tensor:  # fmt: skip
    """y = r + γ (1 − done) V' (fixed §8 #2); ``done_bug``: KuaiSim's r + γ·done·V'. All [n] -> [n]."""
    return reward + gamma * (done if done_bug else 1.0 - done) * next_value


def clipped_double_q_target(reward: torch.Tensor, done: torch.Tensor, gamma: float, q1: torch.Tensor,
                            q2: torch.Tensor, discount_bug: bool = False) -> torch.Tensor:  # fmt: skip
    """TD3's y = r + γ (1 − done) min(Q1', Q2') (fixed §8 #3); ``discount_bug``: KuaiSim's
    r + (γ·done + (1 − done))·min(Q1', Q2'), γ on terminals and 1 elsewhere. All [n] -> [n]."""
    q = torch.minimum(q1, q2)
    if discount_bug:
        return reward + (gamma * done + (1.0 - done)) * q
    return td_target(reward, done, gamma, q)


def smoothed_target_action(
    hyper: torch.Tensor, std: float, clip: float, generator: torch.Generator
) -> torch.Tensor:
    """TD3's target policy smoothing: Z' + clamp(N(0, std²), −clip, clip): [n, A] -> [n, A]."""
    noise = torch.randn(hyper.shape, generator=generator, device=hyper.device) * std
    return hyper + noise.clamp(-clip, clip)


def alignment_loss(inferred: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
    """HAC's L_H (unweighted): mean over batch and A of (Ẑ(ã) − Z̃)², gradients into both: [n, A] x2 -> 0-dim."""
    return F.mse_loss(inferred, hyper)


def behaviour_loss(slate_scores: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
    """HAC's supervised L_BCE: BCE(σ(score(i | Z)), y_click) over the stored slates: [n, K] x2 -> 0-dim."""
    return F.binary_cross_entropy_with_logits(slate_scores, clicks)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std)²)) summed over A: x, mean [n, A], log_std [A] -> [n]."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of the diagonal Gaussian: [A] -> 0-dim, Σ_a (log σ_a + ½ log(2πe))."""
    return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum()


def topk_softmax_log_prob(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """KuaiSim's A2C policy (§5.6): π = softmax over all N item scores, the action = the policy's own top-K.

    logits [n, N] -> (Σ_{i ∈ top-K} log π(i) [n], entropy −mean_n Σ_i π(i) log π(i), 0-dim).
    """
    log_p = logits.log_softmax(-1)
    chosen = logits.detach().topk(k, dim=1).indices
    return log_p.gather(1, chosen).sum(-1), -(log_p.exp() * log_p).sum(-1).mean()


def a2c_losses(log_prob: torch.Tensor, value: torch.Tensor, target: torch.Tensor, entropy: torch.Tensor,
               entropy_coef: float, clip: float, bias: float) -> dict[str, torch.Tensor]:  # fmt: skip
    """A2C (§5.6, critic fixed per §8 #4): advantage A = clip(y − V(s), −c, c) + bias (detached);
    value loss mean (V(s) − y)²; policy loss −mean(log π(Z | s) · A) − entropy_coef · H[π].

    log_prob, value, target [n]; entropy 0-dim -> {"advantage" [n], "value_loss", "policy_loss"}.
    """
    advantage = ((target - value).clamp(-clip, clip) + bias).detach()
    return {"advantage": advantage, "value_loss": F.mse_loss(value, target),
            "policy_loss": -(log_prob * advantage).mean() - entropy_coef * entropy}  # fmt: skip


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← τ θ + (1 − τ) θ' for every parameter (buffers are copied: they are tables, not learned)."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)
