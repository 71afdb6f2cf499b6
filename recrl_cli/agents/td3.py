"""TD3 on the hyper-action (hac_kuaisim.md §5.6, fixed per §8 #3 and Fujimoto et al. 2018):

    Z̃' = f'(g'(o')) + clamp(N(0, σ_t²), −c_t, c_t)                 (target policy smoothing)
    y   = r + γ (1 − done) min(Q1'(s', Z̃'), Q2'(s', Z̃'))           (clipped double Q)
    L_Q = mean (Q1(s, Z^buf) − y)² + mean (Q2(s, Z^buf) − y)²
    every ``policy_delay`` updates: L_π = −mean Q1(s, f_θ(s)), then all targets are soft-updated.

KuaiSim's TD3 has no delay (``td3_no_delay``), smooths with its exploration noise (``td3_explore_smoothing``)
and discounts by γ·done + (1 − done) (``td3_discount_bug``, §8 #3); the critics are always updated.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from recrl_cli.agents.base import HyperActorAgent, adam, step
from recrl_cli.agents.buffer import Batch
from recrl_cli.agents.losses import clipped_double_q_target, smoothed_target_action, soft_update
from recrl_cli.agents.networks import QCritic
from recrl_cli.sim.environment import WholeSessionEnv


class TD3(HyperActorAgent):
    name = "td3"

    def build(self, env: WholeSessionEnv) -> None:
        cfg, state_dim, a = self.cfg, self.actor.encoder.state_dim, self.actor.action_dim
        self.critic1, self.critic2 = (
            QCritic(state_dim, a, cfg).to(self.device),
            QCritic(state_dim, a, cfg).to(self.device),
        )
        self.critic1_target = copy.deepcopy(self.critic1).eval()
        self.critic2_target = copy.deepcopy(self.critic2).eval()
        self.actor_optimizer = adam(self.actor.parameters(), cfg.actor_lr, cfg.actor_decay)
        critics = [*self.critic1.parameters(), *self.critic2.parameters()]
        self.critic_optimizer = adam(critics, cfg.critic_lr, cfg.critic_decay)

    def modules(self):
        return {**super().modules(), "critic1": self.critic1, "critic2": self.critic2,
                "critic1_target": self.critic1_target, "critic2_target": self.critic2_target}  # fmt: skip

    def optimizers(self):
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    @torch.no_grad()
    def target_value(self, batch: Batch) -> torch.Tensor:
        _, s_next, z_next = self.actor_target(batch.next_obs)
        if self.switches["td3_explore_smoothing"]:  # KuaiSim: the target actor explores like the policy
            z_next = self.noise(z_next, self.cfg.noise_std, self.schedule.value(self.explore_steps))
        else:
            z_next = smoothed_target_action(
                z_next, self.cfg.target_noise, self.cfg.target_noise_clip, self.generator
            )
        q1, q2 = self.critic1_target(s_next, z_next), self.critic2_target(s_next, z_next)
        return clipped_double_q_target(batch.reward, batch.done, self.cfg.gamma, q1, q2,
                                       self.switches["td3_discount_bug"])  # fmt: skip

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.train_mode()
        self.updates += 1
        delay = 1 if self.switches["td3_no_delay"] else self.cfg.policy_delay
        delayed = self.updates % delay == 0
        y = self.target_value(batch)
        if delayed:
            _, state, hyper = self.actor(batch.obs)
        else:  # the critics need only the state: skip the actor's graph
            with torch.no_grad():
                _, state, hyper = self.actor(batch.obs)
        s = state.detach()
        critic_loss = F.mse_loss(self.critic1(s, batch.hyper), y) + F.mse_loss(
            self.critic2(s, batch.hyper), y
        )
        step(self.critic_optimizer, critic_loss)
        out = {"critic_loss": critic_loss.detach(), "q": y.mean()}
        if delayed:
            policy = -self.critic1(state, hyper).mean()
            step(self.actor_optimizer, policy)
            for name in ("critic1", "critic2", "actor"):
                soft_update(getattr(self, f"{name}_target"), getattr(self, name), self.cfg.tau)
            out["policy_loss"] = policy.detach()
        return out
