"""The one loop that steps a simulator with a policy (issue 15 item 5).

Every evaluation rollout runs through :func:`play`: the agents' evaluation and the world check's headroom
(:mod:`recrl_cli.sim.evaluate`), HRL-Rec's list evaluation, and the fusion code's A/B sessions, log collection and
CEM generations. Training interaction (a replay buffer and gradient steps as well) is
:mod:`recrl_cli.agents.interaction`.

An env is anything with ``observation()`` (what the policy sees now) and ``step(action)`` (what happened):
:class:`~recrl_cli.sim.environment.WholeSessionEnv` (Observation -> slate [B, K] -> StepResult) and
:class:`~recrl_cli.mtf.env.FusionEnv` (Request -> fusion action [B, A] -> FusionStep). The loop is generic over
those three types instead of forcing one shape on both envs; what a caller measures goes into ``observe``.

:func:`rollout` is :func:`play` in a whole-session env from a fixed seed: both env generators are re-seeded and
every row gets a fresh user, so every policy rolled out with one seed meets the same users and, for as long as
their slates agree, the same draws (common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from recrl_cli.sim.environment import PLAY_SEED_OFFSET, WholeSessionEnv

Obs = TypeVar("Obs")  # what the policy sees
Act = TypeVar("Act")  # what it answers
Out = TypeVar("Out")  # what a step returns


class Env(Protocol[Obs, Act, Out]):
    def observation(self) -> Obs: ...

    def step(self, action: Act) -> Out: ...


def play(env: Env[Obs, Act, Out], policy: Callable[[Obs], Act], steps: int,
         observe: Callable[[Obs, Act, Out], Any] = lambda *_: None) -> int:  # fmt: skip
    """Act with ``policy`` for at most ``steps`` env steps from the env's current state, calling
    ``observe(observation, action, outcome)`` after each; a truthy return of ``observe`` stops the run early
    (e.g. every tracked session has ended). Returns the steps taken."""
    for t in range(steps):
        obs = env.observation()
        action = policy(obs)
        if observe(obs, action, env.step(action)):
            return t + 1
    return steps


def reseed(env: WholeSessionEnv, seed: int) -> None:
    """Re-seed both of the env's generators and put a fresh user in every row."""
    env.generator.manual_seed(seed)
    env.play_generator.manual_seed(seed + PLAY_SEED_OFFSET)
    env.reset()


def rollout(env: WholeSessionEnv, policy: Callable[[Any], Any], steps: int, seed: int,
            observe: Callable[[Any, Any, Any], Any] = lambda *_: None) -> int:  # fmt: skip
    """:func:`reseed` ``env`` with ``seed``, then :func:`play` ``policy`` (Observation of B users -> slate
    LongTensor [B, K]) for ``steps`` steps with ``observe(obs, slate, StepResult)``."""
    reseed(env, seed)
    return play(env, policy, steps, observe)
