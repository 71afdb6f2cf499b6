"""The world check (``recrl_cli.sim.check``, ``recrl check simulator``) and planted-truth recovery.

A deliberately item-only world (every user gets the same behaviour vectors) is flagged, a personalised one
(planted user × item taste) passes; rates off by more than 2× are flagged; the default simulator, trained on
small synthetic KuaiRand, recovers each user's planted ranking of the items beyond the shared item effect.
The fusion rows: three policies with finite figures, the per-user best serves the slate of highest expected
reward (the expectation checked against the env's own draws), a fixed fusion near the per-user best is
flagged, and a model without a play-time head gets a note instead of the rows."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from recrl_cli.cli.check import world_tables
from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.prepare.kuairand import BEHAVIOURS, KuaiRandPrepareParams, prepare_kuairand
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.mtf import calibration
from recrl_cli.mtf.env import FusionEnv, expected_item_rewards, item_rewards
from recrl_cli.mtf.ranker import TASTE_FREE_NAME, built_in_ranker, taste_free_view
from recrl_cli.sim import check as check_module
from recrl_cli.sim.check import (
    FUSION_KEYS,
    FUSION_SKIPPED,
    WorldCheck,
    check_world,
    first_rows,
    fusion_headroom,
    fusion_verdict,
    user_logit_grid,
    verdict,
)
from recrl_cli.sim.config import EnvConfig, SimulatorConfig
from recrl_cli.sim.data import load_kuairand_data
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.sim.play_time import sample_play_seconds
from recrl_cli.sim.response_model import UserResponseModel
from recrl_cli.sim.train import build_simulator
from recrl_cli.sim.truth import double_centre, interaction_share, load_planted_truth
from recrl_cli.training.trainer import Trainer

TINY = dict(user_latent=8, item_latent=8, enc_dim=16, n_layers=1, n_heads=2, ff_dim=16, state_hidden=24,
            history_length=16, taste_dim=8, check_steps=0)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    """(raw folder with the planted truth, prepared folder): 80 users with ~150 rows each, 60 items."""
    root = tmp_path_factory.mktemp("kr_check")
    write_kuairand(root / "raw", num_users=80, num_items=60, num_impressions=12_000, num_random=0, seed=3)
    prepare_kuairand(root / "raw", root / "prepared", KuaiRandPrepareParams())
    return root / "raw", root / "prepared"


def planted_model(prepared: Path, personalised: bool, **cfg) -> UserResponseModel:
    """Item-only: A_b is one vector for every user, no taste. Personalised: A_b = 0, click logit = p_u · q_i.
    The play-time head (``cfg`` may remove it) keeps its random initialisation."""
    data = load_kuairand_data(prepared)
    torch.manual_seed(0)
    model = UserResponseModel(SimulatorConfig(**TINY | cfg), data.users, data.items)
    model.init_rates(data.positive_rate())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.behaviour_norm.weight.zero_()
        model.behaviour_norm.bias.copy_(0.0 if personalised else torch.randn(16, generator=g) * 3)
        model.taste_out.weight.zero_()
        model.taste_out.bias.zero_()
        if personalised:
            model.user_taste.weight.copy_(torch.randn(model.user_taste.weight.shape, generator=g))
            model.item_taste.weight.copy_(torch.randn(model.item_taste.weight.shape, generator=g))
            model.tag_taste.weight.zero_()
            model.taste_out.weight[:8].copy_(torch.eye(8) * 1.5)  # the click's taste vector T = 1.5 p_u
    return model.eval()


def test_item_only_world_is_flagged_and_a_personalised_one_passes(world):
    raw, prepared = world
    data = load_kuairand_data(prepared)
    flat = check_world(planted_model(prepared, False), data, steps=40)
    # Same slates for every user: the best constant slate is the oracle's, so it closes the whole gap.
    assert flat.popular_gap == pytest.approx(1.0)
    assert any("constant slate" in w for w in flat.warnings)
    personal = check_world(planted_model(prepared, True), data, steps=40, truth_dir=raw)
    # 60 items, K = 6, random tastes: the best common slate is far from each user's own top 6 (measured 0.2).
    assert personal.popular_gap < 0.45
    assert not any("constant slate" in w for w in personal.warnings)
    head = personal.headroom
    assert head["oracle"]["total_reward"] > head["popular"]["total_reward"] > head["random"]["total_reward"]
    assert personal.truth_auc is not None and personal.truth_auc["is_click"] > 0.6
    # The fusion rows: the four policies, every figure finite, sessions finished under each.
    assert personal.fusion is not None and set(personal.fusion) == set(calibration.POLICIES)
    assert all(v == v and abs(v) < float("inf") for row in personal.fusion.values() for v in row.values())
    assert all(row["sessions"] > 0 for row in personal.fusion.values())
    metrics = personal.metrics()
    assert {f"world/fusion/{p}/{k}" for p in calibration.POLICIES for k in FUSION_KEYS[:5]} <= set(metrics)
    assert "world/fusion/best_fusion/expected_reward_per_session" in metrics
    assert metrics["world/fusion/ranker_is_simulator"] == 1.0
    again = WorldCheck.from_metrics(metrics)
    assert again.popular_gap == pytest.approx(personal.popular_gap) and again.warnings == personal.warnings
    assert again.fusion == personal.fusion and again.fusion_gap == pytest.approx(
        personal.fusion_gap, nan_ok=True
    )
    assert len(world_tables(again)) == 3  # fit, whole-session headroom, fusion headroom


@pytest.mark.parametrize(
    "edges", [(1.0, 10.0, 18.0, 60.0), (2.0, 12.0, 40.0)], ids=["18 s edge", "no 18 s edge"]
)
def test_expected_item_reward_is_the_mean_of_the_envs_own_draws(edges):
    """expected_item_rewards against draws of the env's samplers (Bernoulli responses, play time, item_rewards)
    with large reward weights on the rare behaviours, within 5 standard errors per item."""
    gen = torch.Generator().manual_seed(0)
    items, draws, edges = 6, 40_000, torch.tensor(edges)
    probs = torch.rand(items, 7, generator=gen) * 0.6 + 0.05
    logits = torch.randn(items, len(edges) + 1, generator=gen)
    weights = torch.tensor([0.6, 1.0, 0.8, 3.0, 2.0, 5.0, 4.0])
    responses = (torch.rand(draws, items, 7, generator=gen) < probs).float()
    play = sample_play_seconds(logits.expand(draws, -1, -1), responses, edges, gen)
    watch, rest = item_rewards(responses, play, weights)
    reward = watch + rest
    want = expected_item_rewards(probs, logits, edges, weights)
    se = reward.std(0) / draws**0.5
    assert bool(((reward.mean(0) - want).abs() < 5 * se).all()), (reward.mean(0), want)


def naive_greedy(values: list[float], cos: list[list[float]], k: int, rho: float) -> tuple[list[int], float]:
    """The per-user best of one request, by plain loops: add the candidate that leaves the highest penalised
    expected reward Σ_i r_i (1 − ρ·Σ_j cos_ij / k) of the slate so far (the final slate's k in the mean)."""

    def value(slate: list[int]) -> float:
        return sum(values[i] * max(0.0, 1 - rho * sum(cos[i][j] for j in slate) / k) for i in slate)

    slate: list[int] = []
    for _ in range(k):
        rest = [c for c in range(len(values)) if c not in slate]
        slate.append(max(rest, key=lambda c: value([*slate, c])))
    return slate, value(slate)


def local_optimum(values: list[float], cos: list[list[float]], slate: list[int], rho: float) -> bool:
    """No single swap of a slate item for an outside candidate raises the penalised value (plain loops)."""
    k = len(slate)

    def value(s: list[int]) -> float:
        return sum(values[i] * max(0.0, 1 - rho * sum(cos[i][j] for j in s) / k) for i in s)

    here = value(slate)
    outside = [c for c in range(len(values)) if c not in slate]
    return all(value([*slate[:p], c, *slate[p + 1 :]]) <= here + 1e-5 for p in range(k) for c in outside)


def test_per_user_best_serves_the_greedy_slate_of_highest_penalised_expected_reward(world):
    """Per request the per-user best's slate is the greedy slate of the penalised expected reward (the env scales
    every probability by 1 − ρ·mean cosine to the slate), recomputed here by plain loops from the simulator's own
    forward pass; it is worth at least as much as the unpenalised top K and every fused slate tried (the zero
    action, the searched fixed action, random actions) on these requests."""
    _, prepared = world
    data = load_kuairand_data(prepared)
    model = planted_model(prepared, True)
    sim = WholeSessionEnv.from_data(model, data, EnvConfig(batch_users=8, seed=0))
    env = FusionEnv(sim, model, retrieved=20, random=10)
    rho = sim.cfg.item_correlation
    fixed = calibration.best_fixed_fusion(env, 3, seed=1)
    assert fixed.shape == (env.action_dim,) and bool((fixed.abs() <= 1).all())
    calibration.reseed(env, 0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        req = env.request()
        obs = sim.observation()
        enc = sim.item_enc[req.candidates + 1]
        state = model.user_state(obs.user, sim.item_enc[obs.items], obs.feedback, obs.mask)
        probs = model.probabilities(model.score(model.behaviour_vectors(state), enc))
        play = model.play_logits(model.play_vectors(state), enc)
        value = expected_item_rewards(probs, play, model.play_edges, env.weights)  # [B, C]
        unit = torch.nn.functional.normalize(enc, dim=-1)
        best = calibration.per_user_best(env)
        got = calibration.slate_value_penalised(value, unit, best, rho)
        for u in range(env.batch):
            cos = (unit[u] @ unit[u].T).tolist()
            _, greedy = naive_greedy(value[u].tolist(), cos, env.slate, rho)
            assert float(got[u]) >= greedy - 1e-4  # the swaps only ever raise the greedy build's value
            assert local_optimum(value[u].tolist(), cos, best[u].tolist(), rho)
        top = calibration.slate_value_penalised(value, unit, value.topk(env.slate, dim=1).indices, rho)
        assert bool((top <= got + 1e-5).all())
        actions = torch.cat(
            [torch.zeros(1, env.action_dim), fixed[None], calibration.random_fusion(env, gen, 6)]
        )
        for a in actions:
            fused = calibration.slate_value_penalised(
                value, unit, env.rank(a[None].expand(env.batch, -1), req), rho
            )
            assert bool((fused <= got + 1e-5).all())
        out = env.serve(best)
        assert torch.equal(out.items, req.candidates.gather(1, best)) and out.reward.shape == (env.batch, 2)


def test_the_fusion_rows_fuse_the_given_ranker(world, monkeypatch):
    """``check_world(..., ranker=R)`` builds its fusion env on R (seen where the env is built), names R in the
    check and its table, and logs that the simulator did not rank for itself; without R the simulator ranks."""
    _, prepared = world
    data = load_kuairand_data(prepared)
    sim, item_only = planted_model(prepared, True), planted_model(prepared, False)
    built = []
    real = check_module.FusionEnv

    def spy(env, ranker, **kw):
        built.append(ranker)
        return real(env, ranker, **kw)

    monkeypatch.setattr(check_module, "FusionEnv", spy)
    own = check_world(sim, data, steps=8)
    assert (
        built == [sim] and own.fusion_ranker == "" and own.metrics()["world/fusion/ranker_is_simulator"] == 1
    )
    other = check_world(sim, data, steps=8, ranker=item_only, ranker_name="item-only")
    assert built[-1] is item_only and other.fusion_ranker == "item-only"
    assert other.metrics()["world/fusion/ranker_is_simulator"] == 0.0
    assert "ranker item-only" in str(world_tables(other)[-1].title)
    assert other.fusion["fixed"]["expected_reward"] != own.fusion["fixed"]["expected_reward"]
    assert WorldCheck.from_metrics(other.metrics()).fusion_ranker  # a logged check remembers it had a ranker


def test_fusion_verdict_warns_on_a_self_ranked_world_and_passes_one_with_room(world):
    """The planted personalised world ranked by itself: every fusion of the true targets is within a few per
    cent of the best (measured +0.2 % at 8 requests), flagged with the hint to check a ranker. The same world
    ranked by an item-only model (its targets know no user): the best fusion per request is far above every
    fixed one (measured +17 %, the fixed fusion at 16 % of the gap; one action per session +15 %), so a
    personalised fusion policy has room."""
    _, prepared = world
    data = load_kuairand_data(prepared)
    sim, item_only = planted_model(prepared, True), planted_model(prepared, False)
    own = fusion_headroom(sim, data, EnvConfig(), 8)
    warned = fusion_verdict(own, self_ranked=True)
    assert len(warned) == 1 and "cannot differ" in warned[0] and "--ranker" in warned[0]
    room = fusion_headroom(sim, data, EnvConfig(), 8, ranker=item_only)
    assert fusion_verdict(room) == []
    e = {p: v["expected_reward"] for p, v in room.items()}
    # best_fusion chooses among actions that include the fixed one, request by request: never below it; one
    # action per user session sits between the two (the same choices, chosen once per session).
    assert e["best_fusion"] >= e["fixed"] and e["best_fusion"] > 1.05 * max(e["random"], e["fixed"])
    assert e["fixed"] - 1e-6 <= room["best_fusion"]["expected_reward_per_session"] <= e["best_fusion"] + 1e-6
    assert e["per_user"] > e["best_fusion"]  # the oracle slate is not limited to the ranker's targets


def test_taste_free_view_drops_the_users_taste_and_nothing_else(world):
    """The ranker of a fusion run without --ranker: every user's taste row is the mean row (so the taste part of
    the state and the taste vectors are one for all users), in a copy; the simulator is untouched. ``self`` is
    the simulator; a simulator without taste has none to drop (the default then falls back to it)."""
    _, prepared = world
    sim = planted_model(prepared, True)
    before = sim.user_taste.weight.clone()
    view, name = built_in_ranker(sim, "")
    rows = view.user_taste.weight
    assert view is not sim and name == TASTE_FREE_NAME and torch.allclose(rows, rows[:1].expand_as(rows))
    assert torch.equal(sim.user_taste.weight, before) and torch.equal(
        view.item_taste.weight, sim.item_taste.weight
    )
    assert built_in_ranker(sim, "self")[0] is sim
    data = load_kuairand_data(prepared)
    plain = UserResponseModel(SimulatorConfig(**TINY, no_user_taste=True), data.users, data.items)
    assert built_in_ranker(plain, "")[0] is plain
    with pytest.raises(ValueError, match="no user taste"):
        taste_free_view(plain)


def test_the_taste_free_ranker_reuses_the_simulators_pass_bit_for_bit(world):
    """The fusion env with the taste-free view reads the simulator's user state (taste columns replaced) instead
    of a second pass: the same requests (state, candidates, targets) as the same view without that link."""
    _, prepared = world
    data = load_kuairand_data(prepared)
    sim_model = planted_model(prepared, True)
    view = taste_free_view(sim_model)
    detached = copy.deepcopy(view)
    object.__delattr__(detached, "taste_free_of")
    envs = []
    for ranker in (view, detached):
        sim = WholeSessionEnv.from_data(sim_model, data, EnvConfig(batch_users=8, seed=0))
        envs.append(FusionEnv(sim, ranker, retrieved=20, random=10))
    assert envs[0]._taste_free and not envs[1]._taste_free
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        a, b = envs[0].request(), envs[1].request()
        assert torch.equal(a.state, b.state) and torch.equal(a.candidates, b.candidates)
        assert torch.equal(a.preds, b.preds)
        action = calibration.random_fusion(envs[0], gen)
        envs[0].step(action), envs[1].step(action)


def test_fusion_rows_are_skipped_without_a_play_time_head(world):
    _, prepared = world
    model = planted_model(prepared, True, play_time_edges=())
    check = check_world(model, load_kuairand_data(prepared), steps=5)
    assert check.fusion is None and check.fusion_note == FUSION_SKIPPED
    assert check.headroom["oracle"]["sessions"] >= 0 and len(world_tables(check)) == 2
    metrics = check.metrics()
    assert metrics["world/fusion/skipped"] == 1.0 and not any(
        k.startswith("world/fusion/random") for k in metrics
    )
    again = WorldCheck.from_metrics(metrics)
    assert again.fusion is None and again.fusion_note == FUSION_SKIPPED
    assert not any("fusion" in w for w in check.warnings)


def test_rates_off_by_more_than_twice_are_flagged_only_with_enough_positives():
    rates = dict.fromkeys(BEHAVIOURS, 0.1)
    base = dict(auc=dict.fromkeys(BEHAVIOURS, 0.7), truth_auc=None, observed_rate=rates, item_cosine=0.1,
                headroom={"random": {"total_reward": 1.0}, "popular": {"total_reward": 1.2},
                          "oracle": {"total_reward": 2.0}})  # fmt: skip
    ok = WorldCheck(
        **base, predicted_rate={**rates, "is_like": 0.19}, positives=dict.fromkeys(BEHAVIOURS, 50)
    )
    assert verdict(ok) == []
    off = WorldCheck(
        **base, predicted_rate={**rates, "is_like": 0.25}, positives=dict.fromkeys(BEHAVIOURS, 50)
    )
    assert len(verdict(off)) == 1 and "is_like ×2.50" in verdict(off)[0]
    few = WorldCheck(**base, predicted_rate={**rates, "is_like": 0.25},
                     positives={**dict.fromkeys(BEHAVIOURS, 50), "is_like": 5})  # fmt: skip
    assert verdict(few) == []  # 5 positives: the observed rate itself is noise
    fusion = lambda fixed, per_user: {"random": {"avg_reward": 10.0}, "fixed": {"avg_reward": fixed},  # noqa: E731
                                      "per_user": {"avg_reward": per_user}}  # fmt: skip
    rates_ok = dict(predicted_rate=rates, positives=dict.fromkeys(BEHAVIOURS, 50))
    assert verdict(WorldCheck(**base, **rates_ok, fusion=fusion(12.0, 20.0))) == []  # fixed: 20 % of the gap
    near = verdict(WorldCheck(**base, **rates_ok, fusion=fusion(17.0, 20.0)))  # 70 %
    assert len(near) == 1 and "70%" in near[0] and "fixed one" in near[0]
    none = verdict(WorldCheck(**base, **rates_ok, fusion=fusion(9.0, 9.5)))  # per-user best below random
    assert len(none) == 1 and "does not beat random" in none[0]
    flat = verdict(WorldCheck(**base, **rates_ok, fusion=fusion(9.9, 10.1)))  # +1 % over random: no room
    assert len(flat) == 1 and "+1.0%" in flat[0] and "cannot differ" in flat[0]
    # A current check: the paired expected reward and the best fusion per request are read, not the realised
    # figure (fixed 12.0 here would make a 70 % gap) nor the oracle slate (20.0: lots of room it cannot reach).
    row = lambda realised, expected: {"avg_reward": realised, "expected_reward": expected}  # noqa: E731
    current = {"random": row(10.0, 10.0), "fixed": row(12.0, 10.2), "best_fusion": row(9.0, 10.3),
               "per_user": row(20.0, 20.0)}  # fmt: skip
    read = verdict(WorldCheck(**base, **rates_ok, fusion=current, fusion_ranker="r"))
    assert len(read) == 1 and "+1.0%" in read[0] and "best fusion per request" in read[0]
    assert "--ranker" not in read[0]  # the hint is for a simulator that ranked for itself


def test_default_simulator_recovers_each_users_planted_ranking(world):
    """Per user, Spearman correlation between the simulator's and the truth's user × item part of the click
    logit over all items (the double-centred grids, so the shared item effect that a popularity list also
    knows counts for nothing). An item-only model scores 0 here by construction."""
    raw, prepared = world
    cfg = RunConfig(algo="simulator", data=DataConfig(dataset="kuairand", prepared_dir=str(prepared)),
                    train=TrainConfig(epochs=6, batch_size=256, lr=3e-3, weight_decay=0.0, patience=0, seed=0),
                    model=SimulatorConfig(**TINY))  # fmt: skip
    torch.manual_seed(0)
    data = load_kuairand_data(prepared)
    algo = build_simulator(cfg, data, torch.device("cpu"))
    Trainer(algo, algo.stages(), device=torch.device("cpu"), seed=0).fit()
    rows = first_rows(data)
    sim = double_centre(user_logit_grid(algo.model, data, rows))
    truth = double_centre(load_planted_truth(raw, prepared).click_logit(data.rows.user[rows]))
    rank = lambda x: x.argsort(1).argsort(1).double()  # noqa: E731
    rs, rt = rank(sim), rank(truth)
    rs, rt = rs - rs.mean(1, keepdim=True), rt - rt.mean(1, keepdim=True)
    spearman = (rs * rt).sum(1) / (rs.norm(dim=1) * rt.norm(dim=1))
    share = interaction_share(sim, truth)
    # Measured 0.33 and r² 0.135 (6 epochs; the generator's taste sd 2 world, issue 14); 3 epochs left it
    # under-fitted (r² 0.05); an item-only model scores 0. 150 rows per user over 60 items bound what any
    # learner recovers (benchmarks/KUAISIM_NOTES.md: even the true item vectors, given, leave a gap); the
    # thresholds sit at about half the measured values.
    assert spearman.mean() > 0.17, (spearman.mean(), share)
    assert share["r2"] > 0.07, share


def test_check_simulator_command_prints_the_tables_and_the_verdict(world, cli, tmp_path):
    raw, prepared = world
    uri = f"sqlite:///{tmp_path / 'db.sqlite'}"
    res = cli("train", "simulator", "--data", prepared, "--set", "data.dataset=kuairand", "--device", "cpu",
              "--set", "train.epochs=2", "--set", "train.batch_size=256", "--set", "train.threads=1",
              *[a for k, v in TINY.items() if k != "check_steps" for a in ("--set", f"model.{k}={v}")],
              "--set", "model.check_steps=20", "--set", f"model.check_truth={raw}",
              "--tracking-uri", uri, "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "headroom" in res.output and "truth AUC" in res.output and "world check" in res.output
    assert "per-user best" in res.output  # the fusion rows, rebuilt from the logged metrics
    # ... and they fused what a fusion run without --ranker fuses.
    assert "ranker the simulator's taste-free view" in " ".join(res.output.split())
    run_dir = next((tmp_path / "runs").glob("*/model.pt")).parent
    res = cli("check", "simulator", run_dir, "--truth", raw, "--steps", "20", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "popular" in res.output and "oracle" in res.output and "r² =" in res.output
    assert (
        "random fusion" in res.output and "best fixed fusion" in res.output and "per-user best" in res.output
    )
    out = " ".join(res.output.split())  # rich wraps long lines
    assert "warning: no --ranker" in out and "ranker the simulator's taste-free view" in out
    res = cli("check", "simulator", run_dir, "--ranker", "self", "--steps", "8", "--device", "cpu")
    assert res.exit_code == 0 and "simulator as ranker" in res.output and "no --ranker" not in res.output
    # A second, item-only simulator as the ranker: the fusion rows fuse it, and no warning about a missing one.
    res = cli("train", "simulator", "--data", prepared, "--set", "data.dataset=kuairand", "--device", "cpu",
              "--set", "train.epochs=1", "--set", "train.batch_size=256", "--set", "train.threads=1",
              *[a for k, v in TINY.items() for a in ("--set", f"model.{k}={v}")], "--set", "model.no_user_taste=true",
              "--tracking-uri", uri, "--runs-dir", tmp_path / "rankers")  # fmt: skip
    assert res.exit_code == 0, res.output
    ranker_dir = next((tmp_path / "rankers").glob("*/model.pt")).parent
    res = cli("check", "simulator", run_dir, "--ranker", ranker_dir, "--steps", "8", "--device", "cpu")
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "no --ranker" not in out and "simulator as ranker" not in out and "taste-free" not in out
    assert f"ranker {ranker_dir}" in out and "best fusion per request" in out
    for args in (["--ranker", tmp_path / "nothing"], []):
        bad = cli(
            "check", "simulator", tmp_path / "nothing" if not args else run_dir, *args, "--device", "cpu"
        )
        assert bad.exit_code == 1 and len([x for x in bad.output.splitlines() if x.startswith("error")]) == 1
