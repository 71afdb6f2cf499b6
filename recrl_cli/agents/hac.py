"""HAC, Hyper-Actor Critic (hac_kuaisim.md §5.3): DDPG on the hyper-action plus an inverse module that maps the
chosen slate back into hyper-action space, so the critic learns on slates, not on raw hyper-actions.

    Ẑ(a)  = mean_{i ∈ a} h_ψ(φ_θ(i))
    L_Q   = mean (Q(s, Ẑ(a^buf)) − y)²,  y = r + γ (1 − done) Q'(g'(o'), f'(g'(o')))
    L_π   = −mean Q(s, f_θ(s))
    L_H   = mean ‖Ẑ(ã) − Z̃‖²,  Z̃ = f_θ(s) + clamp(N(0, σ²), −c, c),  ã = top-K(score(· | Z̃))
    L_BCE = BCE(σ(score(i | f_θ(s))), y_click) over the stored slate items
    actor step on θ ∪ ψ at the actor lr:         L_π + λ_h L_H
    behaviour step on θ at ``behavior_lr``:      λ_b L_BCE

KuaiSim takes three Adam steps on θ, the alignment one at lr λ_h = 0.1 (§8 #6). recrl keeps KuaiSim's separate
behaviour optimiser (Adam(θ, ``behavior_lr`` 1e-4, ``behavior_decay``)): the supervised click loss is what
teaches the scorer which items a user clicks, and at the actor lr (1e-5) it learns 10x slower than KuaiSim's
(issue 15 measured the gap fraction at 300 iterations going 0.105 → 0.630 and −0.100 → 0.268 on two seeds from
this alone). The alignment term is weighted λ_h = ``hyper_actor_coef`` in the actor step (not stepped at lr
λ_h). Both gradients come from one encoder forward (``torch.autograd.grad`` per loss, two optimiser steps
from the same θ). ``alignment_lr_bug`` takes KuaiSim's three steps, each on a fresh forward: L_π with the
actor optimiser, λ_h·L_H with Adam(θ ∪ ψ, lr λ_h), λ_b·L_BCE with Adam(θ, ``behavior_lr``, ``behavior_decay``).
"""

from __future__ import annotations

import torch

from recrl_cli.agents.base import adam, gradients, step, step_with
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
        cfg = self.cfg
        # KuaiSim's behavior_optimizer: the supervised loss always steps at its own rate.
        self.extra_optimizers: dict[str, torch.optim.Optimizer] = {
            "behaviour": adam(self.actor.parameters(), cfg.behavior_lr, cfg.behavior_decay)
        }
        if self.switches["alignment_lr_bug"]:  # and its inverse_module_optimizer at lr λ_h
            self.extra_optimizers["alignment"] = adam(
                self.actor_parameters(), cfg.hyper_actor_coef, cfg.actor_decay
            )

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
        total = policy + self.cfg.hyper_actor_coef * align
        return {"actor_loss": total, "policy_loss": policy, "alignment_loss": align, "behaviour_loss": bce}

    def actor_step(self, batch, table, state, hyper):
        if not self.switches["alignment_lr_bug"]:
            losses = self.actor_loss(batch, table, state, hyper)
            params, theta = self.actor_parameters(), list(self.actor.parameters())
            use_bce = self.cfg.behavior_coef != 0  # the no-supervision ablation skips its backward pass
            rl = gradients(losses["actor_loss"], params, retain_graph=use_bce)
            if use_bce:  # both gradients at the same θ, then the two steps
                bce = gradients(self.cfg.behavior_coef * losses["behaviour_loss"], theta)
                step_with(self.extra_optimizers["behaviour"], theta, bce)
            step_with(self.actor_optimizer, params, rl)
            return losses
        policy = -self.critic(state, hyper).mean()
        step(self.actor_optimizer, policy)
        table, _, hyper = self.actor(batch.obs)  # the step changed θ: the next loss needs a fresh forward
        align = self.alignment(table, hyper)
        step(self.extra_optimizers["alignment"], self.cfg.hyper_actor_coef * align)
        table, _, hyper = self.actor(batch.obs)
        bce = self.behaviour(batch, table, hyper)
        step(self.extra_optimizers["behaviour"], self.cfg.behavior_coef * bce)
        return {"policy_loss": policy, "alignment_loss": align, "behaviour_loss": bce}
