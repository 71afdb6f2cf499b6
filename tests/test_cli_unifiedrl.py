"""UnifiedRL and the fusion baselines end to end on tiny synthetic KuaiRand: env invariants, the Parquet logs,
``recrl train unifiedrl`` / ``mtf-td3bc`` and ``recrl ablate unifiedrl --bounds`` through the CLI with MLflow
read-back, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest
import torch

from recrl_cli.agents.algorithm import load_simulator
from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.mtf.collect import collect, read_logs, to_store, write_logs
from recrl_cli.mtf.env import PROFILE_DIM, FusionEnv, item_rewards
from recrl_cli.mtf.evaluate import ab_sessions
from recrl_cli.mtf.metrics import paired_pct_change, unpaired_pct_change
from recrl_cli.mtf.policies import LinearFusionPolicy
from recrl_cli.pipeline import train_run
from recrl_cli.sim.config import EnvConfig, SimulatorConfig
from recrl_cli.sim.data import load_kuairand_data
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.tracking.base import NullTracker

SIM = dict(user_latent=4, item_latent=4, enc_dim=8, n_layers=1, n_heads=2, ff_dim=8, state_hidden=8,
           history_length=8)  # fmt: skip
TINY = ["--batch-users", 8, "--slate-size", 3, "--retrieved", 10, "--random-candidates", 5, "--cem-population", 4,
        "--cem-iterations", 2, "--cem-steps", 3, "--collect-steps", 10, "--iterations", 10, "--batch-size", 16,
        "--hidden", 16, "--critics", 2, "--eval-waves", 1, "--eval-users", 8, "--guard-users", 8, "--test-steps", 5, "--device", "cpu",
        "--threads", 1]  # fmt: skip


# Tiny models: one thread is faster and keeps the suite from oversubscribing 2 cores (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(prepared KuaiRand, simulator run dir, ranker run dir: a second simulator with another seed)."""
    root = tmp_path_factory.mktemp("kr_mtf")
    write_kuairand(root / "raw", num_users=60, num_items=50, num_impressions=2_000, seed=7)
    prepare_kuairand(root / "raw", root / "prepared", KuaiRandPrepareParams())
    dirs = []
    for seed in (0, 1):
        cfg = RunConfig(algo="simulator", data=DataConfig(dataset="kuairand", prepared_dir=str(root / "prepared")),
                        train=TrainConfig(epochs=1, max_steps=2, batch_size=64, device="cpu", threads=1, seed=seed),
                        model=SimulatorConfig(**SIM))  # fmt: skip
        dirs.append(train_run(cfg, NullTracker(), experiment="sim", runs_root=root / "runs").run_dir)
    return root / "prepared", dirs[0], dirs[1]


def _env(world, seed: int = 0) -> FusionEnv:
    prepared, sim_dir, ranker_dir = world
    sim, _ = load_simulator(str(sim_dir), torch.device("cpu"))
    ranker, _ = load_simulator(str(ranker_dir), torch.device("cpu"))
    data = load_kuairand_data(prepared)
    base = WholeSessionEnv.from_data(sim, data, EnvConfig(batch_users=6, slate_size=4, seed=seed))
    return FusionEnv(base, ranker, retrieved=12, random=8)


def test_env_serves_distinct_candidates_and_splits_the_reward(world):
    env = _env(world)
    policy = LinearFusionPolicy.zeros(env.action_dim, 0.7, env.device)
    for _ in range(3):
        req = env.request()
        assert req.state.shape == (6, env.state_dim) and req.preds.shape == (6, 20, 5)
        assert bool(((req.preds >= 0) & (req.preds <= 1)).all())
        assert all(len(set(row)) == 20 for row in req.candidates.tolist())  # retrieved + random are distinct
        action = torch.rand(6, env.action_dim) * 2 - 1
        out = env.step(action)
        assert all(len(set(row)) == 4 for row in out.slate.tolist())  # no repeats in a slate
        assert torch.equal(out.items, req.candidates.gather(1, out.slate))
        assert torch.equal(out.slate, env.rank(action, req))  # the slate is the top K of the fused score
        watch, rest = item_rewards(out.responses, out.play, env.weights)
        torch.testing.assert_close(out.reward, torch.stack([watch.sum(1), rest.sum(1)], -1))
        assert bool((out.play[out.responses[..., 0] == 0] == 0).all())  # no play without a click
    with pytest.raises(ValueError, match="action must have shape"):
        env.step(policy(env.request().state)[:, :3])


