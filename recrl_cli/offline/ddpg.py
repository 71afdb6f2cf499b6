"""DDPG (Lillicrap et al. 2016) trained offline on the logs, UnifiedRL's weakest baseline (§A5):

    y   = r + γ (1 − done) Q'(s', μ'(s'))          r = reward @ reward_weights
    L_Q = mean (Q(s, a) − y)²
    L_μ = −mean Q(s, μ(s))
    θ' ← τ θ + (1 − τ) θ' after every update

No constraint keeps μ near the data: its failure mode off the data is the point of the comparison.
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
class DDPGConfig:
    gamma: float = param(0.9, help="γ: discount (UnifiedRL's 0.9, same data and horizon).")
    tau: float = param(0.005, help="τ: soft target update rate, applied every update.")
    batch_size: int = param(256, help="Transitions per update (the caller samples the batches).")
    actor_lr: float = param(3e-4, help="Actor Adam learning rate.")
    critic_lr: float = param(3e-4, help="Critic Adam learning rate.")
    actor_hidden: tuple[int, ...] = param((256, 128), help="Actor MLP hidden widths.")
    critic_hidden: tuple[int, ...] = param((256, 128), help="Critic MLP hidden widths.")

    def __post_init__(self) -> None:
        check_positive("model", self, ints=("batch_size",), floats=("actor_lr", "critic_lr"))
        check_unit("model", self, ("gamma", "tau"))


class DDPG(LearnerBase):
    name = "ddpg"

    def __init__(self, cfg: DDPGConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int):
        super().__init__(device, seed)
        self.cfg, self.weights = cfg, check_weights(reward_weights, self.device)
        with seeded(seed):
            self.actor = TanhActor(state_dim, action_dim, cfg.actor_hidden).to(self.device)
            self.critic = EnsembleQ(1, state_dim, action_dim, cfg.critic_hidden).to(self.device)
        self.actor_target, self.critic_target = frozen_copy(self.actor), frozen_copy(self.critic)
        self.nets = {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                     "critic_target": self.critic_target}  # fmt: skip
        self.optims = {"actor": adam(self.actor.parameters(), cfg.actor_lr),
                       "critic": adam(self.critic.parameters(), cfg.critic_lr)}  # fmt: skip

    def update(self, b: TransitionBatch) -> dict[str, float]:
        with torch.no_grad():
            q_next = self.critic_target(b.next_state, self.actor_target(b.next_state))[0]
            y = b.scalar_reward(self.weights) + self.cfg.gamma * (1.0 - b.done) * q_next
        q = self.critic(b.state, b.action)[0]
        critic_loss = F.mse_loss(q, y)
        step(self.optims["critic"], critic_loss)
        actor_loss = -self.critic(b.state, self.actor(b.state), detach=True)[0].mean()
        step(self.optims["actor"], actor_loss)
        soft_update(self.actor_target, self.actor, self.cfg.tau)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        self.updates += 1
        return logs(critic_loss=critic_loss.detach(), actor_loss=actor_loss.detach(), q=q.detach().mean())

    @torch.no_grad()
    def act(self, state: Tensor) -> Tensor:
        return self.actor(state)


def build_ddpg(cfg: DDPGConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int) -> DDPG:
    return DDPG(cfg, state_dim, action_dim, reward_weights, device, seed)
