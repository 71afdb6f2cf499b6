"""Tests of recrl_cli.tracking: params flattening, the null/recording trackers, MlflowTracker on a
sqlite store and on a real `mlflow server`, and the server helpers."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recrl_cli.errors import RecrlError, TrackingError
from recrl_cli.tracking import NullTracker, RecordingTracker, flatten_params, resolve_tracking_uri
from recrl_cli.tracking.mlflow_tracker import MAX_PARAM_LENGTH, make_mlflow_tracker
from recrl_cli.tracking.server import (
    ServerProcess,
    free_port,
    stop_server,
    ui_command,
    wait_until_healthy,
)

EXP = "recrl/test"


# ---- a real `mlflow server` (first: its start overlaps with the template DB's creation) -----------------------------------------------------------------


def test_mlflow_http_run_read_back_over_rest(mlflow_server, tmp_path):
    tracker = make_mlflow_tracker(mlflow_server)
    (tmp_path / "a.txt").write_text("over http")
    with tracker.start_run(experiment=EXP, run_name="http-run", tags={"dataset": "kuairand"}) as run_id:
        tracker.log_params({"train": {"lr": 0.001, "dims": (512, 256)}})
        tracker.log_metrics({"eval/test/click/auc": 0.71}, step=1)
        tracker.log_metrics({"eval/test/click/auc": 0.73}, step=2)
        tracker.log_artifact(tmp_path / "a.txt")
    with urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow/runs/get?run_id={run_id}", timeout=10) as r:
        run = json.load(r)["run"]
    data = run["data"]
    assert {p["key"]: p["value"] for p in data["params"]} == {"train.lr": "0.001", "train.dims": "512,256"}
    assert [(m["key"], m["value"], m["step"]) for m in data["metrics"]] == [("eval/test/click/auc", 0.73, 2)]
    assert {t["key"]: t["value"] for t in data["tags"]}["dataset"] == "kuairand"
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == "http-run"
    assert tracker.download_artifact(run_id, "a.txt", tmp_path / "dl").read_text() == "over http"
    assert [r.run_id for r in tracker.find_runs(EXP, {"dataset": "kuairand"})] == [run_id]
    with pytest.raises(TrackingError, match=r"no MLflow run '0+'"):
        tracker.get_run("0" * 32)


# ---- flatten_params / resolve_tracking_uri ----------------------------------------------------


@dataclass
class _Net:
    dims: tuple[int, ...] = (512, 256)
    dropout: float | None = None


@dataclass
class _Cfg:
    lr: float = 0.001
    amp: bool = False
    net: _Net = field(default_factory=_Net)


def test_flatten_params_formats_values_and_nests():
    flat = flatten_params({"train": {"lr": 0.001, "cfg": _Cfg()}, "on": True, "path": Path("a/b"), "e": {}})
    assert flat == {
        "train.lr": "0.001",
        "train.cfg.lr": "0.001",
        "train.cfg.amp": "false",
        "train.cfg.net.dims": "512,256",
        "train.cfg.net.dropout": "None",
        "on": "true",
        "path": "a/b",
        "e": "{}",
    }
    assert flatten_params(_Net(), prefix="net") == {"net.dims": "512,256", "net.dropout": "None"}


def test_flatten_params_errors():
    with pytest.raises(TrackingError, match=r"'a\.b' occurs twice"):
        flatten_params({"a.b": 1, "a": {"b": 2}})
    with pytest.raises(TypeError):
        flatten_params([1, 2])
    with pytest.raises(TypeError):
        flatten_params(_Cfg)  # the class, not an instance


def test_resolve_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri(None).startswith("sqlite:////")  # absolute path
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:1"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


# ---- NullTracker --------------------------------------------------------------------------------


def test_null_tracker_accepts_everything_and_remembers_nothing(tmp_path):
    t = NullTracker()
    with t.start_run(experiment=EXP, run_name="a") as a, t.start_run(experiment=EXP, run_name="b") as b:
        assert len(a) == 32 and int(a, 16) >= 0 and a != b
        t.log_params({"x": 1})
        t.log_metrics({"m": 1.0}, step=1)
        t.set_tags({"k": "v"})
        t.log_artifact(tmp_path / "missing.txt")
        t.log_dict({"a": 1}, "c.json")
    assert t.find_runs(EXP, {}) == []
    with pytest.raises(TrackingError, match="no MLflow run 'a'"):
        t.get_run("a")
    with pytest.raises(TrackingError):
        t.download_artifact(a, "c.json", tmp_path)


# ---- behaviour shared by RecordingTracker and MlflowTracker -------------------------------------


@pytest.fixture(params=["recording", "mlflow"])
def tracker(request):
    if request.param == "recording":
        return RecordingTracker()
    return make_mlflow_tracker(request.getfixturevalue("mlflow_sqlite_uri"))


def test_run_status_on_exit(tracker):
    with tracker.start_run(experiment=EXP, run_name="ok") as ok:
        pass
    with pytest.raises(ZeroDivisionError), tracker.start_run(experiment=EXP, run_name="bad") as bad:
        1 / 0  # noqa: B018
    with pytest.raises(KeyboardInterrupt), tracker.start_run(experiment=EXP, run_name="ctrl-c") as killed:
        raise KeyboardInterrupt
    assert [tracker.get_run(r).status for r in (ok, bad, killed)] == ["FINISHED", "FAILED", "KILLED"]
    info = tracker.get_run(ok)
    assert (info.name, info.experiment, info.parent_run_id) == ("ok", EXP, None)


def test_nested_runs_and_misuse(tracker):
    with pytest.raises(ValueError, match="no run is open"):
        tracker.log_metrics({"m": 1.0})
    with pytest.raises(ValueError, match="needs an open parent"):
        tracker.start_run(experiment=EXP, run_name="orphan", nested=True).__enter__()
    with tracker.start_run(experiment=EXP, run_name="study") as parent:
        with pytest.raises(ValueError, match="still open"):
            tracker.start_run(experiment=EXP, run_name="x").__enter__()
        children = []
        for seed in (0, 1):
            with tracker.start_run(experiment=EXP, run_name=f"seed={seed}", nested=True) as child:
                tracker.log_metrics({"auc": 0.5 + seed})
                children.append(child)
        tracker.log_metrics({"auc_mean": 1.0})  # logs to the parent again
    for child, auc in zip(children, (0.5, 1.5), strict=True):
        info = tracker.get_run(child)
        assert info.parent_run_id == parent and info.tags["mlflow.parentRunId"] == parent
        assert info.metrics == {"auc": auc}
    assert tracker.get_run(parent).metrics == {"auc_mean": 1.0}
    assert tracker.get_run(parent).parent_run_id is None


def test_params_are_immutable_but_relog_is_fine(tracker):
    with tracker.start_run(experiment=EXP, run_name="r") as run_id:
        tracker.log_params({"train": {"lr": 0.001}, "flag": True})
        tracker.log_params({"train.lr": 0.001})  # identical: no error
        with pytest.raises(TrackingError, match=r"param 'train\.lr' .* already '0\.001'"):
            tracker.log_params({"train.lr": 0.01})
    assert tracker.get_run(run_id).params == {"train.lr": "0.001", "flag": "true"}
    assert tracker.get_run(run_id).status == "FINISHED"  # the error was handled inside the block


def test_resume_appends_to_the_same_run(tracker):
    with tracker.start_run(experiment=EXP, run_name="r", tags={"seed": "1"}) as run_id:
        tracker.log_params({"lr": 0.1})
        tracker.log_metrics({"train/loss": 2.0}, step=1)
    with tracker.start_run(
        experiment=EXP, run_name="ignored", resume_run_id=run_id, tags={"resumed": "1"}
    ) as again:
        assert again == run_id
        assert tracker.get_run(run_id).status == "RUNNING"
        tracker.log_params({"lr": 0.1})  # the resumed run's config, logged again
        tracker.log_metrics({"train/loss": 1.0}, step=2)
    info = tracker.get_run(run_id)
    assert (info.status, info.name, info.metrics) == ("FINISHED", "r", {"train/loss": 1.0})
    assert info.tags["seed"] == "1" and info.tags["resumed"] == "1"
    assert len(tracker.find_runs(EXP, {})) == 1
    with pytest.raises(TrackingError, match="belongs to experiment 'recrl/test', not 'other'"):
        tracker.start_run(experiment="other", run_name="r", resume_run_id=run_id).__enter__()
    with pytest.raises(TrackingError, match="no MLflow run 'f00d'"):
        tracker.start_run(experiment=EXP, run_name="r", resume_run_id="f00d").__enter__()


def test_find_runs_by_tags_newest_first(tracker):
    ids = []
    for seed, variant in [(0, "a"), (1, "a"), (0, "b"), (1, "it's")]:
        with tracker.start_run(experiment=EXP, run_name=f"{variant}{seed}", tags={"variant": variant}) as r:
            tracker.set_tags({"seed": seed})
            ids.append(r)
        time.sleep(0.005)  # distinct start times, so "newest first" is well defined
    assert [r.run_id for r in tracker.find_runs(EXP, {"variant": "a"})] == [ids[1], ids[0]]
    assert [r.run_id for r in tracker.find_runs(EXP, {"seed": "0"})] == [ids[2], ids[0]]
    assert [r.run_id for r in tracker.find_runs(EXP, {"variant": "it's"})] == [ids[3]]
    assert [r.run_id for r in tracker.find_runs(EXP, {})] == ids[::-1]
    assert tracker.find_runs(EXP, {"variant": "c"}) == []
    assert tracker.find_runs("no-such-experiment", {}) == []


def test_get_run_unknown_id(tracker):
    with pytest.raises(TrackingError, match=r"^no MLflow run 'deadbeef' in \S+$"):
        tracker.get_run("deadbeef")


def test_artifacts_round_trip(tracker, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    ckpt = tmp_path / "ckpt"
    (ckpt / "sub").mkdir(parents=True)
    (ckpt / "model.pt").write_bytes(b"\x00\x01")
    (ckpt / "sub" / "state.json").write_text("{}")
    with tracker.start_run(experiment=EXP, run_name="r") as run_id:
        tracker.log_artifact(tmp_path / "notes.txt")
        tracker.log_artifact(ckpt, "checkpoints")
        tracker.log_dict({"lr": 0.1, "dims": [1, 2], "path": Path("x")}, "config/resolved.json")
        with pytest.raises(TrackingError, match="no such file"):
            tracker.log_artifact(tmp_path / "missing.bin")
        with pytest.raises(TrackingError, match="metric 'm' is not a number"):
            tracker.log_metrics({"m": "high"})
    out = tmp_path / "out"
    assert tracker.download_artifact(run_id, "notes.txt", out).read_text() == "hello"
    got = tracker.download_artifact(run_id, "checkpoints/ckpt", out)
    assert got == out / "ckpt"
    assert (got / "model.pt").read_bytes() == b"\x00\x01" and (got / "sub" / "state.json").exists()
    config = json.loads(tracker.download_artifact(run_id, "config/resolved.json", out).read_text())
    assert config == {"lr": 0.1, "dims": [1, 2], "path": "x"}
    with pytest.raises(TrackingError):
        tracker.download_artifact(run_id, "nothing/here.txt", out)


def test_recording_tracker_keeps_metric_history():
    t = RecordingTracker()
    with t.start_run(experiment=EXP, run_name="r") as run_id:
        t.log_metrics({"eval/test/click/auc": 0.7}, step=2)
        t.log_metrics({"eval/test/click/auc": 0.6}, step=1)  # late, lower step: not the latest
    assert t.metric_history(run_id, "eval/test/click/auc") == [(2, 0.7), (1, 0.6)]
    assert t.get_run(run_id).metrics == {"eval/test/click/auc": 0.7}
    assert t.runs[run_id].status == "FINISHED"


# ---- MlflowTracker on sqlite, read back with MlflowClient ----------------------------------------


def test_mlflow_sqlite_run_read_back(mlflow_sqlite_uri, tmp_path):
    from mlflow import MlflowClient

    tracker = make_mlflow_tracker(mlflow_sqlite_uri)
    params = {f"p{i:03d}": i for i in range(150)} | {"long": "y" * (MAX_PARAM_LENGTH + 500)}
    (tmp_path / "a.txt").write_text("artifact")
    with tracker.start_run(experiment=EXP, run_name="r", tags={"git_sha": "abc"}) as run_id:
        tracker.log_params(params)
        for step in range(3):
            tracker.log_metrics(
                {"eval/test/click/auc": 0.5 + step / 10, "train/loss": 1.0 / (step + 1)}, step
            )
        tracker.log_artifact(tmp_path / "a.txt", "files")
    client = MlflowClient(mlflow_sqlite_uri)
    run = client.get_run(run_id)
    assert len(run.data.params) == 151 and run.data.params["p149"] == "149"
    assert len(run.data.params["long"]) <= MAX_PARAM_LENGTH
    assert run.data.params["long"].startswith("y" * 100) and run.data.params["long"] != params["long"]
    full = Path(client.download_artifacts(run_id, "params/long.txt", str(tmp_path / "dl"))).read_text()
    assert full == params["long"]
    history = client.get_metric_history(run_id, "eval/test/click/auc")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.6), (2, 0.7)]
    assert run.data.tags["git_sha"] == "abc" and run.info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["files", "params"]
    # artifacts of a sqlite store live beside the DB, whatever the working directory
    assert Path(run.info.artifact_uri).is_relative_to(Path(mlflow_sqlite_uri[len("sqlite:///") :]).parent)


def test_a_model_torch_export_cannot_trace_is_a_note_not_a_failed_run(mlflow_sqlite_uri, monkeypatch):
    """The run goes on (model.pt holds the model); the logged model is marked FAILED and the note says why."""
    import torch
    from mlflow import MlflowClient

    class Branchy(torch.nn.Module):  # data-dependent Python control flow: torch.export refuses it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.float() * 2 if int(x.sum()) > 0 else x.float()

    monkeypatch.setenv("RECRL_LOG_MODEL", "1")
    tracker = make_mlflow_tracker(mlflow_sqlite_uri)
    with tracker.start_run(experiment=EXP, run_name="r") as run_id:
        note = tracker.log_model(Branchy(), torch.ones(2, 3, dtype=torch.long), name="branchy")
    assert note is not None and note.startswith(
        "the model was not logged in MLflow's PyTorch flavour: torch.export"
    )
    assert note.endswith("); model/model.pt has it")
    client = MlflowClient(mlflow_sqlite_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and not run.outputs.model_outputs
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.name == "branchy" and str(model.status).endswith("FAILED")
    monkeypatch.setenv("RECRL_LOG_MODEL", "0")  # and the switch skips it altogether
    with tracker.start_run(experiment=EXP, run_name="r2"):
        assert tracker.log_model(Branchy(), torch.ones(2, 3, dtype=torch.long), name="skipped") is None
    assert len(client.search_logged_models([run.info.experiment_id])) == 1


def test_mlflow_new_sqlite_db_is_created_quietly(tmp_path, capfd):
    uri = f"sqlite:///{tmp_path / 'new' / 'dir' / 'mlflow.db'}"
    tracker = make_mlflow_tracker(uri)  # creates the directory and migrates a new DB
    with tracker.start_run(experiment=EXP, run_name="r"):
        tracker.log_metrics({"m": 1.0})
    assert (tmp_path / "new" / "dir" / "mlflow.db").is_file()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_mlflow_unusable_stores_fail_fast(tmp_path):
    (tmp_path / "not.db").write_text("plain text")
    for uri, match in [
        (f"sqlite:///{tmp_path / 'not.db'}", "file is not a database"),
        (f"sqlite:///{tmp_path}", "cannot open the MLflow database"),  # a directory
        (f"http://127.0.0.1:{free_port()}", "cannot reach the MLflow tracking server at http://127"),
        (f"http://user:secret@127.0.0.1:{free_port()}", r"user:\*\*\*@"),
    ]:
        with pytest.raises(TrackingError, match=match) as info:
            make_mlflow_tracker(uri)
        assert "\n" not in str(info.value) and "secret" not in str(info.value)
        assert isinstance(info.value, RecrlError)


# ---- server helpers -------------------------------------------------------------------------------


def test_ui_command_anchors_artifacts_beside_a_sqlite_db(tmp_path):
    argv = ui_command(f"sqlite:///{tmp_path / 'mlflow.db'}", port=5055)
    assert argv[:4] == [sys.executable, "-m", "mlflow", "server"]
    opts = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert opts["--backend-store-uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (opts["--host"], opts["--port"]) == ("127.0.0.1", "5055")
    assert opts["--default-artifact-root"] == str(tmp_path / "mlruns")
    assert "--default-artifact-root" not in ui_command("postgresql://db/mlflow")
    assert ui_command("postgresql://db/mlflow", artifact_root=tmp_path)[-1] == str(tmp_path)


def test_wait_until_healthy_reports_early_exit_and_timeout(tmp_path):
    script = (
        "import sys; print('starting'); print('ERROR: address already in use', file=sys.stderr); sys.exit(3)"
    )
    proc = ServerProcess([sys.executable, "-c", script], tmp_path / "server.log")
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match="exited with code 3: ERROR: address already in use"):
        wait_until_healthy(url, timeout_s=60, proc=proc)
    stop_server(proc)
    with pytest.raises(TrackingError, match=r"did not answer within 0\.3 s"):
        wait_until_healthy(url, timeout_s=0.3)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited already


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_stop_server_ends_the_whole_process_group(tmp_path):
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = ServerProcess([sys.executable, "-c", script], tmp_path / "server.log", owns_log=True)
    deadline = time.monotonic() + 30
    while not proc.last_log_line() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(proc.last_log_line())
    assert _alive(child)
    stop_server(proc, timeout_s=5)
    assert proc.returncode is not None and not _alive(child)
    assert not (tmp_path / "server.log").exists()  # owned logs are removed
    assert os.name != "posix" or proc.own_group


def test_import_of_tracking_package_does_not_import_mlflow():
    code = "import sys, recrl_cli.tracking, recrl_cli.tracking.mlflow_tracker; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
