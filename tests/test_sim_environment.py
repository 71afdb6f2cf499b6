"""The whole-session environment: the ring-buffer histories against a naive per-user list simulation, in-place
replacement of leavers, the faithful invariants of hac_kuaisim.md §4.5 (probabilities in (0.5, 0.731), depth in
[10, 20], coverage <= B·K, the ILD formula), the correlation penalty switch, determinism under a seed, the
calibration policies, the metric windows, and an env built from prepared data and an exported model."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from recrl_cli.data.kuairand_tensors import gather_history
from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.errors import ConfigError
from recrl_cli.sim.config import EnvConfig, SimulatorConfig, env_switches
from recrl_cli.sim.data import load_kuairand_data
from recrl_cli.sim.environment import WholeSessionEnv, response_weights
from recrl_cli.sim.evaluate import evaluate_policies, session_metrics
from recrl_cli.sim.metrics import SessionMetrics, slate_ild, slate_ild_pairwise
from recrl_cli.sim.policies import oracle_greedy, random_slate
from recrl_cli.sim.response_model import UserResponseModel
from recrl_cli.sim.synthetic import POSITIVE_RATE, synthetic_feature_tables, synthetic_row_table
from recrl_cli.sim.train import export_model, load_response_model

TINY = dict(user_latent=8, item_latent=8, enc_dim=16, n_layers=2, n_heads=2, ff_dim=16, state_hidden=24,
            history_length=12)  # fmt: skip
USERS, ITEMS, D = 30, 40, 16
SIGMA_1 = 0.7310586  # σ(1), the faithful ceiling


# Tiny tensors: a second thread only adds synchronisation on a shared 2-core machine (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(faithful: bool = False, **switches) -> UserResponseModel:
    torch.manual_seed(0)
    users, items = synthetic_feature_tables(USERS, ITEMS, seed=1)
    return UserResponseModel(SimulatorConfig(**TINY, faithful=faithful, **switches), users, items)


def make_env(faithful: bool = False, model: UserResponseModel | None = None, **env) -> WholeSessionEnv:
    table = synthetic_row_table(USERS, ITEMS, rows_per_user=16, seed=2)  # row 0 of each user: empty history
    cfg = EnvConfig(**{"batch_users": 8, "slate_size": 3, "faithful": faithful, **env})
    rate = torch.tensor(POSITIVE_RATE)
    model = model or tiny_model(faithful)
    return WholeSessionEnv(
        model, cfg, table, torch.arange(table.num_rows), response_weights(rate, cfg.single_response)
    )


def rows_of(obs, b: int) -> tuple[list[int], list[list[float]]]:
    """User b's real history rows, oldest first: (items, feedback)."""
    m = obs.mask[b]
    return obs.items[b][m].tolist(), obs.feedback[b][m].tolist()


# ---- histories and replacement ----------------------------------------------------------------------------------


def test_reset_loads_the_real_history_before_each_start_row():
    env = make_env()
    obs = env.observation()
    hist = gather_history(env.table, env.origin, 12)
    assert torch.equal(obs.items, hist.items) and torch.equal(obs.feedback, hist.feedback)
    assert torch.equal(obs.mask, hist.mask) and torch.equal(obs.user, env.table.user[env.origin])
    assert (env.temper == 20.0).all() and (env.steps == 0).all()


def test_ring_buffer_histories_match_a_naive_per_user_simulation():
    """Append K items + sampled responses and keep the last H per user; a leaver restarts from its new row."""
    env = make_env(batch_users=6, slate_size=5)  # 5 does not divide H = 12: the ring wraps mid-slate
    gen = torch.Generator().manual_seed(5)
    naive = [rows_of(env.observation(), b) for b in range(6)]
    leavers = 0
    for _ in range(40):
        action = random_slate(env, gen)
        r = env.step(action)
        for b in range(6):
            items = naive[b][0] + (action[b] + 1).tolist()
            feedback = naive[b][1] + r.responses[b].tolist()
            naive[b] = (items[-12:], feedback[-12:])
            assert rows_of(r.next_observation, b) == naive[b]  # s' of the same user
            if r.done[b]:
                leavers += 1
                hist = gather_history(env.table, env.origin[b : b + 1], 12)
                naive[b] = (hist.items[0][hist.mask[0]].tolist(), hist.feedback[0][hist.mask[0]].tolist())
            assert rows_of(env.observation(), b) == naive[b]
    assert leavers >= 6


