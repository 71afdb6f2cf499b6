"""TD3+BC (Fujimoto & Gu 2021): TD3 with a behaviour-cloning term in the actor loss.

ã'  = clamp(μ'(s') + clamp(N(0, σ²), −c, c), −1, 1)          target policy smoothing
y   = r + γ (1 − done) min(Q1'(s', ã'), Q2'(s', ã'))          r = reward @ reward_weights
L_Q = mean (Q1(s, a) − y)² + mean (Q2(s, a) − y)²
every d updates:  λ = α / mean|Q1(s, μ(s))| (no gradient)     (TD3+BC Eq. 4, α = 2.5)
                  L_μ = −λ mean Q1(s, μ(s)) + mean ‖μ(s) − a‖²   (the BC term: mean over rows and dims)
                  soft-update the actor and both critics
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from recrl_cli.config.fields import param
from recrl_cli.offline.base import (
    LearnerBase,
    adam,
    check_positive,
    check_unit,
    check_weights,
    frozen_copy,
    logs,
    seeded,
    soft_update,
    step,
)
from recrl_cli.offline.batch import TransitionBatch
from recrl_cli.offline.nets import EnsembleQ, TanhActor


@dataclass(frozen=True)
class TD3BCConfig:
    alpha: float = param(2.5, help="α: Q-term scale, λ = α / mean|Q| (TD3+BC paper 2.5).")
    gamma: float = param(0.9, help="γ: discount (UnifiedRL's 0.9).")
    tau: float = param(0.005, help="τ: soft target update rate.")
    policy_noise: float = param(0.2, help="σ of the target smoothing noise (normalised action units).")
    noise_clip: float = param(0.5, help="c: clip of the target smoothing noise.")
    policy_delay: int = param(2, help="d: critic updates per actor and target update.")
    batch_size: int = param(256, help="Transitions per update (the caller samples the batches).")
    actor_lr: float = param(3e-4, help="Actor Adam learning rate.")
    critic_lr: float = param(3e-4, help="Critic Adam learning rate.")
    actor_hidden: tuple[int, ...] = param((256, 128), help="Actor MLP hidden widths.")
    critic_hidden: tuple[int, ...] = param((256, 128), help="Critic MLP hidden widths.")

    def __post_init__(self) -> None:
        check_positive("model", self, ints=("policy_delay", "batch_size"),
                       floats=("alpha", "actor_lr", "critic_lr"))  # fmt: skip
        check_unit("model", self, ("gamma", "tau"))


def bc_term(action: Tensor, logged: Tensor) -> Tensor:
    """TD3+BC's behaviour cloning term: mean over rows and dims of (μ(s) − a)²: [n, A] x2 -> 0-dim."""
    return F.mse_loss(action, logged)


class TD3BC(LearnerBase):
    name = "td3bc"

    def __init__(self, cfg: TD3BCConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int):
        super().__init__(device, seed)
        self.cfg, self.weights = cfg, check_weights(reward_weights, self.device)
        with seeded(seed):
            self.actor = TanhActor(state_dim, action_dim, cfg.actor_hidden).to(self.device)
            self.critic = EnsembleQ(2, state_dim, action_dim, cfg.critic_hidden).to(self.device)
        self.actor_target, self.critic_target = frozen_copy(self.actor), frozen_copy(self.critic)
        self.nets = {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                     "critic_target": self.critic_target}  # fmt: skip
        self.optims = {"actor": adam(self.actor.parameters(), cfg.actor_lr),
                       "critic": adam(self.critic.parameters(), cfg.critic_lr)}  # fmt: skip

    @torch.no_grad()
    def target(self, b: TransitionBatch) -> Tensor:
        cfg, a_next = self.cfg, self.actor_target(b.next_state)
        noise = (self.randn(*a_next.shape) * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
        q_next = self.critic_target(b.next_state, (a_next + noise).clamp(-1.0, 1.0)).min(0).values
        return b.scalar_reward(self.weights) + cfg.gamma * (1.0 - b.done) * q_next

    def actor_loss(self, b: TransitionBatch) -> tuple[Tensor, Tensor]:
        """(L_μ, the BC term) of TD3+BC Eq. 4."""
        a = self.actor(b.state)
        q = self.critic(b.state, a, detach=True)[0]
        lam = self.cfg.alpha / q.abs().mean().detach().clamp_min(1e-6)
        bc = bc_term(a, b.action)
        return -lam * q.mean() + bc, bc

    def update(self, b: TransitionBatch) -> dict[str, float]:
        y = self.target(b)
        q = self.critic(b.state, b.action)
        critic_loss = F.mse_loss(q, y.expand_as(q), reduction="none").mean(-1).sum()
        step(self.optims["critic"], critic_loss)
        self.updates += 1
        out = {"critic_loss": critic_loss.detach(), "q": q.detach().mean()}
        if self.updates % self.cfg.policy_delay == 0:
            actor_loss, bc = self.actor_loss(b)
            step(self.optims["actor"], actor_loss)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
            soft_update(self.critic_target, self.critic, self.cfg.tau)
            out |= {"actor_loss": actor_loss.detach(), "bc": bc.detach()}
        return logs(**out)

    @torch.no_grad()
    def act(self, state: Tensor) -> Tensor:
        return self.actor(state)


def build_td3bc(
    cfg: TD3BCConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int
) -> TD3BC:
    return TD3BC(cfg, state_dim, action_dim, reward_weights, device, seed)
