"""RL agents on the whole-session environment (hac_kuaisim.md §5): HAC and the DDPG, TD3 and A2C baselines,
all on one hyper-action policy backbone, with a device replay buffer and the train/evaluate loop.

Build an agent with :func:`make_agent` and train it with :class:`recrl_cli.agents.loop.AgentLoop` (``warm_up``,
then ``step`` per iteration, then ``result``), as ``recrl train <agent>`` does.
"""

from __future__ import annotations

from recrl_cli.agents.a2c import A2C
from recrl_cli.agents.config import AgentRunConfig, agent_config
from recrl_cli.agents.ddpg import DDPG
from recrl_cli.agents.hac import HAC
from recrl_cli.agents.td3 import TD3

AGENTS = {"hac": HAC, "ddpg": DDPG, "td3": TD3, "a2c": A2C}


def make_agent(name: str, env, cfg: AgentRunConfig | None = None, seed: int = 0):
    """The agent ``name`` (hac, ddpg, td3, a2c) for ``env``, with that agent's fixed defaults unless ``cfg``."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose from {', '.join(AGENTS)}")
    return AGENTS[name](env, cfg or agent_config(name), seed=seed)


__all__ = ["A2C", "AGENTS", "DDPG", "HAC", "TD3", "AgentRunConfig", "agent_config", "make_agent"]
