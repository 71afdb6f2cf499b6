"""The offline-learner contract and what every learner shares (targets, optimiser steps, checkpoint state).

A learner owns its networks and optimisers and does one gradient step per :meth:`OfflineLearner.update`; the
caller owns iteration, sampling (:class:`~recrl_cli.offline.batch.TransitionStore`), logging and evaluation.

Shapes: n rows, S state width, A action width, Q reward components.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from recrl_cli.errors import ConfigError
from recrl_cli.offline.batch import TransitionBatch


class OfflineLearner(Protocol):
    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """One gradient step on ``batch``; returns scalar logs (losses, mean Q, ...)."""
        ...

    def act(self, state: Tensor) -> Tensor:
        """The deterministic policy: [n, S] -> [n, A] in [−1, 1], no gradient."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def adam(params, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr)


def step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """zero_grad, backward, step: one optimiser update of ``loss``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """θ' ← rate·θ + (1 − rate)·θ' for every parameter (Polyak averaging)."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, rate)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A target network: a deep copy with gradients off."""
    import copy

    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Initialise networks under ``seed`` without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def check_weights(reward_weights: Tensor | tuple[float, ...], device: torch.device) -> Tensor:
    """The reward weights as a float32 [Q] tensor on ``device``; ConfigError if empty or not finite."""
    w = torch.as_tensor(reward_weights, dtype=torch.float32, device=device).reshape(-1)
    if w.numel() == 0 or not bool(torch.isfinite(w).all()):
        raise ConfigError(
            f"reward weights must be a non-empty vector of finite numbers, got {reward_weights!r}"
        )
    return w


def check_positive(
    section: str, cfg: object, ints: tuple[str, ...] = (), floats: tuple[str, ...] = ()
) -> None:
    """ConfigError unless each named field is a positive int (``ints``) or a positive finite float."""
    for name in ints:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{section}.{name} must be a positive integer, got {value!r}")
    for name in floats:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ConfigError(f"{section}.{name} must be a positive number, got {value!r}")


def check_unit(section: str, cfg: object, names: tuple[str, ...]) -> None:
    """ConfigError unless each named field lies in [0, 1]."""
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{section}.{name} must be in [0, 1], got {value!r}")


class LearnerBase:
    """Checkpoint state and the generator shared by the learners. Subclasses fill ``self.nets`` (name ->
    module, targets included), ``self.optims`` (name -> optimiser) and implement ``update`` and ``act``."""

    name = "base"

    def __init__(self, device: torch.device, seed: int) -> None:
        self.device = torch.device(device)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.updates = 0
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}

    def trainable(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of every parameter an optimiser updates (targets excluded)."""
        for net_name, net in self.nets.items():
            for p_name, p in net.named_parameters():
                if p.requires_grad:
                    yield f"{net_name}.{p_name}", p

    def state_dict(self) -> dict[str, Any]:
        return {"nets": {k: v.state_dict() for k, v in self.nets.items()},
                "optims": {k: v.state_dict() for k, v in self.optims.items()},
                "updates": self.updates, "generator": self.generator.get_state()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])
        for k, opt in self.optims.items():
            opt.load_state_dict(state["optims"][k])
        self.updates = int(state["updates"])
        self.generator.set_state(state["generator"].cpu())

    def randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    def rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device)


def logs(**values: Tensor | float) -> dict[str, float]:
    """Scalar logs as Python floats (one device sync per value, after the step)."""
    return {k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in values.items()}
