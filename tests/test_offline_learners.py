"""Every offline learner against naive reference computations on a tiny batch, plus the contract the caller
relies on: parameters move, a state_dict round-trip reproduces act() and training, errors are one line."""

import copy
import io
import math
import statistics

import pytest
import torch

from recrl_cli.errors import ConfigError, RegistryError
from recrl_cli.offline.batch import TransitionStore
from recrl_cli.offline.cql_sac import cql_logsumexp
from recrl_cli.offline.iql import expectile_loss
from recrl_cli.offline.registry import LEARNERS, build_learner, get_learner
from recrl_cli.offline.unifiedrl import UnifiedRLConfig

S, A = 5, 3
SMALL = {"unifiedrl": {"critics": 3, "actor_hidden": (16,), "critic_hidden": (16, 8)},
         "ddpg": {"actor_hidden": (16,), "critic_hidden": (16,)}, "td3bc": {"actor_hidden": (16,), "critic_hidden": (16,)},
         "iql": {"actor_hidden": (16,), "critic_hidden": (16,)}, "bcq": {"hidden": (16,), "vae_hidden": (16,)},
         "cql_sac": {"actor_hidden": (16,), "critic_hidden": (16,)}}  # fmt: skip


def tiny_store(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(n, A, generator=g) * 1.2 - 0.6
    mu_next = torch.rand(n, A, generator=g) * 1.2 - 0.6
    return TransitionStore.from_tensors({
        "state": torch.randn(n, S, generator=g), "next_state": torch.randn(n, S, generator=g),
        "action": (mu + torch.rand(n, A, generator=g) * 0.3 - 0.15).clamp(-1, 1),
        "reward": torch.randn(n, 2, generator=g), "done": (torch.rand(n, generator=g) < 0.25).float(),
        "mu_bp": mu, "next_mu_bp": mu_next, "lower": torch.full((n, A), -0.15), "upper": torch.full((n, A), 0.15),
    })  # fmt: skip


def build(name, seed=0, **kw):
    return build_learner(name, S, A, (1.0, 0.5), "cpu", seed, **{**SMALL[name], **kw})


def naive_q(ensemble, member, s, a):
    x = torch.cat([s, a], -1)
    layers = ensemble.member(member)
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        x = torch.relu(x) if i < len(layers) - 1 else x
    return x.squeeze(-1)


def naive_excess(x, mu, lo, up):
    return [[max(xi - (mi + ui), 0.0) + max((mi + li) - xi, 0.0) for xi, mi, li, ui in zip(*r, strict=True)]
            for r in zip(x.tolist(), mu.tolist(), lo.tolist(), up.tolist(), strict=True)]  # fmt: skip


@pytest.mark.parametrize("mode", ["decay", "additive", "none"])
def test_unifiedrl_td_target_matches_a_per_critic_reference(mode):
    learner, b = build("unifiedrl", target_penalty=mode), tiny_store().all()
    y = learner.target(b)  # [q, m, n]
    a_next = learner.actor_target(b.next_state).detach()
    excess = naive_excess(a_next, b.next_mu_bp, b.lower, b.upper)
    for i in range(2):
        for j in range(3):
            q_next = naive_q(learner.critic_target, i * 3 + j, b.next_state, a_next)
            for r in range(len(b)):
                w = 0.3  # upper − lower
                if mode == "decay":  # φ = exp(−Σ excess / (ζ w))
                    boot = math.exp(-sum(e / (0.3 * w) for e in excess[r])) * q_next[r].item()
                elif mode == "additive":  # Q' − α Σ_d exp(excess / (β w)) over the dims outside
                    boot = q_next[r].item() - 1.2 * sum(math.exp(e / (0.3 * w)) for e in excess[r] if e > 0)
                else:
                    boot = q_next[r].item()
                ref = b.reward[r, i].item() + 0.9 * (1 - b.done[r].item()) * boot
                assert y[i, j, r].item() == pytest.approx(ref, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("penalty", [True, False])
def test_unifiedrl_actor_loss_matches_eq4_per_set(penalty):
    learner, b = build("unifiedrl", penalty=penalty, set_weights=(2.0, 1.0)), tiny_store().all()
    loss, extra = learner.actor_loss(b)
    a = learner.actor(b.state).detach()
    coef = (2.0 * 1.0, 1.0 * 0.5)  # w ⊙ reward_weights
    excess = naive_excess(a, b.mu_bp, b.lower, b.upper)
    rows = []
    for r in range(len(b)):
        total = 0.0
        for i in range(2):
            qs = [
                naive_q(learner.critic, i * 3 + j, b.state[r : r + 1], a[r : r + 1]).item() for j in range(3)
            ]
            total += coef[i] * (-statistics.fmean(qs) + 0.2 * statistics.pstdev(qs))
        if penalty:
            total += 1.0 * sum(math.exp(e / (0.3 * 0.3)) for e in excess[r] if e > 0)
        rows.append(total)
    assert loss.item() == pytest.approx(statistics.fmean(rows), rel=1e-4)
    assert extra["bound_penalty"].item() > 0  # the random μ_bp puts the untrained actor outside some boxes


def test_unifiedrl_with_a_single_critic_per_set_trains_without_nan():
    learner, store = build("unifiedrl", critics=1), tiny_store()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        out = learner.update(store.sample(32, g))
    assert out["q_std"] == 0.0 and all(math.isfinite(v) for v in out.values())
    assert all(torch.isfinite(p).all() for p in learner.actor.parameters())


def test_unifiedrl_actor_step_leaves_the_critics_alone():
    learner, b = build("unifiedrl"), tiny_store().all()
    before = [p.clone() for p in learner.critic.parameters()]
    loss, _ = learner.actor_loss(b)
    loss.backward()
    assert all(p.grad is None for p in learner.critic.parameters())
    assert all(torch.equal(p, q) for p, q in zip(learner.critic.parameters(), before, strict=True))


def test_unifiedrl_soft_updates_its_targets_every_L_steps_only():
    learner, store = build("unifiedrl", target_every=3, soft_rate=0.5), tiny_store()
    g = torch.Generator().manual_seed(1)
    start = learner.actor_target.net.out.weight.clone()
    learner.update(store.sample(16, g))
    learner.update(store.sample(16, g))
    assert torch.equal(learner.actor_target.net.out.weight, start)
    learner.update(store.sample(16, g))
    expected = 0.5 * start + 0.5 * learner.actor.net.out.weight
    torch.testing.assert_close(learner.actor_target.net.out.weight, expected)


def test_td3bc_actor_loss_is_scaled_q_plus_the_bc_term():
    learner, b = build("td3bc"), tiny_store().all()
    loss, bc = learner.actor_loss(b)
    a = learner.actor(b.state).detach()
    q = [naive_q(learner.critic, 0, b.state[r : r + 1], a[r : r + 1]).item() for r in range(len(b))]
    lam = 2.5 / statistics.fmean(abs(v) for v in q)
    bc_ref = statistics.fmean(
        (x - y) ** 2 for x, y in zip(a.flatten().tolist(), b.action.flatten().tolist(), strict=True)
    )
    assert bc.item() == pytest.approx(bc_ref, rel=1e-5)
    assert loss.item() == pytest.approx(-lam * statistics.fmean(q) + bc_ref, rel=1e-4)


def test_iql_expectile_loss_weighs_under_and_over_estimates_asymmetrically():
    diff = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    ref = statistics.fmean((0.3 if u < 0 else 0.7) * u * u for u in diff.tolist())
    assert expectile_loss(diff, 0.7).item() == pytest.approx(ref, rel=1e-6)
    assert expectile_loss(torch.tensor([1.0]), 0.7) > expectile_loss(torch.tensor([-1.0]), 0.7)


def test_cql_logsumexp_matches_a_naive_sum_of_exponentials():
    g = torch.Generator().manual_seed(0)
    q_rand, q_pi, q_next = (torch.randn(2, 4, 3, generator=g) for _ in range(3))
    logp_pi, logp_next = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    got = cql_logsumexp(q_rand, q_pi, logp_pi, q_next, logp_next, action_dim=A)
    for k in range(2):
        for i in range(4):
            terms = [q_rand[k, i, j].item() + A * math.log(2.0) for j in range(3)]
            terms += [q_pi[k, i, j].item() - logp_pi[i, j].item() for j in range(3)]
            terms += [q_next[k, i, j].item() - logp_next[i, j].item() for j in range(3)]
            assert got[k, i].item() == pytest.approx(math.log(sum(math.exp(t) for t in terms)), rel=1e-5)


def test_bcq_perturbation_never_moves_an_action_more_than_phi():
    learner = build("bcq")
    with torch.no_grad():  # saturate the tanh so the bound is reached, not just respected
        learner.actor.net.out.weight.mul_(1000.0)
    s, a = torch.randn(200, S), torch.rand(200, A) * 1.6 - 0.8
    offset = learner.actor.offset(s, a).detach()
    assert float(offset.abs().max()) <= 0.15 + 1e-6 and float(offset.abs().max()) > 0.149
    moved = learner.actor(s, a).detach() - a
    assert float(moved.abs().max()) <= 0.15 + 1e-6
    act = learner.act(s)
    assert act.shape == (200, A) and float(act.abs().max()) <= 1.0


@pytest.mark.parametrize("name", list(LEARNERS))
def test_every_trainable_parameter_moves_after_a_few_updates(name):
    learner, store = build(name), tiny_store()
    before = {k: p.detach().clone() for k, p in learner.trainable()}
    g = torch.Generator().manual_seed(2)
    for _ in range(4):
        out = learner.update(store.sample(32, g))
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    still = [k for k, p in learner.trainable() if torch.equal(p, before[k])]
    assert not still, f"{name}: parameters never updated: {still}"


@pytest.mark.parametrize("name", list(LEARNERS))
def test_state_dict_round_trip_reproduces_act_and_the_next_update(name):
    store, g = tiny_store(), torch.Generator().manual_seed(3)
    first = build(name, seed=0)
    for _ in range(3):
        first.update(store.sample(32, g))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = build(name, seed=7)  # other initial weights, generator and counters
    second.load_state_dict(torch.load(buffer, weights_only=False))
    s = store.all().state
    assert torch.equal(first.act(s), second.act(s))
    batch = store.sample(32, g)
    assert first.update(batch) == second.update(batch)
    assert torch.equal(first.act(s), second.act(s))
    a = first.act(s)
    assert a.shape == (len(store), A) and float(a.abs().max()) <= 1.0 and not a.requires_grad


def test_config_and_registry_errors_are_one_line_domain_errors():
    with pytest.raises(ConfigError, match="critics must be a positive integer"):
        UnifiedRLConfig(critics=0)
    with pytest.raises(ConfigError, match="target_penalty"):
        UnifiedRLConfig(target_penalty="min")
    with pytest.raises(ConfigError, match="one critic set per component"):
        build_learner("unifiedrl", S, A, (1.0, 1.0, 1.0), "cpu", 0, critics=2)
    with pytest.raises(ConfigError, match="reward weights"):
        build_learner("ddpg", S, A, (), "cpu", 0)
    with pytest.raises(ConfigError, match="expectile"):
        build_learner("iql", S, A, (1.0,), "cpu", 0, expectile=1.0)
    with pytest.raises(RegistryError, match="unknown offline learner 'sac'"):
        get_learner("sac")


def test_cql_regulariser_assembles_the_three_action_sources_per_state():
    learner, b = build("cql_sac", num_samples=3), tiny_store(n=8).all()
    state = learner.generator.get_state()
    q_data = learner.critic(b.state, b.action).detach()
    got = learner.conservative(b, q_data).detach()
    learner.generator.set_state(state)  # replay the same draws, in the same order, one state at a time below
    n, k = len(b), 3
    s, s2 = b.state.repeat_interleave(k, 0), b.next_state.repeat_interleave(k, 0)
    with torch.no_grad():
        a_rand = learner.rand(n * k, A) * 2.0 - 1.0
        a_pi, logp_pi = learner.actor(s, learner.generator)
        a_nx, logp_nx = learner.actor(s2, learner.generator)
    for c in range(2):
        rows = []
        for i in range(n):
            terms = []
            for j in range(i * k, (i + 1) * k):
                x = s[j : j + 1]
                terms.append(naive_q(learner.critic, c, x, a_rand[j : j + 1]).item() + A * math.log(2.0))
                terms.append(naive_q(learner.critic, c, x, a_pi[j : j + 1]).item() - logp_pi[j].item())
                terms.append(naive_q(learner.critic, c, x, a_nx[j : j + 1]).item() - logp_nx[j].item())
            rows.append(math.log(sum(math.exp(t) for t in terms)) - q_data[c, i].item())
        assert got[c].item() == pytest.approx(statistics.fmean(rows), rel=1e-4, abs=1e-5)


def test_squashed_gaussian_log_prob_matches_torch_distributions():
    from torch.distributions import Independent, Normal, TransformedDistribution
    from torch.distributions.transforms import TanhTransform

    learner = build("cql_sac")
    s = torch.randn(16, S)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        a, logp = learner.actor(s, g)
        mean, log_std = learner.actor.net(s).chunk(2, -1)
        dist = TransformedDistribution(
            Independent(Normal(mean, log_std.clamp(-5, 2).exp()), 1), [TanhTransform()]
        )
    torch.testing.assert_close(logp, dist.log_prob(a.clamp(-1 + 1e-6, 1 - 1e-6)), rtol=1e-3, atol=1e-3)
    assert torch.equal(learner.act(s), torch.tanh(mean))


def test_bcq_target_takes_the_best_of_n_generated_actions_per_next_state():
    learner, b = build("bcq", num_samples=4), tiny_store(n=6).all()
    state = learner.generator.get_state()
    y = learner.target(b)
    learner.generator.set_state(state)
    z = learner.prior(6 * 4)  # the same latent draws, row i·N + j for next state i
    for i in range(6):
        best = -math.inf
        for j in range(4):
            s2 = b.next_state[i : i + 1]
            with torch.no_grad():
                a = learner.actor_target(s2, learner.vae.decode(s2, z[i * 4 + j : i * 4 + j + 1]))
            q1, q2 = (naive_q(learner.critic_target, c, s2, a).item() for c in range(2))
            best = max(best, 0.75 * min(q1, q2) + 0.25 * max(q1, q2))
        ref = b.reward[i] @ torch.tensor([1.0, 0.5]) + 0.9 * (1 - b.done[i]) * best
        assert y[i].item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-5)


def test_iql_update_logs_match_its_three_losses_on_the_pre_update_networks():
    learner, b = build("iql"), tiny_store(n=16).all()
    with torch.no_grad():
        v = learner.value(b.state)[:, 0].tolist()
        v_next = learner.value(b.next_state)[:, 0].tolist()
        std = learner.policy.log_std.clamp(-5, 2).exp().tolist()
        mean = learner.policy.mean(b.state).tolist()
    value_terms, q_terms, policy_terms = [], [], []
    for r in range(len(b)):
        s, a = b.state[r : r + 1], b.action[r : r + 1]
        qt = min(naive_q(learner.critic_target, c, s, a).item() for c in range(2))
        u = qt - v[r]
        value_terms.append((0.7 if u >= 0 else 0.3) * u * u)
        y = (b.reward[r] @ torch.tensor([1.0, 0.5])).item() + 0.9 * (1 - b.done[r].item()) * v_next[r]
        q_terms.append(sum((naive_q(learner.critic, c, s, a).item() - y) ** 2 for c in range(2)))
        logp = sum(-0.5 * ((a[0, d].item() - mean[r][d]) / std[d]) ** 2 - math.log(std[d]) - 0.5 * math.log(2 * math.pi)
                   for d in range(A))  # fmt: skip
        policy_terms.append(-min(math.exp(3.0 * u), 100.0) * logp)
    out = learner.update(b)
    assert out["value_loss"] == pytest.approx(statistics.fmean(value_terms), rel=1e-4)
    assert out["critic_loss"] == pytest.approx(statistics.fmean(q_terms), rel=1e-4)
    assert out["policy_loss"] == pytest.approx(statistics.fmean(policy_terms), rel=1e-4)


def test_ddpg_update_logs_match_its_td_and_actor_losses():
    learner, b = build("ddpg"), tiny_store(n=16).all()
    with torch.no_grad():
        a_next = learner.actor_target(b.next_state)
    critic_terms = []
    for r in range(len(b)):
        q_next = naive_q(learner.critic_target, 0, b.next_state[r : r + 1], a_next[r : r + 1]).item()
        y = (b.reward[r] @ torch.tensor([1.0, 0.5])).item() + 0.9 * (1 - b.done[r].item()) * q_next
        critic_terms.append(
            (naive_q(learner.critic, 0, b.state[r : r + 1], b.action[r : r + 1]).item() - y) ** 2
        )
    actor_before = copy.deepcopy(learner.actor)
    out = learner.update(b)
    assert out["critic_loss"] == pytest.approx(statistics.fmean(critic_terms), rel=1e-4)
    # the actor loss −mean Q(s, μ(s)) uses the pre-step actor and the critic after its own step
    with torch.no_grad():
        a = actor_before(b.state)
    q = [naive_q(learner.critic, 0, b.state[r : r + 1], a[r : r + 1]).item() for r in range(len(b))]
    assert out["actor_loss"] == pytest.approx(-statistics.fmean(q), rel=1e-4)
