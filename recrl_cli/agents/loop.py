"""Training and evaluation of an agent on the whole-session environment (hac_kuaisim.md §5.4, §9 item 5).

Training, through the shared :class:`recrl_cli.agents.interaction.Interaction`: :meth:`AgentLoop.warm_up` takes
``warmup_steps`` env steps with random hyper-actions (ε = 1, no gradient steps) to fill the replay buffer; then
each :meth:`AgentLoop.step` is one env step (exploration on, the agent's ε schedule) followed by
``updates_per_step`` gradient steps on batches of ``AgentRunConfig.batch_size``. ``recrl train hac`` runs them as
a trainer stage (:mod:`recrl_cli.agents.algorithm`); tests and benchmarks call the same three methods.

Evaluation (which KuaiSim lacks): :func:`recrl_cli.sim.evaluate.evaluate_policies` on the evaluation env
(its own users, ``eval_seed``; the training env when none is given): the agent with exploration off beside the
random, popular (best constant slate) and oracle policies on the same users, with session metrics over a fixed
horizon that are defined however few users leave, and the agent's gap fractions against random and popular.

The loop also keeps every iteration's reward, leavers and losses, which :meth:`AgentLoop.curves` bins into the
learning curve (MLflow metrics ``curve/<name>`` and ``learning_curve.png``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from recrl_cli.agents.base import HyperActorAgent
from recrl_cli.agents.buffer import Batch
from recrl_cli.agents.interaction import Interaction, Transition
from recrl_cli.sim.environment import Observation, StepResult, WholeSessionEnv
from recrl_cli.sim.evaluate import HORIZON, evaluate_policies
from recrl_cli.sim.metrics import SessionMetrics

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
    eval_horizon: int = HORIZON  # the longest possible session at T₀ = 20: the whole session's total reward
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
    (:mod:`recrl_cli.sim.evaluate`)."""

    train: dict[str, float]
    losses: dict[str, float]
    policies: dict[str, dict[str, float]]


def _reported(metrics: SessionMetrics, window: int) -> dict[str, float]:
    """The last-window training metrics; a metric with no value in the window (depth, total reward before any
    user left) is left out rather than reported as NaN."""
    summary = metrics.summary(window)
    return {k: summary[k] for k in TRAIN_REPORTED if k in summary and math.isfinite(summary[k])}


class AgentLoop:
    """An agent's training and evaluation (see the module docstring): the agent is the
    :class:`~recrl_cli.agents.interaction.Learner` of an :class:`Interaction` on ``env``; the loop adds the
    training metrics, the losses and the curves. :meth:`result` evaluates on ``eval_env`` (default: the training
    env, which it resets)."""

    def __init__(self, agent: HyperActorAgent, env: WholeSessionEnv, cfg: LoopConfig,
                 eval_env: WholeSessionEnv | None = None) -> None:  # fmt: skip
        self.agent, self.env, self.cfg = agent, env, cfg
        self.eval_env = eval_env if eval_env is not None else env
        self.interaction = Interaction(env, self, buffer_size=agent.cfg.buffer_size,
                                       batch_size=agent.cfg.batch_size, updates_per_step=cfg.updates_per_step,
                                       seed=cfg.seed)  # fmt: skip
        self.metrics = SessionMetrics()
        self.losses: list[dict[str, torch.Tensor]] = []  # the last update's losses of every iteration
        self.warm_steps = 0  # env steps taken in warm-up (the curves start after them)

    # -- the Learner of the interaction -----------------------------------------------------------------------
    def act(self, obs: Observation, warm: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(slate [B, K], the executed hyper-action [B, A]); random hyper-actions (ε = 1) in warm-up."""
        action = self.agent.select(obs, explore=True, epsilon=1.0 if warm else None)
        return action.slate, action.hyper

    def record(self, obs: Observation, slate: torch.Tensor, hyper: torch.Tensor, result: StepResult,
               warm: bool) -> Transition:  # fmt: skip
        self.metrics.update(result)
        self.warm_steps += int(warm)
        return Transition(column=hyper, reward=result.reward, logged={"reward": result.reward.mean()})

    def learn(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.agent.update(batch)

    # -- training ------------------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Reset the env and fill the buffer with ``warmup_steps`` random steps (once; see Interaction)."""
        self.interaction.warm_up(self.cfg.warmup_steps)

    def step(self) -> dict[str, torch.Tensor]:
        """One training iteration: an env step and its gradient steps; the step's reward and last losses."""
        logged, losses = self.interaction.step(warm=False)
        self.losses.append(losses)
        return {**logged, **losses}

    def state_dict(self) -> dict[str, Any]:
        """Everything the next step depends on besides the agent: the interaction (buffer, sampler, the env's
        users and generators) and the training metrics and losses so far (exact mid-run resume)."""
        return {**self.interaction.state_dict(), "metrics": self.metrics.state_dict(),
                "losses": [{k: v.cpu() for k, v in d.items()} for d in self.losses],
                "warm_steps": self.warm_steps}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.env.device
        self.interaction.load_state_dict(state)
        self.metrics.load_state_dict(state["metrics"], dev)
        self.losses = [{k: v.to(dev) for k, v in d.items()} for d in state["losses"]]
        self.warm_steps = state.get("warm_steps", 0)

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
        policies = evaluate_policies(env, lambda obs: self.agent.act(obs, explore=False), cfg.eval_steps,
                                     cfg.eval_seed, cfg.eval_horizon)  # fmt: skip
        if env is self.env:
            self.interaction.obs = None  # the training env was reset by the evaluation
        return AgentResult(train=_reported(self.metrics, cfg.window), losses=self.loss_means(),
                           policies=policies)  # fmt: skip
