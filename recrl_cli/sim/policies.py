"""Calibration policies of the whole-session environment (hac_kuaisim.md §6.5): the floor and the ceiling that
agents are reported against (an agent's score = its fraction of the oracle − random gap).

Both return LongTensor [B, K] candidate indices in [0, N) with K distinct items per user.
"""

from __future__ import annotations

import torch

from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.sim.metrics import SessionMetrics


def random_slate(env: WholeSessionEnv, generator: torch.Generator | None = None) -> torch.Tensor:
    """K distinct items per user, uniformly at random (the top-K of i.i.d. uniform keys is a uniform K-subset)."""
    keys = torch.rand(env.batch, env.num_items, generator=generator, device=env.device)
    return keys.topk(env.slate, dim=1).indices


def oracle_greedy(env: WholeSessionEnv, generator: torch.Generator | None = None) -> torch.Tensor:
    """The K items of highest immediate expected reward under the env's own response model (the URM oracle:
    top-K by σσ(click logit) in faithful mode). ``generator`` is unused; it keeps the policies interchangeable."""
    return env.expected_reward().topk(env.slate, dim=1).indices


POLICIES = {"random": random_slate, "oracle": oracle_greedy}


def run_policy(env: WholeSessionEnv, policy, steps: int, seed: int = 0) -> SessionMetrics:
    """Run ``policy(env, generator)`` for ``steps`` env steps from a reset; returns the collected metrics."""
    generator = torch.Generator(env.device).manual_seed(seed)
    metrics = SessionMetrics()
    env.reset()
    for _ in range(steps):
        metrics.update(env.step(policy(env, generator)))
    return metrics
