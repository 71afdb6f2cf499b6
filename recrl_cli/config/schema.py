"""The sections every run shares: where the data are and how the one training loop behaves.

A run's resolved configuration is a :class:`RunConfig`: the algorithm name plus three sections,
``data``, ``train`` and ``model`` (the algorithm's own hyperparameters, a dataclass chosen by
the registry). Every field has a default and a help string (see :func:`recrl_cli.config.fields.param`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from recrl_cli.config.fields import param
from recrl_cli.config.monitor import check_monitor
from recrl_cli.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Which prepared dataset a run reads."""

    dataset: str = param(
        "retailrocket", help="Dataset name (recorded in MLflow).", choices=("retailrocket", "kuairand")
    )
    prepared_dir: str = param(
        "datasets/prepared/retailrocket",
        help="Directory written by `recrl prepare` (parquet splits + manifest.json).",
    )


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the training loop shared by every algorithm."""

    epochs: int = param(20, help="Maximum number of passes over the training split (per stage).")
    max_steps: int = param(0, help="Stop a stage after this many gradient steps (0 = no limit).")
    batch_size: int = param(2048, help="Rows per gradient step.")
    eval_batch_size: int = param(65536, help="Rows per forward pass when scoring a split.")
    lr: float = param(1e-3, help="Adam learning rate.")
    weight_decay: float = param(1e-6, help="Adam weight decay (L2).")
    patience: int = param(2, help="Early stopping: epochs without validation improvement (0 = never stop).")
    monitor: str = param(
        "mean/auc",
        help="Validation metric to early-stop on: <task or mean>/<auc|gauc|logloss|s_logloss> (AUCs are "
        "maximised, loglosses minimised).",
    )
    calibration_guard: bool = param(
        True,
        help="Early stopping never keeps an epoch whose validation logloss is worse than the constant "
        "predictor's (training rate) on any task.",
    )
    shuffle: bool = param(True, help="Shuffle training rows every epoch (the reference code does not).")
    checkpoint_every: int = param(
        200, help="Write a resumable checkpoint every N steps (0 = epoch ends only)."
    )
    seed: int = param(2022, help="Seed for weights, shuffling and dropout.")
    device: str = param(
        "auto", help="auto (CUDA when available), cpu or cuda.", choices=("auto", "cpu", "cuda")
    )
    threads: int = param(0, help="CPU threads for torch (0 = torch's default).")

    def __post_init__(self) -> None:
        check_monitor(self.monitor)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("max_steps", "patience", "checkpoint_every", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")


@dataclass(frozen=True)
class RunConfig:
    """A fully resolved run: algorithm name and its three config sections."""

    algo: str
    data: DataConfig
    train: TrainConfig
    model: Any  # the algorithm's config dataclass

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (tuples kept), e.g. for JSON artifacts."""
        return {
            "algo": self.algo,
            "data": _as_dict(self.data),
            "train": _as_dict(self.train),
            "model": _as_dict(self.model),
        }


def _as_dict(section: Any) -> dict[str, Any]:
    return {f.name: getattr(section, f.name) for f in fields(section)}