def test_leavers_are_replaced_in_place_and_the_others_kept():
    env = make_env(batch_users=16)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        before_user, before_origin = env.user.clone(), env.origin.clone()
        r = env.step(random_slate(env, gen))
        obs, stay = env.observation(), ~r.done
        if r.done.any():
            break
    assert r.done.any() and stay.any()
    d = r.done
    assert (env.steps[d] == 0).all() and (env.temper[d] == 20.0).all() and (env.total[d] == 0).all()
    assert torch.equal(obs.user[d], env.table.user[env.origin[d]])
    assert torch.equal(env.user[stay], before_user[stay]) and torch.equal(
        env.origin[stay], before_origin[stay]
    )
    assert torch.equal(obs.items[stay], r.next_observation.items[stay])
    assert (env.steps[stay] == r.depth[stay]).all() and (r.depth[d] >= 10).all()
    torch.testing.assert_close(env.total[stay], r.total_reward[stay])


# ---- faithful invariants (§4.5) -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faithful_run():
    env = make_env(faithful=True, batch_users=16)
    gen = torch.Generator().manual_seed(1)
    results = [env.step(random_slate(env, gen)) for _ in range(45)]
    return env, results


def test_faithful_probabilities_lie_in_the_double_sigmoid_band(faithful_run):
    env, results = faithful_run
    p = torch.stack([r.probs for r in results])
    rho = env.cfg.item_correlation
    assert (p > 0.5 - rho / D).all() and (p < SIGMA_1).all()  # penalty <= ρ/d (§8 #12)
    q = env.model.probabilities(torch.linspace(-8, 8, 701))  # beyond ±10 float32 rounds to the bounds
    assert (q > 0.5).all() and (q < SIGMA_1).all()
    assert env.model.training  # §8 #9: dropout on while simulating


def test_faithful_depth_is_between_10_and_20(faithful_run):
    _, results = faithful_run
    depths = torch.cat([r.depth[r.done] for r in results])
    assert len(depths) >= 16 and depths.min() >= 10 and depths.max() <= 20
    totals = torch.cat([r.total_reward[r.done] for r in results])
    assert (totals <= depths * SIGMA_1 + 3).all()  # Σ r ≤ depth: each r is a slate mean of clicks


def test_coverage_counts_distinct_items_at_most_b_times_k(faithful_run):
    env = make_env(batch_users=16)
    gen = torch.Generator().manual_seed(3)
    for action in (random_slate(env, gen), torch.zeros(16, 3, dtype=torch.long), oracle_greedy(env)):
        r = env.step(action)
        assert int(r.coverage) == len(set(action.flatten().tolist())) <= 16 * 3


def test_ild_formulas_against_a_naive_loop():
    gen = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(4, 5, D, generator=gen), dim=-1)
    cos = e @ e.transpose(1, 2)
    total, off = 0.0, 0.0
    for b, i, j in itertools.product(range(4), range(5), range(5)):
        c = float(torch.dot(e[b, i], e[b, j]))
        total += c
        off += c if i != j else 0.0
    assert float(slate_ild(cos, D)) == pytest.approx(1 - total / (4 * 25 * D), abs=1e-6)
    assert float(slate_ild_pairwise(cos)) == pytest.approx(1 - off / (4 * 20), abs=1e-6)
    same = torch.ones(2, 6, 6)
    assert float(slate_ild(same, 64)) == pytest.approx(1 - 1 / 64) and float(slate_ild_pairwise(same)) == 0.0
    env = make_env()  # the env's figure is this formula on the URM's item encodings of the action
    action = random_slate(env, gen)
    unit = env.item_unit[action + 1]
    assert float(env.step(action).ild) == pytest.approx(
        float(slate_ild(unit @ unit.transpose(1, 2), D)), abs=1e-6
    )


def test_correlation_penalty_scales_when_fixed_and_subtracts_rho_over_d_when_faithful():
    model = tiny_model()
    fixed, faithful = make_env(model=model), make_env(model=model, correlation_mean_over_dim=True)
    assert env_switches(faithful.cfg)["correlation_mean_over_dim"] and not faithful.model.training
    same = torch.full((8, 3), 4)  # the same item three times: every cosine is 1, so c_i = 1 or 1/d
    probs = model.probabilities(model.score(fixed._behaviour_vectors()[1], fixed.item_enc[same + 1]))
    p_fixed, p_faithful = fixed.step(same).probs, faithful.step(same).probs
    torch.testing.assert_close(p_fixed, probs * 0.8)  # a rare behaviour keeps 80 % of its rate, not 0
    torch.testing.assert_close(p_faithful, (probs - 0.2 / D).clamp(min=0))


# ---- determinism, policies, metrics --------------------------------------------------------------------------------


