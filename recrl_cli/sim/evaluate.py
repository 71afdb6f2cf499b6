"""The evaluation of a policy in the whole-session env beside three reference policies on the same users (issue 15).

One function, :func:`evaluate_policies`, serves the RL agents' evaluation and the world check's headroom table
(:mod:`recrl_cli.sim.check`), so both report the same quantities and the same ``popular``. Policies, each
rolled out by :func:`recrl_cli.sim.rollout.rollout` from the same re-seed of the env (the same initial users and
generators):

* ``agent`` (when given): the trained policy with exploration off (deterministic given the env's seed);
* ``random``: K distinct items per user uniformly at random (the floor);
* ``popular``: one constant slate for everyone, the K items of highest mean expected reward over the user
  states the random policy visits on these users (the best slate for an average user; a world where it is
  close to the oracle cannot rank personalised policies);
* ``oracle``: per user and step the K items of highest immediate expected reward under the simulator (the
  ceiling of a myopic policy).

Session metrics over a fixed horizon H (``horizon``), defined however few users leave: every session that
starts at step t ≤ T − H of the T evaluation steps is followed for min(its depth, H) steps, so it ends inside
the evaluation (the user left, or H steps passed). Sessions starting later are not counted, so short sessions
are not over-represented (KuaiSim's "mean over this step's leavers" is, and it is NaN when nobody leaves).

* ``total_reward``: mean over those sessions of Σ_{t < min(depth, H)} r_t, the per-user return over the
  horizon (H ≥ the longest possible session, e.g. 20 at T₀ = 20, makes it the whole session's total reward);
* ``depth``: their mean min(depth, H); ``left``: the share that ended with the user leaving within H;
* ``sessions``: how many there were; ``total_reward_se``: the standard error of ``total_reward``;
* ``avg_reward`` (mean r over users and steps), ``coverage``, ``ild``, ``ild_pairwise`` (means over steps).

Gap fractions of the agent's total reward: ``gap_fraction`` = (agent − random) / (oracle − random),
``gap_vs_popular`` = (agent − popular) / (oracle − popular); and the world's ``popular/gap_fraction``.
A gap whose denominator is 0 is reported as 0 with the reason in :func:`verdict`, never as a silent NaN.

Shapes: B users, K slate, N items, T steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from recrl_cli.sim.environment import Observation, StepResult, WholeSessionEnv
from recrl_cli.sim.policies import oracle_greedy, popular_slate, random_slate
from recrl_cli.sim.rollout import rollout

POLICIES = ("agent", "random", "popular", "oracle")
HORIZON = 20  # the longest possible session at the default T₀ = 20: total_reward is then the whole session's

Policy = Callable[[Observation], torch.Tensor]  # observation of B users -> slate LongTensor [B, K]


class SessionTally:
    """Per-session returns over a horizon of ``horizon`` steps in a run of ``steps`` env steps (module docstring).

    Every row of the env holds one session at a time; a leaver's row starts a new session at the next step.
    Sums stay on the env's device (no host sync per step) until :meth:`summary`.
    """

    def __init__(self, batch: int, steps: int, horizon: int, device: torch.device) -> None:
        self.horizon = min(horizon, steps)  # at least the B sessions that start at step 0 are counted
        self.last_start = steps - self.horizon
        self.t = 0
        z = torch.zeros(batch, device=device)
        self.start = torch.zeros(batch, dtype=torch.long, device=device)
        self.ret, self.age, self.closed = (
            z.clone(),
            z.clone(),
            torch.zeros(batch, dtype=torch.bool, device=device),
        )
        # sessions, Σ return, Σ return², Σ depth, Σ left; then Σ avg_reward, coverage, ild, ild_pairwise per step
        self.sums = torch.zeros(5, dtype=torch.float64, device=device)
        self.step_sums = torch.zeros(4, dtype=torch.float64, device=device)

    def update(self, result: StepResult) -> None:
        open_ = ~self.closed
        self.ret += result.reward * open_
        self.age += open_.float()
        done = result.done
        finish = open_ & (done | (self.age >= self.horizon))
        counted = (finish & (self.start <= self.last_start)).double()
        self.sums += torch.stack([counted.sum(), (counted * self.ret).sum(), (counted * self.ret.square()).sum(),
                                  (counted * self.age).sum(), (counted * done).sum()])  # fmt: skip
        self.step_sums += torch.stack([result.reward.mean(), result.coverage.float(), result.ild,
                                       result.ild_pairwise]).double()  # fmt: skip
        self.closed |= finish
        # Leavers' rows hold fresh users from the next step on: a new session.
        self.t += 1
        self.start = torch.where(done, self.t, self.start)
        self.ret = self.ret.masked_fill(done, 0.0)
        self.age = self.age.masked_fill(done, 0.0)
        self.closed = self.closed & ~done

    def summary(self) -> dict[str, float]:
        n, total, square, depth, left = self.sums.tolist()
        steps = max(self.t, 1)
        avg, coverage, ild, pairwise = (v / steps for v in self.step_sums.tolist())
        mean = total / n if n else 0.0
        var = max(square / n - mean * mean, 0.0) if n else 0.0
        se = math.sqrt(var / (n - 1)) if n > 1 else 0.0
        return {"total_reward": mean, "depth": depth / n if n else 0.0, "left": left / n if n else 0.0,
                "avg_reward": avg, "coverage": coverage, "ild": ild, "ild_pairwise": pairwise,
                "sessions": n, "total_reward_se": se}  # fmt: skip


def gap(value: float, floor: float, ceiling: float) -> float:
    """(value − floor) / (ceiling − floor); 0 when the ceiling does not beat the floor or the gap is not finite
    (:func:`verdict` says so): a negative width would flip the fraction's sign."""
    width = ceiling - floor
    return (value - floor) / width if width > 0 and math.isfinite(width) else 0.0


