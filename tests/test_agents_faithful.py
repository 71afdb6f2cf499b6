"""The agents' faithful switches (hac_kuaisim.md §8 #2 #3 #4 #6 #7 and the §5.6 baselines as KuaiSim configures
them): each one changes exactly the stated computation (against a naive reference where it is math), the
defaults stay fixed, and ``faithful`` turns every switch on."""

from __future__ import annotations

import copy

import pytest
import torch
from test_agents import filled_buffer, make_env, small

from recrl_cli.agents import make_agent
from recrl_cli.agents.config import SWITCHES, AgentRunConfig, agent_switches
from recrl_cli.agents.exploration import perturb
from recrl_cli.agents.losses import clipped_double_q_target, td_target, topk_softmax_log_prob
from recrl_cli.errors import ConfigError

R, DONE = torch.tensor([1.0, 0.5, -2.0, 0.25]), torch.tensor([0.0, 1.0, 0.0, 1.0])
NEXT = torch.tensor([3.0, 7.0, 1.5, -4.0])


def test_defaults_are_fixed_and_faithful_turns_every_switch_on():
    assert not any(agent_switches(AgentRunConfig()).values())
    assert all(agent_switches(AgentRunConfig(faithful=True)).values())
    one = agent_switches(AgentRunConfig(td3_no_delay=True))
    assert [k for k, v in one.items() if v] == ["td3_no_delay"]
    assert set(SWITCHES) == set(one)
    with pytest.raises(ConfigError, match=r"model\.policy_delay"):
        AgentRunConfig(policy_delay=0)


def test_td_done_bug_bootstraps_only_terminal_transitions():  # §8 #2
    want = [R[i].item() + 0.9 * DONE[i].item() * NEXT[i].item() for i in range(4)]
    assert torch.allclose(td_target(R, DONE, 0.9, NEXT, done_bug=True), torch.tensor(want))
    fixed = [R[i].item() + 0.9 * (1 - DONE[i].item()) * NEXT[i].item() for i in range(4)]
    assert torch.allclose(td_target(R, DONE, 0.9, NEXT), torch.tensor(fixed))


def test_td3_discount_bug_is_gamma_on_terminals_and_one_elsewhere():  # §8 #3
    q2 = NEXT + torch.tensor([-1.0, 1.0, 1.0, -1.0])
    got = clipped_double_q_target(R, DONE, 0.9, NEXT, q2, discount_bug=True)
    want = [R[i].item() + (0.9 if DONE[i] else 1.0) * min(NEXT[i].item(), q2[i].item()) for i in range(4)]
    assert torch.allclose(got, torch.tensor(want))


def test_uniform_noise_is_non_negative_below_sigma_and_so_is_the_random_batch():  # §8 #7
    z = torch.zeros(64, 5)
    near = perturb(z, 0.1, 1.0, 0.0, torch.Generator().manual_seed(0), uniform=True)
    want = torch.rand(64, 5, generator=torch.Generator().manual_seed(0)) * 0.1
    assert torch.equal(near, want)
    assert (near >= 0).all() and (near < 0.1).all()
    rand = perturb(torch.full((64, 5), 10.0), 0.1, 1.0, 1.0, torch.Generator().manual_seed(0), uniform=True)
    assert (rand >= 0).all() and (rand < 0.1).all()  # KuaiSim's all-positive "random" hyper-action
    assert (perturb(z, 0.1, 1.0, 0.0, torch.Generator().manual_seed(0)) < 0).any()  # fixed: Gaussian


@pytest.mark.parametrize("name", ["hac", "ddpg", "td3", "a2c"])
def test_agents_explore_with_uniform_noise_under_the_switch(name):
    env = make_env()
    obs = env.observation()
    agent = make_agent(name, env, small(name, uniform_noise=True, a2c_topk_softmax=True, epsilon_initial=0.0,
                                        epsilon_final=0.0), seed=0)  # fmt: skip
    agent.actor.eval()
    with torch.no_grad():
        _, _, mean = agent.actor(obs)
    noise = agent.select(obs, explore=True).hyper - mean
    assert (noise >= -1e-6).all() and (noise < 0.1 + 1e-6).all()


def test_td_done_bug_changes_the_agents_targets(monkeypatch):
    env = make_env()
    for name in ("ddpg", "hac"):
        fixed, bug = (make_agent(name, env, small(name, td_done_bug=b), seed=0) for b in (False, True))
        batch = filled_buffer(env, fixed, steps=6).sample(32, torch.Generator().manual_seed(0))
        y_fixed, y_bug = fixed.target_value(batch), bug.target_value(batch)
        with torch.no_grad():
            _, s_next, z_next = fixed.actor_target(batch.next_obs)
            q = fixed.critic_target(s_next, z_next)
        assert torch.allclose(y_bug, batch.reward + 0.9 * batch.done * q)
        assert torch.allclose(y_fixed, batch.reward + 0.9 * (1 - batch.done) * q)


def test_frozen_critic_keeps_a2cs_critic_at_its_random_initialisation():  # §8 #4
    env = make_env()
    frozen = make_agent("a2c", env, small("a2c", critic_lr=1e-2, frozen_critic=True), seed=0)
    trained = make_agent("a2c", env, small("a2c", critic_lr=1e-2), seed=0)
    buf = filled_buffer(env, frozen)
    init = copy.deepcopy(frozen.critic.state_dict())
    head = frozen.actor.head.out.weight.detach().clone()
    for i in range(3):
        batch = buf.sample(16, torch.Generator().manual_seed(i))
        frozen.update(batch)
        trained.update(batch)
    for net in (frozen.critic, frozen.critic_target):  # the soft update keeps the target equal to it
        assert all(torch.equal(v, init[k]) for k, v in net.state_dict().items())
    assert not torch.equal(frozen.actor.head.out.weight, head)  # the actor still learns
    assert not all(torch.equal(v, init[k]) for k, v in trained.critic.state_dict().items())