@pytest.mark.parametrize("faithful", [False, True])
def test_same_seed_same_session_other_seed_other_session(faithful):
    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(0)  # faithful mode: dropout draws from the global generator
        env = make_env(faithful=faithful, seed=seed)
        gen = torch.Generator().manual_seed(9)
        out = []
        for _ in range(25):
            r = env.step(random_slate(env, gen))
            out += [
                r.responses.flatten(),
                r.reward,
                r.done.float(),
                env.observation().items.flatten().float(),
            ]
        return torch.cat(out)

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_policies_return_distinct_valid_items():
    env = make_env(batch_users=16, slate_size=6)
    for policy in (random_slate, oracle_greedy):
        a = policy(env, torch.Generator().manual_seed(0))
        assert a.shape == (16, 6) and a.min() >= 0 and a.max() < ITEMS
        assert all(len(set(row)) == 6 for row in a.tolist())
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(16, 5, dtype=torch.long))


def test_oracle_greedy_beats_random_on_a_planted_model():
    """Plant A_b = a for every user: the click logit of item i is a·e_i/d, so good items are known (KuaiSim's
    bounded score without the taste path, whose own ranking would be added)."""
    model = tiny_model(no_user_taste=True, bounded_logits=True)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        model.behaviour_norm.weight.zero_()
        model.behaviour_norm.bias.copy_(torch.randn(D, generator=gen) * 12)
    env = make_env(model=model, batch_users=16)
    best = (env.item_enc[1:] @ model.behaviour_norm.bias / D).topk(3).indices.sort().values
    assert torch.equal(oracle_greedy(env).sort(1).values, best.expand(16, 3))
    table = evaluate_policies(env, None, steps=30, seed=0)
    oracle, rand = table["oracle"], table["random"]
    assert oracle["avg_reward"] > rand["avg_reward"] + 0.2
    assert oracle["depth"] > rand["depth"] and oracle["coverage"] == 3 < rand["coverage"]


def test_session_metrics_repeat_depth_until_the_next_leaver():
    def step(done: list[bool], depth: list[int]) -> SimpleNamespace:
        n = len(done)
        return SimpleNamespace(done=torch.tensor(done), depth=torch.tensor(depth), reward=torch.full((n,), 0.5),
                               total_reward=torch.tensor(depth) * 0.5, coverage=torch.tensor(n * 2),
                               ild=torch.tensor(0.99), ild_pairwise=torch.tensor(0.4),
                               responses=torch.ones(n, 2, 7))  # fmt: skip

    m = SessionMetrics()
    for done, depth in (
        ([0, 0], [1, 1]),
        ([1, 0], [12, 2]),
        ([0, 0], [1, 3]),
        ([1, 1], [14, 16]),
        ([0, 0], [1, 1]),
    ):
        m.update(step([bool(x) for x in done], depth))
    s = m.series()
    assert torch.isnan(s["depth"][0]) and s["depth"][1:].tolist() == [12, 12, 15, 15]
    assert s["total_reward"][1:].tolist() == [6, 6, 7.5, 7.5] and s["leave"].tolist() == [0, 1, 0, 2, 0]
    assert m.summary(window=2)["depth"] == 15 and m.summary(window=10)["depth"] == pytest.approx(13.5)
    assert m.summary()["is_click_rate"] == 1.0 and len(m) == 5


def test_response_weights_and_config_errors():
    rate = torch.tensor(POSITIVE_RATE)
    assert response_weights(rate, True).tolist() == [1, 0, 0, 0, 0, 0, 0]
    w = response_weights(rate, False)
    torch.testing.assert_close(w[:6], rate[:6] / (1 - rate[:6]))
    assert w[6] == pytest.approx(-POSITIVE_RATE[6] / (1 - POSITIVE_RATE[6]))
    with pytest.raises(ConfigError, match="batch_users"):
        EnvConfig(batch_users=0)
    with pytest.raises(ConfigError, match="initial_temper"):
        EnvConfig(initial_temper=0.5)


# ---- from prepared data and an exported model ------------------------------------------------------------------


def test_env_from_prepared_data_and_an_exported_model(tmp_path):
    write_kuairand(tmp_path / "raw", num_users=120, num_items=80, num_impressions=6_000, seed=3)
    prepare_kuairand(tmp_path / "raw", tmp_path / "out", KuaiRandPrepareParams())
    data = load_kuairand_data(tmp_path / "out")
    torch.manual_seed(0)
    model = load_response_model(
        export_model(UserResponseModel(SimulatorConfig(**TINY), data.users, data.items), data)
    )
    env = WholeSessionEnv.from_data(
        model, data, EnvConfig(batch_users=8, start_split="test", single_response=False)
    )
    assert set(env.origin.tolist()) <= set(data.splits["test"].tolist())
    rate = data.rows.labels.float().mean(0)
    torch.testing.assert_close(env.weights, response_weights(rate, False))
    metrics = session_metrics(env, lambda obs: oracle_greedy(env), steps=5, seed=0)
    assert metrics["sessions"] == 8 and metrics["depth"] == 5 and 0 < metrics["coverage"] <= 8 * 6
