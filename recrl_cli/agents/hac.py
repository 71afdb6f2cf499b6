"""HAC, Hyper-Actor Critic (hac_kuaisim.md §5.3): DDPG on the hyper-action plus an inverse module that maps the
chosen slate back into hyper-action space, so the critic learns on slates, not on raw hyper-actions.

    Ẑ(a)  = mean_{i ∈ a} h_ψ(φ_θ(i))
    L_Q   = mean (Q(s, Ẑ(a^buf)) − y)²,  y = r + γ (1 − done) Q'(g'(o'), f'(g'(o')))
    L_π   = −mean Q(s, f_θ(s))
    L_H   = mean ‖Ẑ(ã) − Z̃‖²,  Z̃ = f_θ(s) + clamp(N(0, σ²), −c, c),  ã = top-K(score(· | Z̃))
    L_BCE = BCE(σ(score(i | f_θ(s))), y_click) over the stored slate items
    actor step on θ ∪ ψ:  L_π + λ_h L_H + λ_b L_BCE

KuaiSim takes three Adam steps on θ, the alignment one at lr λ_h = 0.1 (§8 #6); recrl sums the three terms with
weights λ_h = ``hyper_actor_coef`` and λ_b = ``behavior_coef`` in one step at the actor lr (one encoder forward
per update instead of three). ``alignment_lr_bug`` takes KuaiSim's three steps, each on a fresh forward:
L_π with the actor optimiser, λ_h·L_H with Adam(θ ∪ ψ, lr λ_h), λ_b·L_BCE with Adam(θ, ``behavior_lr``,
``behavior_decay``).
"""

from __future__ import annotations

import torch

from recrl_cli.agents.base import adam, step
from recrl_cli.agents.buffer import Batch
from recrl_cli.agents.ddpg import DDPG
from recrl_cli.agents.losses import alignment_loss, behaviour_loss
from recrl_cli.agents.networks import InverseModule, item_scores, top_k
from recrl_cli.sim.environment import WholeSessionEnv


class HAC(DDPG):
    name = "hac"

    def build(self, env: WholeSessionEnv) -> None:
        self.inverse = InverseModule(self.cfg).to(self.device)
        super().build(env)
        self.extra_optimizers: dict[str, torch.optim.Optimizer] = {}
        if self.switches["alignment_lr_bug"]:  # KuaiSim's inverse_module_optimizer and behavior_optimizer
            cfg = self.cfg
            self.extra_optimizers = {
                "alignment": adam(self.actor_parameters(), cfg.hyper_actor_coef, cfg.actor_decay),
                "behaviour": adam(self.actor.parameters(), cfg.behavior_lr, cfg.behavior_decay),
            }

    def actor_parameters(self) -> list[torch.Tensor]:
        return [*self.actor.parameters(), *self.inverse.parameters()]

    def modules(self):
        return {**super().modules(), "inverse": self.inverse}

    def optimizers(self):
        return {**super().optimizers(), **self.extra_optimizers}

    def critic_action(self, batch: Batch, table: torch.Tensor) -> torch.Tensor:
        """Ẑ(a^buf) [n, A] of the stored slates under the current kernel and inverse module."""
        return self.inverse(table[batch.slate + 1])

    def alignment(self, table: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """Unweighted L_H of the explored hyper-action (ε = 0) and the inverse map of its top-K."""
        explored = self.noise(hyper, self.cfg.noise_std, 0.0)
        chosen = top_k(explored.detach(), table, self.slate_size)  # ã: indices carry no gradient
        return alignment_loss(self.inverse(table[chosen + 1]), explored)

    def behaviour(self, batch: Batch, table: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        return behaviour_loss(item_scores(hyper, table[batch.slate + 1]), batch.responses[..., 0])

    def actor_loss(self, batch, table, state, hyper):
        policy = -self.critic(state, hyper).mean()
        align, bce = self.alignment(table, hyper), self.behaviour(batch, table, hyper)
        total = policy + self.cfg.hyper_actor_coef * align + self.cfg.behavior_coef * bce
        return {"actor_loss": total, "policy_loss": policy, "alignment_loss": align, "behaviour_loss": bce}

    def actor_step(self, batch, table, state, hyper):
        if not self.switches["alignment_lr_bug"]:
            return super().actor_step(batch, table, state, hyper)
        policy = -self.critic(state, hyper).mean()
        step(self.actor_optimizer, policy)
        table, _, hyper = self.actor(batch.obs)  # the step changed θ: the next loss needs a fresh forward
        align = self.alignment(table, hyper)
        step(self.extra_optimizers["alignment"], self.cfg.hyper_actor_coef * align)
        table, _, hyper = self.actor(batch.obs)
        bce = self.behaviour(batch, table, hyper)
        step(self.extra_optimizers["behaviour"], self.cfg.behavior_coef * bce)
        return {"policy_loss": policy, "alignment_loss": align, "behaviour_loss": bce}
