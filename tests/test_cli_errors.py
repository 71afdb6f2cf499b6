"""Bad input through the `recrl` command: exit code 1, exactly one line of error, no traceback, and
nothing half-written (no output directory, no temporary directory, no tracking store, no run)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from faults import entries, one_line_error
from mlflow import MlflowClient

from recrl_cli.tracking.server import free_port


def all_runs(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


# ---- recrl prepare: missing, empty, truncated, wrong columns or types -----------------------------


def _copy_raw(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _drop(name: str) -> Callable[[Path], None]:
    return lambda raw: (raw / name).unlink()


def _write(name: str, edit: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(raw: Path) -> None:
        path = raw / name
        path.write_text(edit(path.read_text()))

    return apply


def _cut_mid_line(text: str) -> str:
    """A download that stopped inside a row: everything up to the middle of line 200."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[:199]) + lines[199][: len(lines[199]) // 3]


def _insert_row(row: str, at: int = 50) -> Callable[[str], str]:
    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        return "".join([*lines[:at], row + "\n", *lines[at:]])

    return edit


PREPARE_CASES = {
    "missing events.csv": (_drop("events.csv"), r"missing .*events\.csv: download .*recrl synth"),
    "missing property part": (_drop("item_properties_part2.csv"), r"missing .*item_properties_part2\.csv"),
    "empty events.csv": (_write("events.csv", lambda _: ""), r"events\.csv is empty"),
    "header only": (_write("events.csv", lambda t: t.splitlines()[0] + "\n"), r"header but no events"),
    "truncated mid-line": (_write("events.csv", _cut_mid_line), r"events\.csv ends with a truncated line"),
    "wrong columns": (
        _write("events.csv", lambda t: t.replace("visitorid", "userid", 1)),
        r"events\.csv has header 'timestamp,userid,.*expected 'timestamp,visitorid",
    ),
    "missing column": (
        _write("item_properties_part1.csv", lambda t: "timestamp,itemid,value\n" + t.split("\n", 1)[1]),
        r"item_properties_part1\.csv has header",
    ),
    "text in timestamp": (
        _write("events.csv", _insert_row("yesterday,1,view,5,")),
        r"events\.csv could not be parsed: .*yesterday.*timestamp",
    ),
    "text in property timestamp": (
        _write("item_properties_part1.csv", _insert_row("soon,1,790,n100.000")),
        r"item_properties_part1\.csv could not be parsed: .*soon",
    ),
    "float in itemid": (
        _write("events.csv", _insert_row("1433221332117,1,view,5.5,")),
        r"events\.csv could not be parsed: .*5\.5.*itemid",
    ),
    "unknown event": (
        _write("events.csv", _insert_row("1433221332117,1,click,5,")),
        r"unknown event 'click'",
    ),
    "row with missing fields": (
        _write("events.csv", _insert_row("1433221332117,1,view,,")),
        r"events\.csv has 1 rows with missing fields \(first at data row 50\)",
    ),
    "text in category tree": (
        _write("category_tree.csv", _insert_row("root,", at=1)),
        r"category_tree\.csv could not be parsed",
    ),
}


@pytest.mark.parametrize("case", list(PREPARE_CASES))
def test_prepare_bad_raw_files(case, cli, cli_dataset, tmp_path):
    damage, message = PREPARE_CASES[case]
    raw = _copy_raw(cli_dataset.raw, tmp_path / "raw")
    damage(raw)
    out = tmp_path / "prepared" / "retailrocket"
    line = one_line_error(cli("prepare", "retailrocket", "--raw", raw, "--out", out))
    assert re.search(message, line), line
    assert not (tmp_path / "prepared").exists() or entries(tmp_path / "prepared") == []  # no temp dir either


