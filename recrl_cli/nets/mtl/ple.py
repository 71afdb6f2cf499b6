"""PLE (Progressive Layered Extraction): stacked CGC levels with shared and task-specific experts.

Wiring follows the reference (MTReclib ``ple.py`` as used by RMTL): one extraction level per bottom width; at
each level ``expert_num/2`` shared experts read the shared feature and ``expert_num/2`` specific experts per
task read that task's feature; each is a one-layer MLP to the level's width. Task t's gate (over its specific
and the shared experts) reads task t's feature; the shared gate (over all experts) reads the shared feature
and feeds the next level's shared input. The last level has no shared gate (nothing would read it; the
reference builds one and never uses it). At level 0 every feature is the embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recrl_cli.errors import ConfigError
from recrl_cli.nets.layers import FeatureEmbedding, MLPBank, mix_experts, tower_logits
from recrl_cli.nets.mtl.config import MTLConfig, check_num_tasks


class ExtractionLevel(nn.Module):
    """One CGC level: features [T+1, B, in] (T task features, then the shared one) -> [T+1, B, d]
    ([T, B, d] at the last level).

    The (T+1)·k experts live in one bank ordered as groups: task 0's k specific experts, ..., task T−1's, then
    the k shared ones. At level 0 all groups read the same embedding, so the bank takes one [1, B, in] input.
    """

    def __init__(
        self, num_tasks: int, k: int, in_dim: int, out_dim: int, dropout: float, *, first: bool, last: bool
    ) -> None:
        super().__init__()
        self.num_tasks, self.k, self.first = num_tasks, k, first
        groups = num_tasks + 1
        if first:
            self.experts = MLPBank(1, groups * k, in_dim, (out_dim,), dropout)
        else:
            self.experts = MLPBank(groups, k, in_dim, (out_dim,), dropout)
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, 2 * k) for _ in range(num_tasks))
        self.shared_gate = None if last else nn.Linear(in_dim, groups * k)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats [T+1, B, in] -> [T+1, B, d], or [T, B, d] when this is the last level."""
        k, tasks = self.k, self.num_tasks
        experts = self.experts(feats[:1] if self.first else feats)  # [(T+1)·k, B, d]
        shared = experts[tasks * k :]  # [k, B, d]
        out = []
        for t in range(tasks):
            gate = torch.softmax(self.task_gates[t](feats[t]), dim=-1).unsqueeze(1)  # [B, 1, 2k]
            # Two partial mixes instead of concatenating specific+shared experts: no [2k, B, d] copy.
            specific = experts[t * k : (t + 1) * k]  # [k, B, d]
            mixed = mix_experts(gate[..., :k], specific) + mix_experts(gate[..., k:], shared)
            out.append(mixed[0])
        if self.shared_gate is not None:
            gate = torch.softmax(self.shared_gate(feats[tasks]), dim=-1).unsqueeze(1)  # [B, 1, (T+1)·k]
            out.append(mix_experts(gate, experts)[0])
        return torch.stack(out)


class PLE(nn.Module):
    """Embedding → len(bottom_dims) extraction levels → T towers → logits [B, T]."""

    def __init__(self, cardinalities: Sequence[int], num_tasks: int, cfg: MTLConfig) -> None:
        super().__init__()
        self.num_tasks = check_num_tasks(num_tasks, "ple")
        if cfg.expert_num % 2:
            raise ConfigError(
                f"ple splits expert_num into shared and specific halves; got odd {cfg.expert_num}"
            )
        k = cfg.expert_num // 2
        self.embedding = FeatureEmbedding(cardinalities, cfg.embed_dim)
        in_dims = (self.embedding.output_dim, *cfg.bottom_dims[:-1])
        n = len(cfg.bottom_dims)
        self.levels = nn.ModuleList(
            ExtractionLevel(self.num_tasks, k, a, b, cfg.dropout, first=i == 0, last=i == n - 1)
            for i, (a, b) in enumerate(zip(in_dims, cfg.bottom_dims, strict=True))
        )
        self.towers = MLPBank(self.num_tasks, 1, cfg.bottom_dim, cfg.tower_dims, cfg.dropout, out_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor [B, F] -> per-task logits [B, T]."""
        emb = self.embedding(x)  # [B, F·D]
        feats = emb.expand(self.num_tasks + 1, *emb.shape)  # [T+1, B, F·D], no copy
        for level in self.levels:
            feats = level(feats)
        return tower_logits(self.towers, feats)  # the last level returns only the T task features
