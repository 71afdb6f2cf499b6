"""Training and evaluation of an agent on the whole-session environment (hac_kuaisim.md §5.4, §9 item 5).

Training: ``warmup_steps`` env steps with random hyper-actions (ε = 1, no gradient steps) fill the replay
buffer; then ``iterations`` of one env step (exploration on, the agent's ε schedule) followed by
``updates_per_step`` gradient steps on batches of ``AgentRunConfig.batch_size``.

Evaluation (which KuaiSim lacks): the env's generator is re-seeded with ``eval_seed`` and reset, so fresh users
are drawn; the agent acts with exploration off for ``eval_steps`` steps. The random-slate and oracle-greedy
calibration policies run from the same re-seed (the same initial users), and the agent's total reward is
reported as its fraction of the oracle − random gap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from recrl_cli.agents.base import HyperActorAgent
from recrl_cli.agents.buffer import ReplayBuffer
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.sim.metrics import SessionMetrics
from recrl_cli.sim.policies import oracle_greedy, random_slate

ProgressFn = Callable[[str, int, int], None]  # (label, done, total), as the trainer's
REPORTED = ("depth", "avg_reward", "total_reward", "coverage", "ild", "ild_pairwise")


@dataclass(frozen=True)
class LoopConfig:
    """Protocol sizes (§5.4: 100 warm-up steps, 2,000 iterations of one env step + one gradient step)."""

    warmup_steps: int = 100
    iterations: int = 2000
    updates_per_step: int = 1
    eval_steps: int = 200
    eval_seed: int = 1_000_003  # far from training seeds: evaluation users differ from training users
    window: int = 10  # KuaiSim's report window over the last training steps
    seed: int = 0  # the buffer sampler's seed

    def __post_init__(self) -> None:
        if self.warmup_steps < 1 or self.iterations < 0 or self.eval_steps < 1 or self.updates_per_step < 0:
            raise ValueError(
                "need warmup_steps >= 1, iterations >= 0, eval_steps >= 1, updates_per_step >= 0"
            )


@dataclass(frozen=True)
class AgentResult:
    """train: the last-window training metrics (exploration on, as KuaiSim reports); losses: the mean of each
    loss over the last ``window`` updates; eval / random / oracle: evaluation metrics (means over the eval
    steps) of the agent and the two calibration policies; gap_fraction: (agent − random) / (oracle − random)
    of the evaluation total reward (NaN when oracle = random)."""

    train: dict[str, float]
    losses: dict[str, float]
    eval: dict[str, float]
    random: dict[str, float]
    oracle: dict[str, float]
    gap_fraction: float


def _reported(metrics: SessionMetrics, window: int) -> dict[str, float]:
    summary = metrics.summary(window)
    return {k: summary[k] for k in REPORTED}


def evaluate(
    env: WholeSessionEnv, policy: Callable[[], torch.Tensor], steps: int, seed: int
) -> dict[str, float]:
    """Re-seed and reset ``env``, run ``policy()`` (reads the env, returns a slate [B, K]) for ``steps`` steps;
    the means over all steps of the reported metrics. Depth and total reward come from users who left."""
    env.generator.manual_seed(seed)
    env.reset()
    metrics = SessionMetrics()
    for _ in range(steps):
        metrics.update(env.step(policy()))
    return _reported(metrics, steps)


def evaluate_agent(agent: HyperActorAgent, env: WholeSessionEnv, steps: int, seed: int) -> dict[str, float]:
    """The agent with exploration off (eval mode, deterministic given the env's seed)."""
    return evaluate(env, lambda: agent.act(env.observation(), explore=False), steps, seed)


def calibration(env: WholeSessionEnv, steps: int, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """(random, oracle) evaluation metrics on the users of ``seed``."""
    gen = torch.Generator(env.device).manual_seed(seed)
    rand = evaluate(env, lambda: random_slate(env, gen), steps, seed)
    return rand, evaluate(env, lambda: oracle_greedy(env), steps, seed)


def gap_fraction(agent: float, random: float, oracle: float) -> float:
    """(agent − random) / (oracle − random); NaN when the gap is 0 or not finite."""
    gap = oracle - random
    return (agent - random) / gap if gap != 0 and math.isfinite(gap) else float("nan")


class AgentLoop:
    """The training loop one env step at a time (what ``train_agent`` and the CLI stage both drive).

    :meth:`reset` resets the env (the buffer keeps what it holds); :meth:`step` takes one env step and, unless
    ``warm``, ``updates_per_step`` gradient steps; :meth:`result` runs the separate evaluation.
    """

    def __init__(self, agent: HyperActorAgent, env: WholeSessionEnv, cfg: LoopConfig) -> None:
        self.agent, self.env, self.cfg = agent, env, cfg
        self.buffer = ReplayBuffer(agent.cfg.buffer_size, env.device)
        self.sampler = torch.Generator(env.device).manual_seed(cfg.seed)
        self.metrics, self.losses = SessionMetrics(), []
        self.obs = None

    def reset(self) -> None:
        self.obs = self.env.reset()

    def state_dict(self) -> dict[str, Any]:
        """Everything the next step depends on besides the agent: the buffer, the sampler, the env's users
        and generator, and the training metrics and losses so far (exact mid-run resume)."""
        return {"buffer": self.buffer.state_dict(), "sampler": self.sampler.get_state(),
                "env": self.env.state_dict(), "metrics": self.metrics.state_dict(),
                "losses": [{k: v.cpu() for k, v in d.items()} for d in self.losses],
                "started": self.obs is not None}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.env.device
        self.buffer.load_state_dict(state["buffer"])
        self.sampler.set_state(state["sampler"])
        self.env.load_state_dict(state["env"])
        self.metrics.load_state_dict(state["metrics"], dev)
        self.losses = [{k: v.to(dev) for k, v in d.items()} for d in state["losses"]]
        self.obs = self.env.observation() if state["started"] else None

    def step(self, warm: bool) -> dict[str, torch.Tensor]:
        """One env step (random hyper-actions when ``warm``) and its gradient steps; the last update's losses."""
        agent, env = self.agent, self.env
        if self.obs is None:
            self.reset()
        action = agent.select(self.obs, explore=True, epsilon=1.0 if warm else None)
        result = env.step(action.slate)
        self.buffer.add(self.obs, action.hyper, action.slate, result.reward, result.responses, result.done,
                        result.next_observation)  # fmt: skip
        self.metrics.update(result)
        self.obs = env.observation()  # leavers already replaced by fresh users
        last: dict[str, torch.Tensor] = {}
        if not warm:
            for _ in range(self.cfg.updates_per_step):
                last = agent.update(self.buffer.sample(agent.cfg.batch_size, self.sampler))
                self.losses.append(last)
            self.losses = self.losses[-self.cfg.window :]
        return {"reward": result.reward.mean(), **last}

    def loss_means(self) -> dict[str, float]:
        """The mean of each loss over the last ``window`` updates (TD3 reports its policy loss on delayed
        steps only)."""
        names = dict.fromkeys(k for d in self.losses for k in d)
        return {k: float(torch.stack([d[k] for d in self.losses if k in d]).mean()) for k in names}

    def result(self) -> AgentResult:
        """Evaluate the agent and the calibration policies (re-seeds and resets the env)."""
        cfg, env = self.cfg, self.env
        evaluation = evaluate_agent(self.agent, env, cfg.eval_steps, cfg.eval_seed)
        rand, oracle = calibration(env, cfg.eval_steps, cfg.eval_seed)
        self.obs = None  # the env was reset by the evaluation
        return AgentResult(train=_reported(self.metrics, cfg.window), losses=self.loss_means(), eval=evaluation,
                           random=rand, oracle=oracle,
                           gap_fraction=gap_fraction(evaluation["total_reward"], rand["total_reward"],
                                                     oracle["total_reward"]))  # fmt: skip


def train_agent(agent: HyperActorAgent, env: WholeSessionEnv, cfg: LoopConfig,
                progress: ProgressFn | None = None) -> AgentResult:  # fmt: skip
    """Warm-up, interleaved env and gradient steps, then the separate evaluation; see the module docstring."""
    loop = AgentLoop(agent, env, cfg)
    loop.reset()
    total = cfg.warmup_steps + cfg.iterations
    for t in range(total):
        warm = t < cfg.warmup_steps
        loop.step(warm)
        if progress is not None:
            progress("warm-up" if warm else "train", t + 1, total)
    result = loop.result()
    if progress is not None:
        progress("evaluate", 1, 1)
    return result
