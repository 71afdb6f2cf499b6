"""DDPG on the hyper-action (hac_kuaisim.md §5.6): the critic scores the executed hyper-action Z^buf.

    y   = r + γ (1 − done) Q'(g'(o'), f'(g'(o')))          (fixed §8 #2; ``td_done_bug``: γ·done)
    L_Q = mean (Q(s, Z^buf) − y)²,   s = g_θ(o) detached   (the critic does not train the encoder)
    L_π = −mean Q(g_θ(o), f_θ(g_θ(o)))

Targets are soft-updated (τ) after every step. The encoder is trained by the actor losses only.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from recrl_cli.agents.base import HyperActorAgent, adam, step
from recrl_cli.agents.buffer import Batch
from recrl_cli.agents.losses import soft_update, td_target
from recrl_cli.agents.networks import QCritic
from recrl_cli.sim.environment import WholeSessionEnv


class DDPG(HyperActorAgent):
    name = "ddpg"

    def build(self, env: WholeSessionEnv) -> None:
        cfg, state_dim = self.cfg, self.actor.encoder.state_dim
        self.critic = QCritic(state_dim, self.actor.action_dim, cfg).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).eval()
        self.actor_optimizer = adam(self.actor_parameters(), cfg.actor_lr, cfg.actor_decay)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.critic_lr, cfg.critic_decay)

    def actor_parameters(self) -> list[torch.Tensor]:
        return list(self.actor.parameters())

    def modules(self):
        return {**super().modules(), "critic": self.critic, "critic_target": self.critic_target}

    def optimizers(self):
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    @torch.no_grad()
    def target_value(self, batch: Batch) -> torch.Tensor:
        """y [n] from the target actor and critic."""
        _, s_next, z_next = self.actor_target(batch.next_obs)
        next_q = self.critic_target(s_next, z_next)
        return td_target(batch.reward, batch.done, self.cfg.gamma, next_q, self.switches["td_done_bug"])

    def critic_action(self, batch: Batch, table: torch.Tensor) -> torch.Tensor:
        """The hyper-action the critic is trained on [n, A]: DDPG's is the executed one."""
        return batch.hyper

    def actor_loss(self, batch: Batch, table: torch.Tensor, state: torch.Tensor,
                   hyper: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
        """The actor-side losses; "actor_loss" is what the actor optimiser minimises."""
        policy = -self.critic(state, hyper).mean()
        return {"actor_loss": policy, "policy_loss": policy}

    def actor_step(self, batch: Batch, table: torch.Tensor, state: torch.Tensor,
                   hyper: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
        """The actor's optimiser step(s) on the actor losses of the current forward; returns the losses."""
        losses = self.actor_loss(batch, table, state, hyper)
        step(self.actor_optimizer, losses["actor_loss"])
        return losses

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.train_mode()
        table, state, hyper = self.actor(batch.obs)
        y = self.target_value(batch)
        critic_loss = F.mse_loss(self.critic(state.detach(), self.critic_action(batch, table).detach()), y)
        step(self.critic_optimizer, critic_loss)
        # The actor graph (table, state, hyper) depends on actor parameters only, so it survives the critic step.
        losses = self.actor_step(batch, table, state, hyper)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        soft_update(self.actor_target, self.actor, self.cfg.tau)
        self.updates += 1
        return {"critic_loss": critic_loss.detach(), **{k: v.detach() for k, v in losses.items()},
                "q": y.mean()}  # fmt: skip
