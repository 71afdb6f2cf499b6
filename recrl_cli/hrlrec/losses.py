"""HRL-Rec's four losses (unifiedrl_hrlrec.md B3), per level, as pure functions of [B, T] tensors.

1. Critic TD (the released LRA's SARSA-style target on the *executed/logged* next action):
   L_Q = mean_t (r_t + γ Q'(s_{t+1}, e_{a_{t+1}}) − Q(s_t, e_{a_t}))², no bootstrap after the last position.
2. DDPG actor: L_π = −mean_t Q(s_t, μ(s_t)) (through the critic's gradient with respect to its action input).
3. Supervised: L_sup = Σ_t w_t ‖μ(s_t) − e_{a⁺_t}‖² / Σ_t w_t.
4. Similarity (InfoNCE over the selectable set): L_sim = Σ_t w_t [−⟨μ_t, e⁺⟩/τ + log(exp(⟨μ_t, e⁺⟩/τ) +
   Σ_{d ∈ 𝒞_t \\ {a⁺}} exp(⟨μ_t, e_d⟩/τ))] / Σ_t w_t, which pulls μ towards a real, selectable embedding and
   away from the others (𝒞_t: the channels for the selector, the chosen channel's candidates for the item
   recommender). The positive is always in the softmax even when it is not a candidate (a logged item outside
   the channel's top-200).

w_t marks the positives a⁺: positions whose item was clicked (logged or simulated), so both extra losses imitate
successful placements only. An empty weight (no click in the batch) gives 0.
"""

from __future__ import annotations

import torch


def weighted_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ w x / max(Σ w, 1e-8) over all elements (0 when every weight is 0)."""
    return (x * weight).sum() / weight.sum().clamp(min=1e-8)


def td_loss(q: torch.Tensor, target_q: torch.Tensor, reward: torch.Tensor, gamma: float) -> torch.Tensor:
    """q [B, T] = Q(s_t, e_{a_t}); target_q [B, T] = Q'(s_t, e_{a_t}) of the target critic; reward [B, T]."""
    nxt = torch.cat([target_q[:, 1:], torch.zeros_like(target_q[:, :1])], 1)
    y = (reward + gamma * nxt).detach()
    return ((q - y) ** 2).mean()


def actor_loss(q_mu: torch.Tensor) -> torch.Tensor:
    """q_mu [B, T] = Q(s_t, μ(s_t)) -> −mean."""
    return -q_mu.mean()


def supervised_loss(mu: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """mu, target [B, T, e]; weight [B, T]."""
    return weighted_mean(((mu - target) ** 2).sum(-1), weight)


def similarity_loss(mu: torch.Tensor, positive: torch.Tensor, candidates: torch.Tensor, exclude: torch.Tensor,
                    weight: torch.Tensor, temperature: float) -> torch.Tensor:  # fmt: skip
    """mu, positive [B, T, e]; candidates [M, e] (shared) or [B, T, M, e]; exclude [B, T, M] (True: padding or
    the positive itself, left out of the negatives); weight [B, T]."""
    pos = (mu * positive).sum(-1, keepdim=True) / temperature  # [B, T, 1]
    shared = candidates.dim() == 2
    logits = mu @ candidates.T if shared else torch.einsum("btme,bte->btm", candidates, mu)
    logits = (logits / temperature).masked_fill(exclude, float("-inf"))
    nll = torch.logsumexp(torch.cat([pos, logits], -1), -1) - pos.squeeze(-1)
    return weighted_mean(nll, weight)
