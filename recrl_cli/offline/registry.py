"""The offline learners: one explicit line per learner (name -> config, builder, summary).

``build(cfg, state_dim, action_dim, reward_weights, device, seed)`` returns an
:class:`~recrl_cli.offline.base.OfflineLearner`; ``reward_weights`` [Q] turn the reward components into the
baselines' scalar reward (reward @ reward_weights) and weight UnifiedRL's critic sets in its actor loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recrl_cli.errors import RegistryError
from recrl_cli.offline.base import OfflineLearner
from recrl_cli.offline.bcq import BCQConfig, build_bcq
from recrl_cli.offline.cql_sac import CQLSACConfig, build_cql_sac
from recrl_cli.offline.ddpg import DDPGConfig, build_ddpg
from recrl_cli.offline.iql import IQLConfig, build_iql
from recrl_cli.offline.td3bc import TD3BCConfig, build_td3bc
from recrl_cli.offline.unifiedrl import UnifiedRLConfig, build_unifiedrl


@dataclass(frozen=True)
class LearnerSpec:
    name: str
    config: type
    build: Callable[..., OfflineLearner]
    summary: str


LEARNERS: dict[str, LearnerSpec] = {
    "unifiedrl": LearnerSpec("unifiedrl", UnifiedRLConfig, build_unifiedrl,
                             "UnifiedRL: q critic sets x m critics, bound penalty d, out-of-box target decay."),
    "ddpg": LearnerSpec("ddpg", DDPGConfig, build_ddpg, "DDPG trained offline (no constraint)."),
    "td3bc": LearnerSpec("td3bc", TD3BCConfig, build_td3bc, "TD3+BC: TD3 plus a behaviour-cloning term (α 2.5)."),
    "iql": LearnerSpec("iql", IQLConfig, build_iql, "IQL: expectile value (τ 0.7), AWR policy (β 3)."),
    "bcq": LearnerSpec("bcq", BCQConfig, build_bcq, "BCQ as BatchRL-MTF: VAE + perturbation Φ 0.15, N 10."),
    "cql_sac": LearnerSpec("cql_sac", CQLSACConfig, build_cql_sac,
                           "CQL+SAC: squashed-Gaussian SAC with the CQL(H) regulariser."),
}  # fmt: skip


def get_learner(name: str) -> LearnerSpec:
    """Look a learner up, with a one-line error listing the valid names."""
    try:
        return LEARNERS[name]
    except KeyError:
        raise RegistryError(
            f"unknown offline learner '{name}'; choose one of: {', '.join(LEARNERS)}"
        ) from None


def build_learner(name: str, state_dim: int, action_dim: int, reward_weights, device, seed: int = 0,
                  **overrides: Any) -> OfflineLearner:  # fmt: skip
    """Build learner ``name`` with its default config updated by ``overrides`` (ConfigError on bad values)."""
    spec = get_learner(name)
    return spec.build(spec.config(**overrides), state_dim, action_dim, reward_weights, device, seed)