def test_topk_softmax_log_prob_matches_a_naive_softmax_over_the_top_k():  # §5.6 A2C
    logits = torch.randn(3, 7)
    log_prob, entropy = topk_softmax_log_prob(logits, 2)
    for b in range(3):
        z = logits[b].exp().sum()
        p = [x.exp().item() / z.item() for x in logits[b]]
        best = sorted(range(7), key=lambda i: -logits[b, i].item())[:2]
        want = sum(torch.log(torch.tensor(p[i])).item() for i in best)
        assert log_prob[b].item() == pytest.approx(want, rel=1e-5)
    naive_h = (
        -sum(pi * torch.log(torch.tensor(pi)).item() for row in logits.softmax(-1).tolist() for pi in row) / 3
    )
    assert entropy.item() == pytest.approx(naive_h, rel=1e-5)


def test_a2c_topk_softmax_leaves_the_gaussian_log_std_untrained():
    env = make_env()
    buf = filled_buffer(env, make_agent("a2c", env, small("a2c"), seed=0))
    soft = make_agent("a2c", env, small("a2c", actor_lr=1e-2, a2c_topk_softmax=True), seed=0)
    gauss = make_agent("a2c", env, small("a2c", actor_lr=1e-2), seed=0)
    before = soft.log_std.detach().clone()
    batch = buf.sample(16, torch.Generator().manual_seed(0))
    soft.update(batch)
    gauss.update(batch)
    assert torch.equal(soft.log_std, before) and not torch.equal(gauss.log_std, before)


def test_td3_no_delay_updates_the_actor_every_step():
    env = make_env()
    agent = make_agent("td3", env, small("td3", actor_lr=1e-2, policy_delay=2, td3_no_delay=True), seed=0)
    buf = filled_buffer(env, agent)
    head = agent.actor.head.out.weight.detach().clone()
    first = agent.update(buf.sample(16, torch.Generator().manual_seed(0)))
    assert "policy_loss" in first and not torch.equal(agent.actor.head.out.weight, head)


def test_td3_explore_smoothing_perturbs_the_target_action_with_the_exploration_noise():
    env = make_env()
    cfg = small("td3", td3_explore_smoothing=True, uniform_noise=True, epsilon_initial=0.0, epsilon_final=0.0)
    agent = make_agent("td3", env, cfg, seed=0)
    batch = filled_buffer(env, agent).sample(16, torch.Generator().manual_seed(0))
    gen = torch.Generator().set_state(agent.generator.get_state())
    got = agent.target_value(batch)
    with torch.no_grad():
        _, s_next, z_next = agent.actor_target(batch.next_obs)
        z = z_next + (torch.rand(z_next.shape, generator=gen) * 0.1).clamp(-1.0, 1.0)
        torch.rand((), generator=gen)  # the ε coin
        q = torch.minimum(agent.critic1_target(s_next, z), agent.critic2_target(s_next, z))
    assert torch.allclose(got, batch.reward + 0.9 * (1 - batch.done) * q, atol=1e-6)


def test_alignment_lr_bug_takes_three_adam_steps_the_alignment_one_at_lr_lambda():  # §8 #6
    env = make_env()
    moves = {}
    for bug in (False, True):
        agent = make_agent("hac", env, small("hac", hyper_actor_coef=0.1, alignment_lr_bug=bug), seed=0)
        buf = filled_buffer(env, agent)
        before = [p.detach().clone() for p in agent.inverse.parameters()]
        losses = agent.update(buf.sample(16, torch.Generator().manual_seed(0)))
        moves[bug] = max(
            (p - b).abs().max().item() for p, b in zip(agent.inverse.parameters(), before, strict=True)
        )
        assert {"policy_loss", "alignment_loss", "behaviour_loss"} <= set(losses)
        assert set(agent.optimizers()) == (
            {"actor", "critic", "alignment", "behaviour"} if bug else {"actor", "critic", "behaviour"}
        )
    # ψ only learns from the alignment loss: Adam's first step moves a parameter by ≈ its lr (actor lr 1e-5
    # fixed, λ_h = 0.1 under the bug).
    assert moves[False] <= 1e-5 * 1.01
    assert 0.09 <= moves[True] <= 0.1 * 1.01


def test_hac_behaviour_loss_steps_on_its_own_optimiser_at_behavior_lr():
    """Fixed mode: the supervised click loss has its own Adam at ``behavior_lr`` (issue 15), not the actor lr.
    Adam's first step moves each parameter by at most its lr, ≈ lr where the gradient is clearly nonzero, so the
    head's output layer (reached by L_π and L_BCE) moves ≈ behavior_lr with the loss and ≤ actor lr without."""
    env = make_env()
    moves = {}
    for coef in (0.0, 1.0):
        cfg = small("hac", actor_lr=1e-7, actor_decay=0.0, behavior_lr=1e-2, behavior_decay=0.0,
                    behavior_coef=coef)  # fmt: skip
        agent = make_agent("hac", env, cfg, seed=0)
        buf = filled_buffer(env, agent)
        before = agent.actor.head.out.weight.detach().clone()
        losses = agent.update(buf.sample(16, torch.Generator().manual_seed(0)))
        assert torch.isfinite(losses["behaviour_loss"])
        moves[coef] = (agent.actor.head.out.weight - before).abs().max().item()
    assert moves[0.0] <= 1.2e-7  # float32 rounding of O(0.1) weights is ~1e-8
    assert 0.5e-2 <= moves[1.0] <= 1e-2 * 1.01 + 1e-7
