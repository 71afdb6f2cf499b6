"""What every algorithm provides, and the registry entry that describes it.

Glossary (shapes in docstrings use it): B batch rows, T tasks, F feature fields, D embedding
width, N rows of a split, L session length. Stage / epoch / step are defined in
:mod:`recrl_cli.training.trainer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from recrl_cli.config.schema import RunConfig
from recrl_cli.data.tensors import PreparedData
from recrl_cli.training.trainer import Stage


class Algorithm(Protocol):
    """A trainable algorithm on a prepared dataset."""

    def stages(self) -> list[Stage]:
        """The phases to run, in order."""
        ...

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Per-task probabilities [N, T] for encoded features [N, F] (eval mode, no grad)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: weights and optimizer states."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export(self) -> dict[str, Any]:
        """What a saved model needs to score data again (weights + architecture config)."""
        ...


Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AlgoSpec:
    """One registry row.

    Attributes:
        name: what users type (``recrl train <name>``).
        config_cls: dataclass of the ``model`` section (its fields and help feed ``recrl algos``).
        build: ``(cfg, data, device) -> Algorithm``.
        load_predictor: ``(exported, device) -> predict function`` for ``recrl evaluate``.
        summary: one line for listings.
        family: grouping shown by ``recrl algos`` ("mtl base", "rl").
    """

    name: str
    config_cls: type
    build: Callable[[RunConfig, PreparedData, torch.device], Algorithm]
    load_predictor: Callable[[dict[str, Any], torch.device], Predictor]
    summary: str
    family: str
