"""``recrl train hac|ddpg|td3|a2c`` end to end: a tiny simulator trained through the pipeline on tiny synthetic
KuaiRand, then an agent trained through the CLI in its env, logged to MLflow with its evaluation metrics."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest
import torch

from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.pipeline import train_run
from recrl_cli.sim.config import SimulatorConfig
from recrl_cli.tracking.base import NullTracker

SIM = dict(user_latent=4, item_latent=4, enc_dim=8, n_layers=1, n_heads=2, ff_dim=8, state_hidden=8,
           history_length=8)  # fmt: skip
TINY_AGENT = ["--batch-users", 4, "--slate-size", 2, "--warmup-steps", 3, "--iterations", 4, "--eval-steps", 3,
              "--latent", 4, "--enc-dim", 4, "--n-heads", 2, "--ff-dim", 8, "--n-layers", 1,
              "--action-hidden", 8, "--critic-hidden", 8, "--inverse-hidden", 8, "--batch-size", 4,
              "--buffer-size", 64, "--threads", 1, "--device", "cpu"]  # fmt: skip


# Tiny models: one thread is faster and keeps the suite from oversubscribing 2 cores (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory) -> tuple[Path, Path]:
    """(prepared KuaiRand directory, run directory of a tiny trained simulator)."""
    return tiny_simulator(tmp_path_factory.mktemp("kr_agents"))


def tiny_simulator(root: Path) -> tuple[Path, Path]:
    """Synthesise and prepare tiny KuaiRand under ``root`` and train a tiny simulator on it."""
    write_kuairand(root / "raw", num_users=60, num_items=50, num_impressions=2_000, seed=7)
    prepare_kuairand(root / "raw", root / "prepared", KuaiRandPrepareParams())
    cfg = RunConfig(
        algo="simulator",
        data=DataConfig(dataset="kuairand", prepared_dir=str(root / "prepared")),
        train=TrainConfig(epochs=1, max_steps=2, batch_size=64, device="cpu", threads=1),
        model=SimulatorConfig(**SIM),
    )
    result = train_run(cfg, NullTracker(), experiment="sim", runs_root=root / "runs")
    return root / "prepared", result.run_dir


@pytest.mark.parametrize("algo", ["hac", "td3"])
def test_train_agent_through_the_cli_logs_evaluation_metrics(
    cli, simulator, mlflow_sqlite_uri, tmp_path, algo
):
    prepared, sim_dir = simulator
    res = cli("train", algo, "--simulator", sim_dir, "--data", prepared, "--set", "data.dataset=kuairand",
              *TINY_AGENT, "--tracking-uri", mlflow_sqlite_uri, "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "total_reward" in res.output
    mlflow.set_tracking_uri(mlflow_sqlite_uri)
    runs = mlflow.search_runs(experiment_names=["recrl/kuairand"], output_format="list")
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    for key in ("agent/total_reward", "random/total_reward", "popular/total_reward", "oracle/total_reward",
                "agent/depth", "agent/gap_fraction", "agent/gap_vs_popular", "popular/gap_fraction"):  # fmt: skip
        assert f"eval/test/{key}" in metrics
    assert "train/interact/epoch_reward" in metrics
    assert "curve/avg_reward" in metrics and "curve/critic_loss" in metrics  # the learning curve
    client = mlflow.tracking.MlflowClient()
    rewards = client.get_metric_history(runs[0].info.run_id, "curve/avg_reward")
    assert [m.step for m in rewards] == [1, 2, 3, 4]  # one point per iteration at this size
    assert next((tmp_path / "runs").glob("*/learning_curve.png")).is_file()
    saved = torch.load(next((tmp_path / "runs").glob("*/model.pt")), weights_only=False)
    assert saved["algo"] == algo and saved["exported"]["agent"] == algo
    scored = cli("evaluate", next((tmp_path / "runs").glob("*/model.pt")), "--data", prepared)
    assert scored.exit_code == 1 and "does not score rows" in scored.output, scored.output


def test_missing_simulator_is_a_one_line_error(cli, simulator, tmp_path):
    prepared, _ = simulator
    res = cli("train", "hac", "--data", prepared, "--dataset", "kuairand", "--device", "cpu",
              "--tracking-uri", f"sqlite:///{tmp_path / 'db.sqlite'}", "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--simulator" in errors[0], res.output


def test_agent_on_retailrocket_data_is_a_config_error(cli, cli_dataset, simulator, tmp_path):
    _, sim_dir = simulator
    res = cli("train", "ddpg", "--simulator", sim_dir, "--data", cli_dataset.prepared, "--device", "cpu",
              "--tracking-uri", f"sqlite:///{tmp_path / 'db.sqlite'}", "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 1
    assert "KuaiRand" in res.output, res.output


def test_ablate_agent_shows_the_agent_metrics_by_default(cli, simulator, mlflow_sqlite_uri, tmp_path):
    prepared, sim_dir = simulator
    # No --dataset: the prepared directory's manifest says it holds KuaiRand.
    res = cli("ablate", "hac", "--hyper-actor-coef", "0,1", "--simulator", sim_dir, "--data", prepared,
              *TINY_AGENT, "--tracking-uri", mlflow_sqlite_uri,
              "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    table = res.output[res.output.index("hac study") :]
    for name in ("agent/total_reward", "agent/depth", "agent/gap_fraction"):
        assert name in table  # the supervised default (auc, s_logloss) would leave the table empty
    assert "hyper_actor_coef=1" in table and "random/" not in table
    assert (next((tmp_path / "runs" / "studies").iterdir()) / "study_test_agent_total_reward.png").is_file()


@pytest.mark.parametrize("command", ["train", "ablate"])
def test_missing_data_directory_hints_at_preparing_kuairand(cli, tmp_path, command):
    res = cli(command, "hac", "--data", tmp_path / "nope", "--device", "cpu",
              "--tracking-uri", f"sqlite:///{tmp_path / 'db.sqlite'}", "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 1 and "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "recrl prepare kuairand" in errors[0], res.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "db.sqlite").exists()  # nothing half-made


@pytest.mark.parametrize("algo", ["hac", "td3", "a2c"])
def test_faithful_agent_runs_with_every_agent_and_env_switch_on(
    cli, simulator, mlflow_sqlite_uri, tmp_path, algo
):
    from recrl_cli.agents.config import SWITCHES

    prepared, sim_dir = simulator
    res = cli("train", algo, "--faithful", "--simulator", sim_dir, "--data", prepared, *TINY_AGENT,
              "--tracking-uri", mlflow_sqlite_uri, "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    exported = torch.load(next((tmp_path / "runs").glob("*/model.pt")), weights_only=False)["exported"]
    assert exported["agent_config"]["faithful"] and exported["env_config"]["faithful"]
    assert not any(exported["agent_config"][name] for name in SWITCHES)  # the preset, not the single switches
    if algo == "hac":  # the alignment-lr bug's two extra optimisers are checkpointed with the agent
        assert {"alignment", "behaviour"} <= set(exported["state"]["optimizers"])


def test_simulator_by_latest_or_by_mlflow_run_id(cli, simulator, tmp_path):
    """Without --simulator (or with `latest`) the newest finished simulator on the same data in --runs-dir; an
    MLflow run id is downloaded once to runs/simulators/<id>/ and used like a run directory (issue 18)."""
    prepared, sim_dir = simulator
    uri = f"sqlite:///{tmp_path / 'db.sqlite'}"
    for given in ([], ["--simulator", "latest"]):
        out = cli("train", "hac", *given, "--data", prepared, "--runs-dir", sim_dir.parent, "--dry-run")
        rows = {
            r[1].strip(): r[2].strip()
            for r in (line.split("│") for line in out.stdout.splitlines())
            if len(r) > 2
        }
        assert rows["model.simulator"] == str(sim_dir), out.output
    res = cli("train", "hac", "--simulator", "latest", "--data", prepared, "--runs-dir", tmp_path / "empty")
    assert res.exit_code == 1 and "recrl train simulator --data" in res.output, res.output

    sim = cli("train", "simulator", "--data", prepared, "--epochs", 1, "--max-steps", 2, "--user-latent", 4,
              "--item-latent", 4, "--enc-dim", 8, "--n-layers", 1, "--n-heads", 2, "--ff-dim", 8, "--state-hidden", 8,
              "--history-length", 8, "--device", "cpu", "--tracking-uri", uri, "--runs-dir", tmp_path / "sims")  # fmt: skip
    assert sim.exit_code == 0, sim.output
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", sim.stdout).group(1)
    res = cli("train", "hac", "--simulator", run_id, "--data", prepared, *TINY_AGENT, "--tracking-uri", uri,
              "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "simulators" / run_id / "model.pt").is_file()

    # By MLflow run name (issue 18): the one finished run of that name, downloaded by its id like a run id.
    name = next(r.info.run_name for r in _runs(uri) if r.info.run_id == run_id)
    res = cli("train", "hac", "--simulator", name, "--data", prepared, *TINY_AGENT, "--tracking-uri", uri,
              "--runs-dir", tmp_path / "by-name", "--dry-run")  # fmt: skip
    assert res.exit_code == 0 and name in res.output, res.output  # a dry run shows the name as given
    res = cli("train", "hac", "--simulator", name, "--data", prepared, *TINY_AGENT, "--tracking-uri", uri,
              "--runs-dir", tmp_path / "by-name", "--name", "hac-by-name")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "by-name" / "simulators" / run_id / "model.pt").is_file()
    assert next(r for r in _runs(uri) if r.info.run_name == "hac-by-name").data.params[
        "model.simulator"
    ] == str(tmp_path / "by-name" / "simulators" / run_id / "model.pt")


def _runs(uri: str) -> list:
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_simulator_run_name_not_found_or_ambiguous_is_a_one_line_error(
    cli, simulator, tmp_path, mlflow_sqlite_uri
):
    """A name no finished run has, and a name two finished runs share (the error lists both ids), fail before any
    run starts; a failed run of that name does not count."""
    prepared, _ = simulator
    client = mlflow.tracking.MlflowClient(mlflow_sqlite_uri)
    experiment = client.create_experiment("other")
    ids = []
    for status in ("FINISHED", "FINISHED", "FAILED"):
        run = client.create_run(experiment, run_name="sim-twice")
        client.set_terminated(run.info.run_id, status)
        ids.append(run.info.run_id)
    failed = client.create_run(experiment, run_name="sim-failed")
    client.set_terminated(failed.info.run_id, "FAILED")
    for ref, expected in (("sim-twice", ["2 finished MLflow runs are named 'sim-twice'", *ids[:2]]),
                          ("sim-failed", ["no finished MLflow run named 'sim-failed'"]),
                          ("no-such-run", ["no finished MLflow run named 'no-such-run'"])):  # fmt: skip
        res = cli("train", "hac", "--simulator", ref, "--data", prepared, *TINY_AGENT,
                  "--tracking-uri", mlflow_sqlite_uri, "--runs-dir", tmp_path / "runs")  # fmt: skip
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and all(e in errors[0] for e in expected), res.output
        assert ids[2] not in errors[0]
    assert not (tmp_path / "runs").exists()  # nothing started, nothing downloaded
    assert len(client.search_runs([experiment])) == 4


def test_an_ablate_variant_is_the_train_run_with_that_option_and_seed(cli, simulator, tmp_path):
    """AGENTS_NOTES runs each study as separate ``recrl train <agent> --seed S`` processes and calls them the
    ``recrl ablate`` study: that holds only if a study variant is exactly the train run with its option and seed."""
    prepared, sim_dir = simulator
    common = ["--simulator", sim_dir, "--data", prepared, *TINY_AGENT, "--seed", 3]

    def agent_reward(uri: str, **tags: str) -> float:
        mlflow.set_tracking_uri(uri)
        runs = mlflow.search_runs(experiment_names=["recrl/kuairand"], output_format="list")
        done = [r for r in runs if "eval/test/agent/total_reward" in r.data.metrics]
        (run,) = [r for r in done if r.data.params.get("model.noise_std") == tags["noise_std"]]
        return run.data.metrics["eval/test/agent/total_reward"]

    study_uri, train_uri = f"sqlite:///{tmp_path / 'study.db'}", f"sqlite:///{tmp_path / 'train.db'}"
    res = cli("ablate", "hac", "--noise-std", "0.01,0.3", "--seeds", 1, *common,
              "--tracking-uri", study_uri, "--runs-dir", tmp_path / "study")  # fmt: skip
    assert res.exit_code == 0, res.output
    res = cli(
        "train",
        "hac",
        "--noise-std",
        "0.3",
        *common,
        "--tracking-uri",
        train_uri,
        "--runs-dir",
        tmp_path / "train",
    )
    assert res.exit_code == 0, res.output
    assert agent_reward(study_uri, noise_std="0.3") == agent_reward(train_uri, noise_std="0.3")
    assert agent_reward(study_uri, noise_std="0.01") != agent_reward(
        study_uri, noise_std="0.3"
    )  # the option reached it
