"""Calibration policies of the fusion env: the floor, the best non-personalised fusion and the ceiling that a
fusion policy is read against (the fusion counterpart of :mod:`recrl_cli.sim.policies`).

- ``random``: a uniform action in [−1, 1]^A per request (random powers and biases);
- ``fixed``: one action for every user and request, the best a search finds (:func:`best_fixed_fusion`);
- ``best_fusion``: per request, the best of a fixed set of M fusion actions (the zero action, the fixed one and
  M − 2 uniform ones), each user's pick scored by the penalised expected reward of the slate it ranks
  (:func:`best_fusion_slate`): the ceiling of what fusion weights of *this ranker's* targets reach, request by
  request, if the policy knew the simulator's answer. It is what a personalised fusion policy can win over
  ``fixed``; the verdict of :mod:`recrl_cli.sim.check` reads it. Best of M is a lower bound of the exact
  per-request maximum (on the 1,000-user set, M = 128 instead of 64 added 0.3 %);
- ``per_user``: per request, the slate a greedy search builds on the simulator's own expected reward
  (:meth:`FusionEnv.expected_reward`) with the env's correlation penalty applied (:func:`slate_value_penalised`):
  the per-user greedy oracle, which no ranking of the ranker's targets has to reach (an upper bound). Ranking by
  the unpenalised reward alone picked near-duplicate slates that the penalty scales down, and fell 3 % below
  random fusion.

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

POLICIES = ("random", "fixed", "best_fusion", "per_user")
LABELS = {"random": "random fusion", "fixed": "best fixed fusion", "best_fusion": "best fusion per request",
          "per_user": "per-user best slate"}  # fmt: skip
BEST_OF = 64  # M: fusion actions tried per request by ``best_fusion``
Serve = Callable[[FusionEnv, torch.Generator], FusionStep]


def random_fusion(env: FusionEnv, generator: torch.Generator, n: int = 0) -> Tensor:
    """A uniform action in [−1, 1]^A per user: [B, A] (``n`` > 0: [n, A])."""
    return torch.rand(n or env.batch, env.action_dim, generator=generator, device=env.device) * 2.0 - 1.0


def slate_value_penalised(values: Tensor, unit: Tensor, slate: Tensor, rho: float) -> Tensor:
    """Expected reward of each slate under the env's correlation penalty (every probability of item i, hence its
    expected reward, × (1 − ρ·mean_j cos(i, j)) over the slate, the diagonal included): values [B, C], unit [B, C,
    d] unit-norm encodings, slate [B, K] positions -> [B]."""
    u = unit.gather(1, slate[..., None].expand(-1, -1, unit.shape[-1]))  # [B, K, d]
    corr = (u @ u.transpose(1, 2)).mean(-1)  # [B, K]
    return (values.gather(1, slate) * (1.0 - rho * corr).clamp(min=0.0)).sum(1)


def greedy_slate(values: Tensor, unit: Tensor, k: int, rho: float) -> Tensor:
    """Slate positions [B, k]: built one item at a time, each the candidate that adds the most penalised
    expected reward (:func:`slate_value_penalised` of the slate so far plus it, the full slate's size k in the
    mean as the env has), then improved by single swaps (:func:`improve_by_swaps`). values [B, C], unit [B, C, d]."""
    cos = unit @ unit.transpose(1, 2)  # [B, C, C]
    b = torch.arange(values.shape[0], device=values.device)
    chosen = torch.zeros_like(values, dtype=torch.bool)
    picks = []
    for _ in range(k):
        inside = chosen.to(values.dtype)
        # Adding c: its own term r_c·(1 − ρ(Σ_{j∈S} cos_cj + 1)/k), and every chosen i loses r_i·ρ·cos_ic/k.
        own = values * (1.0 - rho * ((cos * inside[:, None, :]).sum(-1) + 1.0) / k)
        loss = rho / k * ((values * inside)[:, None, :] * cos).sum(-1)
        gain = (own - loss).masked_fill(chosen, float("-inf"))
        pick = gain.argmax(1)
        chosen[b, pick] = True
        picks.append(pick)
    return improve_by_swaps(values, unit, torch.stack(picks, 1), rho)


def improve_by_swaps(values: Tensor, unit: Tensor, slate: Tensor, rho: float, passes: int = 3) -> Tensor:
    """Local search after the greedy build: per position, swap in the outside candidate that raises the penalised
    value most (if any does), for up to ``passes`` sweeps; the result is a slate no single swap improves (when the
    sweeps converge). values [B, C], unit [B, C, d], slate [B, K] -> [B, K]."""
    b, c = values.shape
    rows = torch.arange(b, device=values.device)
    slate = slate.clone()
    for _ in range(passes):
        changed = False
        for pos in range(slate.shape[1]):
            trial = (
                slate[:, None, :].expand(b, c, -1).clone()
            )  # [B, C, K]: position pos replaced by each candidate
            trial[:, :, pos] = torch.arange(c, device=values.device)
            inside = torch.zeros(b, c, dtype=torch.bool, device=values.device)
            inside[rows[:, None], slate] = True
            inside[rows, slate[:, pos]] = False  # the item being replaced may stay
            flat = trial.reshape(b * c, -1)
            worth = (
                slate_value_penalised(values.repeat_interleave(c, 0), unit.repeat_interleave(c, 0), flat, rho)
                .view(b, c)
                .masked_fill(inside, float("-inf"))
            )
            best = worth.argmax(1)
            better = worth[rows, best] > slate_value_penalised(values, unit, slate, rho) + 1e-9
            if bool(better.any()):
                slate[better, pos] = best[better]
                changed = True
        if not changed:
            break
    return slate


def per_user_best(env: FusionEnv) -> Tensor:
    """Slate positions [B, K]: the greedy slate of highest penalised expected reward under the simulator."""
    req = env.request()
    unit = env.sim.item_unit[req.candidates + 1]
    return greedy_slate(env.expected_reward(req), unit, env.slate, env.sim.cfg.item_correlation)


@torch.no_grad()
def fusion_values(env: FusionEnv, actions: Tensor) -> Tensor:
    """Penalised expected reward under the simulator (:func:`slate_value_penalised`) of the slate each of
    ``actions`` [M, A] ranks from the ranker's targets, per user of the current request: [B, M]."""
    req = env.request()
    unit = env.sim.item_unit[req.candidates + 1]  # [B, C, d]
    values = env.expected_reward(req)  # [B, C]
    powers, biases = env.action_map(actions.to(env.device))  # [M, k] each
    rho = env.sim.cfg.item_correlation
    b = env.batch
    out = []
    for p in range(actions.shape[0]):  # M small passes: [B, C, k] each, no [B, M, C, k] tensor
        score = fused_log_scores(req.preds, powers[p].expand(b, -1), biases[p].expand(b, -1))
        out.append(slate_value_penalised(values, unit, score.topk(env.slate, dim=1).indices, rho))
    return torch.stack(out, 1)


