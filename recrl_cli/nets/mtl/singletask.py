"""SingleTask: T independent networks (own embedding, bottom and tower each); nothing is shared."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recrl_cli.nets.mtl.config import MTLConfig, check_num_tasks
from recrl_cli.nets.mtl.sharedbottom import SharedBottom


class SingleTask(nn.Module):
    """Per task a one-task SharedBottom (embedding → bottom → tower); their logits side by side [B, T]."""

    def __init__(self, cardinalities: Sequence[int], num_tasks: int, cfg: MTLConfig) -> None:
        super().__init__()
        self.num_tasks = check_num_tasks(num_tasks, "singletask")
        self.nets = nn.ModuleList(SharedBottom(cardinalities, 1, cfg) for _ in range(self.num_tasks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor [B, F] -> per-task logits [B, T]."""
        return torch.cat([net(x) for net in self.nets], dim=1)
