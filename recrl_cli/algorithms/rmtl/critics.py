"""RMTL's per-task critics (rmtl.md §2.3 CriticNeg) and their offline TD learner (§2.4, fixed by default).

Critic k reads the state ids [B, F] through its OWN embedding, the action a_k through ``Linear(1→D)`` as one extra
token, and maps the flattened [(F+1)·D] input through a bottom MLP (512, 256) and a tower (128, 64) → 1, with
ReLU + dropout 0.2 after every hidden layer. Its output is Q_k = −softplus(z) (default) or −relu(z) (the
reference, ``relu_critic_output``): rewards are log-likelihoods ≤ 0, so Q ≤ 0 by construction. −relu has a dead
zone: once z < 0 for a state, Q = 0 and no gradient reaches it, so the fixed default uses the smooth softplus.

The T critics are independent networks (own initialisation, own parameters) but run as ONE batched network: their
embedding tables are one [T, V, D] parameter, their MLPs one :class:`MLPBank` with T groups, so a forward pass is
one gather and one ``baddbmm`` per layer for all tasks (the reference ran two separate critics).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recrl_cli.nets.layers import MLPBank, StackedLinear

TARGET_NOISE_STD, TARGET_NOISE_CLIP = 0.4, 3e-3  # faithful bug 15 (Arguments L14-15, BC agent L59-67)


class TaskCritics(nn.Module):
    """T critics Q_k(s, a_k), batched. forward: ids [B, F] long, actions [B, T] → Q [B, T] (≤ 0)."""

    def __init__(
        self,
        cardinalities: Sequence[int],
        num_tasks: int,
        embed_dim: int = 128,
        bottom_dims: Sequence[int] = (512, 256),
        tower_dims: Sequence[int] = (128, 64),
        dropout: float = 0.2,
        relu_output: bool = False,
    ) -> None:
        super().__init__()
        self.arch = {
            "cardinalities": [int(c) for c in cardinalities],
            "num_tasks": int(num_tasks),
            "embed_dim": int(embed_dim),
            "bottom_dims": tuple(bottom_dims),
            "tower_dims": tuple(tower_dims),
            "dropout": float(dropout),
            "relu_output": bool(relu_output),
        }
        self.num_tasks, self.num_fields, self.relu_output = num_tasks, len(cardinalities), relu_output
        vocab = sum(cardinalities)
        offsets = torch.tensor((0, *cardinalities[:-1]), dtype=torch.long).cumsum(0)
        # Critic k's rows of the flattened [T·V, D] table start at k·V.
        task_offsets = torch.arange(num_tasks, dtype=torch.long).view(-1, 1, 1) * vocab
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("task_offsets", task_offsets, persistent=False)
        self.embedding = nn.Parameter(torch.empty(num_tasks, vocab, embed_dim))
        for k in range(num_tasks):  # each critic's table initialised like FeatureEmbedding
            nn.init.xavier_uniform_(self.embedding.data[k])
        self.action = StackedLinear(num_tasks, 1, embed_dim)  # Linear(1→D) per critic
        in_dim = (self.num_fields + 1) * embed_dim
        self.mlp = MLPBank(num_tasks, 1, in_dim, (*bottom_dims, *tower_dims), dropout, out_dim=1)

    def forward(self, ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """ids [B, F], actions [B, T] → Q [B, T]."""
        rows = (ids + self.offsets).unsqueeze(0) + self.task_offsets  # [T, B, F]
        emb = F.embedding(rows, self.embedding.view(-1, self.embedding.shape[-1]))  # [T, B, F, D]
        act = self.action(actions.t().unsqueeze(-1))  # [T, B, 1] → [T, B, D]
        z = self.mlp(torch.cat([emb.flatten(2), act], dim=2)).squeeze(-1)  # [T, B]
        q = -torch.relu(z) if self.relu_output else -F.softplus(z)
        return q.t()

    def copy_first_critic(self) -> None:
        """Faithful bug 13 (``critic2 = deepcopy(critic1)``): make every critic start equal to critic 0."""
        with torch.no_grad():
            for param in self.parameters():  # every parameter is stacked with the task as its leading dim
                param[1:] = param[:1]

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> TaskCritics:
        return cls(**arch)


class CriticLearner:
    """Offline TD learning of :class:`TaskCritics` with soft-updated targets (rmtl.md §2.4).

    Fixed target: y_k = r_k + γ(1 − done)·Q'_k(s', a'_k), with a' the frozen actor's action at s' and Q' the
    target critics (evaluated without dropout). Loss Σ_k mean_i (Q_k(s_i, a_{k,i}) − y_{k,i})², one Adam for the
    stacked parameters (Adam is elementwise, so this equals one Adam per critic). Every ``target_update_every``
    steps θ' ← τθ + (1−τ)θ'.

    Faithful switches: ``twin_min_same`` (bug 14) takes min(Q', Q) of the target and online copy of the SAME
    critic; ``target_noise`` (bug 15) adds clip(N(0, 0.4), ±0.003) to a', one value per task per batch.
    """

    def __init__(
        self,
        critics: TaskCritics,
        *,
        lr: float,
        gamma: float,
        tau: float,
        target_update_every: int,
        twin_min_same: bool = False,
        target_noise: bool = False,
    ) -> None:
        self.online = critics
        self.target = copy.deepcopy(critics).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(critics.parameters(), lr=lr, fused=True)
        self.gamma, self.tau, self.every = gamma, tau, target_update_every
        self.twin_min_same, self.target_noise = twin_min_same, target_noise
        self.steps = 0

    @torch.no_grad()
    def td_target(
        self, rewards: torch.Tensor, done: torch.Tensor, next_ids: torch.Tensor, next_actions: torch.Tensor
    ) -> torch.Tensor:
        """y [B, T] from rewards [B, T], done [B], next-state ids [B, F] and actor actions a' [B, T]."""
        if self.target_noise:
            noise = (torch.randn(next_actions.shape[1], device=next_actions.device) * TARGET_NOISE_STD).clamp(
                -TARGET_NOISE_CLIP, TARGET_NOISE_CLIP
            )
            next_actions = next_actions + noise
        q_next = self.target(next_ids, next_actions)
        if self.twin_min_same:
            q_next = torch.minimum(q_next, self.online(next_ids, next_actions))
        return rewards + self.gamma * (1.0 - done).unsqueeze(1) * q_next

    def step(
        self,
        ids: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        done: torch.Tensor,
        next_ids: torch.Tensor,
        next_actions: torch.Tensor,
    ) -> dict[str, float]:
        """One TD update on a batch of B transitions; returns td_loss (summed over tasks), q_mean, target_mean."""
        self.online.train()
        target = self.td_target(rewards, done, next_ids, next_actions)
        q = self.online(ids, actions)
        loss = (q - target).square().mean(0).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        if self.steps % self.every == 0:
            self.soft_update()
        values = torch.stack([loss.detach(), q.detach().mean(), target.mean()]).tolist()  # one host sync
        return dict(zip(("td_loss", "q_mean", "target_mean"), values, strict=True))

    @torch.no_grad()
    def soft_update(self) -> None:
        """θ' ← τθ + (1−τ)θ' for every parameter (one fused foreach kernel per dtype)."""
        torch._foreach_lerp_(list(self.target.parameters()), list(self.online.parameters()), self.tau)

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
