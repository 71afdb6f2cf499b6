"""CQL+SAC (Kumar et al. 2020, CQL(H) with importance sampling) on continuous actions.

SAC with a tanh-squashed Gaussian policy and twin critics; each critic adds the conservative regulariser:

    y    = r + γ (1 − done) (min_k Q'_k(s', a') − α log π(a'|s')),  a' ~ π(·|s')      (r = reward @ weights)
    R_k  = mean_n [ log Σ_{j ≤ 3N} exp(x_kj) − Q_k(s, a) ]                               (CQL Eq. 4, H variant)
           x = [Q_k(s, a^u_j) − log U(a^u_j)]_{j≤N} ⊕ [Q_k(s, a^π_j) − log π(a^π_j|s)] ⊕ [Q_k(s, a^π'_j) − log π(a^π'_j|s')]
           a^u ~ U[−1, 1]^A (log U = −A log 2), a^π ~ π(·|s), a^π' ~ π(·|s')             (importance-sampled logsumexp)
    L_Q  = Σ_k [ mean (Q_k(s, a) − y)² + α_cql R_k ]
    L_π  = mean [ α log π(ã|s) − min_k Q_k(s, ã) ],  ã ~ π(·|s)
    L_α  = −mean[ log α · (log π(ã|s) + H̄) ],  H̄ = −A                                   (SAC's automatic entropy)
    θ' ← τ θ + (1 − τ) θ' for the critics after every update

act() is the squashed mean tanh(m(s)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recrl_cli.config.fields import param
from recrl_cli.errors import ConfigError
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
from recrl_cli.offline.nets import EnsembleQ, SquashedGaussianActor


@dataclass(frozen=True)
class CQLSACConfig:
    cql_alpha: float = param(
        5.0, help="α_cql: weight of the conservative regulariser (CQL 5.0 for continuous)."
    )
    num_samples: int = param(
        10, help="N: actions per source (uniform, π(s), π(s')) in the logsumexp (CQL 10)."
    )
    gamma: float = param(0.9, help="γ: discount (UnifiedRL's 0.9).")
    tau: float = param(0.005, help="Soft target update rate of the critics.")
    init_alpha: float = param(1.0, help="Initial entropy temperature α (tuned to the target entropy −A).")
    batch_size: int = param(256, help="Transitions per update (the caller samples the batches).")
    actor_lr: float = param(1e-4, help="Policy and α Adam learning rate (CQL 1e-4).")
    critic_lr: float = param(3e-4, help="Critic Adam learning rate (CQL 3e-4).")
    actor_hidden: tuple[int, ...] = param((256, 128), help="Policy MLP hidden widths.")
    critic_hidden: tuple[int, ...] = param((256, 128), help="Critic MLP hidden widths.")

    def __post_init__(self) -> None:
        check_positive("model", self, ints=("num_samples", "batch_size"),
                       floats=("init_alpha", "actor_lr", "critic_lr"))  # fmt: skip
        check_unit("model", self, ("gamma", "tau"))
        if isinstance(self.cql_alpha, bool) or not self.cql_alpha >= 0.0:
            raise ConfigError(f"model.cql_alpha must be >= 0, got {self.cql_alpha!r}")


def cql_logsumexp(q_rand: Tensor, q_pi: Tensor, logp_pi: Tensor, q_next: Tensor, logp_next: Tensor,
                  action_dim: int) -> Tensor:  # fmt: skip
    """log Σ_j exp(x_j) over the 3N importance-weighted sampled Q values: Q [K, n, N], log π [n, N] -> [K, n]."""
    log_uniform = -action_dim * math.log(2.0)  # density of U[−1, 1]^A
    x = torch.cat([q_rand - log_uniform, q_pi - logp_pi, q_next - logp_next], -1)
    return torch.logsumexp(x, -1)


class CQLSAC(LearnerBase):
    name = "cql_sac"

    def __init__(self, cfg: CQLSACConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int):
        super().__init__(device, seed)
        self.cfg, self.weights, self.action_dim = cfg, check_weights(reward_weights, self.device), action_dim
        with seeded(seed):
            self.actor = SquashedGaussianActor(state_dim, action_dim, cfg.actor_hidden).to(self.device)
            self.critic = EnsembleQ(2, state_dim, action_dim, cfg.critic_hidden).to(self.device)
        self.temperature = nn.ParameterDict({"log_alpha": nn.Parameter(
            torch.tensor(math.log(cfg.init_alpha), device=self.device))})  # fmt: skip
        self.critic_target = frozen_copy(self.critic)
        self.target_entropy = -float(action_dim)
        self.nets = {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target,
                     "temperature": self.temperature}  # fmt: skip
        self.optims = {"actor": adam(self.actor.parameters(), cfg.actor_lr),
                       "critic": adam(self.critic.parameters(), cfg.critic_lr),
                       "temperature": adam(self.temperature.parameters(), cfg.actor_lr)}  # fmt: skip

    @property
    def alpha(self) -> Tensor:
        return self.temperature["log_alpha"].exp().detach()

    def conservative(self, b: TransitionBatch, q_data: Tensor) -> Tensor:
        """R_k per critic [2]: importance-sampled logsumexp over 3N sampled actions minus Q_k(s, a)."""
        n, k = len(b), self.cfg.num_samples
        s, s_next = b.state.repeat_interleave(k, 0), b.next_state.repeat_interleave(k, 0)  # [n·N, S]
        with torch.no_grad():
            a_rand = self.rand(n * k, self.action_dim) * 2.0 - 1.0
            a_pi, logp_pi = self.actor(s, self.generator)
            a_next, logp_next = self.actor(s_next, self.generator)
        q = self.critic(torch.cat([s, s, s]), torch.cat([a_rand, a_pi, a_next])).view(2, 3, n, k)
        lse = cql_logsumexp(
            q[:, 0], q[:, 1], logp_pi.view(n, k), q[:, 2], logp_next.view(n, k), self.action_dim
        )
        return (lse - q_data).mean(-1)

    def update(self, b: TransitionBatch) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            a_next, logp_next = self.actor(b.next_state, self.generator)
            q_next = self.critic_target(b.next_state, a_next).min(0).values - self.alpha * logp_next
            y = b.scalar_reward(self.weights) + cfg.gamma * (1.0 - b.done) * q_next
        q = self.critic(b.state, b.action)  # [2, n]
        td = F.mse_loss(q, y.expand_as(q), reduction="none").mean(-1)
        reg = self.conservative(b, q)
        critic_loss = (td + cfg.cql_alpha * reg).sum()
        step(self.optims["critic"], critic_loss)
        a_new, logp = self.actor(b.state, self.generator)
        actor_loss = (self.alpha * logp - self.critic(b.state, a_new, detach=True).min(0).values).mean()
        step(self.optims["actor"], actor_loss)
        alpha_loss = -(self.temperature["log_alpha"] * (logp.detach() + self.target_entropy)).mean()
        step(self.optims["temperature"], alpha_loss)
        soft_update(self.critic_target, self.critic, cfg.tau)
        self.updates += 1
        return logs(critic_loss=td.sum().detach(), cql=reg.detach().mean(), actor_loss=actor_loss.detach(),
                    alpha=self.alpha, q=q.detach().mean())  # fmt: skip

    @torch.no_grad()
    def act(self, state: Tensor) -> Tensor:
        return self.actor.mode(state)


def build_cql_sac(cfg: CQLSACConfig, state_dim: int, action_dim: int, reward_weights, device,
                  seed: int) -> CQLSAC:  # fmt: skip
    return CQLSAC(cfg, state_dim, action_dim, reward_weights, device, seed)
