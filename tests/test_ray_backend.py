"""Distributed studies: `recrl ablate --backend ray` and `--backend local --jobs N` log the same nested MLflow
runs as the one-by-one local study; the driver replays each recorded run; Ray missing is a one-line error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from recrl_cli.study_backends import replay
from recrl_cli.tracking.base import PARENT_TAG, DatasetRecord, RecordedModel, RecordedRun, RecordingTracker

STUDY = ["--expert-num", "2,3", "--epochs", 1, "--batch-size", 512, "--threads", 1, "--device", "cpu",
         "--embed-dim", 8, "--bottom-dims", "16", "--tower-dims", "8"]  # fmt: skip


def test_replay_logs_the_recorded_run_under_the_open_parent():
    record = RecordedRun("worker-id", "v seed=0", "exp", "stand-in", status="FINISHED")
    record.params = {"train.lr": "0.001", "model.expert_num": "3"}
    record.metrics = {
        "train/loss": [(20, 0.5), (40, 0.4)],
        "eval/test/auc": [(40, 0.7)],
        "x": [(1, 1.0), (1, 2.0)],
    }
    record.tags = {"recrl.variant": "v", "mlflow.runName": "v seed=0", PARENT_TAG: "stand-in"}
    record.artifacts = {"model/model.pt": b"weights", "metrics.json": b"{}"}
    dataset = DatasetRecord("retailrocket", "ab" * 16, "/data/prepared", "{}", "{}")
    record.datasets = [(dataset, "training")]
    record.models = [RecordedModel("mmoe", torch.nn.Identity(), torch.zeros(2, 3), {"tasks": ["click"]}, 40)]
    tracker = RecordingTracker()
    with tracker.start_run(experiment="exp", run_name="study") as parent:
        child = replay(record, tracker, "exp")
    run = tracker.runs[child]
    assert run.parent_run_id == parent and run.name == "v seed=0" and run.status == "FINISHED"
    assert run.params == record.params
    assert run.metrics == record.metrics  # every value at its step, a repeated step kept twice, in order
    assert run.tags["recrl.variant"] == "v" and run.tags[PARENT_TAG] == parent
    assert run.artifacts == record.artifacts
    assert run.datasets == [(dataset, "training")]  # the Dataset and Models columns survive the replay
    assert [(m.name, m.metadata, m.step) for m in run.models] == [("mmoe", {"tasks": ["click"]}, 40)]


def test_backend_ray_without_ray_is_one_line_and_tracks_nothing(cli, cli_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    db = tmp_path / "mlflow.db"
    result = cli("ablate", "mmoe", "--data", cli_dataset.prepared, "--tracking-uri", f"sqlite:///{db}",
                 "--runs-dir", tmp_path / "runs", "--backend", "ray", *STUDY)  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip() == "error: --backend ray needs Ray: pip install 'recrl[ray]'"
    assert not db.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--backend", "dask"], "error: unknown --backend 'dask'; use local or ray"),
        (["--jobs", 0], "error: --jobs must be at least 1, got 0"),
        (["--address", "auto"], "error: --address is for --backend ray"),
    ],
)
def test_bad_backend_options_are_one_line_errors(cli, cli_dataset, tmp_path, options, message):
    result = cli("ablate", "mmoe", "--data", cli_dataset.prepared, "--runs-dir", tmp_path, *options, *STUDY)
    assert result.exit_code == 1 and result.output.strip() == message


def study_runs(uri: str) -> dict[str, dict]:
    """The children of the one study parent: variant key → params, metrics (no wall times), tags."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("recrl.study") == "true"]
    assert len(parents) == 1
    children = {}
    for r in runs:
        if r.data.tags.get(PARENT_TAG) == parents[0].info.run_id:
            assert r.info.status == "FINISHED"
            children[r.data.tags["recrl.variant_key"]] = {
                "name": r.info.run_name,
                "params": r.data.params,
                "metrics": {k: v for k, v in r.data.metrics.items() if not k.startswith("time/")},
                "artifacts": sorted(a.path for a in client.list_artifacts(r.info.run_id)),
            }
    return children


def run_study_cli(cli, data: Path, root: Path, new_mlflow_db, *options) -> dict[str, dict]:
    uri = new_mlflow_db(root)
    result = cli("ablate", "mmoe", "--data", data, "--tracking-uri", uri, "--runs-dir", root / "runs",
                 *STUDY, *options)  # fmt: skip
    assert result.exit_code == 0, result.output
    return study_runs(uri)


def assert_same_runs(local: dict, other: dict) -> None:
    assert set(local) == {"expert_num=2|seed=0", "expert_num=3|seed=0"} == set(other)
    for key, run in local.items():
        assert other[key]["name"] == run["name"]
        assert other[key]["params"] == run["params"]
        assert other[key]["artifacts"] == run["artifacts"]
        assert set(other[key]["metrics"]) == set(run["metrics"])
        for metric, value in run["metrics"].items():  # same seeds, same thread count: same numbers
            assert other[key]["metrics"][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), metric


@pytest.fixture(scope="module")
def local_runs(cli, cli_dataset, tmp_path_factory, new_mlflow_db) -> dict[str, dict]:
    return run_study_cli(cli, cli_dataset.prepared, tmp_path_factory.mktemp("local"), new_mlflow_db)


def test_a_ray_study_logs_the_runs_of_the_local_study(cli, cli_dataset, local_runs, tmp_path, new_mlflow_db):
    ray = pytest.importorskip("ray")
    # address="local": always a private instance. Without it ray.init() attaches to RAY_ADDRESS or to the
    # last `ray start` cluster on this machine (someone else's, on a shared box) and then rejects num_cpus.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        runs = run_study_cli(cli, cli_dataset.prepared, tmp_path, new_mlflow_db, "--backend", "ray")
    finally:
        ray.shutdown()
    assert_same_runs(local_runs, runs)


@pytest.mark.slow  # a pool of 2 spawned interpreters
def test_a_local_study_with_two_jobs_logs_the_same_runs(
    cli, cli_dataset, local_runs, tmp_path, new_mlflow_db
):
    runs = run_study_cli(cli, cli_dataset.prepared, tmp_path, new_mlflow_db, "--jobs", 2)
    assert_same_runs(local_runs, runs)
