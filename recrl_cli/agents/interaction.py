"""The one training-interaction loop of simulator RL (issue 15 item 5), shared by the RL agents
(:mod:`recrl_cli.agents.loop`) and HRL-Rec (:mod:`recrl_cli.hrlrec.algorithm`).

One :meth:`Interaction.step`: the learner acts on the current users, the whole-session env answers, the B
transitions go into the replay buffer, and then the update cadence: none in warm-up, else ``updates_per_step``
gradient steps on batches of ``batch_size`` drawn with the loop's own generator. :meth:`Interaction.warm_up`
resets the env and fills the buffer with ``steps`` warm-up steps, once per process (a resumed agent keeps the
flag in its checkpoint; HRL-Rec, whose buffer is not saved, warms up again).

What differs between the families is a :class:`Learner`: how it acts (the agents: an explored hyper-action;
HRL-Rec: a list built position by position, random lists in warm-up), what of a step it stores (the buffer's
float column: the agents' executed hyper-action [B, A], HRL-Rec's per-position rewards [B, 2T]) and how it learns
from a sampled :class:`~recrl_cli.agents.buffer.Batch`.

Shapes: B users, K slate, A the stored float column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from recrl_cli.agents.buffer import Batch, ReplayBuffer
from recrl_cli.sim.environment import Observation, StepResult, WholeSessionEnv


@dataclass(frozen=True)
class Transition:
    """What a step adds to the buffer beside the env's own fields: column [B, A] (the buffer's float column),
    reward [B] (the reward the learner bootstraps); logged: 0-dim tensors the step reports (no device sync)."""

    column: torch.Tensor
    reward: torch.Tensor
    logged: dict[str, torch.Tensor]


class Learner(Protocol):
    def act(self, obs: Observation, warm: bool) -> tuple[torch.Tensor, Any]:
        """(slate LongTensor [B, K], whatever :meth:`record` needs of the choice)."""
        ...

    def record(self, obs: Observation, slate: torch.Tensor, chosen: Any, result: StepResult,
               warm: bool) -> Transition: ...  # fmt: skip

    def learn(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step; its detached losses."""
        ...


class Interaction:
    """See the module docstring. ``seed`` seeds the buffer sampler."""

    def __init__(self, env: WholeSessionEnv, learner: Learner, *, buffer_size: int, batch_size: int,
                 updates_per_step: int, seed: int) -> None:  # fmt: skip
        self.env, self.learner = env, learner
        self.batch_size, self.updates_per_step = batch_size, updates_per_step
        self.buffer = ReplayBuffer(buffer_size, env.device)
        self.sampler = torch.Generator(env.device).manual_seed(seed)
        self.obs: Observation | None = None  # None: the env is reset before the next step
        self.warmed = False

    def warm_up(self, steps: int) -> None:
        """Reset the env and take ``steps`` warm-up steps (no gradient steps), unless done already."""
        if self.warmed:
            return
        self.obs = self.env.reset()
        for _ in range(steps):
            self.step(warm=True)
        self.warmed = True

    def step(self, warm: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One env step and its gradient steps: (the step's logged values, the last update's losses; {} in
        warm-up or with ``updates_per_step`` = 0)."""
        env = self.env
        if self.obs is None:
            self.obs = env.reset()
        obs = self.obs
        slate, chosen = self.learner.act(obs, warm)
        result = env.step(slate)
        t = self.learner.record(obs, slate, chosen, result, warm)
        self.buffer.add(
            obs, t.column, slate, t.reward, result.responses, result.done, result.next_observation
        )
        self.obs = env.observation()  # leavers already replaced by fresh users
        losses: dict[str, torch.Tensor] = {}
        if not warm:
            for _ in range(self.updates_per_step):
                losses = self.learner.learn(self.buffer.sample(self.batch_size, self.sampler))
        return t.logged, losses

    def state_dict(self) -> dict[str, Any]:
        """The buffer, the sampler and the env's users and generators: what the next step depends on besides
        the learner (exact mid-run resume)."""
        return {"buffer": self.buffer.state_dict(), "sampler": self.sampler.get_state(),
                "env": self.env.state_dict(), "started": self.obs is not None}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.sampler.set_state(state["sampler"])
        self.env.load_state_dict(state["env"])
        self.obs = self.env.observation() if state["started"] else None
