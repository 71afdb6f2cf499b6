"""IQL (Kostrikov et al. 2022): in-sample value learning with an expectile, policy extraction by AWR.

    L_V = mean L₂^τ(min_k Q'_k(s, a) − V(s)),  L₂^τ(u) = |τ − 1(u < 0)| u²       (IQL Eq. 5, τ = 0.7)
    L_Q = Σ_k mean (Q_k(s, a) − (r + γ (1 − done) V(s')))²                       (Eq. 6, r = reward @ weights)
    L_π = −mean[min(exp(β (min_k Q'_k(s, a) − V(s))), 100) · log π(a | s)]        (Eq. 7, AWR, β = 3)
    θ'_Q ← τ_t θ_Q + (1 − τ_t) θ'_Q after every update

π(·|s) = N(tanh(m(s)), diag exp(2·log σ)) with a state-independent log σ; act() is its mean tanh(m(s)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recrl_cli.config.fields import param
from recrl_cli.errors import ConfigError
from recrl_cli.nets.layers import MLP
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

ADVANTAGE_WEIGHT_MAX = 100.0  # IQL's clip of exp(β·A)


@dataclass(frozen=True)
class IQLConfig:
    expectile: float = param(0.7, help="τ: expectile of the value loss (IQL 0.7).")
    temperature: float = param(3.0, help="β: AWR inverse temperature (IQL 3.0).")
    gamma: float = param(0.9, help="γ: discount (UnifiedRL's 0.9).")
    tau: float = param(0.005, help="Soft target update rate of the Q target.")
    batch_size: int = param(256, help="Transitions per update (the caller samples the batches).")
    actor_lr: float = param(3e-4, help="Policy Adam learning rate.")
    critic_lr: float = param(3e-4, help="Q and V Adam learning rate.")
    actor_hidden: tuple[int, ...] = param((256, 128), help="Policy MLP hidden widths.")
    critic_hidden: tuple[int, ...] = param((256, 128), help="Q and V MLP hidden widths.")

    def __post_init__(self) -> None:
        check_positive("model", self, ints=("batch_size",), floats=("temperature", "actor_lr", "critic_lr"))
        check_unit("model", self, ("gamma", "tau"))
        if not 0.0 < self.expectile < 1.0:
            raise ConfigError(f"model.expectile must be in (0, 1), got {self.expectile!r}")


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """mean L₂^τ(u) = mean |τ − 1(u < 0)| u² over all elements: [n] -> 0-dim."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


class GaussianPolicy(nn.Module):
    """mean tanh(MLP(s)) [n, A] and a learned state-independent log σ [A]."""

    def __init__(self, state_dim: int, action_dim: int, hidden) -> None:
        super().__init__()
        self.mean = TanhActor(state_dim, action_dim, hidden)
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def log_prob(self, state: Tensor, action: Tensor) -> Tensor:
        """log N(action; tanh(m(s)), σ²) summed over dims: [n, A] -> [n]."""
        log_std = self.log_std.clamp(-5.0, 2.0)
        z = (action - self.mean(state)) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class IQL(LearnerBase):
    name = "iql"

    def __init__(self, cfg: IQLConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int):
        super().__init__(device, seed)
        self.cfg, self.weights = cfg, check_weights(reward_weights, self.device)
        with seeded(seed):
            self.policy = GaussianPolicy(state_dim, action_dim, cfg.actor_hidden).to(self.device)
            self.critic = EnsembleQ(2, state_dim, action_dim, cfg.critic_hidden).to(self.device)
            self.value = MLP(state_dim, cfg.critic_hidden, 0.0, 1).to(self.device)
        self.critic_target = frozen_copy(self.critic)
        self.nets = {"policy": self.policy, "critic": self.critic, "value": self.value,
                     "critic_target": self.critic_target}  # fmt: skip
        self.optims = {"policy": adam(self.policy.parameters(), cfg.actor_lr),
                       "critic": adam(self.critic.parameters(), cfg.critic_lr),
                       "value": adam(self.value.parameters(), cfg.critic_lr)}  # fmt: skip

    def update(self, b: TransitionBatch) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            q_target = self.critic_target(b.state, b.action).min(0).values  # [n]
            y = b.scalar_reward(self.weights) + cfg.gamma * (1.0 - b.done) * self.value(b.next_state)[:, 0]
        v = self.value(b.state)[:, 0]
        value_loss = expectile_loss(q_target - v, cfg.expectile)
        step(self.optims["value"], value_loss)
        q = self.critic(b.state, b.action)
        critic_loss = F.mse_loss(q, y.expand_as(q), reduction="none").mean(-1).sum()
        step(self.optims["critic"], critic_loss)
        weight = torch.exp(cfg.temperature * (q_target - v.detach())).clamp_max(ADVANTAGE_WEIGHT_MAX)
        policy_loss = -(weight * self.policy.log_prob(b.state, b.action)).mean()
        step(self.optims["policy"], policy_loss)
        soft_update(self.critic_target, self.critic, cfg.tau)
        self.updates += 1
        return logs(value_loss=value_loss.detach(), critic_loss=critic_loss.detach(),
                    policy_loss=policy_loss.detach(), q=q.detach().mean(), v=v.detach().mean())  # fmt: skip

    @torch.no_grad()
    def act(self, state: Tensor) -> Tensor:
        return self.policy.mean(state)


def build_iql(cfg: IQLConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int) -> IQL:
    return IQL(cfg, state_dim, action_dim, reward_weights, device, seed)
