"""Mixture-of-experts bases: OMoE (one gate shared by all tasks) and MMoE (one gate per task).

Both run ``expert_num`` expert MLPs (each the bottom MLP) on the embedding as one batched bank, mix them with
softmax gates ``Linear(F·D → E)`` and feed the mixture(s) to per-task towers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recrl_cli.nets.layers import FeatureEmbedding, MLPBank, mix_experts, tower_logits
from recrl_cli.nets.mtl.config import MTLConfig, check_num_tasks


class MixtureOfExperts(nn.Module):
    """E experts [E, B, d] mixed by M softmax gates (M = 1 for OMoE, T for MMoE) → T towers → logits [B, T].

    All M gates are one ``Linear(F·D → M·E)``, which equals M separate ``Linear(F·D → E)`` gates.
    """

    def __init__(
        self, cardinalities: Sequence[int], num_tasks: int, cfg: MTLConfig, *, gate_per_task: bool
    ) -> None:
        super().__init__()
        name = "mmoe" if gate_per_task else "omoe"
        self.num_tasks = check_num_tasks(num_tasks, name)
        self.num_experts = cfg.expert_num
        self.num_gates = self.num_tasks if gate_per_task else 1
        self.embedding = FeatureEmbedding(cardinalities, cfg.embed_dim, cfg.history)
        in_dim = self.embedding.output_dim
        self.experts = MLPBank(1, self.num_experts, in_dim, cfg.bottom_dims, cfg.dropout)
        self.gates = nn.Linear(in_dim, self.num_gates * self.num_experts)
        self.towers = MLPBank(self.num_tasks, 1, cfg.bottom_dim, cfg.tower_dims, cfg.dropout, out_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor [B, F] -> per-task logits [B, T]."""
        emb = self.embedding(x)  # [B, F·D]
        experts = self.experts(emb.unsqueeze(0))  # [E, B, d]
        gates = torch.softmax(self.gates(emb).view(-1, self.num_gates, self.num_experts), dim=-1)  # [B, M, E]
        mixed = mix_experts(gates, experts)  # [M, B, d]
        return tower_logits(self.towers, mixed.expand(self.num_tasks, -1, -1))


class OMoE(MixtureOfExperts):
    """One-gate MoE: a single softmax gate shared by all tasks."""

    def __init__(self, cardinalities: Sequence[int], num_tasks: int, cfg: MTLConfig) -> None:
        super().__init__(cardinalities, num_tasks, cfg, gate_per_task=False)


class MMoE(MixtureOfExperts):
    """Multi-gate MoE: one softmax gate per task."""

    def __init__(self, cardinalities: Sequence[int], num_tasks: int, cfg: MTLConfig) -> None:
        super().__init__(cardinalities, num_tasks, cfg, gate_per_task=True)
