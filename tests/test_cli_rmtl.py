"""`recrl train rmtl` as a user runs it: the base-vs-RMTL table and critic transfer by MLflow run id or name."""

from __future__ import annotations

import re

import pytest
from mlflow import MlflowClient

from tests.test_cli import TINY, ok, run_id_of, table_rows

# Tiny critics too, and one epoch per stage: the point is the wiring, not the numbers.
RMTL_TINY = [*TINY, "--critic-embed-dim", "8", "--critic-bottom-dims", "16", "--critic-tower-dims", "8",
             "--pretrain-epochs", "1", "--critic-epochs", "1", "--polish-epochs", "1"]  # fmt: skip


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_rmtl_prints_base_next_to_final_and_transfers_critics_by_run_name(
    cli, cli_dataset, mlflow_sqlite_uri, workdir
):
    """Critic transfer by MLflow run name (issue 18): the name resolves to the run's id, whose model.pt is downloaded
    as for ``--critics RUN_ID`` (an unknown run id: the next test)."""
    common = ["--data", cli_dataset.prepared, "--tracking-uri", mlflow_sqlite_uri]
    first = ok(cli("train", "rmtl", "--base", "mmoe", *RMTL_TINY, *common))
    rows = table_rows(first, "pretrained base vs final model [test]")
    assert set(rows) == {"click", "pay", "mean"}  # one row per task (the last metric of each wins)
    source = run_id_of(first)
    logged = MlflowClient(mlflow_sqlite_uri).get_run(source).data.metrics
    assert {"eval/pretrained/test/click/auc", "eval/test/click/auc"} <= set(logged)
    assert any(k.startswith("train/critics/") for k in logged)  # the critic stage ran here
    # The table's final column is the logged final metric, its base column the logged pretrained one.
    base, final = (float(c) for c in rows["mean"][1:3])
    assert base == pytest.approx(logged["eval/pretrained/test/mean/s_logloss"], abs=1e-4)
    assert final == pytest.approx(logged["eval/test/mean/s_logloss"], abs=1e-4)

    runs_dir = workdir / "elsewhere"
    name = MlflowClient(mlflow_sqlite_uri).get_run(source).info.run_name
    assert name == "rmtl-mmoe-seed2022"
    second = ok(cli("train", "rmtl", "--base", "ple", "--critics", name, "--runs-dir", str(runs_dir),
                    *RMTL_TINY, *common))  # fmt: skip
    transfer = MlflowClient(mlflow_sqlite_uri).get_run(run_id_of(second))
    critics_param = transfer.data.params["model.critics"]
    assert re.search(rf"{source}[/\\]model\.pt$", critics_param)  # resolved to the downloaded file
    assert (runs_dir / "critics" / source / "model.pt").is_file()  # cached under --runs-dir, not ./runs
    assert not any(k.startswith("train/critics/") for k in transfer.data.metrics)  # no critic stage


def test_rmtl_unknown_critics_run_is_one_line_error(cli, cli_dataset, mlflow_sqlite_uri, workdir):
    result = cli("train", "rmtl", "--critics", "0" * 32, *RMTL_TINY, "--data", cli_dataset.prepared,
                 "--tracking-uri", mlflow_sqlite_uri)  # fmt: skip
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "0" * 32 in lines[0]
    assert not (workdir / "runs").exists() or not any((workdir / "runs").glob("rmtl-*"))


def test_ablate_rmtl_weightings_as_nested_runs(cli, cli_dataset, mlflow_sqlite_uri, workdir):
    common = ["--data", cli_dataset.prepared, "--tracking-uri", mlflow_sqlite_uri, "--experiment", "study"]
    out = ok(cli("ablate", "rmtl", "--weighting", "cw,nlc,rmtl,bce-continue", *RMTL_TINY, *common))
    client = MlflowClient(mlflow_sqlite_uri)
    experiment = client.get_experiment_by_name("study").experiment_id
    children = client.search_runs([experiment], "tags.recrl.variant = 'weighting=nlc'")
    assert len(children) == 1 and "mlflow.parentRunId" in children[0].data.tags
    # cw and bce-continue never read the critics, so they skip the critic stage; nlc and rmtl fit them.
    for weighting, fits_critics in (("cw", False), ("nlc", True), ("rmtl", True), ("bce-continue", False)):
        (run,) = client.search_runs([experiment], f"tags.recrl.variant = 'weighting={weighting}'")
        assert any(k.startswith("train/critics/") for k in run.data.metrics) == fits_critics, weighting
    assert "weighting=bce-continue" in out and "ref" in out  # the table, with the first variant as reference


def test_faithful_tables_say_which_split_they_show():
    """Faithful swap_val_test reports val rows as "test": the console titles say so; the default says nothing."""
    from recrl_cli.algorithms.rmtl.config import RMTLConfig
    from recrl_cli.cli.train import swapped_note
    from recrl_cli.config.loading import resolve_config
    from recrl_cli.nets.mtl.config import MTLConfig

    faithful = resolve_config("rmtl", RMTLConfig, options={"model.faithful": True})
    assert "rows of the val split" in swapped_note(faithful, "test")
    assert "rows of the test split" in swapped_note(faithful, "val")
    # The README's default and --faithful runs of rmtl never share a run name (``--critics NAME`` stays unique).
    from recrl_cli.cli.train import default_run_name

    default = resolve_config("rmtl", RMTLConfig)
    assert (default_run_name(default), default_run_name(faithful)) == (
        "rmtl-mmoe-seed2022",
        "rmtl-mmoe-faithful-seed2022",
    )
    assert swapped_note(resolve_config("rmtl", RMTLConfig), "test") == ""
    assert swapped_note(resolve_config("mmoe", MTLConfig), "test") == ""  # a plain base: no RMTL switches
