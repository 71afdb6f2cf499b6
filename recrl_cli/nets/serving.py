"""The scoring model recrl logs in MLflow's PyTorch flavour: feature ids [B, F] → probabilities [B, T].

An MTL base returns logits and reads integer ids; the wrapper applies the sigmoid and casts its input, so that
``mlflow.pytorch.load_model(...)(ids)`` and the pyfunc ``predict`` (which hands a DataFrame over as floats) give
the probabilities recrl evaluates. recrl's own reload path stays ``model.pt`` (weights only).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

EXAMPLE_ROWS = 5  # rows of the input example stored with the model (and used to infer its signature)


class RowScorer(nn.Module):
    """``features [B, F]`` (ids of any numeric dtype) → ``probabilities [B, T]`` of one MTL base."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.base(features.long()))


def scoring_model(base: nn.Module, rows: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """A CPU copy of ``base`` wrapped as :class:`RowScorer` (eval mode), and the first rows of ``rows`` [N, F] as
    its input example; the training copy is left where it is."""
    model = RowScorer(copy.deepcopy(base)).cpu().eval()
    return model, rows[:EXAMPLE_ROWS].detach().cpu().clone()