def test_logs_round_trip_through_parquet_into_a_transition_store(world, tmp_path):
    env = _env(world, seed=3)
    mu = LinearFusionPolicy.zeros(env.action_dim, 0.7, env.device)
    logs = collect(env, mu, noise="uniform", width=0.15, bound=0.15, steps=4, generator=torch.Generator())
    assert len(logs) == 24 and bool(((logs.action - logs.mu_bp).abs() <= 0.15 + 1e-6).all())
    # next_state of request t is the state of the same row at request t + 1
    torch.testing.assert_close(logs.next_state[:-6], logs.state[6:])
    write_logs(logs, tmp_path / "d2.parquet", "uniform")
    back = read_logs(tmp_path / "d2.parquet")
    for name in ("state", "action", "mu_bp", "candidates", "preds", "slate", "responses", "play", "reward"):
        torch.testing.assert_close(getattr(back, name), getattr(logs, name))
    assert {"round", "done", "lower", "upper", "next_mu_bp"} <= set(
        pq.read_schema(tmp_path / "d2.parquet").names
    )
    store = to_store(back)
    assert len(store) == 24 and store.reward_dim == 2 and store.action_dim == 10


def _make_env(world):
    prepared, sim_dir, ranker_dir = world
    sim, _ = load_simulator(str(sim_dir), torch.device("cpu"))
    ranker, _ = load_simulator(str(ranker_dir), torch.device("cpu"))
    data = load_kuairand_data(prepared)

    def make(seed: int) -> FusionEnv:
        base = WholeSessionEnv.from_data(sim, data, EnvConfig(batch_users=32, slate_size=4, seed=seed))
        return FusionEnv(base, ranker, retrieved=12, random=8)

    return make


def test_paired_ab_of_a_policy_against_itself_is_exactly_zero_and_pairing_shrinks_the_ci(world):
    make = _make_env(world)
    gen = torch.Generator().manual_seed(0)
    es = LinearFusionPolicy(torch.randn(1, 10, PROFILE_DIM + 1, generator=gen) * 0.5, 0.7)
    # another policy: the same fusion with one target's power moved, so most of the slates stay the same
    shift = torch.zeros(10)
    shift[0] = 0.3
    other = lambda state: (es(state) + shift).clamp(-1.0, 1.0)  # noqa: E731
    seeds = [11, 12, 13]
    a, b = ab_sessions(make, es, seeds), ab_sessions(make, es, seeds)
    for k in a:
        assert torch.equal(a[k], b[k]), k  # common random numbers: a replay is the same sessions exactly
        assert paired_pct_change(a[k], b[k]) == (0.0, 0.0)
    c = ab_sessions(make, other, seeds)
    assert not torch.equal(c["reward"], a["reward"])  # the two policies do differ
    pct, paired = paired_pct_change(c["reward"], a["reward"])
    same_pct, unpaired = unpaired_pct_change(c["reward"], a["reward"])
    assert pct == pytest.approx(same_pct) and 0.0 < paired < 0.5 * unpaired, (paired, unpaired)


def _algorithm(world, tmp_path, *extra: tuple[str, str]):
    from recrl_cli.cli.resolve import run_config_from_cli
    from recrl_cli.mtf.algorithm import MTFAlgorithm

    prepared, sim_dir, ranker_dir = world
    opts = dict(zip(TINY[0::2], TINY[1::2], strict=True))
    pairs = [(k.removeprefix("--").replace("-", "_"), str(v)) for k, v in opts.items() if k != "--device"]
    pairs += [("simulator", str(sim_dir)), ("ranker", str(ranker_dir)), ("logs_dir", str(tmp_path)), *extra]
    cfg = run_config_from_cli("unifiedrl", config=None, sets=None, extra=pairs, seed=0, device="cpu",
                              data_dir=prepared)  # fmt: skip
    return MTFAlgorithm("unifiedrl", cfg, load_kuairand_data(prepared), torch.device("cpu"))