def session_metrics(env: WholeSessionEnv, policy: Policy, steps: int, seed: int,
                    horizon: int = HORIZON) -> dict[str, float]:  # fmt: skip
    """The session metrics of ``policy`` rolled out for ``steps`` steps from ``seed`` (see the module docstring)."""
    tally = SessionTally(env.batch, steps, horizon, env.device)
    rollout(env, policy, steps, seed, lambda obs, slate, result: tally.update(result))
    return tally.summary()


def evaluate_policies(env: WholeSessionEnv, agent: Policy | None, steps: int, seed: int,
                      horizon: int = HORIZON) -> dict[str, dict[str, float]]:  # fmt: skip
    """{policy: session metrics} for the agent (when given), random, popular and oracle on the users of ``seed``,
    with the gap fractions in the agent's and popular's metrics. Re-seeds and resets ``env``."""
    gen = torch.Generator(env.device).manual_seed(seed)
    expected = torch.zeros(env.num_items, device=env.device)

    def random_visiting(obs: Observation) -> torch.Tensor:
        expected.add_(env.expected_reward().mean(0))  # popular's average user: the states random visits
        return random_slate(env, gen)

    out: dict[str, dict[str, float]] = {}
    out["random"] = session_metrics(env, random_visiting, steps, seed, horizon)
    slate = popular_slate(expected / steps, env.slate)
    out["popular"] = session_metrics(env, lambda obs: slate.expand(env.batch, -1), steps, seed, horizon)
    out["oracle"] = session_metrics(env, lambda obs: oracle_greedy(env), steps, seed, horizon)
    rand, pop, orc = (out[p]["total_reward"] for p in ("random", "popular", "oracle"))
    out["popular"]["gap_fraction"] = gap(pop, rand, orc)
    if agent is not None:
        out["agent"] = session_metrics(env, agent, steps, seed, horizon)
        value = out["agent"]["total_reward"]
        out["agent"]["gap_fraction"] = gap(value, rand, orc)
        out["agent"]["gap_vs_popular"] = gap(value, pop, orc)
    return {p: out[p] for p in POLICIES if p in out}


def verdict(name: str, results: dict[str, dict[str, float]], key: str = "total_reward",
            label: str = "total reward") -> list[str]:  # fmt: skip
    """Lines to print under an agent's evaluation: what it does not beat, and a world without headroom. The
    policies are compared on ``results[p][key]`` (± ``results[p][key + "_se"]``), called ``label`` in the lines
    (HRL-Rec: ``reward``, its own list reward)."""
    lines = []
    total = {p: r[key] for p, r in results.items()}
    se = {p: r.get(f"{key}_se", 0.0) for p, r in results.items()}
    if total["oracle"] - total["random"] <= 0:
        lines.append("the oracle does not beat random in this world: gap fractions are reported as 0")
    elif results["popular"]["gap_fraction"] > 0.6:
        lines.append(f"popular reaches {results['popular']['gap_fraction']:.0%} of the oracle − random gap: this "
                     "world cannot tell a personalised policy from a constant slate")  # fmt: skip
    if "agent" in total:
        for ref in ("popular", "random"):
            margin = 2 * math.hypot(se["agent"], se[ref])  # ≈ 95 % of the difference of two independent means
            if total["agent"] <= total[ref] + margin:
                lines.append(f"{name} does not beat {ref}: {label} {total['agent']:.3f} vs "
                             f"{total[ref]:.3f} (± {margin:.3f})")  # fmt: skip
    return lines
