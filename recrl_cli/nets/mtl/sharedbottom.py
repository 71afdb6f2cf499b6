"""SharedBottom: one shared embedding and bottom MLP, then a tower per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recrl_cli.nets.layers import MLP, FeatureEmbedding, MLPBank, tower_logits
from recrl_cli.nets.mtl.config import MTLConfig, check_num_tasks


class SharedBottom(nn.Module):
    """Embedding [B, F·D] → shared bottom MLP [B, d] → T towers → logits [B, T]."""

    def __init__(self, cardinalities: Sequence[int], num_tasks: int, cfg: MTLConfig) -> None:
        super().__init__()
        self.num_tasks = check_num_tasks(num_tasks, "sharedbottom")
        self.embedding = FeatureEmbedding(cardinalities, cfg.embed_dim, cfg.history)
        self.bottom = MLP(self.embedding.output_dim, cfg.bottom_dims, cfg.dropout)
        self.towers = MLPBank(self.num_tasks, 1, cfg.bottom_dim, cfg.tower_dims, cfg.dropout, out_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor [B, F] -> per-task logits [B, T]."""
        shared = self.bottom(self.embedding(x))  # [B, d]
        return tower_logits(self.towers, shared.expand(self.num_tasks, *shared.shape))
