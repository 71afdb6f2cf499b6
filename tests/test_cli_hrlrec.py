"""``recrl train hrlrec`` and ``recrl ablate hrlrec`` end to end on tiny synthetic KuaiRand: a tiny simulator
(history 12 >= T = 10), online and offline training, the baselines, MLflow read-back, and one-line errors."""

from __future__ import annotations

import math
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
           history_length=12)  # fmt: skip
TINY = ["--batch-users", 4, "--warmup-steps", 2, "--iterations", 3, "--eval-days", 2, "--day-steps", 2,
        "--latent", 4, "--enc-dim", 8, "--n-heads", 2, "--ff-dim", 8, "--action-dim", 8, "--hidden", 8,
        "--batch-size", 8, "--buffer-size", 64, "--threads", 1, "--device", "cpu"]  # fmt: skip


# Tiny models: one thread is faster and keeps the suite from oversubscribing 2 cores (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory) -> tuple[Path, Path]:
    """(prepared KuaiRand directory, run directory of a tiny trained simulator)."""
    root = tmp_path_factory.mktemp("kr_hrlrec")
    write_kuairand(root / "raw", num_users=40, num_items=60, num_impressions=2_000, seed=7)
    prepare_kuairand(root / "raw", root / "prepared", KuaiRandPrepareParams())
    cfg = RunConfig(algo="simulator", data=DataConfig(dataset="kuairand", prepared_dir=str(root / "prepared")),
                    train=TrainConfig(epochs=1, max_steps=2, batch_size=64, device="cpu", threads=1),
                    model=SimulatorConfig(**SIM))  # fmt: skip
    result = train_run(cfg, NullTracker(), experiment="sim", runs_root=root / "runs")
    return root / "prepared", result.run_dir


def test_train_hrlrec_offline_then_online_logs_list_metrics(cli, simulator, mlflow_sqlite_uri, tmp_path):
    prepared, sim_dir = simulator
    res = cli("train", "hrlrec", "--simulator", sim_dir, "--data", prepared, "--mode", "offline+online",
              "--offline-epochs", 1, *TINY, "--tracking-uri", mlflow_sqlite_uri,
              "--runs-dir", tmp_path / "runs", env={"COLUMNS": "80"})  # fmt: skip
    assert res.exit_code == 0, res.output
    # The 15-metric table of 7 policies fits an 80-column terminal (turned round: one row per metric, split
    # into two tables), nothing cut to "…".
    assert max(len(line) for line in res.stdout.splitlines() if "│" in line) <= 80 and "…" not in res.stdout
    mlflow.set_tracking_uri(mlflow_sqlite_uri)
    (run,) = mlflow.search_runs(experiment_names=["recrl/kuairand"], output_format="list")
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert "channel_shares.png" in artifacts  # every policy's channel mix as a picture
    m = run.data.metrics
    keys = ("ctr", "clicks", "dwell", "ild", "novelty", "reward", "reward_se", "share_std", "share_kl")
    for who in ("agent", "quota", "single-ranker", "random", "popular", "oracle"):
        for key in keys:
            assert f"eval/test/{who}/{key}" in m, (who, key)
        assert 0.0 <= m[f"eval/test/{who}/ctr"] <= 1.0
        shares = [v for k, v in m.items() if k.startswith(f"eval/shares/{who}/")]
        assert len(shares) >= 2 and abs(sum(shares) - 1.0) < 1e-6
    # Gap fractions on the list reward (issue 14 item 3): finite, 0 when the ceiling does not beat the floor.
    gaps = ("agent/gap_fraction", "agent/gap_vs_popular", "popular/gap_fraction")
    assert all(math.isfinite(m[f"eval/test/{g}"]) for g in gaps)
    rand, pop, orc = (m[f"eval/test/{p}/reward"] for p in ("random", "popular", "oracle"))
    if orc <= rand:
        assert m["eval/test/agent/gap_fraction"] == 0.0 and "oracle does not beat random" in res.stdout
    if m["eval/test/agent/reward"] <= pop + 2 * math.hypot(m["eval/test/agent/reward_se"],
                                                           m["eval/test/popular/reward_se"]):  # fmt: skip
        assert "note: hrlrec does not beat popular: list reward" in " ".join(res.stdout.split())
    assert "eval/test/offline/item_auc" in m and "eval/test/offline/channel_acc" in m
    assert "train/offline/epoch_critic_low" in m and "train/interact/epoch_sim_high" in m
    assert "curve/ctr" in m and "curve/list_reward" in m and "curve/sim_high" in m  # the learning curve
    assert next((tmp_path / "runs").glob("*/learning_curve.png")).is_file()
    # clicks per list = T x CTR: both are computed from the same simulated clicks
    assert abs(m["eval/test/agent/clicks"] - 10 * m["eval/test/agent/ctr"]) < 1e-6
    saved = torch.load(next((tmp_path / "runs").glob("*/model.pt")), weights_only=False)
    assert saved["algo"] == "hrlrec" and saved["exported"]["variant"] == "hrlrec"


