"""Training and evaluation of an agent on the whole-session environment (hac_kuaisim.md §5.4, §9 item 5).

Training: ``warmup_steps`` env steps with random hyper-actions (ε = 1, no gradient steps) fill the replay
buffer; then ``iterations`` of one env step (exploration on, the agent's ε schedule) followed by
``updates_per_step`` gradient steps on batches of ``AgentRunConfig.batch_size``.

Evaluation (which KuaiSim lacks): :func:`recrl_cli.agents.evaluation.evaluate_policies` on the evaluation env
(its own users, ``eval_seed``; the training env when none is given): the agent with exploration off beside the
random, popular (best constant slate) and oracle policies on the same users, with session metrics over a fixed
horizon that are defined however few users leave, and the agent's gap fractions against random and popular.

The loop also keeps every iteration's reward, leavers and losses, which :meth:`AgentLoop.curves` bins into the
learning curve (MLflow metrics ``curve/<name>`` and ``learning_curve.png``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from recrl_cli.agents.base import HyperActorAgent
from recrl_cli.agents.buffer import ReplayBuffer
from recrl_cli.agents.evaluation import evaluate_policies, gap, rollout
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.sim.metrics import SessionMetrics

ProgressFn = Callable[[str, int, int], None]  # (label, done, total), as the trainer's
TRAIN_REPORTED = ("depth", "avg_reward", "total_reward", "coverage", "ild", "ild_pairwise")


@dataclass(frozen=True)
class LoopConfig:
    """Protocol sizes (§5.4: 100 warm-up steps, 2,000 iterations of one env step + one gradient step) and the
    evaluation's (steps, users' seed, session horizon)."""

    warmup_steps: int = 100
    iterations: int = 2000
    updates_per_step: int = 1
    eval_steps: int = 200
    eval_seed: int = 1_000_003  # far from training seeds: evaluation users differ from training users
    eval_horizon: int = 20  # the longest possible session at T₀ = 20: total_reward is the whole session's
    window: int = 10  # KuaiSim's report window over the last training steps
    seed: int = 0  # the buffer sampler's seed

    def __post_init__(self) -> None:
        if (self.warmup_steps < 1 or self.iterations < 0 or self.eval_steps < 1 or self.updates_per_step < 0
                or self.eval_horizon < 1):  # fmt: skip
            raise ValueError(
                "need warmup_steps >= 1, iterations >= 0, eval_steps >= 1, updates_per_step >= 0, "
                "eval_horizon >= 1"
            )


@dataclass(frozen=True)
class AgentResult:
    """train: the last-window training metrics (exploration on, as KuaiSim reports); losses: the mean of each
    loss over the last ``window`` updates; policies: evaluation metrics of agent / random / popular / oracle
    (:mod:`recrl_cli.agents.evaluation`)."""

    train: dict[str, float]
    losses: dict[str, float]
    policies: dict[str, dict[str, float]]

    @property
    def eval(self) -> dict[str, float]:
        return self.policies["agent"]

    @property
    def random(self) -> dict[str, float]:
        return self.policies["random"]

    @property
    def popular(self) -> dict[str, float]:
        return self.policies["popular"]

    @property
    def oracle(self) -> dict[str, float]:
        return self.policies["oracle"]

    @property
    def gap_fraction(self) -> float:
        return self.policies["agent"]["gap_fraction"]


def _reported(metrics: SessionMetrics, window: int) -> dict[str, float]:
    """The last-window training metrics; a metric with no value in the window (depth, total reward before any
    user left) is left out rather than reported as NaN."""
    summary = metrics.summary(window)
    return {k: summary[k] for k in TRAIN_REPORTED if k in summary and math.isfinite(summary[k])}


def evaluate_agent(agent: HyperActorAgent, env: WholeSessionEnv, steps: int, seed: int,
                   horizon: int = 20) -> dict[str, float]:  # fmt: skip
    """The agent alone with exploration off (eval mode, deterministic given the env's seed)."""
    return rollout(env, lambda: agent.act(env.observation(), explore=False), steps, seed, horizon)[0]


def gap_fraction(agent: float, random: float, oracle: float) -> float:
    """(agent − random) / (oracle − random); 0 when the gap is 0 or not finite (never a silent NaN)."""
    return gap(agent, random, oracle)


class AgentLoop:
    """The training loop one env step at a time (what ``train_agent`` and the CLI stage both drive).

    :meth:`reset` resets the env (the buffer keeps what it holds); :meth:`step` takes one env step and, unless
    ``warm``, ``updates_per_step`` gradient steps; :meth:`result` runs the separate evaluation on ``eval_env``
    (default: the training env, which it resets).
    """

    def __init__(self, agent: HyperActorAgent, env: WholeSessionEnv, cfg: LoopConfig,
                 eval_env: WholeSessionEnv | None = None) -> None:  # fmt: skip
        self.agent, self.env, self.cfg = agent, env, cfg
        self.eval_env = eval_env if eval_env is not None else env
        self.buffer = ReplayBuffer(agent.cfg.buffer_size, env.device)
        self.sampler = torch.Generator(env.device).manual_seed(cfg.seed)
        self.metrics = SessionMetrics()
        self.losses: list[dict[str, torch.Tensor]] = []  # the last update's losses of every iteration
        self.warm_steps = 0  # env steps taken in warm-up (the curves start after them)
        self.obs = None

    def reset(self) -> None:
        self.obs = self.env.reset()

    def state_dict(self) -> dict[str, Any]:
        """Everything the next step depends on besides the agent: the buffer, the sampler, the env's users
        and generator, and the training metrics and losses so far (exact mid-run resume)."""
        return {"buffer": self.buffer.state_dict(), "sampler": self.sampler.get_state(),
                "env": self.env.state_dict(), "metrics": self.metrics.state_dict(),
                "losses": [{k: v.cpu() for k, v in d.items()} for d in self.losses],
                "warm_steps": self.warm_steps, "started": self.obs is not None}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.env.device
        self.buffer.load_state_dict(state["buffer"])
        self.sampler.set_state(state["sampler"])
        self.env.load_state_dict(state["env"])
        self.metrics.load_state_dict(state["metrics"], dev)
        self.losses = [{k: v.to(dev) for k, v in d.items()} for d in state["losses"]]
        self.warm_steps = state.get("warm_steps", 0)
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
        if warm:
            self.warm_steps += 1
        else:
            for _ in range(self.cfg.updates_per_step):
                last = agent.update(self.buffer.sample(agent.cfg.batch_size, self.sampler))
            self.losses.append(last)
        return {"reward": result.reward.mean(), **last}

    def loss_means(self) -> dict[str, float]:
        """The mean of each loss over the last ``window`` iterations (TD3 reports its policy loss on delayed
        steps only)."""
        recent = self.losses[-self.cfg.window :]
        names = dict.fromkeys(k for d in recent for k in d)
        return {k: float(torch.stack([d[k] for d in recent if k in d]).mean()) for k in names}

    def curves(self, points: int = 200) -> dict[str, list[tuple[int, float]]]:
        """The learning curve: the training iterations in at most ``points`` equal bins, per bin (last iteration
        of the bin, value): ``avg_reward`` (mean r per user and step, exploration on), ``depth`` and
        ``total_reward`` (means over the users who left in the bin; bins without a leaver are skipped) and the
        mean of every loss. Empty before the first iteration."""
        rows = self.metrics.state_dict()["rows"]
        if rows is None or len(rows) <= self.warm_steps:
            return {}
        m = rows[self.warm_steps :].double()  # [T, 15]: avg_reward, var, leavers, Σ depth, Σ total, ...
        n = len(m)
        size = max(1, math.ceil(n / points))
        out: dict[str, list[tuple[int, float]]] = {"avg_reward": [], "depth": [], "total_reward": []}
        losses = [{k: float(v) for k, v in d.items()} for d in self.losses[-n:]]
        for k in dict.fromkeys(k for d in losses for k in d):
            out[k] = []
        for lo in range(0, n, size):
            hi, chunk = min(lo + size, n), m[lo : lo + size]
            out["avg_reward"].append((hi, float(chunk[:, 0].mean())))
            left = float(chunk[:, 2].sum())
            if left > 0:
                out["depth"].append((hi, float(chunk[:, 3].sum()) / left))
                out["total_reward"].append((hi, float(chunk[:, 4].sum()) / left))
            for k in out.keys() - {"avg_reward", "depth", "total_reward"}:
                values = [d[k] for d in losses[lo:hi] if k in d]
                if values:
                    out[k].append((hi, sum(values) / len(values)))
        return {k: v for k, v in out.items() if v}

    def result(self) -> AgentResult:
        """Evaluate the agent and the reference policies (re-seeds and resets the evaluation env)."""
        cfg, env = self.cfg, self.eval_env
        policies = evaluate_policies(env, lambda: self.agent.act(env.observation(), explore=False),
                                     cfg.eval_steps, cfg.eval_seed, cfg.eval_horizon)  # fmt: skip
        if env is self.env:
            self.obs = None  # the training env was reset by the evaluation
        return AgentResult(train=_reported(self.metrics, cfg.window), losses=self.loss_means(),
                           policies=policies)  # fmt: skip


def train_agent(agent: HyperActorAgent, env: WholeSessionEnv, cfg: LoopConfig,
                progress: ProgressFn | None = None, eval_env: WholeSessionEnv | None = None) -> AgentResult:  # fmt: skip
    """Warm-up, interleaved env and gradient steps, then the separate evaluation; see the module docstring."""
    loop = AgentLoop(agent, env, cfg, eval_env)
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
