"""UnifiedRL (arXiv 2404.17589; unifiedrl_hrlrec.md §A4): an actor and q critic sets × m critics trained on
logs explored inside a box around the baseline policy.

Per update (n transitions, q = Q reward components, E = q·m critics in ONE batched :class:`EnsembleQ`):

    a'   = μ'(s')                                                   target actor
    y_ij = r_i + γ (1 − done) φ(a') Q'_ij(s', a')                   v6 target; φ = 1 in the box (bounds.target_decay)
         | r_i + γ (1 − done) [Q'_ij(s', a') − α d(a')]             earlier version (Eq. 6 [PROPOSAL]), α = 1.2
    L_Q  = Σ_ij mean_n (Q_ij(s, a) − y_ij)²                         every critic regresses its own set's target
    L_μ  = mean_n [ −Σ_i c_i Q̄_i + η d(μ(s)) + λ Σ_i c_i std_j Q_ij ]   v6 actor (Eq. 4 per set), c = w ⊙ reward_weights
    every L updates: θ' ← ω θ + (1 − ω) θ' for the actor and every critic

Q̄_i and std_j are the mean and the population std (1/m, as Eq. 4) over the m critics of set i; d is Eq. 5
(bounds.bound_penalty). Paper values: γ 0.9, m 24, β 0.3, λ 0.2, ω 0.08, L 15, batch 256, α 1.2. Chosen here
(not published): η 1.0, ζ 0.3, w (1, 1), Adam lrs 3e-4 / 3e-4, hidden 256-128.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

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
from recrl_cli.offline.bounds import bound_penalty, target_decay
from recrl_cli.offline.nets import EnsembleQ, TanhActor

TARGET_PENALTIES = ("decay", "additive", "none")


@dataclass(frozen=True)
class UnifiedRLConfig:
    """UnifiedRL's hyperparameters (paper table in unifiedrl_hrlrec.md §A4; unpublished ones chosen)."""

    critics: int = param(24, help="m: critics per critic set (paper 24; the study sweeps 2,10,24).")
    set_weights: tuple[float, ...] = param(
        (1.0, 1.0),
        help="w: weight of each critic set in the actor loss (one per reward component; chosen 1,1).",
    )
    gamma: float = param(0.9, help="γ: discount (paper 0.9).")
    penalty: bool = param(
        True, help="Bound penalty η·d(μ(s)) in the actor loss (Eq. 5); off for the ablation."
    )
    eta: float = param(1.0, help="η: weight of the bound penalty (not published; chosen 1.0, sweep 0.3,1,3).")
    beta: float = param(0.3, help="β: temperature of Eq. 5, exp(excess / (β·(upper − lower))) (paper 0.3).")
    continuous_penalty: bool = param(
        False, help="Use exp(·) − 1 in d (0 at the box edge) instead of Eq. 5's jump."
    )
    uncertainty: float = param(0.2, help="λ: weight of the ensemble std in the actor loss (paper 0.2).")
    target_penalty: str = param(
        "decay",
        help="Out-of-box critic target: v6 decay φ, earlier additive −α·d, or none.",
        choices=TARGET_PENALTIES,
    )
    zeta: float = param(0.3, help="ζ: temperature of φ = exp(−Σ excess / (ζ·(upper − lower))) (chosen = β).")
    alpha: float = param(1.2, help="α: weight of the additive target penalty (earlier version, paper 1.2).")
    soft_rate: float = param(0.08, help="ω: soft target update rate (paper 0.08).")
    target_every: int = param(15, help="L: updates between soft target updates (paper 15).")
    batch_size: int = param(256, help="Transitions per update (paper 256; the caller samples the batches).")
    actor_lr: float = param(3e-4, help="Actor Adam learning rate (not published; chosen).")
    critic_lr: float = param(3e-4, help="Critic Adam learning rate (not published; chosen).")
    actor_hidden: tuple[int, ...] = param((256, 128), help="Actor MLP hidden widths ([PROPOSAL] 256-128).")
    critic_hidden: tuple[int, ...] = param((256, 128), help="Critic MLP hidden widths ([PROPOSAL] 256-128).")

    def __post_init__(self) -> None:
        check_positive("model", self, ints=("critics", "target_every", "batch_size"),
                       floats=("beta", "zeta", "actor_lr", "critic_lr"))  # fmt: skip
        check_unit("model", self, ("gamma", "soft_rate"))
        for name in ("eta", "uncertainty", "alpha"):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.target_penalty not in TARGET_PENALTIES:
            raise ConfigError(f"model.target_penalty must be one of {', '.join(TARGET_PENALTIES)}, "
                              f"got {self.target_penalty!r}")  # fmt: skip
        if not self.set_weights:
            raise ConfigError("model.set_weights needs one weight per reward component")


