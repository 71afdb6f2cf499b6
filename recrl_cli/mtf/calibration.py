"""Calibration policies of the fusion env: the floor, the best non-personalised fusion and the ceiling that a
fusion policy is read against (the fusion counterpart of :mod:`recrl_cli.sim.policies`).

- ``random``: a uniform action in [−1, 1]^A per request (random powers and biases);
- ``fixed``: one action for every user and request, the best a search finds (:func:`best_fixed_fusion`);
- ``per_user``: per request, the top K candidates by the simulator's own expected reward
  (:meth:`FusionEnv.expected_reward`, without the correlation penalty): the per-user greedy oracle; on any
  request no fused slate, whatever the action, has a higher expected reward by that measure.

A policy here is ``serve(env, generator) -> FusionStep``: it serves one request of every user.
:func:`run_calibration` rolls one out and reduces it to the headroom figures. Shapes: B users, C candidates,
K slate, k targets, A = 2k action dims, P search candidates, n searched requests.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from recrl_cli.mtf.env import FusionEnv, FusionStep
from recrl_cli.mtf.fusion import fused_log_scores
from recrl_cli.sim.environment import PLAY_SEED_OFFSET

POLICIES = ("random", "fixed", "per_user")
LABELS = {"random": "random fusion", "fixed": "best fixed fusion", "per_user": "per-user best"}
Serve = Callable[[FusionEnv, torch.Generator], FusionStep]


def random_fusion(env: FusionEnv, generator: torch.Generator, n: int = 0) -> Tensor:
    """A uniform action in [−1, 1]^A per user: [B, A] (``n`` > 0: [n, A])."""
    return torch.rand(n or env.batch, env.action_dim, generator=generator, device=env.device) * 2.0 - 1.0


def per_user_best(env: FusionEnv) -> Tensor:
    """Slate positions [B, K]: the K candidates of highest expected reward under the simulator."""
    return env.expected_reward().topk(env.slate, dim=1).indices


def policies(fixed: Tensor) -> dict[str, Serve]:
    """The three calibration policies, ``fixed`` [A] the constant action."""
    return {
        "random": lambda env, g: env.step(random_fusion(env, g)),
        "fixed": lambda env, g: env.step(fixed.to(env.device)[None].expand(env.batch, -1)),
        "per_user": lambda env, g: env.serve(per_user_best(env)),
    }


def reseed(env: FusionEnv, seed: int) -> None:
    """Fresh users from env seed ``seed`` (both simulator streams), as every calibration rollout starts."""
    env.sim.generator.manual_seed(seed)
    env.sim.play_generator.manual_seed(seed + PLAY_SEED_OFFSET)
    env.reset()


@torch.no_grad()
def slate_value(preds: Tensor, expected: Tensor, actions: Tensor, env: FusionEnv) -> Tensor:
    """Mean expected reward per request of the slate each action ranks: preds [n, C, k], expected [n, C],
    actions [P, A] -> [P]."""
    powers, biases = env.action_map(actions.to(env.device))
    out = []
    for p in range(actions.shape[0]):
        score = fused_log_scores(preds, powers[p].expand(len(preds), -1), biases[p].expand(len(preds), -1))
        out.append(expected.gather(1, score.topk(env.slate, dim=1).indices).sum(1).mean())
    return torch.stack(out)


@torch.no_grad()
def best_fixed_fusion(env: FusionEnv, steps: int, seed: int, *, population: int = 32, generations: int = 3,
                      elite: int = 8) -> Tensor:  # fmt: skip
    """The best constant action found by a small CEM search, [A].

    One rollout of ``steps`` requests of random fusion from env seed ``seed`` records every request's fusion
    targets and the simulator's expected reward of its candidates; each searched action is scored by the mean
    expected reward of the slate it ranks over those requests (the same requests for every action, and no
    sampling noise). Generation 0 is the zero action (every power 1, bias at its floor: the plain product) and
    ``population − 1`` uniform actions; each later one draws around the ``elite`` best so far, keeping the best.
    The env is left where the rollout ended (every calibration rollout reseeds it).
    """
    reseed(env, seed)
    gen = torch.Generator(env.device).manual_seed(seed)
    preds, expected = [], []
    for _ in range(max(1, steps)):
        req = env.request()
        preds.append(req.preds)
        expected.append(env.expected_reward(req))
        env.step(random_fusion(env, gen))
    p_all, e_all = torch.cat(preds), torch.cat(expected)
    a = env.action_dim
    actions = torch.cat([torch.zeros(1, a, device=env.device), random_fusion(env, gen, population - 1)])
    scores = slate_value(p_all, e_all, actions, env)
    for _ in range(generations - 1):
        top = scores.topk(min(elite, len(scores))).indices
        mean, std = actions[top].mean(0), actions[top].std(0, unbiased=False).clamp(min=0.05)
        noise = torch.randn(population - 1, a, generator=gen, device=env.device)
        new = (mean + std * noise).clamp(-1.0, 1.0)
        actions = torch.cat([actions[top], new])
        scores = torch.cat([scores[top], slate_value(p_all, e_all, new, env)])
    return actions[scores.argmax()].clone()


@torch.no_grad()
def run_calibration(env: FusionEnv, serve: Serve, steps: int, seed: int) -> dict[str, float]:
    """``steps`` requests of ``serve`` from env seed ``seed`` (the policy's own draws from a generator on
    ``seed``): ``total_reward`` (watch + rest per finished session), ``depth`` (requests per finished session),
    ``avg_reward`` (per request, all users) and ``sessions`` (finished); NaN per-session figures when none
    finished. Sums stay on the device until the end."""
    reseed(env, seed)
    gen = torch.Generator(env.device).manual_seed(seed)
    running = torch.zeros(env.batch, device=env.device, dtype=torch.float64)
    total = depth = finished = reward = torch.zeros((), device=env.device, dtype=torch.float64)
    for _ in range(steps):
        out = serve(env, gen)
        r = out.reward.sum(1).double()
        done = out.done
        running += r
        reward = reward + r.sum()
        finished = finished + done.sum()
        total = total + (running * done).sum()
        depth = depth + ((out.request.depth + 1).double() * done).sum()
        running.masked_fill_(done, 0.0)
    n = float(finished)
    return {
        "total_reward": float(total) / n if n else float("nan"),
        "depth": float(depth) / n if n else float("nan"),
        "avg_reward": float(reward) / (steps * env.batch) if steps else float("nan"),
        "sessions": n,
    }
