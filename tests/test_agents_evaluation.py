"""The agents' evaluation (issue 15): session metrics over a fixed horizon against a per-row Python reference,
defined when nobody leaves (never a silent NaN), the popular policy as one constant slate, and the verdict
lines an agent that does not beat popular prints."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from test_agents import make_env, small

from recrl_cli.agents import make_agent
from recrl_cli.agents.loop import AgentLoop, LoopConfig
from recrl_cli.reporting import plot_rl_curves
from recrl_cli.sim.evaluate import SessionTally, evaluate_policies, gap, verdict

pytestmark = pytest.mark.usefixtures("one_thread")


def naive_sessions(rewards: list[list[float]], done: list[list[bool]], horizon: int):
    """(returns, depths, left) of every counted session, row by row: a session starting at step s <= T − H is
    followed for min(its depth, H) steps."""
    steps, rows = len(rewards), len(rewards[0])
    h = min(horizon, steps)
    out = []
    for b in range(rows):
        start, ret, age = 0, 0.0, 0
        for t in range(steps):
            if age < h:
                ret += rewards[t][b]
                age += 1
                if (done[t][b] or age == h) and start <= steps - h:
                    out.append((ret, age, done[t][b]))
                    age = h  # closed until the user leaves
            if done[t][b]:
                start, ret, age = t + 1, 0.0, 0
    return out


@pytest.mark.parametrize("horizon", [1, 3, 5, 50])
def test_session_tally_matches_a_per_row_reference(horizon):
    gen = torch.Generator().manual_seed(horizon)
    steps, rows = 17, 6
    rewards = torch.rand(steps, rows, generator=gen)
    done = torch.rand(steps, rows, generator=gen) < 0.25
    tally = SessionTally(rows, steps, horizon, torch.device("cpu"))
    for t in range(steps):
        tally.update(SimpleNamespace(reward=rewards[t], done=done[t], coverage=torch.tensor(4),
                                     ild=torch.tensor(0.5), ild_pairwise=torch.tensor(0.25)))  # fmt: skip
    got = tally.summary()
    want = naive_sessions(rewards.tolist(), done.tolist(), horizon)
    assert got["sessions"] == len(want) >= rows  # at least the sessions that start at step 0
    assert got["total_reward"] == pytest.approx(sum(w[0] for w in want) / len(want), rel=1e-6)
    assert got["depth"] == pytest.approx(sum(w[1] for w in want) / len(want))
    assert got["left"] == pytest.approx(sum(w[2] for w in want) / len(want))
    assert got["avg_reward"] == pytest.approx(rewards.mean().item(), rel=1e-6)
    returns = torch.tensor([w[0] for w in want], dtype=torch.float64)
    assert got["total_reward_se"] == pytest.approx((returns.std() / math.sqrt(len(want))).item(), rel=1e-5)


def test_evaluation_is_defined_when_nobody_leaves():
    """Three steps at T₀ = 20: no user can leave (each step costs at most 2 temper), so KuaiSim's leaver-based
    total reward and depth would be NaN; the horizon metrics are the 3-step returns."""
    env = make_env()
    out = evaluate_policies(env, None, steps=3, seed=5, horizon=20)
    for policy, metrics in out.items():
        assert all(math.isfinite(v) for v in metrics.values()), (policy, metrics)
        assert metrics["left"] == 0 and metrics["depth"] == 3 and metrics["sessions"] == env.batch
        assert metrics["total_reward"] == pytest.approx(3 * metrics["avg_reward"], rel=1e-6)


def test_popular_is_one_constant_slate_and_references_are_ordered():
    env = make_env(batch=16)
    out = evaluate_policies(env, None, steps=40, seed=3, horizon=20)
    assert out["popular"]["coverage"] == env.slate
    assert out["oracle"]["total_reward"] > out["random"]["total_reward"]
    assert out["popular"]["gap_fraction"] == pytest.approx(
        gap(out["popular"]["total_reward"], out["random"]["total_reward"], out["oracle"]["total_reward"])
    )


def test_verdict_says_what_the_agent_does_not_beat():
    def policy(total, se=0.01):
        return {"total_reward": total, "total_reward_se": se}

    results = {"agent": policy(3.0), "random": policy(2.0), "popular": policy(3.5), "oracle": policy(4.0)}
    results["popular"]["gap_fraction"] = 0.75
    lines = verdict("hac", results)
    assert any("does not beat popular" in line for line in lines)
    assert not any("does not beat random" in line for line in lines)
    assert any("cannot tell a personalised policy" in line for line in lines)
    results["agent"] = policy(3.9)
    results["popular"] = {**policy(2.5), "gap_fraction": 0.25}
    assert verdict("hac", results) == []
    flat = {p: policy(2.0) for p in ("agent", "random", "popular", "oracle")}
    flat["popular"]["gap_fraction"] = 0.0
    assert any("oracle does not beat random" in line for line in verdict("hac", flat))


def test_rl_learning_curve_draws_training_references_and_losses(tmp_path):
    """The agents' curve (AgentLoop.curves) in the four panels: 3 outcome curves, their 4 reference lines each
    (random, popular, oracle, the agent's evaluation) and every loss; binned to at most 200 points."""
    env = make_env()
    agent = make_agent("ddpg", env, small("ddpg"), seed=0)
    loop = AgentLoop(agent, env, LoopConfig(warmup_steps=3, iterations=30, eval_steps=25))
    loop.warm_up()
    for _ in range(30):
        loop.step()
    curves = loop.curves(points=10)
    assert {"avg_reward", "depth", "total_reward", "critic_loss", "policy_loss", "q"} <= set(curves)
    assert [step for step, _ in curves["avg_reward"]] == list(range(3, 31, 3))  # 10 bins of 3 iterations
    assert all(math.isfinite(v) for points in curves.values() for _, v in points)
    metrics = {f"test/{who}/{k}": v for who, d in loop.result().policies.items() for k, v in d.items()}
    losses = len(curves) - 3  # critic_loss, actor_loss, policy_loss, q
    assert plot_rl_curves(curves, metrics, tmp_path / "curve.png", "ddpg") == 3 + 3 * 4 + losses == 19
    assert plot_rl_curves({}, {}, tmp_path / "empty.png", "nothing") == 0
