"""BCQ (Fujimoto et al. 2019) as BatchRL-MTF uses it (arXiv 2208.04560; unifiedrl_hrlrec.md Part C).

A conditional VAE G(s) models the logged actions; a perturbation net ξ moves a generated action by at most Φ
per dim; the policy picks the best of N perturbed generated actions under Q1:

    L_G  = mean ‖D(s, z) − a‖² + ½ KL(N(m, σ²) ‖ N(0, 1)),  z = m(s, a) + σ(s, a) ε    (VAE on the logs)
    ξ(s, a) = Φ · tanh(MLP(s, a)) ∈ [−Φ, Φ]^A,  π̃(s, a) = clamp(a + ξ(s, a), −1, 1)     (BCQ Eq. 11, Φ = 0.15)
    y    = r + γ (1 − done) max_{j ≤ N} [λ min_k Q'_k(s', ã_j) + (1 − λ) max_k Q'_k(s', ã_j)],
           ã_j = π̃'(s', D(s', z_j)),  z_j ~ clip(N(0, 1), −0.5, 0.5)                 (BCQ Eq. 13, N = 10)
    L_Q  = Σ_k mean (Q_k(s, a) − y)²;   L_ξ = −mean Q1(s, π̃(s, D(s, z)))
    θ' ← τ θ + (1 − τ) θ' for ξ and the critics after every update

act() is deterministic: it scores N latents drawn once at build time (the first is 0, the prior's mode) and kept
with the model, so the action is a fixed function of the state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recrl_cli.config.fields import param
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
from recrl_cli.offline.nets import EnsembleQ

LATENT_CLIP = 0.5  # BCQ clips prior draws of z to [−0.5, 0.5]


@dataclass(frozen=True)
class BCQConfig:
    phi: float = param(0.15, help="Φ: perturbation bound per dim, normalised units (BatchRL-MTF ρ = 0.15).")
    num_samples: int = param(10, help="N: generated actions scored per state (BCQ 10).")
    lmbda: float = param(0.75, help="λ of the soft clipped double-Q target (BCQ 0.75).")
    gamma: float = param(0.9, help="γ: discount (UnifiedRL's 0.9).")
    tau: float = param(0.005, help="Soft target update rate (BCQ 0.005).")
    batch_size: int = param(256, help="Transitions per update (the caller samples the batches).")
    actor_lr: float = param(1e-3, help="Perturbation-net Adam learning rate (BCQ 1e-3).")
    critic_lr: float = param(1e-3, help="Critic Adam learning rate (BCQ 1e-3).")
    vae_lr: float = param(1e-3, help="VAE Adam learning rate.")
    hidden: tuple[int, ...] = param((256, 128), help="Perturbation and critic MLP hidden widths.")
    vae_hidden: tuple[int, ...] = param((256, 256), help="VAE encoder and decoder hidden widths.")

    def __post_init__(self) -> None:
        check_positive("model", self, ints=("num_samples", "batch_size"),
                       floats=("phi", "actor_lr", "critic_lr", "vae_lr"))  # fmt: skip
        check_unit("model", self, ("lmbda", "gamma", "tau"))


class VAE(nn.Module):
    """Conditional VAE over actions, latent width 2A: encode (s, a) -> (m, log σ); decode (s, z) -> tanh [n, A]."""

    def __init__(self, state_dim: int, action_dim: int, hidden) -> None:
        super().__init__()
        self.latent = 2 * action_dim
        self.encoder = MLP(state_dim + action_dim, hidden, 0.0, 2 * self.latent)
        self.decoder = MLP(state_dim + self.latent, hidden, 0.0, action_dim)

    def decode(self, state: Tensor, z: Tensor) -> Tensor:
        return torch.tanh(self.decoder(torch.cat([state, z], -1)))

    def loss(self, state: Tensor, action: Tensor, eps: Tensor) -> Tensor:
        mean, log_std = self.encoder(torch.cat([state, action], -1)).chunk(2, -1)
        log_std = log_std.clamp(-4.0, 15.0)
        recon = self.decode(state, mean + eps * log_std.exp())
        kl = -0.5 * (1 + 2 * log_std - mean.square() - (2 * log_std).exp()).mean()
        return F.mse_loss(recon, action) + 0.5 * kl


class Perturbation(nn.Module):
    """π̃(s, a) = clamp(a + Φ·tanh(MLP(s, a)), −1, 1): [n, S], [n, A] -> [n, A]."""

    def __init__(self, state_dim: int, action_dim: int, hidden, phi: float) -> None:
        super().__init__()
        self.net, self.phi = MLP(state_dim + action_dim, hidden, 0.0, action_dim), phi

    def offset(self, state: Tensor, action: Tensor) -> Tensor:
        """ξ(s, a) ∈ [−Φ, Φ]^A."""
        return self.phi * torch.tanh(self.net(torch.cat([state, action], -1)))

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        return (action + self.offset(state, action)).clamp(-1.0, 1.0)


class BCQ(LearnerBase):
    name = "bcq"

    def __init__(self, cfg: BCQConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int):
        super().__init__(device, seed)
        self.cfg, self.weights = cfg, check_weights(reward_weights, self.device)
        with seeded(seed):
            self.vae = VAE(state_dim, action_dim, cfg.vae_hidden).to(self.device)
            self.actor = Perturbation(state_dim, action_dim, cfg.hidden, cfg.phi).to(self.device)
            self.critic = EnsembleQ(2, state_dim, action_dim, cfg.hidden).to(self.device)
            latents = torch.randn(cfg.num_samples, self.vae.latent).clamp(-LATENT_CLIP, LATENT_CLIP)
        latents[0] = 0.0
        self.vae.register_buffer("eval_latents", latents.to(self.device))  # saved with the VAE's state
        self.actor_target, self.critic_target = frozen_copy(self.actor), frozen_copy(self.critic)
        self.nets = {"vae": self.vae, "actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                     "critic_target": self.critic_target}  # fmt: skip
        self.optims = {"vae": adam(self.vae.parameters(), cfg.vae_lr),
                       "actor": adam(self.actor.parameters(), cfg.actor_lr),
                       "critic": adam(self.critic.parameters(), cfg.critic_lr)}  # fmt: skip

    def prior(self, rows: int) -> Tensor:
        return self.randn(rows, self.vae.latent).clamp(-LATENT_CLIP, LATENT_CLIP)

    @torch.no_grad()
    def target(self, b: TransitionBatch) -> Tensor:
        cfg, n = self.cfg, len(b)
        s_next = b.next_state.repeat_interleave(cfg.num_samples, 0)  # [n·N, S], rows of one state together
        a_next = self.actor_target(s_next, self.vae.decode(s_next, self.prior(s_next.shape[0])))
        q = self.critic_target(s_next, a_next)  # [2, n·N]
        q = cfg.lmbda * q.min(0).values + (1.0 - cfg.lmbda) * q.max(0).values
        return b.scalar_reward(self.weights) + cfg.gamma * (1.0 - b.done) * q.view(n, -1).max(1).values

    def update(self, b: TransitionBatch) -> dict[str, float]:
        vae_loss = self.vae.loss(b.state, b.action, self.randn(len(b), self.vae.latent))
        step(self.optims["vae"], vae_loss)
        y = self.target(b)
        q = self.critic(b.state, b.action)
        critic_loss = F.mse_loss(q, y.expand_as(q), reduction="none").mean(-1).sum()
        step(self.optims["critic"], critic_loss)
        with torch.no_grad():
            generated = self.vae.decode(b.state, self.prior(len(b)))
        actor_loss = -self.critic(b.state, self.actor(b.state, generated), detach=True)[0].mean()
        step(self.optims["actor"], actor_loss)
        soft_update(self.actor_target, self.actor, self.cfg.tau)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        self.updates += 1
        return logs(vae_loss=vae_loss.detach(), critic_loss=critic_loss.detach(), actor_loss=actor_loss.detach(),
                    q=q.detach().mean())  # fmt: skip

    @torch.no_grad()
    def act(self, state: Tensor) -> Tensor:
        """argmax_j Q1(s, π̃(s, D(s, z_j))) over the N stored latents z_j: [n, S] -> [n, A]."""
        n, k = state.shape[0], self.cfg.num_samples
        s = state.repeat_interleave(k, 0)
        z = self.vae.eval_latents.repeat(n, 1)  # row i·k + j holds latent j
        actions = self.actor(s, self.vae.decode(s, z))
        best = self.critic(s, actions)[0].view(n, k).argmax(1)
        return actions.view(n, k, -1)[torch.arange(n, device=state.device), best]


def build_bcq(cfg: BCQConfig, state_dim: int, action_dim: int, reward_weights, device, seed: int) -> BCQ:
    return BCQ(cfg, state_dim, action_dim, reward_weights, device, seed)
