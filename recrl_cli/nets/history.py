"""Session-history encoders: what the user did before the row, pooled into a fixed-width state.

The prepared data append 2H columns to the F categorical fields of a row (``data/tensors.py``): the item ids of
the visitor's H most recent earlier rows (this session and earlier sessions; left-padded, the most recent last)
and their label patterns *as of the row's time* (0 = padding, 1 + Σ_t 2^t·[task t's event happened before the
row]). :class:`HistoryPooling` turns them into [B, 2D]: the pooled history vector p and p ⊙ e_target. The
product term is there because the planted (and the real) signal is an affinity between the user's taste and the
target item, a dot product that an MLP over the concatenation [e_target, p] learns slowly; with p ⊙ e_target the
first layer only has to sum it.

Modes (``model.history``): ``mean`` (masked mean) and ``attention`` (target attention: softmax over the history
of ⟨e_j, W e_target⟩/√D, as DIN but with a bilinear score). Shapes: B batch, H history length, D embedding width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

HISTORY_MODES = ("off", "mean", "attention")
LABEL_CODES = 16  # label patterns 0..15: room for 3 tasks (1 + 2^3 = 9 codes) with margin


class HistoryPooling(nn.Module):
    """[target [B, D], history item embeddings [B, H, D], label codes [B, H]] -> [B, 2D].

    Each history row is g[code]·e_item + c[code]: a learned weight per label pattern (a carted or bought item
    says more about taste than a viewed one) and a label-pattern vector. Rows with code 0 are padding.
    """

    def __init__(self, embed_dim: int, mode: str) -> None:
        super().__init__()
        if mode not in HISTORY_MODES[1:]:
            raise ValueError(f"history mode must be one of {HISTORY_MODES[1:]}, got {mode!r}")
        self.mode = mode
        self.embed_dim = embed_dim
        self.code = nn.Embedding(LABEL_CODES, embed_dim)
        nn.init.normal_(self.code.weight, std=0.01)
        self.gate = nn.Parameter(torch.ones(LABEL_CODES))
        self.query = nn.Linear(embed_dim, embed_dim, bias=False) if mode == "attention" else None

    @property
    def output_dim(self) -> int:
        return 2 * self.embed_dim

    def forward(self, target: torch.Tensor, items: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        codes = codes.clamp(0, LABEL_CODES - 1)
        mask = codes > 0  # [B, H]
        rows = self.gate[codes].unsqueeze(-1) * items + self.code(codes)  # [B, H, D]
        if self.query is None:
            weights = mask.to(rows.dtype) / mask.sum(1, keepdim=True).clamp_min(1)
        else:
            scores = torch.einsum("bhd,bd->bh", rows, self.query(target)) / math.sqrt(self.embed_dim)
            scores = scores.masked_fill(~mask, float("-inf"))
            # A row without history has only -inf scores (softmax NaN): its weights are 0, its pooled vector 0.
            weights = torch.where(mask, torch.softmax(scores, dim=1), torch.zeros_like(scores))
        pooled = torch.einsum("bh,bhd->bd", weights, rows)  # [B, D]
        return torch.cat((pooled, pooled * target), dim=1)