def test_ptm_guard_keeps_a_rounds_policy_only_if_not_worse_than_the_centre(world, tmp_path, monkeypatch):
    alg = _algorithm(world, tmp_path, ("rounds", "3"))
    assert alg.guard
    # The validation A/B is paired: the centre against itself is exactly 0 ± 0 (and 0 counts as "not worse").
    assert alg.guard_ab(0, alg.mu_bp0, alg.mu_bp0) == (0.0, 0.0)
    verdicts = iter([(1.0, 0.3), (-0.4, 0.3), (0.0, 0.0)])  # better, worse, equal
    monkeypatch.setattr(alg, "guard_ab", lambda r, new, old: next(verdicts))
    state = alg.state_dict()
    marks = []
    for r in range(3):
        with torch.no_grad():  # a different learner per round, so the kept one can be told apart
            alg.learner.actor.net.out.bias.fill_(float(r))
        marks.append(alg.learner.actor(alg.env.request().state))
        alg.end_round(r)
        kept = {0: 0, 1: 0, 2: 2}[r]  # round 1 was worse: the centre stays round 0's policy
        torch.testing.assert_close(alg.centre_policy()(alg.env.request().state), marks[kept])
    assert [g["kept"] for g in alg.guard_log] == [1.0, 0.0, 1.0]
    assert alg.policies()["policy"] == alg.centre_policy()  # the run reports the last kept policy
    # The decisions are part of the checkpoint; a resumed run re-runs on_end without deciding again.
    saved = alg.state_dict()
    alg.load_state_dict(state)
    assert alg.guard_log == [] and alg.center is None and alg.policies()["policy"] is alg.mu_bp0
    alg.load_state_dict(saved)
    alg.end_round(2)
    assert len(alg.guard_log) == 3
    torch.testing.assert_close(alg.centre_policy()(alg.env.request().state), marks[2])


def test_es_learning_curve_follows_the_cem_generations(world, tmp_path):
    from recrl_cli.mtf.algorithm import MTFAlgorithm
    from recrl_cli.reporting import plot_rl_curves

    alg = _algorithm(world, tmp_path)
    es = MTFAlgorithm("mtf-es", alg.cfg, alg.data, torch.device("cpu"))
    assert es.curves() == {}  # nothing has run yet
    for _ in range(3):
        es.cem_step(torch.zeros(1))
    curves = es.curves()
    assert [step for step, _ in curves["request_reward"]] == [1, 2, 3]  # one point per CEM generation
    assert {"cem_score_best", "cem_std"} <= set(curves)
    metrics = {"test/es/request_reward": 0.5, "test/fixed/request_reward": 0.4}
    # the reward panel (curve + the two reference lines) and the two CEM logs in the other panel
    assert plot_rl_curves(curves, metrics, tmp_path / "curve.png", "mtf-es") == 5


def test_without_the_guard_or_ptm_every_round_is_kept(world, tmp_path):
    assert not _algorithm(world, tmp_path, ("rounds", "3"), ("ptm_guard", "false")).guard
    assert not _algorithm(world, tmp_path, ("ptm", "false")).guard  # one round: nothing to guard


