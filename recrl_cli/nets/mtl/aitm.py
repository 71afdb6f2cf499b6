"""AITM: per-task bottoms with attention-based information transfer from task t−1 to task t.

Transfer (reference wiring): p = g_{t−1}(h_{t−1}), q = h_t; V, K, Q = Linear(d→d) (shared by all transfers)
over the two stacked items [p; q]; h_t ← Σ_i softmax_i(⟨K_i, Q_i⟩/√d)·V_i, using the already-updated h_{t−1}.
There is no calibration (label-constraint) loss, as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from recrl_cli.nets.layers import FeatureEmbedding, MLPBank, tower_logits
from recrl_cli.nets.mtl.config import MTLConfig, check_num_tasks


class AITM(nn.Module):
    """Embedding → T bottoms (one bank) → sequential transfer → T towers → logits [B, T]."""

    def __init__(self, cardinalities: Sequence[int], num_tasks: int, cfg: MTLConfig) -> None:
        super().__init__()
        self.num_tasks = check_num_tasks(num_tasks, "aitm")
        d = cfg.bottom_dim
        self.scale = 1.0 / math.sqrt(d)
        self.embedding = FeatureEmbedding(cardinalities, cfg.embed_dim, cfg.history)
        self.bottoms = MLPBank(1, self.num_tasks, self.embedding.output_dim, cfg.bottom_dims, cfg.dropout)
        self.transfer = nn.ModuleList(nn.Linear(d, d) for _ in range(self.num_tasks - 1))
        # With one task nothing is transferred; leave the attention out so every parameter is used.
        names = ("value", "key", "query") if self.num_tasks > 1 else ()
        self.attention = nn.ModuleDict({n: nn.Linear(d, d) for n in names})
        self.towers = MLPBank(self.num_tasks, 1, d, cfg.tower_dims, cfg.dropout, out_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor [B, F] -> per-task logits [B, T]."""
        feats = list(self.bottoms(self.embedding(x).unsqueeze(0)).unbind(0))  # T × [B, d]
        for t in range(1, self.num_tasks):
            items = torch.stack((self.transfer[t - 1](feats[t - 1]), feats[t]), dim=1)  # [B, 2, d]
            v, k, q = (self.attention[n](items) for n in ("value", "key", "query"))
            weights = torch.softmax((k * q).sum(-1, keepdim=True) * self.scale, dim=1)  # [B, 2, 1]
            feats[t] = (weights * v).sum(1)  # [B, d]
        return tower_logits(self.towers, torch.stack(feats))