class UnifiedRL(LearnerBase):
    name = "unifiedrl"

    def __init__(
        self, cfg: UnifiedRLConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int
    ):
        super().__init__(device, seed)
        weights = check_weights(reward_weights, self.device)
        if len(cfg.set_weights) != weights.numel():
            raise ConfigError(f"model.set_weights has {len(cfg.set_weights)} weight(s) but the reward has "
                              f"{weights.numel()} component(s): one critic set per component")  # fmt: skip
        self.cfg, self.q, self.m = cfg, weights.numel(), cfg.critics
        # c_i: the actor weighs set i by w_i times the reward weight of component i, so with w = 1 it maximises
        # the same scalar return r·reward_weights the baselines learn from.
        self.set_coef = torch.tensor(cfg.set_weights, dtype=torch.float32, device=self.device) * weights
        with seeded(seed):
            self.actor = TanhActor(state_dim, action_dim, cfg.actor_hidden).to(self.device)
            self.critic = EnsembleQ(self.q * self.m, state_dim, action_dim, cfg.critic_hidden).to(self.device)
        self.actor_target, self.critic_target = frozen_copy(self.actor), frozen_copy(self.critic)
        self.nets = {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                     "critic_target": self.critic_target}  # fmt: skip
        self.optims = {"actor": adam(self.actor.parameters(), cfg.actor_lr),
                       "critic": adam(self.critic.parameters(), cfg.critic_lr)}  # fmt: skip

    def sets(self, q: Tensor) -> Tensor:
        """Critic outputs [q·m, n] -> [q, m, n] (member e belongs to set e // m)."""
        return q.view(self.q, self.m, -1)

    @torch.no_grad()
    def target(self, b: TransitionBatch) -> Tensor:
        """y [q, m, n]: each critic's own target (per-critic target networks), reward component of its set."""
        cfg, a_next = self.cfg, self.actor_target(b.next_state)
        q_next = self.sets(self.critic_target(b.next_state, a_next))  # [q, m, n]
        if cfg.target_penalty == "decay":  # v6: φ(μ'(s')) multiplies the bootstrap
            q_next = q_next * target_decay(a_next, b.next_mu_bp, b.lower, b.upper, cfg.zeta)
        elif cfg.target_penalty == "additive":  # earlier version: −α·d inside the target [PROPOSAL form]
            q_next = q_next - cfg.alpha * bound_penalty(a_next, b.next_mu_bp, b.lower, b.upper, cfg.beta,
                                                        cfg.continuous_penalty)  # fmt: skip
        return b.reward.T[:, None, :] + cfg.gamma * (1.0 - b.done) * q_next

    def actor_loss(self, b: TransitionBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Eq. 4 (v6 form) averaged over the batch; the critics' weights get no gradient from it."""
        cfg, a = self.cfg, self.actor(b.state)
        q = self.sets(self.critic(b.state, a, detach=True))  # [q, m, n]
        q_mean = q.mean(1)  # [q, n]
        # Eq. 4's 1/m population std (with one critic per set it is 0 by definition: no spread to penalise)
        q_std = q.std(1, correction=0) if self.m > 1 else torch.zeros_like(q_mean)
        value = (self.set_coef[:, None] * q_mean).sum(0)
        spread = (self.set_coef[:, None] * q_std).sum(0)
        loss = -value + cfg.uncertainty * spread
        d = bound_penalty(a, b.mu_bp, b.lower, b.upper, cfg.beta, cfg.continuous_penalty)
        if cfg.penalty:
            loss = loss + cfg.eta * d
        return loss.mean(), {"actor_q": value.mean(), "q_std": spread.mean(), "bound_penalty": d.mean()}

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        y = self.target(batch)
        q = self.sets(self.critic(batch.state, batch.action))
        # sum over the q·m critics of each one's mean squared TD error: independent regressions
        critic_loss = F.mse_loss(q, y, reduction="none").mean(-1).sum()
        step(self.optims["critic"], critic_loss)
        actor_loss, extra = self.actor_loss(batch)
        step(self.optims["actor"], actor_loss)
        self.updates += 1
        if self.updates % self.cfg.target_every == 0:
            soft_update(self.actor_target, self.actor, self.cfg.soft_rate)
            soft_update(self.critic_target, self.critic, self.cfg.soft_rate)
        return logs(critic_loss=critic_loss.detach() / (self.q * self.m), actor_loss=actor_loss.detach(),
                    q=q.detach().mean(), **extra)  # fmt: skip

    @torch.no_grad()
    def act(self, state: Tensor) -> Tensor:
        return self.actor(state)


def build_unifiedrl(cfg: UnifiedRLConfig, state_dim: int, action_dim: int, reward_weights, device,
                    seed: int) -> UnifiedRL:  # fmt: skip
    return UnifiedRL(cfg, state_dim, action_dim, reward_weights, device, seed)