def test_prepare_missing_raw_directory_says_where_to_get_the_data(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(cli("prepare", "retailrocket"))  # the defaults: datasets/raw/retailrocket
    assert "datasets/raw/retailrocket/events.csv" in line
    assert "Kaggle" in line and "recrl synth retailrocket" in line
    assert entries(tmp_path) == []


def test_failed_prepare_keeps_the_previous_dataset_intact(cli, cli_dataset, tmp_path):
    out = _copy_raw(cli_dataset.prepared, tmp_path / "prepared")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    raw = _copy_raw(cli_dataset.raw, tmp_path / "raw")
    _write("events.csv", _cut_mid_line)(raw)
    one_line_error(cli("prepare", "retailrocket", "--raw", raw, "--out", out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert entries(tmp_path) == ["prepared", "raw"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "nosuchdata"], r"unknown dataset 'nosuchdata'; choose one of: retailrocket"),
        (["synth", "nosuchdata"], r"unknown dataset 'nosuchdata'"),
        (["prepare", "retailrocket", "--set", "split=0.5,0.5"], r"split must be three shares"),
        (["prepare", "retailrocket", "--set", "nosuch=1"], r"unknown key 'prepare\.nosuch'"),
        (["prepare", "retailrocket", "--session-key", "day"], r"session_key must be one of gap, visitor"),
        (["prepare", "retailrocket", "--set", "min_count=many"], r"prepare\.min_count: expected int"),
    ],
)
def test_bad_data_command_options(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert re.search(message, one_line_error(cli(*args)))
    assert entries(tmp_path) == []


# ---- recrl train: names, overrides, config files, device, data, tracking ------------------------


TRAIN_CASES = [
    (["nosuchmodel"], r"unknown algorithm 'nosuchmodel'; choose one of: .*mmoe"),
    (["mmoe", "--set", "train.nosuch=1"], r"unknown key 'train\.nosuch'; valid keys: epochs"),
    (["mmoe", "--set", "nosuch.lr=1"], r"unknown section 'nosuch'"),
    (["mmoe", "--set", "lr"], r"--set expects section\.key=value"),
    (["mmoe", "--set", "train.lr=fast"], r"train\.lr: expected float, got 'fast'"),
    (["mmoe", "--set", "train.epochs=2.5"], r"train\.epochs: expected int, got '2\.5'"),
    (["mmoe", "--set", "train.lr=-1"], r"train\.lr must be positive"),
    (["mmoe", "--set", "model.bottom_dims=64,wide"], r"model\.bottom_dims: expected int, got 'wide'"),
    (["mmoe", "--set", "train.shuffle=maybe"], r"train\.shuffle: expected bool"),
    (["mmoe", "--expert-num", "many"], r"model\.expert_num: expected int, got 'many'"),
    (["mmoe", "--dropout", "1.5"], r"dropout must be in \[0, 1\)"),
    (["mmoe", "--no-such-option", "3"], r"unknown option --no-such-option; see `recrl algos"),
    (["mmoe", "stray"], r"unexpected argument 'stray'"),
    (["mmoe", "--device", "tpu"], r"train\.device must be one of auto, cpu, cuda, got 'tpu'"),
    (
        ["mmoe", "--monitor", "mean/aucc"],
        r"train\.monitor must be <task or mean>/<auc\|gauc\|logloss\|s_logloss>",
    ),
    (["rmtl", "--monitor", "auc"], r"train\.monitor must be <task or mean>/"),
    (["mmoe", "--data", "no/such/dir"], r"no prepared dataset at no/such/dir .*recrl prepare"),
    (["mmoe", "--config", "missing.toml"], r"config file not found: missing\.toml"),
    (["mmoe", "--tag", "team"], r"--tag needs KEY=VALUE, got 'team'"),
    (["mmoe", "--tag", "=x"], r"--tag needs KEY=VALUE, got '=x'"),
    (
        ["mmoe", "--tag", "mlflow.source.name=me"],
        r"--tag mlflow\.source\.name: keys starting with mlflow\. or recrl\.",
    ),
]


@pytest.mark.parametrize(("args", "message"), TRAIN_CASES, ids=[" ".join(a) for a, _ in TRAIN_CASES])
def test_train_bad_input(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    line = one_line_error(cli("train", *args))
    assert re.search(message, line), line
    assert entries(tmp_path) == []  # no mlflow.db, no runs/


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_train_on_cuda_without_cuda(cli, cli_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    line = one_line_error(cli("train", "mmoe", "--device", "cuda", "--data", cli_dataset.prepared))
    assert "no CUDA device is available (use auto or cpu)" in line
    assert entries(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[train\nlr = 1", r"exp\.toml is not valid TOML"),
        ("[train]\nepochs = 'many'\n", r"train\.epochs: expected int, got 'many'"),
        (
            "[training]\nepochs = 2\n",
            r"unknown section \[training\] in .*exp\.toml; valid: data, train, model",
        ),
        ("epochs = 2\n", r"unknown section \[epochs\]"),  # brackets survive the rich console
        ("[model]\nexperts = 4\n", r"unknown key 'model\.experts'"),
        ("algo = 'ple'\n", r"exp\.toml is for algorithm 'ple', not 'mmoe'"),
    ],
)
def test_train_bad_config_file(cli, tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "exp.toml").write_text(content)
    line = one_line_error(cli("train", "mmoe", "--config", "exp.toml"))
    assert re.search(message, line), line
    assert entries(tmp_path) == ["exp.toml"]


def test_unreachable_tracking_server(cli, cli_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(cli("train", "mmoe", "--data", cli_dataset.prepared, "--tracking-uri", uri))
    assert line.startswith(f"error: cannot reach the MLflow tracking server at {uri}")
    assert entries(tmp_path) == []
    line = one_line_error(cli("evaluate", "0" * 32, "--data", cli_dataset.prepared, "--tracking-uri", uri))
    assert "cannot reach the MLflow tracking server" in line


def test_damaged_prepared_data_fails_before_any_run_is_logged(cli, cli_dataset, tmp_path, monkeypatch,
                                                              mlflow_sqlite_uri):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    data = _copy_raw(cli_dataset.prepared, tmp_path / "prepared")
    train = data / "train.parquet"
    train.write_bytes(train.read_bytes()[: train.stat().st_size // 2])
    line = one_line_error(cli("train", "mmoe", "--data", data, "--tracking-uri", mlflow_sqlite_uri))
    assert re.search(r"train\.parquet is .* bytes, its manifest says .*prepare retailrocket", line), line
    (data / "manifest.json").write_text("{not json")
    line = one_line_error(cli("train", "mmoe", "--data", data, "--tracking-uri", mlflow_sqlite_uri))
    assert re.search(r"manifest\.json is not valid JSON", line), line
    assert all_runs(mlflow_sqlite_uri) == []
    assert not (tmp_path / "runs").exists()


def test_a_monitor_naming_no_task_of_the_data_fails_before_any_run_is_logged(
    cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri
):
    monkeypatch.chdir(tmp_path)
    for algo in ("mmoe", "rmtl"):
        line = one_line_error(cli("train", algo, "--data", cli_dataset.prepared, "--monitor", "cart/auc",
                                  "--tracking-uri", mlflow_sqlite_uri))  # fmt: skip
        assert (
            "train.monitor: 'cart/auc' is not a validation metric of this run; name one of click, pay, mean"
            in line
        )
    assert all_runs(mlflow_sqlite_uri) == []
    assert not (tmp_path / "runs").exists()


def test_unwritable_runs_dir(cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("a file where the runs directory should be")
    args = ["--runs-dir", "taken", "--data", cli_dataset.prepared, "--tracking-uri", mlflow_sqlite_uri]
    line = one_line_error(cli("train", "mmoe", "--device", "cpu", *args))
    assert "taken/mmoe-" in line
    assert all_runs(mlflow_sqlite_uri) == []


def test_resume_with_nothing_to_resume(cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(
        cli("train", "mmoe", "--resume", "--data", cli_dataset.prepared, "--tracking-uri", mlflow_sqlite_uri)
    )
    assert "nothing to resume: no interrupted run of this configuration" in line
    assert all_runs(mlflow_sqlite_uri) == []


# ---- recrl evaluate, ablate, algos --------------------------------------------------------------


def test_evaluate_bad_sources(cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri):
    work = tmp_path / "work"  # not tmp_path: the fixture's store is there
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = ["--data", cli_dataset.prepared]
    assert "no saved model at runs/nope" in one_line_error(cli("evaluate", "runs/nope", *data))
    assert "--split must be train, val or test" in one_line_error(
        cli("evaluate", "x", "--split", "all", *data)
    )
    assert "no prepared dataset at nodata" in one_line_error(cli("evaluate", "x", "--data", "nodata"))
    assert entries(work) == []  # a path never opens (or creates) the default tracking store
    (work / "model.pt").write_bytes(b"not a checkpoint")
    assert "cannot read checkpoint" in one_line_error(cli("evaluate", "model.pt", *data))
    line = one_line_error(cli("evaluate", "f" * 32, *data, "--tracking-uri", mlflow_sqlite_uri))
    assert f"no MLflow run '{'f' * 32}'" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dropout", "0.1,lots"], r"model\.dropout: expected float, got 'lots'"),
        (["--dropout", "0.1,0.1"], r"duplicate values for model\.dropout"),
        (["--seeds", "0"], r"--seeds must be at least 1"),
        (["--nosuch", "1,2"], r"unknown option --nosuch"),
        (["--data", "nodata"], r"no prepared dataset at nodata"),
    ],
)
def test_ablate_bad_input_fails_before_anything_is_tracked(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    line = one_line_error(cli("ablate", "mmoe", *args))
    assert re.search(message, line), line
    assert entries(tmp_path) == []


def test_algos_unknown_name(cli):
    assert "unknown algorithm 'nosuch'" in one_line_error(cli("algos", "nosuch"))