@pytest.mark.parametrize(("algo", "own"), [("unifiedrl", []), ("mtf-td3bc", ["--weights-from", "config"])])
def test_train_fusion_through_the_cli_logs_ab_offline_metrics_and_parquet(cli, world, mlflow_sqlite_uri, tmp_path,
                                                                         algo, own):  # fmt: skip
    prepared, sim_dir, ranker_dir = world
    res = cli("train", algo, "--simulator", sim_dir, "--ranker", ranker_dir, "--data", prepared, *TINY, *own,
              "--logs-dir", tmp_path / "logs", "--tracking-uri", mlflow_sqlite_uri,
              "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "valid_consumption / session" in res.output and "mtf_gauc" in res.output
    assert "no --ranker" not in res.output
    mlflow.set_tracking_uri(mlflow_sqlite_uri)
    (run,) = mlflow.search_runs(experiment_names=["recrl/kuairand"], output_format="list")
    metrics = run.data.metrics
    for key in ("es/valid_consumption", "policy/watch_minutes", "policy/reward_change_pct", "policy/depth_change_ci",
                "policy/mtf_gauc", "es/mtf_gauc", "es/mtf_gauc_by_request", "policy/ncis/request_reward", "policy/premise/share_dims_in_box",
                "ncis/cap", "ncis/kernel"):  # fmt: skip
        assert f"eval/test/{key}" in metrics, key
    assert 0.0 <= metrics["eval/test/policy/mtf_gauc"] <= 1.0
    assert metrics["eval/test/ranker_is_simulator"] == 0.0
    assert metrics["eval/test/ab/sessions"] == 8.0  # --eval-users 8 × --eval-waves 1
    if algo == "unifiedrl":  # PTM with the guard: one decision per round, the kept rounds counted
        assert 0.0 <= metrics["eval/test/ptm/rounds_kept"] <= 5.0 and "eval/test/ptm/round4/kept" in metrics
    # Default: fitted on the data (1 per watch minute); --weights-from config: the given fallback vector (0.5).
    assert metrics["eval/test/reward_weight/watch_minute"] == (0.5 if own else 1.0)
    # The learning curve (issue 15): each round's logged reward per request at the update it was collected,
    # the learner's losses over its 10 updates, and the A/B's reward per request as the reference lines.
    client = mlflow.tracking.MlflowClient()
    rounds = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "curve/request_reward")]
    assert [step for step, _ in rounds] == ([0, 2, 4, 6, 8] if algo == "unifiedrl" else [0])
    assert all(value == value for _, value in rounds)
    losses = [k for k in metrics if k.startswith("curve/") and k != "curve/request_reward"]
    assert losses and all(metrics[k] == metrics[k] for k in losses)
    for who in ("es", "policy", "fixed"):
        assert metrics[f"eval/test/{who}/request_reward"] > 0.0
    files = sorted(p.name for p in (tmp_path / "logs").rglob("*.parquet"))
    rounds = 5 if algo == "unifiedrl" else 1
    assert files == sorted([f"round{r}.parquet" for r in range(rounds)] + ["test.parquet", "ncis.parquet"])
    noise = "uniform" if algo == "unifiedrl" else "gaussian"
    assert next((tmp_path / "logs").rglob("round0.parquet")).parent.name.startswith(
        f"{algo}-seed2022-{noise}"
    )


