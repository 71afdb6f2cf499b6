"""End-to-end tests of the `recrl` command as a user runs it: help, synth → prepare → train →
evaluate → ablate, what lands in MLflow (sqlite store and a real server over REST), reproducibility
and exact resume after an interrupt. Error paths are in test_cli_errors.py."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import torch
import typer
from mlflow import MlflowClient

from recrl_cli import __version__
from recrl_cli.algorithms.registry import ALGORITHMS
from recrl_cli.cli.app import app
from recrl_cli.config.fields import field_help
from recrl_cli.config.schema import DataConfig, TrainConfig
from recrl_cli.nets.mtl.config import MTLConfig

REPO = Path(__file__).resolve().parents[1]
# A network small enough that an epoch over the test dataset takes a fraction of a second.
# One torch thread: faster than several for a net this small, and immune to a busy machine.
TINY = ["--embed-dim", "8", "--bottom-dims", "16", "--tower-dims", "8", "--expert-num", "2",
        "--batch-size", "256", "--device", "cpu", "--threads", "1"]  # fmt: skip
TASKS = ("click", "pay", "mean")
METRICS = ("auc", "gauc", "logloss", "s_logloss")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """Output without colour codes (rich adds them when the test runs in a real terminal)."""
    return ANSI.sub("", text)


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    return plain(result.stdout)


def table_rows(text: str, title: str) -> dict[str, list[str]]:
    """Rows of the rich table printed after ``title``: first cell -> other cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def printed_metrics(text: str, title: str) -> dict[str, float]:
    """``{"click/auc": 0.61, ...}`` from a task × metric table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    header = next(line for line in lines[start:] if line.startswith("┃"))
    columns = [c.strip() for c in header.strip("┃").split("┃")][1:]
    return {
        f"{task}/{column}": float(value)
        for task, values in table_rows(text, title).items()
        for column, value in zip(columns, values, strict=True)
    }


def run_id_of(text: str) -> str:
    return re.search(r"MLflow run ([0-9a-f]{32})", text).group(1)


def eval_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    metrics = client.get_run(run_id).data.metrics
    return {k.removeprefix("eval/"): v for k, v in metrics.items() if k.startswith("eval/")}


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """`--threads 1` sets torch's thread count for the whole process; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, new_mlflow_db, cli, cli_dataset) -> Iterator[dict]:
    """One `recrl train mmoe --epochs 2` run, shared by the tests that read it back."""
    root = tmp_path_factory.mktemp("cli-trained")
    uri = new_mlflow_db(root / "store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv(
            "RECRL_LOG_MODEL", "1"
        )  # the model in MLflow's PyTorch flavour (off elsewhere in the suite)
        result = cli("train", "mmoe", "--epochs", 2, "--data", cli_dataset.prepared, "--tracking-uri", uri,
                     "--experiment", "cli/train", "--seed", 7, "--tag", "team=recsys", "--tag", "purpose=a=b",
                     *TINY)  # fmt: skip
        out = ok(result)
        yield {"uri": uri, "root": root, "out": out, "run_id": run_id_of(out), "err": plain(result.stderr)}


# ---- help, version, algos -----------------------------------------------------------------------


def _commands() -> dict[str, click.Command]:
    return typer.main.get_command(app).commands


def test_help_of_the_app_lists_every_command(cli):
    out = ok(cli("--help"))
    for name, command in _commands().items():
        assert re.search(rf"│ {name} +{re.escape(command.get_short_help_str(200)[:40])}", out), name
    assert ok(cli("--version")).strip() == f"recrl {__version__}"


@pytest.mark.parametrize("name", ["synth", "prepare", "train", "evaluate", "ablate", "algos", "ui"])
def test_every_option_of_every_command_is_documented(cli, name):
    command = _commands()[name]
    out = " ".join(ok(cli(name, "--help")).split())
    assert f"Usage: recrl {name}" in out
    assert " ".join(command.help.split()[:6]) in out  # the docstring's first words
    for param in command.params:
        text = getattr(param, "help", None)
        assert text and text.strip(), f"{name} {param.name} has no help text"
        shown = " ".join(text.replace("\\[", "[").split())  # as the user must see it, brackets included
        assert shown in out, f"{name}: help of {param.name} is not shown whole: {shown!r}"
        if isinstance(param, click.Option):
            for flag in param.opts:
                assert flag in out


