"""ESMM: shared embedding, separate CTR and CVR bottoms and towers; p_CTCVR = p_CTR · p_CVR.

Returns logits [B, 2]: column 0 is the CTR tower's logit, column 1 the logit of σ(t0)·σ(t1), computed in log
space so that it stays finite and exact when the probabilities are near 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recrl_cli.nets.layers import FeatureEmbedding, MLPBank, tower_logits
from recrl_cli.nets.mtl.config import MTLConfig, check_num_tasks

_LN2 = math.log(2.0)


def log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(a)) for a < 0 (Mächler 2012): expm1 near 0, log1p far from it.

    Each branch gets a harmless stand-in where it is not selected, so neither produces inf/NaN gradients.
    """
    near = a > -_LN2
    near_val = torch.log(-torch.expm1(torch.where(near, a, -1.0)))
    far_val = torch.log1p(-torch.exp(torch.where(near, -1.0, a)))
    return torch.where(near, near_val, far_val)


def product_logit(t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
    """logit(σ(t0)·σ(t1)), elementwise; finite for any finite inputs."""
    # Clamp keeps log p strictly negative: at log p = 0 (p rounds to 1) the logit would be +inf.
    log_p = (F.logsigmoid(t0) + F.logsigmoid(t1)).clamp(max=-torch.finfo(t0.dtype).tiny)
    return log_p - log1mexp(log_p)


class ESMM(nn.Module):
    """Embedding → CTR and CVR bottoms (one bank of 2 MLPs) → 2 towers → [CTR logit, CTCVR logit] [B, 2]."""

    def __init__(self, cardinalities: Sequence[int], num_tasks: int, cfg: MTLConfig) -> None:
        super().__init__()
        self.num_tasks = check_num_tasks(num_tasks, "esmm", exactly=2)
        self.embedding = FeatureEmbedding(cardinalities, cfg.embed_dim, cfg.history)
        self.bottoms = MLPBank(1, 2, self.embedding.output_dim, cfg.bottom_dims, cfg.dropout)
        self.towers = MLPBank(2, 1, cfg.bottom_dim, cfg.tower_dims, cfg.dropout, out_dim=1)

    def tower_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor [B, F] -> raw tower logits [B, 2]: (CTR logit t0, CVR logit t1)."""
        return tower_logits(self.towers, self.bottoms(self.embedding(x).unsqueeze(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor [B, F] -> [logit p_CTR, logit p_CTCVR] [B, 2]."""
        t = self.tower_logits(x)
        return torch.stack((t[:, 0], product_logit(t[:, 0], t[:, 1])), dim=1)