@torch.no_grad()
def best_fusion_slate(env: FusionEnv, actions: Tensor) -> Tensor:
    """Slate positions [B, K]: per user, the slate of the action among ``actions`` [M, A] whose ranking of the
    ranker's targets has the highest penalised expected reward under the simulator (ties: the first)."""
    pick = fusion_values(env, actions).argmax(1)  # [B]
    return env.rank(actions.to(env.device)[pick])


def fusion_candidates(fixed: Tensor, seed: int, count: int | None = None) -> Tensor:
    """The ``count`` actions ``best_fusion`` chooses from, [count, A]: the zero action (the plain product),
    ``fixed`` and uniform ones from a generator on ``seed`` (the same set for every request and policy run);
    ``count`` None = :data:`BEST_OF`, read at the call (a benchmark may change it)."""
    count = BEST_OF if count is None else count
    gen = torch.Generator().manual_seed(seed)
    rest = torch.rand(max(0, count - 2), fixed.shape[-1], generator=gen) * 2.0 - 1.0
    return torch.cat([torch.zeros(1, fixed.shape[-1]), fixed.cpu()[None], rest])


def policies(fixed: Tensor, seed: int = 0) -> dict[str, Serve]:
    """The four calibration policies, ``fixed`` [A] the constant action; ``seed`` draws the actions
    ``best_fusion`` chooses from (:func:`fusion_candidates`)."""
    choices = fusion_candidates(fixed, seed)
    return {
        "random": lambda env, g: env.step(random_fusion(env, g)),
        "fixed": lambda env, g: env.step(fixed.to(env.device)[None].expand(env.batch, -1)),
        "best_fusion": lambda env, g: env.serve(best_fusion_slate(env, choices)),
        "per_user": lambda env, g: env.serve(per_user_best(env)),
    }


def reseed(env: FusionEnv, seed: int) -> None:
    """Fresh users from env seed ``seed`` (both simulator streams), as every calibration rollout starts."""
    env.sim.generator.manual_seed(seed)
    env.sim.play_generator.manual_seed(seed + PLAY_SEED_OFFSET)
    env.reset()