def test_algos_lists_every_algorithm_and_every_option_with_default_and_meaning(cli):
    out = ok(cli("algos"))
    rows = table_rows(out, "registered algorithms")
    assert set(rows) >= set(ALGORITHMS) and rows["mmoe"][0] == "mtl base"

    out = ok(cli("algos", "mmoe"))
    # "  --expert-num INT  [default: 8]" then the meaning, indented, on the next line(s)
    found = re.findall(r"^  (--[a-z-]+)[^\n]*\[default: ([^\]]*)\]\n      (.*)$", out, re.M)
    entries, meanings = {o: d for o, d, _ in found}, {o: m for o, _, m in found}
    for cls in (MTLConfig, TrainConfig, DataConfig):
        helps = field_help(cls)
        for name, default in ((f.name, f.default) for f in cls.__dataclass_fields__.values()):
            option = "--data" if name == "prepared_dir" else f"--{name.replace('_', '-')}"
            assert option in entries, option
            if isinstance(default, bool):
                expected = "on" if default else "off"
            else:
                expected = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
            assert entries[option] == (expected or "(none)"), option
            assert meanings[option].startswith(helps[name][:30]), option
    assert "--shuffle / --no-shuffle" in out  # a flag is shown as a flag


def test_dry_run_resolves_defaults_file_options_and_set_in_that_order(cli, tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text("[train]\nlr = 0.01\nepochs = 4\n[model]\nexpert_num = 3\ndropout = 0.3\n")
    out = ok(cli("train", "mmoe", "--dry-run", "--config", config, "--epochs", 5, "--expert-num", 6,
                 "--set", "model.expert_num=7", "--seed", 11))  # fmt: skip
    rows = {k: v[0] for k, v in table_rows(out, "resolved config: mmoe").items()}
    assert rows["train.lr"] == "0.01"  # file over default
    assert rows["model.dropout"] == "0.3"
    assert rows["train.epochs"] == "5"  # option over file
    assert rows["model.expert_num"] == "7"  # --set over option over file
    assert rows["train.seed"] == "11"
    assert rows["train.batch_size"] == "2048"  # untouched default
    assert not list(tmp_path.glob("*.db")) and not (tmp_path / "runs").exists()


# ---- synth → prepare ----------------------------------------------------------------------------


def test_synth_summary_shows_files_event_mix_and_oracle_auc(cli_dataset):
    rows = {k: v[0] for k, v in table_rows(plain(cli_dataset.synth_output), "synthetic retailrocket").items()}
    with (cli_dataset.raw / "events.csv").open() as fh:
        n_events = sum(1 for _ in fh) - 1
    assert rows["rows of events.csv"] == f"{n_events:,}"
    mix = {e: float(rows[f"event mix: {e}"].rstrip(" %")) for e in ("view", "addtocart", "transaction")}
    assert sum(mix.values()) == pytest.approx(100, abs=0.02)
    assert mix["view"] > 90 and 0 < mix["transaction"] < mix["addtocart"] < 10
    for task in ("click", "pay"):
        assert 0.5 < float(rows[f"oracle AUC: {task}"]) <= 1
        for label in ("item + position ceiling AUC", "history oracle AUC"):  # 4 decimals, not 17 digits
            assert re.fullmatch(r"0\.\d{4}", rows[f"{label}: {task}"])
    assert {p.name for p in cli_dataset.raw.iterdir()} >= {
        "events.csv", "item_properties_part1.csv", "item_properties_part2.csv", "category_tree.csv",
        "ground_truth.csv",
    }  # fmt: skip


def test_prepare_summary_matches_the_manifest(cli_dataset):
    manifest = json.loads((cli_dataset.prepared / "manifest.json").read_text())
    rows = table_rows(plain(cli_dataset.prepare_output), "prepared retailrocket")
    for split in ("train", "val", "test"):
        info = manifest["splits"][split]
        assert rows[split][0] == f"{info['rows']:,}" and rows[split][1] == f"{info['sessions']:,}"
        assert (cli_dataset.prepared / info["file"]).is_file()
        assert float(rows[split][3]) == pytest.approx(info["positive_rate"]["click"], abs=1e-4)
    assert not [p for p in cli_dataset.prepared.parent.iterdir() if ".recrl-tmp-" in p.name]


# ---- train → MLflow -----------------------------------------------------------------------------


def test_train_prints_metrics_and_logs_the_run_to_mlflow(trained, cli_dataset, tmp_path):
    out, run_id = trained["out"], trained["run_id"]
    test = printed_metrics(out, "mmoe: test metrics")
    assert set(test) == {f"{t}/{m}" for t in TASKS for m in METRICS}
    assert printed_metrics(out, "mmoe: validation metrics").keys() == test.keys()

    client = MlflowClient(trained["uri"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "cli/train"
    params = run.data.params
    assert params["algo"] == "mmoe" and params["train.epochs"] == "2" and params["train.seed"] == "7"
    assert params["model.bottom_dims"] == "16" and params["model.embed_dim"] == "8"
    assert params["data.prepared_dir"] == str(cli_dataset.prepared)
    assert params["train.lr"] == "0.001"  # defaults are logged too, flattened with their section

    tags = run.data.tags
    manifest = json.loads((cli_dataset.prepared / "manifest.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    expected_sha = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert tags["recrl.git_sha"] == expected_sha  # of the recrl code, though run from elsewhere
    assert tags["recrl.git_dirty"] in ("true", "false", "unknown")
    assert tags["recrl.version"] == __version__
    assert tags["recrl.dataset_fingerprint"] == manifest["fingerprint"]
    assert tags["recrl.device"] == "cpu"

    logged = eval_metrics(client, run_id)
    for key, value in test.items():  # the table shows exactly what MLflow holds
        assert logged[f"test/{key}"] == pytest.approx(value, abs=5e-5)
    assert all(f"val/{k}" in logged for k in test)
    history = client.get_metric_history(run_id, "valid/mean/auc")
    assert len(history) == 2  # one validation per epoch

    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.resolved.json", "manifest.json", "learning_curve.png", "model"} <= top
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/model.pt"]
    dst = tmp_path / "dl"
    config = json.loads(Path(client.download_artifacts(run_id, "config.resolved.json", str(dst))).read_text())
    assert config["train"]["epochs"] == 2 and config["model"]["embed_dim"] == 8
    assert Path(client.download_artifacts(run_id, "learning_curve.png", str(dst))).read_bytes()[:8] == (
        b"\x89PNG\r\n\x1a\n"
    )
    assert (
        json.loads(Path(client.download_artifacts(run_id, "manifest.json", str(dst))).read_text()) == manifest
    )

    # Nothing outside the run directory and the store it was told to use.
    assert sorted(p.name for p in trained["root"].iterdir()) == ["runs", "store"]


def test_the_progress_bar_shows_epoch_k_of_n_the_loss_and_the_latest_validation_score(trained):
    bars = [line for line in trained["err"].splitlines() if line.startswith("train · epoch")]
    assert [line.split(" ━")[0] for line in bars] == ["train · epoch 1/2", "train · epoch 2/2"]
    assert re.search(r"loss \d\.\d+$", bars[0].rstrip())  # no validation before the first epoch ends
    assert re.search(r"loss \d\.\d+ · val mean/auc \d\.\d{4}$", bars[1].rstrip())


def test_the_run_has_a_logged_model_that_predicts_a_dataset_input_and_source_tags(trained, cli_dataset):
    import mlflow
    import numpy as np

    from recrl_cli.algorithms.supervised import load_mtl_predictor
    from recrl_cli.data.tensors import load_prepared

    client = MlflowClient(trained["uri"])
    run = client.get_run(trained["run_id"])
    manifest = json.loads((cli_dataset.prepared / "manifest.json").read_text())
    # Source column: command, type, the recrl code's commit (as recrl.git_sha).
    tags = run.data.tags
    assert tags["team"] == "recsys" and tags["purpose"] == "a=b"  # --tag KEY=VALUE (the first = splits)
    assert tags["mlflow.source.name"] == "recrl train mmoe" and tags["mlflow.source.type"] == "LOCAL"
    if tags["recrl.git_sha"] != "unknown":
        assert tags["mlflow.source.git.commit"] == tags["recrl.git_sha"]
    # Dataset column: the prepared data by name, manifest fingerprint and directory, used for training.
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "retailrocket" and manifest["fingerprint"].startswith(inp.dataset.digest)
    assert json.loads(inp.dataset.source) == {"uri": cli_dataset.prepared.resolve().as_posix()}
    assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "training"}
    assert json.loads(inp.dataset.profile)["train_rows"] == manifest["splits"]["train"]["rows"]
    # Models column: one logged model in the PyTorch flavour with a signature, that predicts as model.pt does.
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == run.info.run_id and str(model.status).endswith("READY")
    mlflow.set_tracking_uri(trained["uri"])  # models:/ URIs resolve against the global store
    info = mlflow.models.get_model_info(f"models:/{output.model_id}")
    rows = load_prepared(cli_dataset.prepared, torch.device("cpu")).splits["val"].features[:64]
    spec = {"dtype": "int64", "shape": (-1, rows.shape[1])}  # feature ids, history ids and label codes [B, F]
    assert info.signature.inputs.to_dict()[0]["tensor-spec"] == spec
    assert info.signature.outputs.to_dict()[0]["tensor-spec"] == {"dtype": "float32", "shape": (-1, 2)}
    saved = torch.load(next((trained["root"] / "runs").glob("*/model.pt")), weights_only=True)
    expected = load_mtl_predictor(saved["exported"], torch.device("cpu"))(rows)
    loaded = mlflow.pytorch.load_model(f"models:/{output.model_id}")
    assert torch.allclose(loaded(rows), expected, atol=1e-6)
    served = mlflow.pyfunc.load_model(f"models:/{output.model_id}").predict(rows.numpy())
    assert np.allclose(served, expected.numpy(), atol=1e-6)
    # ... and it can be registered.
    version = mlflow.register_model(f"models:/{output.model_id}", "mmoe-test")
    assert int(version.version) == 1 and version.run_id == run.info.run_id
    # Metric keys without a doubled prefix: the one-stage loop logs train/loss and valid/mean/auc.
    keys = set(run.data.metrics)
    assert {"train/loss", "train/epoch_loss", "valid/mean/auc"} <= keys
    assert not [k for k in keys if k.startswith(("train/train/", "valid/train/", "time/train/"))]


def test_evaluate_a_trained_run_by_id_by_name_and_by_directory(trained, cli, cli_dataset):
    client = MlflowClient(trained["uri"])
    logged = eval_metrics(client, trained["run_id"])
    by_id = ok(cli("evaluate", trained["run_id"], "--data", cli_dataset.prepared,
                   "--tracking-uri", trained["uri"], "--device", "cpu"))  # fmt: skip
    scores = printed_metrics(by_id, "mmoe on")
    for key, value in scores.items():  # the saved model scores the test split as training reported
        assert value == pytest.approx(logged[f"test/{key}"], abs=5e-5)
    run_dir = next((trained["root"] / "runs").iterdir())
    by_dir = ok(cli("evaluate", run_dir, "--data", cli_dataset.prepared, "--split", "val", "--device", "cpu",
                    "--tracking-uri", trained["uri"]))  # fmt: skip
    assert "[val]" in by_dir
    for key, value in printed_metrics(by_dir, "mmoe on").items():
        assert value == pytest.approx(logged[f"val/{key}"], abs=5e-5)
    # By MLflow run name (issue 18): the one finished run of that name, nested under it like a run id.
    by_name = ok(cli("evaluate", "mmoe-seed7", "--data", cli_dataset.prepared, "--split", "val", "--device", "cpu",
                     "--tracking-uri", trained["uri"]))  # fmt: skip
    assert printed_metrics(by_name, "mmoe on") == printed_metrics(by_dir, "mmoe on")
    assert f"nested under run {trained['run_id']}" in " ".join(by_name.split())
    # Each evaluation is an MLflow run nested under the run it scored, with the printed metrics.
    for out, split, scored in ((by_id, "test", scores), (by_dir, "val", printed_metrics(by_dir, "mmoe on"))):
        run = client.get_run(run_id_of(out))
        assert f"nested under run {trained['run_id']}" in " ".join(out.split())
        assert run.data.tags["mlflow.parentRunId"] == trained["run_id"]
        assert run.data.tags["mlflow.source.name"] == "recrl evaluate" and run.info.status == "FINISHED"
        assert run.info.run_name == f"evaluate mmoe-seed7 [{split}]"
        assert run.info.experiment_id == client.get_run(trained["run_id"]).info.experiment_id
        for key, value in scored.items():
            assert run.data.metrics[f"eval/{split}/{key}"] == pytest.approx(value, abs=5e-5)
        (inp,) = run.inputs.dataset_inputs
        assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "evaluation"}


def test_evaluate_a_model_file_from_elsewhere_logs_a_run_of_its_own(trained, cli, cli_dataset, tmp_path,
                                                                   mlflow_sqlite_uri):  # fmt: skip
    model = next((trained["root"] / "runs").glob("*/model.pt"))
    (tmp_path / "copy").mkdir()
    copy = tmp_path / "copy" / "model.pt"
    copy.write_bytes(model.read_bytes())
    uri = mlflow_sqlite_uri  # another store: the run that trained the model is not in it
    out = ok(cli("evaluate", copy, "--data", cli_dataset.prepared, "--tracking-uri", uri, "--device", "cpu"))
    run = MlflowClient(uri).get_run(run_id_of(out))
    assert "mlflow.parentRunId" not in run.data.tags and run.info.run_name == "evaluate mmoe [test]"
    assert MlflowClient(uri).get_experiment(run.info.experiment_id).name == "recrl/retailrocket"
    assert set(printed_metrics(out, "mmoe on")) == {k.removeprefix("eval/test/") for k in run.data.metrics}


def test_same_seed_twice_gives_identical_metrics(trained, cli, cli_dataset, tmp_path, monkeypatch,
                                                 new_mlflow_db):  # fmt: skip
    # The second run goes to the default store: ./mlflow.db in the current directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default_uri = new_mlflow_db(tmp_path)
    out = ok(cli("train", "mmoe", "--epochs", 2, "--data", cli_dataset.prepared, "--experiment", "cli/train",
                 "--seed", 7, *TINY))  # fmt: skip
    again = eval_metrics(MlflowClient(default_uri), run_id_of(out))
    first = eval_metrics(MlflowClient(trained["uri"]), trained["run_id"])
    assert again == first  # exactly, every split, task and metric
    assert printed_metrics(out, "test metrics") == printed_metrics(trained["out"], "test metrics")
    other = ok(cli("train", "mmoe", "--epochs", 2, "--data", cli_dataset.prepared, "--seed", 8, *TINY))
    assert printed_metrics(other, "test metrics") != printed_metrics(out, "test metrics")


@contextlib.contextmanager
def ctrl_c_at(monkeypatch, command: str, description: str, done: int, occurrence: int = 1) -> Iterator[None]:
    """Make `recrl COMMAND` receive a real SIGINT once the bar labelled ``... description ...`` reaches ``done``
    for the ``occurrence``-th time (the second run of a study, say)."""
    import importlib

    module = importlib.import_module(f"recrl_cli.cli.{command}")
    real = module.progress_bar
    seen = []

    @contextlib.contextmanager
    def progress_bar():
        with real() as update:

            def hooked(desc: str, n: int, total: int, status: str = "") -> None:
                update(desc, n, total, status=status)
                if description in desc and n == done:  # a study's bars start with "run k of N · "
                    seen.append(n)
                    if len(seen) == occurrence:
                        signal.raise_signal(signal.SIGINT)  # what Ctrl-C does, handled by recrl's handler

            yield hooked

    monkeypatch.setattr(module, "progress_bar", progress_bar)
    yield
    monkeypatch.setattr(module, "progress_bar", real)
    assert len(seen) >= occurrence, "the interrupt never fired"


def test_resume_after_ctrl_c_ends_with_the_metrics_of_an_uninterrupted_run(
    cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri
):
    monkeypatch.chdir(tmp_path)
    args = ["train", "mmoe", "--epochs", 2, "--patience", 0, "--data", cli_dataset.prepared,
            "--tracking-uri", mlflow_sqlite_uri, "--experiment", "cli/resume", *TINY]  # fmt: skip
    whole = ok(cli(*args, "--runs-dir", "whole"))
    client = MlflowClient(mlflow_sqlite_uri)

    with ctrl_c_at(
        monkeypatch, "train", "train · epoch 2/", 3
    ):  # mid-epoch: the permutation must be replayed
        interrupted = cli(*args)
    assert interrupted.exit_code == 130, interrupted.output
    assert "--resume" in interrupted.stdout and "Traceback" not in interrupted.output
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / "checkpoint.pt").is_file()
    state = json.loads((run_dir / "run.json").read_text())
    assert client.get_run(state["mlflow_run_id"]).info.status == "KILLED"

    resumed = ok(cli(*args, "--resume"))
    assert run_id_of(resumed) == state["mlflow_run_id"]  # the same MLflow run goes on
    assert client.get_run(state["mlflow_run_id"]).info.status == "FINISHED"
    assert eval_metrics(client, run_id_of(resumed)) == eval_metrics(client, run_id_of(whole))
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(
        (tmp_path / "whole" / run_dir.name / "metrics.json").read_text()
    )
    assert not (run_dir / "checkpoint.pt").exists()  # a finished run keeps its model, not its checkpoint
    # Per-epoch validation was logged once per epoch, not twice for the interrupted one.
    steps = [m.step for m in client.get_metric_history(state["mlflow_run_id"], "valid/mean/auc")]
    assert steps == [m.step for m in client.get_metric_history(run_id_of(whole), "valid/mean/auc")]

    again = cli(*args, "--resume")  # nothing left to resume: one clear line
    assert again.exit_code == 1 and "already finished" in again.stderr


# ---- a real MLflow server, read back over its REST API ------------------------------------------


def _rest(server: str, endpoint: str, **query: str) -> dict:
    url = f"{server}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def test_train_against_a_real_mlflow_server_reads_back_over_rest(mlflow_server, cli, cli_dataset,
                                                                   tmp_path, monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECRL_LOG_MODEL", "1")  # the logged model's files go through the server too
    out = ok(cli("train", "mmoe", "--epochs", 1, "--data", cli_dataset.prepared, "--tracking-uri",
                 mlflow_server, "--experiment", "cli/rest", *TINY))  # fmt: skip
    run_id = run_id_of(out)
    run = _rest(mlflow_server, "runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["algo"] == "mmoe" and params["train.epochs"] == "1" and params["model.embed_dim"] == "8"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["recrl.version"] == __version__ and tags["recrl.device"] == "cpu"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    for key, value in printed_metrics(out, "test metrics").items():
        assert metrics[f"eval/test/{key}"] == pytest.approx(value, abs=5e-5)
    files = {f["path"] for f in _rest(mlflow_server, "artifacts/list", run_id=run_id)["files"]}
    assert {"config.resolved.json", "manifest.json", "learning_curve.png", "model"} <= files
    experiment = _rest(mlflow_server, "experiments/get-by-name", experiment_name="cli/rest")["experiment"]
    assert experiment["experiment_id"] == run["info"]["experiment_id"]
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
    # Dataset, source and the logged model over REST as well; the model loads from the server and predicts.
    assert [d["dataset"]["name"] for d in run["inputs"]["dataset_inputs"]] == ["retailrocket"]
    assert tags["mlflow.source.name"] == "recrl train mmoe"
    (output,) = run["outputs"]["model_outputs"]
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    info = mlflow.models.get_model_info(f"models:/{output['model_id']}")
    rows = torch.zeros(3, info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"][1], dtype=torch.long)
    assert mlflow.pytorch.load_model(f"models:/{output['model_id']}")(rows).shape == (3, 2)


# ---- ablate ---------------------------------------------------------------------------------------


def ablate_args(cli_dataset, uri: str) -> list:
    return ["--data", cli_dataset.prepared, "--tracking-uri", uri, "--experiment", "cli/ablate",
            "--device", "cpu", "--set", "train.epochs=1", "--set", "model.embed_dim=8",
            "--set", "model.bottom_dims=16", "--set", "model.tower_dims=8", "--set", "model.expert_num=2",
            "--set", "train.batch_size=256", "--set", "train.threads=1"]  # fmt: skip


def test_ablate_nests_runs_prints_ci_table_writes_csv_png_and_skips_finished_runs(
    cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri
):
    monkeypatch.chdir(tmp_path)
    args = [
        "ablate",
        "mmoe",
        "--dropout",
        "0.1,0.3",
        "--seeds",
        2,
        "--tag",
        "study=dropout",
        *ablate_args(cli_dataset, mlflow_sqlite_uri),
    ]
    out = ok(cli(*args))
    assert re.findall(r"^(run \d of 4): dropout=", out, re.M) == [f"run {k} of 4" for k in range(1, 5)]
    assert "skip" not in out
    table = plain(out)
    auc_rows = [line for line in table.splitlines() if "mean/auc" in line]
    assert len(auc_rows) == 2
    assert "dropout=0.1" in auc_rows[0] and "ref" in auc_rows[0]
    assert "dropout=0.3" in auc_rows[1] and auc_rows[1].count("±") == 2  # mean ± CI and Δ ± CI

    client = MlflowClient(mlflow_sqlite_uri)
    exp = client.get_experiment_by_name("cli/ablate").experiment_id
    runs = client.search_runs([exp])
    parents = [r for r in runs if r.data.tags.get("recrl.study") == "true"]
    assert len(parents) == 1
    parent = parents[0].info.run_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(children) == 4 and len(runs) == 5
    assert parents[0].data.tags["mlflow.source.name"] == "recrl ablate mmoe"  # Source column, study run too
    assert all(
        r.data.tags["study"] == "dropout" for r in runs
    )  # --tag: on the study's run and each of its runs
    assert all(
        r.data.tags["mlflow.source.name"] == "recrl train mmoe" and r.inputs.dataset_inputs for r in children
    )
    assert sorted(r.data.params["model.dropout"] for r in children) == ["0.1", "0.1", "0.3", "0.3"]
    assert sorted(r.data.params["train.seed"] for r in children) == ["2022", "2022", "2023", "2023"]
    assert all(r.info.status == "FINISHED" for r in runs)

    csv_path = Path(re.search(r"table: (\S+\.csv)", out).group(1))
    csv_path = csv_path if csv_path.is_absolute() else tmp_path / csv_path
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    auc = [r for r in rows if r["metric"] == "test/mean/auc"]
    assert [r["variant"] for r in auc] == ["dropout=0.1", "dropout=0.3"] and auc[0]["n"] == "2"
    pngs = list(csv_path.parent.glob("*.png"))
    assert pngs and pngs[0].read_bytes()[:4] == b"\x89PNG"
    assert {"study.csv", pngs[0].name} <= {a.path for a in client.list_artifacts(parent)}
    study_metrics = client.get_run(parent).data.metrics
    for row in auc:  # the parent also holds each variant's mean, readable in the MLflow UI
        key = f"study/{row['variant'].replace('=', ':')}/test/mean/auc"
        assert study_metrics[key] == pytest.approx(float(row["mean"]))
    csv_text = csv_path.read_text()

    again = ok(cli(*args))  # the same study again: every run is found finished and reused
    assert re.findall(r"^skip \(finished\) (run \d of 4): dropout=", again, re.M) == [
        f"run {k} of 4" for k in range(1, 5)
    ]
    assert not re.findall(r"^run \d", again, re.M)
    assert "(4 finished run(s) reused)" in again
    assert len(client.search_runs([exp])) == 5
    assert csv_path.read_text() == csv_text


def test_ablate_after_ctrl_c_reuses_finished_runs_and_resumes_the_interrupted_one(
    cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri
):
    monkeypatch.chdir(tmp_path)
    args = ["ablate", "mmoe", "--expert-num", "2,3", *ablate_args(cli_dataset, mlflow_sqlite_uri)]
    with ctrl_c_at(monkeypatch, "ablate", "train · epoch 1", 4, occurrence=2):  # in the second variant
        interrupted = cli(*args)
    assert interrupted.exit_code == 130, interrupted.output
    assert "run the same command again" in interrupted.stdout and "Traceback" not in interrupted.output
    client = MlflowClient(mlflow_sqlite_uri)
    exp = client.get_experiment_by_name("cli/ablate").experiment_id
    before = {r.info.run_name: r.info for r in client.search_runs([exp])}
    killed = before["expert_num=3 seed=0"]
    assert killed.status == "KILLED" and before["expert_num=2 seed=0"].status == "FINISHED"

    out = ok(cli(*args))
    assert (
        "skip (finished) run 1 of 2: expert_num=2 seed=0" in out
        and "\nrun 2 of 2: expert_num=3 seed=0" in out
    )
    after = {r.info.run_name: r.info for r in client.search_runs([exp])}
    assert after.keys() == before.keys()  # no second parent, no duplicate child
    assert after["expert_num=3 seed=0"].run_id == killed.run_id  # resumed, not restarted
    assert {info.status for info in after.values()} == {"FINISHED"}


def test_ui_over_a_tracking_server_only_points_to_it(cli):
    out = ok(cli("ui", "--tracking-uri", "http://127.0.0.1:9"))
    assert "open http://127.0.0.1:9" in out


def test_a_rerun_is_refused_not_silently_replaced_and_runs_have_readable_names(cli, cli_dataset, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["train", "mmoe", "--epochs", 1, "--max-steps", 2, "--data", cli_dataset.prepared, "--seed", 5,
            "--tracking-uri", uri, "--runs-dir", tmp_path / "runs", *TINY]  # fmt: skip
    first = run_id_of(ok(cli(*args)))
    run_dir = next((tmp_path / "runs").iterdir())
    model = (run_dir / "model.pt").read_bytes()
    again = cli(*args)
    lines = again.output.strip().splitlines()
    assert again.exit_code == 1 and len(lines) == 1, again.output
    assert f"this configuration already ran (MLflow run {first}" in lines[0] and "--force" in lines[0]
    assert (run_dir / "model.pt").read_bytes() == model  # the first run's files are untouched
    second = run_id_of(ok(cli(*args, "--force", "--name", "mmoe-rerun")))
    names = {r.info.run_id: r.info.run_name for r in MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("recrl/retailrocket").experiment_id])}  # fmt: skip
    assert names == {first: "mmoe-seed5", second: "mmoe-rerun"}


def test_prepare_ends_with_a_parameters_table_not_a_python_dict(cli_dataset):
    assert "preparation parameters" in cli_dataset.prepare_output
    assert "{" not in cli_dataset.prepare_output.split("preparation parameters")[1]
