"""Reference policies of the whole-session environment (hac_kuaisim.md §6.5): the floor and the ceiling that
agents are reported against (an agent's score = its fraction of the oracle − random gap), and the best constant
slate between them. :func:`recrl_cli.sim.evaluate.evaluate_policies` rolls all three out.

The policies return LongTensor [B, K] candidate indices in [0, N) with K distinct items per user.
"""

from __future__ import annotations

import torch

from recrl_cli.sim.environment import WholeSessionEnv


def random_slate(env: WholeSessionEnv, generator: torch.Generator | None = None) -> torch.Tensor:
    """K distinct items per user, uniformly at random (the top-K of i.i.d. uniform keys is a uniform K-subset)."""
    keys = torch.rand(env.batch, env.num_items, generator=generator, device=env.device)
    return keys.topk(env.slate, dim=1).indices


def oracle_greedy(env: WholeSessionEnv, generator: torch.Generator | None = None, pool: torch.Tensor | None = None
                  ) -> torch.Tensor:  # fmt: skip
    """The K items of highest immediate expected reward under the env's own response model (the URM oracle:
    top-K by σσ(click logit) in faithful mode). ``generator`` is unused; it keeps the policies interchangeable.
    ``pool`` (LongTensor [P], P ≥ K, item indices): choose among these items only (HRL-Rec's candidate pool)."""
    expected = env.expected_reward()  # [B, N]
    if pool is None:
        return expected.topk(env.slate, dim=1).indices
    return pool[expected[:, pool].topk(env.slate, dim=1).indices]


def popular_slate(mean_expected: torch.Tensor, k: int) -> torch.Tensor:
    """The best constant slate: the K items of highest mean expected reward ``mean_expected`` [N] over some
    users' states, LongTensor [K] (one slate shown to everyone)."""
    return mean_expected.topk(k).indices


POLICIES = {"random": random_slate, "oracle": oracle_greedy}