def test_ablate_unifiedrl_over_bounds_runs_nested_variants(
    cli, world, mlflow_sqlite_uri, tmp_path, monkeypatch
):
    prepared, sim_dir, _ = world
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    res = cli("ablate", "unifiedrl", "--bounds", "0.1,0.2", "--simulator", sim_dir, "--data", prepared, *TINY,
              "--rounds", 2, "--tracking-uri", mlflow_sqlite_uri, "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())  # rich wraps long lines
    assert (
        "warning: no --ranker" in out and "taste-free view" in out
    )  # the stand-in ranker: said, not only logged
    # One row per policy: ES (the reference, Δ "ref"), the fixed fusion and each bound, changes vs ES.
    assert "ES (μ_bp⁰)" in res.output and "fixed fusion" in res.output and "reward Δ % vs ES" in out
    assert "bounds=0.1" in res.output and "bounds=0.2" in res.output and "ref" in res.output
    assert "Δ vs ref" not in res.output and "nan" not in res.output.lower()
    mlflow.set_tracking_uri(mlflow_sqlite_uri)
    runs = mlflow.search_runs(experiment_names=["recrl/kuairand"], output_format="list")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(children) == 2
    assert sorted(float(r.data.params["model.bounds"]) for r in children) == [0.1, 0.2]
    assert all("eval/test/policy/ncis/request_reward" in r.data.metrics for r in children)
    # No --ranker: the runs fused the simulator's taste-free view, not the simulator's own targets.
    assert all(r.data.metrics["eval/test/ranker_is_taste_free_view"] == 1.0 for r in children)
    assert all(r.data.metrics["eval/test/ranker_is_simulator"] == 0.0 for r in children)
    assert len(list((tmp_path / "runs" / "studies").rglob("study_fusion_reward.png"))) == 1
    # The logs sit in each run's own directory by default, never in ./mtf-logs.
    assert not (tmp_path / "mtf-logs").exists()
    logs = sorted(p.parent.name for p in (tmp_path / "runs").rglob("mtf-logs/*/round0.parquet"))
    assert logs == ["unifiedrl-seed2022-uniform-b0.1", "unifiedrl-seed2022-uniform-b0.2"]


def test_ranker_notice_says_what_a_fusion_run_fuses():
    """No --ranker: the taste-free view, said; --ranker self: the oracle ranker, warned; a named ranker: silent."""
    from recrl_cli.mtf.config import MTFRunConfig
    from recrl_cli.mtf.report import ranker_notice

    assert "no --ranker" in ranker_notice(MTFRunConfig()) and "taste-free view" in ranker_notice(
        MTFRunConfig()
    )
    assert "oracle ranker" in ranker_notice(MTFRunConfig(ranker="self"))
    assert ranker_notice(MTFRunConfig(ranker="taste-free")) is None
    assert ranker_notice(MTFRunConfig(ranker="runs/simulator-x")) is None


def test_study_rows_put_es_first_and_every_change_against_it():
    from recrl_cli.mtf.report import study_rows

    def run(change: float, es: float) -> dict[str, float]:
        return {"test/es/reward": es, "test/policy/reward": es * (1 + change / 100),
                "test/policy/reward_change_pct": change, "test/policy/reward_change_ci": 0.3,
                "test/fixed/reward": es - 1, "test/fixed/reward_change_pct": -5.0}  # fmt: skip

    per_run = {("b=0.1", 0): run(1.0, 10.0), ("b=0.1", 1): run(3.0, 12.0), ("b=0.2", 0): run(-1.0, 10.0),
               ("b=0.2", 1): run(-1.0, 12.0)}  # fmt: skip
    rows = study_rows(per_run, ["b=0.1", "b=0.2"], 2)
    assert [r["variant"] for r in rows] == ["ES (μ_bp⁰)", "fixed fusion", "b=0.1", "b=0.2"]
    assert rows[0]["reward"][0] == 11.0 and rows[0]["reward_change_pct"] == (0.0, 0.0)
    assert rows[1]["reward_change_pct"][0] == -5.0
    assert rows[2]["reward_change_pct"][0] == 2.0 and rows[3]["reward_change_pct"] == (-1.0, 0.0)
    # One seed: the CI of a change is the run's own paired A/B CI, not NaN.
    assert study_rows(per_run, ["b=0.1", "b=0.2"], 1)[2]["reward_change_pct"] == (1.0, 0.3)


@pytest.mark.parametrize(("args", "needle"), [
    (["--bounds", "2"], "model.bounds"),
    (["--cem-population", "99"], "cem_population"),
    (["--noise", "laplace"], "noise"),
    (["--ptm", "maybe"], "ptm"),
])  # fmt: skip
def test_bad_fusion_options_are_one_line_errors(cli, world, tmp_path, args, needle):
    prepared, sim_dir, _ = world
    res = cli("train", "unifiedrl", "--simulator", sim_dir, "--data", prepared, *TINY, *args,
              "--tracking-uri", f"sqlite:///{tmp_path / 'db.sqlite'}", "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in res.output, res.output
    assert not (tmp_path / "runs").exists()


def test_missing_simulator_is_a_one_line_error(cli, world, tmp_path):
    prepared, _, _ = world
    res = cli("train", "unifiedrl", "--data", prepared, "--device", "cpu",
              "--tracking-uri", f"sqlite:///{tmp_path / 'db.sqlite'}", "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--simulator" in errors[0], res.output


def test_target_updates_scale_with_the_budget():
    from recrl_cli.mtf.algorithm import learner_overrides, target_every
    from recrl_cli.mtf.config import MTFRunConfig

    assert target_every(MTFRunConfig(iterations=300)) == 1  # quick: the targets follow within a PTM round
    assert target_every(MTFRunConfig(iterations=100_000)) == 5
    assert target_every(MTFRunConfig(preset="paper")) == 15  # the paper's L at its 300k updates
    assert target_every(MTFRunConfig(iterations=300, target_every=7)) == 7  # given: used as is
    assert learner_overrides("unifiedrl", MTFRunConfig(iterations=300))["target_every"] == 1
    assert MTFRunConfig().eval_users * MTFRunConfig().eval_waves == 1024  # the A/B default
    # what the default buys: the share of the way the targets move towards the critics in a round of 60 updates
    moved = lambda every: 1 - (1 - 0.08) ** (60 // every)  # noqa: E731
    assert moved(15) == pytest.approx(0.28, abs=0.01) and moved(1) > 0.99


def test_an_mtl_base_trained_on_kuairand_ranks_for_the_fusion_env(
    cli, world, cli_dataset, mlflow_sqlite_uri, tmp_path
):
    """`--ranker runs/mmoe-<key>` (issue 17 item 4): the base scores every (user, candidate) on the feature row it was
    trained on; click and long view drive three targets, the other two are the same for every candidate."""
    from recrl_cli.algorithms.supervised import load_mtl_predictor
    from recrl_cli.mtf.mtl_ranker import load_mtl_ranker, read_ranker
    from recrl_cli.nets.mtl.config import MTLConfig

    prepared, sim_dir, _ = world
    small = MTLConfig(embed_dim=8, bottom_dims=(16,), tower_dims=(8,), expert_num=2)
    train = TrainConfig(epochs=1, batch_size=256, device="cpu", threads=1)
    cfg = RunConfig(
        algo="mmoe", data=DataConfig(dataset="kuairand", prepared_dir=str(prepared)), train=train, model=small
    )
    mtl_dir = train_run(cfg, NullTracker(), experiment="mtl", runs_root=tmp_path / "runs").run_dir
    saved = read_ranker(str(mtl_dir))
    sim, _ = load_simulator(str(sim_dir), torch.device("cpu"))
    data = load_kuairand_data(prepared)
    ranker = load_mtl_ranker(saved, data, sim.play_edges, torch.device("cpu"))
    env = FusionEnv(WholeSessionEnv.from_data(sim, data, EnvConfig(batch_users=6, slate_size=4, seed=0)), ranker,
                    retrieved=12, random=8)  # fmt: skip
    req = env.reset()
    assert req.preds.shape == (6, 20, 5) and bool(((req.preds >= 0) & (req.preds <= 1)).all())
    assert req.state.shape == (6, env.state_dim) and env.state_dim == 3 * 8 + PROFILE_DIM
    assert float(req.preds[..., 2].std()) > 0  # long view: the base's own prediction varies over candidates
    assert (
        float(req.preds[..., 3].std()) == 0 and float(req.preds[..., 4].std()) == 0
    )  # interaction, not-hate
    # The base's probabilities are those of the saved model on the same feature rows.
    obs = env.sim.observation()
    h = ranker.cfg.history_length
    rows = ranker.features(
        obs.user, obs.items[:, -h:], obs.feedback[:, -h:], obs.mask[:, -h:], req.candidates
    )
    probs, _ = ranker.candidate_outputs(obs.user, obs.items[:, -h:], obs.feedback[:, -h:], obs.mask[:, -h:],
                                        req.candidates)  # fmt: skip
    direct = load_mtl_predictor(saved["exported"], torch.device("cpu"))(rows).view(6, 20, 2)
    assert torch.allclose(probs[..., :2], direct, atol=1e-6)
    # Through the CLI: the fusion run uses it (not the simulator) as its ranker.
    res = cli("train", "unifiedrl", "--simulator", sim_dir, "--ranker", mtl_dir, "--data", prepared, *TINY,
              "--logs-dir", tmp_path / "logs", "--tracking-uri", mlflow_sqlite_uri, "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    mlflow.set_tracking_uri(mlflow_sqlite_uri)
    (run,) = mlflow.search_runs(experiment_names=["recrl/kuairand"], output_format="list")
    assert run.data.metrics["eval/test/ranker_is_simulator"] == 0.0
    # An MTL model trained on RetailRocket is no ranker: one line, before anything is tracked.
    rr = RunConfig(
        algo="mmoe", data=DataConfig(prepared_dir=str(cli_dataset.prepared)), train=train, model=small
    )
    rr_dir = train_run(rr, NullTracker(), experiment="mtl", runs_root=tmp_path / "rr-runs").run_dir
    res = cli("train", "unifiedrl", "--simulator", sim_dir, "--ranker", rr_dir, "--data", prepared, *TINY,
              "--tracking-uri", f"sqlite:///{tmp_path / 'other.db'}", "--runs-dir", tmp_path / "runs2")  # fmt: skip
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1 and len(errors) == 1 and "trained on retailrocket data" in errors[0], res.output
