"""benchmarks/bench_d3rlpy_crosscheck.py: the one-line error without d3rlpy, and (with the ``crosscheck`` extra)
that recrl's TD3+BC and IQL do the same updates as d3rlpy's when both start from the same weights and see the same
minibatches, which is what makes the benchmark's A/B comparison one of implementations and not of set-ups."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_d3rlpy_crosscheck as xc

from recrl_cli.offline.batch import TransitionStore

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: a second thread only contends

S, A, N = 7, 3, 64


def store(seed: int = 0) -> TransitionStore:
    """A random transition set in recrl's layout: [N, S] states, [N, A] actions in [−1, 1], 2 reward parts."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(N, A, generator=g) * 2 - 1
    return TransitionStore.from_tensors(
        {"state": torch.randn(N, S, generator=g), "action": a, "reward": torch.randn(N, 2, generator=g),
         "next_state": torch.randn(N, S, generator=g), "done": (torch.rand(N, generator=g) < 0.2).float(),
         "mu_bp": a.clamp(-0.5, 0.5), "next_mu_bp": torch.zeros(N, A), "lower": torch.full((N, A), -0.15),
         "upper": torch.full((N, A), 0.15)}
    )  # fmt: skip


def test_missing_d3rlpy_exits_with_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "d3rlpy", None)  # makes `import d3rlpy` raise ImportError
    with pytest.raises(SystemExit) as exc:
        xc.import_d3rlpy()
    msg = str(exc.value)
    assert "crosscheck" in msg and "\n" not in msg


def train_pair(algo: str, steps: int, **overrides):
    d3rlpy = pytest.importorskip("d3rlpy")
    ours, theirs = xc.build_pair(d3rlpy, algo, S, A, seed=3, init="shared", **overrides)
    data, g = store(), torch.Generator().manual_seed(0)
    for _ in range(steps):
        b = data.take(torch.randint(N, (16,), generator=g))
        ours.update(b)
        theirs.update(xc.to_minibatch(d3rlpy, b, ours.weights))
    return ours, theirs, data.all()


def test_matched_config_carries_recrl_values():
    d3rlpy = pytest.importorskip("d3rlpy")
    _, theirs = xc.build_pair(d3rlpy, "td3bc", S, A, seed=0, init="own", batch_size=16, gamma=0.8,
                                 actor_lr=1e-3, critic_lr=2e-3, alpha=1.5, policy_noise=0.1, noise_clip=0.3,
                                 policy_delay=3, actor_hidden=(8,), critic_hidden=(9, 5))  # fmt: skip
    c = theirs.config
    assert (c.batch_size, c.gamma, c.actor_learning_rate, c.critic_learning_rate, c.alpha) == (
        16,
        0.8,
        1e-3,
        2e-3,
        1.5,
    )
    assert (c.target_smoothing_sigma, c.target_smoothing_clip, c.update_actor_interval) == (0.1, 0.3, 3)
    assert c.actor_encoder_factory.hidden_units == [8] and c.critic_encoder_factory.hidden_units == [9, 5]
    _, theirs = xc.build_pair(
        d3rlpy, "iql", S, A, seed=0, init="own", expectile=0.8, temperature=2.0, tau=0.01
    )
    c = theirs.config
    assert (c.expectile, c.weight_temp, c.tau, c.max_weight, c.n_critics) == (0.8, 2.0, 0.01, 100.0, 2)


def test_td3bc_matches_d3rlpy_update_for_update_from_shared_weights():
    # No smoothing noise (the two draw it from different generators) and the actor every step (d3rlpy's delay
    # counts from step 0, recrl's from step 1): what is left is the algorithm, and it is the same.
    ours, theirs, b = train_pair("td3bc", 20, policy_noise=0.0, policy_delay=1, actor_hidden=(16, 16),
                                 critic_hidden=(16, 16), batch_size=16)  # fmt: skip
    policy = xc.D3rlpyPolicy(theirs)
    assert torch.allclose(ours.act(b.state), policy(b.state), atol=1e-5)
    q = theirs.impl._modules.q_funcs[0](b.state, b.action).q_value[:, 0]
    assert torch.allclose(ours.critic(b.state, b.action)[0].detach(), q.detach(), atol=1e-5)
    assert not torch.allclose(ours.act(b.state), torch.zeros(N, A))  # it did train


def test_iql_critic_and_value_match_d3rlpy_from_shared_weights():
    # IQL's Q and V never read the policy, so they follow d3rlpy's exactly. The policy differs by the AWR weight's
    # V (recrl's from before the update's value step, d3rlpy's after) and by σ's parameterisation (Adam steps
    # d3rlpy's p, not log σ), and stays within 1e-3 of d3rlpy's (9e-5 measured).
    ours, theirs, b = train_pair("iql", 20, actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=16)
    mods = theirs.impl._modules
    assert torch.allclose(
        ours.value(b.state)[:, 0].detach(), mods.value_func(b.state)[:, 0].detach(), atol=1e-5
    )
    for e in range(2):
        q = mods.q_funcs[e](b.state, b.action).q_value[:, 0].detach()
        assert torch.allclose(ours.critic(b.state, b.action)[e].detach(), q, atol=1e-5)
    gap = (ours.act(b.state) - xc.D3rlpyPolicy(theirs)(b.state)).abs().max()
    assert gap < 1e-3