@torch.no_grad()
def slate_value(preds: Tensor, expected: Tensor, unit: Tensor, actions: Tensor, env: FusionEnv) -> Tensor:
    """Mean penalised expected reward per request (:func:`slate_value_penalised`) of the slate each action
    ranks: preds [n, C, k], expected [n, C], unit [n, C, d], actions [P, A] -> [P]."""
    powers, biases = env.action_map(actions.to(env.device))
    rho = env.sim.cfg.item_correlation
    out = []
    for p in range(actions.shape[0]):
        score = fused_log_scores(preds, powers[p].expand(len(preds), -1), biases[p].expand(len(preds), -1))
        out.append(slate_value_penalised(expected, unit, score.topk(env.slate, dim=1).indices, rho).mean())
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
    preds, expected, units = [], [], []
    for _ in range(max(1, steps)):
        req = env.request()
        preds.append(req.preds)
        expected.append(env.expected_reward(req))
        units.append(env.sim.item_unit[req.candidates + 1])
        env.step(random_fusion(env, gen))
    p_all, e_all, u_all = torch.cat(preds), torch.cat(expected), torch.cat(units)
    a = env.action_dim
    actions = torch.cat([torch.zeros(1, a, device=env.device), random_fusion(env, gen, population - 1)])
    scores = slate_value(p_all, e_all, u_all, actions, env)
    for _ in range(generations - 1):
        top = scores.topk(min(elite, len(scores))).indices
        mean, std = actions[top].mean(0), actions[top].std(0, unbiased=False).clamp(min=0.05)
        noise = torch.randn(population - 1, a, generator=gen, device=env.device)
        new = (mean + std * noise).clamp(-1.0, 1.0)
        actions = torch.cat([actions[top], new])
        scores = torch.cat([scores[top], slate_value(p_all, e_all, u_all, new, env)])
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


@torch.no_grad()
def expected_headroom(
    env: FusionEnv, steps: int, seed: int, fixed: Tensor, choices: Tensor
) -> dict[str, float]:
    """Expected reward per request of each policy of :data:`POLICIES` on the *same* requests: ``steps`` requests
    of random fusion from env seed ``seed`` (the ``random`` rollout of :func:`run_calibration`, action for
    action), each request's slate of every policy valued by the simulator's penalised expected reward
    (:func:`slate_value_penalised`). No response draws and no diverging trajectories enter, so the differences
    between policies are paired request by request; a realised rollout of 100 requests × 32 users carries about
    ±1.5 % of sampling noise per policy, more than the gaps it is read for. ``fixed`` [A]; ``choices`` [M, A]
    the actions ``best_fusion`` picks from.

    Returns {policy: mean expected reward per request} and ``best_fusion_session``: one action of ``choices``
    per user *session* (the one with the highest total over the session's requests in the window), what a
    fusion policy that reads only who the user is could reach; between ``fixed`` and ``best_fusion``."""
    reseed(env, seed)
    gen = torch.Generator(env.device).manual_seed(seed)
    rho = env.sim.cfg.item_correlation
    fixed_b = fixed.to(env.device)[None].expand(env.batch, -1)
    # Sums stay on the device (no host sync per request) until the end, as in run_calibration.
    sums = {name: torch.zeros((), device=env.device, dtype=torch.float64) for name in POLICIES}
    session = torch.zeros(env.batch, dtype=torch.long, device=env.device)  # sessions ended so far, per row
    per_action, sessions = [], []
    for _ in range(steps):
        req = env.request()
        unit = env.sim.item_unit[req.candidates + 1]  # [B, C, d]
        values = env.expected_reward(req)  # [B, C]
        action = random_fusion(env, gen)
        fused = fusion_values(env, choices)  # [B, M]
        per_action.append(fused)
        sessions.append(session.clone())
        sums["best_fusion"] += fused.max(1).values.mean()
        slates = {"random": env.rank(action, req), "fixed": env.rank(fixed_b, req),
                  "per_user": greedy_slate(values, unit, env.slate, rho)}  # fmt: skip
        for name, slate in slates.items():
            sums[name] += slate_value_penalised(values, unit, slate, rho).mean()
        session += env.step(action).done.long()
    out = {name: float(total) / max(1, steps) for name, total in sums.items()}
    if per_action:
        fused = torch.stack(per_action)  # [T, B, M]
        rows = torch.arange(env.batch, device=env.device)
        key = torch.stack(sessions) * env.batch + rows  # [T, B]: one id per (row, session of that row)
        _, ids = torch.unique(key, return_inverse=True)
        totals = torch.zeros(int(ids.max()) + 1, fused.shape[-1], device=env.device, dtype=fused.dtype)
        totals.index_add_(0, ids.flatten(), fused.flatten(0, 1))  # [sessions, M]
        best = totals.argmax(1)[ids]  # [T, B]: each request's session's action
        out["best_fusion_session"] = float(fused.gather(2, best[..., None]).mean())
    return out
