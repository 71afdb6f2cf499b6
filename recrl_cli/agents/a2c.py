"""A2C on a Gaussian hyper-action (hac_kuaisim.md §5.6, fixed per §8 #4), trained off the replay buffer as
KuaiSim's is:

    π(Z | s) = N(f_θ(s), diag σ²),  σ = exp(log_std), a learned [A] vector (initialised at the noise std)
    y = r + γ (1 − done) V'(g'(o'));   L_V = mean (V(s) − y)²   (V is the trained critic, V' its soft target)
    A = clip(y − V(s), −1, 1) + bias (detached);   L_π = −mean log π(Z^buf | s) · A − β H[π]

KuaiSim scores log π of the current policy's own top-K items under a softmax over all items; recrl scores the
executed hyper-action under the Gaussian, so the advantage and the log-probability refer to the same action.
Switches: ``a2c_topk_softmax`` (KuaiSim's log π and Σ p log p entropy), ``frozen_critic`` (§8 #4: V and V' from
the untrained critic_target), ``td_done_bug`` (§8 #2).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from recrl_cli.agents.base import HyperActorAgent, adam, step
from recrl_cli.agents.buffer import Batch
from recrl_cli.agents.exploration import perturb
from recrl_cli.agents.losses import (
    a2c_losses,
    gaussian_entropy,
    gaussian_log_prob,
    soft_update,
    td_target,
    topk_softmax_log_prob,
)
from recrl_cli.agents.networks import VCritic, item_scores
from recrl_cli.sim.environment import WholeSessionEnv

LOG_STD_RANGE = (math.log(1e-3), math.log(1.0))  # keeps the entropy bonus from inflating σ without bound


class A2C(HyperActorAgent):
    name = "a2c"

    def build(self, env: WholeSessionEnv) -> None:
        cfg = self.cfg
        self.log_std = nn.Parameter(
            torch.full((self.actor.action_dim,), math.log(cfg.noise_std), device=self.device)
        )
        self.critic = VCritic(self.actor.encoder.state_dim, cfg).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).eval()
        self.actor_optimizer = adam([*self.actor.parameters(), self.log_std], cfg.actor_lr, cfg.actor_decay)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.critic_lr, cfg.critic_decay)

    def std(self) -> torch.Tensor:
        return self.clamped_log_std().exp()

    def clamped_log_std(self) -> torch.Tensor:
        return self.log_std.clamp(*LOG_STD_RANGE)

    def explore(self, hyper: torch.Tensor, epsilon: float) -> torch.Tensor:
        """A sample of π(· | s) (unclipped); with probability ε a random batch N(0, σ²) as the other agents.
        With ``a2c_topk_softmax`` the Gaussian is no policy: explore with the shared noise, as KuaiSim."""
        if self.switches["a2c_topk_softmax"]:
            return super().explore(hyper, epsilon)
        return perturb(
            hyper, self.std().detach(), None, epsilon, self.generator, self.switches["uniform_noise"]
        )

    def modules(self):
        return {**super().modules(), "critic": self.critic, "critic_target": self.critic_target}

    def parameters(self):
        return [*super().parameters(), self.log_std]

    def optimizers(self):
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def state_dict(self):
        return {**super().state_dict(), "log_std": self.log_std.detach().clone()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_std.copy_(state["log_std"])

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.train_mode()
        sw = self.switches
        table, state, mean = self.actor(batch.obs)
        with torch.no_grad():
            _, s_next, _ = self.actor_target(batch.next_obs)
            y = td_target(
                batch.reward, batch.done, self.cfg.gamma, self.critic_target(s_next), sw["td_done_bug"]
            )
        if sw["frozen_critic"]:  # KuaiSim: V from critic_target, which no optimiser holds (§8 #4)
            with torch.no_grad():
                value = self.critic_target(state)
        else:
            value = self.critic(state.detach())
        if sw["a2c_topk_softmax"]:
            log_prob, entropy = topk_softmax_log_prob(item_scores(mean, table[1:]), self.slate_size)
        else:
            log_std = self.clamped_log_std()
            log_prob, entropy = gaussian_log_prob(batch.hyper, mean, log_std), gaussian_entropy(log_std)
        losses = a2c_losses(log_prob, value, y, entropy, self.cfg.entropy_coef, self.cfg.advantage_clip,
                            self.cfg.advantage_bias)  # fmt: skip
        if not sw["frozen_critic"]:
            step(self.critic_optimizer, losses["value_loss"])
        step(self.actor_optimizer, losses["policy_loss"])
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        soft_update(self.actor_target, self.actor, self.cfg.tau)
        self.updates += 1
        return {"value_loss": losses["value_loss"].detach(), "policy_loss": losses["policy_loss"].detach(),
                "advantage": losses["advantage"].mean()}  # fmt: skip
