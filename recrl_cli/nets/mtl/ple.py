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
    """One CGC level: T task features and the shared one -> [T+1, B, d] ([T, B, d] at the last level).

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
        """feats: the embedding [B, in] at the first level, else [T+1, B, in] -> [T+1, B, d] ([T, B, d] at
        the last level). The result is a transposed view of one bmm output (no copy)."""
        tasks = self.num_tasks
        if self.first:  # every group and gate reads the same embedding
            experts = self.experts(feats.unsqueeze(0))  # [(T+1)·k, B, d]
            gate_inputs = (feats,) * (tasks + 1)
        else:
            experts = self.experts(feats)
            # One unbind: its backward stacks the T+1 gradients once, where T+1 separate index ops would
            # each scatter into a zero-filled [T+1, B, in] tensor and then be summed.
            gate_inputs = feats.unbind(0)
        return mix_experts(self._gate_matrix(gate_inputs), experts)

    def _gate_matrix(self, gate_inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Softmax gates of all mixtures as one block-sparse matrix [B, M, (T+1)·k], M = T (+1 shared).

        Row t holds task t's 2k weights at its own k experts' and the k shared experts' columns (zeros
        elsewhere), the shared row all (T+1)·k weights. Then ONE bmm mixes every output, and the expert
        tensor's gradient arrives whole, instead of per-slice gradients that autograd zero-pads to
        [(T+1)·k, B, d] and adds up. The whole mixing is M·(T+1)·k·d MACs per sample, zeros included:
        under 0.5 % of the experts' matmuls at the reference sizes.
        """
        tasks, k = self.num_tasks, self.k
        rows = []
        for t in range(tasks):
            gate = torch.softmax(self.task_gates[t](gate_inputs[t]), dim=-1)  # [B, 2k]
            zeros_before = gate.new_zeros(gate.shape[0], t * k)
            zeros_after = gate.new_zeros(gate.shape[0], (tasks - 1 - t) * k)
            rows.append(torch.cat((zeros_before, gate[:, :k], zeros_after, gate[:, k:]), dim=1))
        if self.shared_gate is not None:
            rows.append(torch.softmax(self.shared_gate(gate_inputs[tasks]), dim=-1))  # [B, (T+1)·k]
        return torch.stack(rows, dim=1)


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
        self.embedding = FeatureEmbedding(cardinalities, cfg.embed_dim, cfg.history)
        in_dims = (self.embedding.output_dim, *cfg.bottom_dims[:-1])
        n = len(cfg.bottom_dims)
        self.levels = nn.ModuleList(
            ExtractionLevel(self.num_tasks, k, a, b, cfg.dropout, first=i == 0, last=i == n - 1)
            for i, (a, b) in enumerate(zip(in_dims, cfg.bottom_dims, strict=True))
        )
        self.towers = MLPBank(self.num_tasks, 1, cfg.bottom_dim, cfg.tower_dims, cfg.dropout, out_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor [B, F] -> per-task logits [B, T]."""
        feats = self.embedding(x)  # [B, F·D]: level 0 reads it once for every group
        for level in self.levels:
            feats = level(feats)
        return tower_logits(self.towers, feats)  # the last level returns only the T task features