def test_rule_baseline_variant_trains_nothing_and_reports_itself_as_the_agent(cli, simulator, mlflow_sqlite_uri,
                                                                              tmp_path):  # fmt: skip
    prepared, sim_dir = simulator
    res = cli("train", "hrlrec", "--variant", "quota", "--simulator", sim_dir, "--data", prepared, *TINY,
              "--tracking-uri", mlflow_sqlite_uri, "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    mlflow.set_tracking_uri(mlflow_sqlite_uri)
    (run,) = mlflow.search_runs(experiment_names=["recrl/kuairand"], output_format="list")
    m = run.data.metrics
    assert m["eval/test/agent/ctr"] == m["eval/test/quota/ctr"]  # same policy, same evaluation users
    assert m["eval/test/agent/share_std"] == 0.0  # a fixed quota never moves its channel mix
    assert not any(k.startswith("train/") for k in m)


def test_ablate_losses_runs_every_variant_and_seed(cli, simulator, mlflow_sqlite_uri, tmp_path):
    prepared, sim_dir = simulator
    res = cli("ablate", "hrlrec", "--losses", "full,no-sup,no-sim", "--seeds", 2, "--simulator", sim_dir,
              "--data", prepared, *TINY, "--tracking-uri", mlflow_sqlite_uri,
              "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    table = res.output[res.output.index("hrlrec study") :]
    assert "agent/ctr" in table and "losses=no-sim" in table
    mlflow.set_tracking_uri(mlflow_sqlite_uri)
    runs = mlflow.search_runs(experiment_names=["recrl/kuairand"], output_format="list")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 6
    assert {r.data.params["model.losses"] for r in children} == {"full", "no-sup", "no-sim"}
    no_sup = [r for r in children if r.data.params["model.losses"] == "no-sup"]
    assert all("train/interact/epoch_sup_high" not in r.data.metrics for r in no_sup)
    assert all("train/interact/epoch_sup_high" in r.data.metrics for r in children if r not in no_sup)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--variant", "bogus"], "variant"),
        (["--list-length", 20], "history length"),
        (["--losses", "no-everything"], "losses"),
        (["--channel-by", "author"], "channel_by"),
        (["--per-channel", 1, "--max-channels", 2], "a list needs"),
        (["--channel-knn", -1], "channel_knn"),
    ],
)
def test_bad_input_is_a_one_line_error(cli, simulator, tmp_path, args, needle):
    prepared, sim_dir = simulator
    res = cli("train", "hrlrec", "--simulator", sim_dir, "--data", prepared, *TINY, *args,
              "--tracking-uri", f"sqlite:///{tmp_path / 'db.sqlite'}", "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in res.output, res.output
    assert "Traceback" not in res.output
    assert not list((tmp_path / "runs").glob("*/model.pt"))


def test_missing_simulator_is_a_one_line_error(cli, simulator, tmp_path):
    prepared, _ = simulator
    res = cli("train", "hrlrec", "--data", prepared, "--device", "cpu",
              "--tracking-uri", f"sqlite:///{tmp_path / 'db.sqlite'}", "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 1 and "--simulator" in res.output, res.output
