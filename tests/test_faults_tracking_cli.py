"""Faults of the tracking store, signals and the command line itself (issue 13, points 3, 4 and 6).

* The SQLite store is created whole or not at all: under a lock, in a temporary file renamed into
  place, so an interrupted creation leaves nothing and two creators both succeed; a half-migrated
  store is repaired when it holds nothing and reported in one line when it holds runs.
* No command that fails before its run starts leaves a store (or anything else) behind.
* Ctrl-C or SIGTERM at any moment is one line (``error: interrupted``), exit 130 (143 for SIGTERM).
* Every usage error of every command (bad int, unknown option, missing argument, out of range) is
  one ``error:`` line with exit status 1, like recrl's own checks.
* ``recrl ui`` stops its ``mlflow server`` process group when it is stopped.
* The run's git SHA is read without taking ``.git/index.lock``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from faults import ANSI, entries, one_line_error, one_line_process_error, tree_digest

from recrl_cli.tracking.server import free_port

EXP = "recrl/test"
# The migration that creates index_params_run_uuid is the one after this revision: a store stamped
# with it but holding every table is what a Ctrl-C during MLflow's own creation left behind.
BEFORE_RUN_UUID_INDEX = "c48cb773bb87"


def _db(uri: str) -> Path:
    return Path(uri[len("sqlite:///") :])


def _sql(db: Path, *statements: str) -> None:
    with sqlite3.connect(db) as conn:
        for statement in statements:
            conn.execute(statement)


def _log_one_run(uri: str) -> str:
    from recrl_cli.tracking.mlflow_tracker import make_mlflow_tracker

    tracker = make_mlflow_tracker(uri)
    with tracker.start_run(experiment=EXP, run_name="r") as run_id:
        tracker.log_metrics({"m": 1.0})
    return run_id


def _half_migrated(db: Path) -> None:
    """The state of issue 13: tables of later migrations there, the version of an earlier one."""
    _sql(db, f"UPDATE alembic_version SET version_num = '{BEFORE_RUN_UUID_INDEX}'", "DROP TABLE job_locks")


def _no_temporaries(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if ".recrl-new-" in p.name]


# ---- half-migrated and foreign stores -------------------------------------------------------------


def test_half_migrated_store_with_runs_is_one_line_saying_how_to_repair(
    cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri
):
    run_id = _log_one_run(mlflow_sqlite_uri)
    _half_migrated(_db(mlflow_sqlite_uri))
    monkeypatch.chdir(tmp_path)
    before = tree_digest(tmp_path)
    line = one_line_error(
        cli("evaluate", run_id, "--data", cli_dataset.prepared, "--tracking-uri", mlflow_sqlite_uri)
    )
    assert "is unusable (migrating it failed:" in line and "index_params_run_uuid already exists" in line
    assert "holds 1 run(s): restore it from a backup, or move it aside" in line
    assert tree_digest(tmp_path) == before  # the store itself untouched; its migrated copy removed


def test_leftover_alembic_tmp_table_in_a_store_with_runs_is_reported_before_any_work(
    cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri
):
    _log_one_run(mlflow_sqlite_uri)
    _sql(_db(mlflow_sqlite_uri), "CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")
    monkeypatch.chdir(tmp_path)
    before = tree_digest(tmp_path)
    line = one_line_error(
        cli("train", "mmoe", "--data", cli_dataset.prepared, "--tracking-uri", mlflow_sqlite_uri)
    )
    assert "leftover table _alembic_tmp_experiments of an interrupted migration" in line
    assert tree_digest(tmp_path) == before and not (tmp_path / "runs").exists()


def test_store_of_another_mlflow_version_points_to_mlflow_db_upgrade(
    cli, cli_dataset, tmp_path, monkeypatch, mlflow_sqlite_uri
):
    run_id = _log_one_run(mlflow_sqlite_uri)
    _sql(_db(mlflow_sqlite_uri), f"UPDATE alembic_version SET version_num = '{BEFORE_RUN_UUID_INDEX}'")
    monkeypatch.chdir(tmp_path)
    before = tree_digest(tmp_path)
    line = one_line_error(
        cli("evaluate", run_id, "--data", cli_dataset.prepared, "--tracking-uri", mlflow_sqlite_uri)
    )
    assert f"schema version {BEFORE_RUN_UUID_INDEX}, this MLflow writes" in line
    assert "back it up, then run `mlflow db upgrade sqlite:///" in line
    assert tree_digest(tmp_path) == before


def test_half_migrated_store_without_runs_is_read_as_empty_and_replaced_by_the_first_run(
    tmp_path, mlflow_sqlite_uri
):
    from recrl_cli.errors import TrackingError
    from recrl_cli.tracking.mlflow_tracker import make_mlflow_tracker
    from recrl_cli.tracking.sqlite_store import latest_revision, read_store_file

    db = _db(mlflow_sqlite_uri)
    _half_migrated(db)
    _sql(db, "CREATE TABLE _alembic_tmp_runs (run_uuid TEXT)")
    before = tree_digest(tmp_path)
    tracker = make_mlflow_tracker(mlflow_sqlite_uri)
    assert tracker.find_runs(EXP, {}) == []
    with pytest.raises(TrackingError, match="no MLflow run"):
        tracker.get_run("0" * 32)
    assert tree_digest(tmp_path) == before  # reading repairs nothing and writes nothing
    with tracker.start_run(experiment=EXP, run_name="first") as run_id:
        tracker.log_metrics({"m": 2.0})
    store = read_store_file(db)
    assert store.version == latest_revision() and store.leftovers == [] and store.runs == 1
    assert tracker.get_run(run_id).metrics == {"m": 2.0}
    assert _no_temporaries(tmp_path)


def test_a_file_that_is_not_a_store_is_one_line_and_left_as_it_was(cli, cli_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: ./mlflow.db
    (tmp_path / "mlflow.db").write_text("my notes, not a database")
    before = tree_digest(tmp_path)
    line = one_line_error(cli("train", "mmoe", "--data", cli_dataset.prepared))
    assert re.search(r"cannot open the MLflow database .*mlflow\.db: file is not a database", line), line
    assert tree_digest(tmp_path) == before


# ---- the lock and concurrent creation -----------------------------------------------------------


def test_directory_lock_excludes_a_second_holder(tmp_path):
    import fcntl

    from recrl_cli.tracking.sqlite_store import directory_lock

    with directory_lock(tmp_path):
        other = os.open(tmp_path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    assert entries(tmp_path) == []  # no lock file left


_CREATE_AND_LOG = """
import sys
import time
from pathlib import Path
from recrl_cli.tracking.mlflow_tracker import make_mlflow_tracker
from recrl_cli.tracking.sqlite_store import read_store_file

uri = sys.argv[1]
Path(sys.argv[2]).touch()  # ready
while not Path(sys.argv[3]).exists():  # start both creations at the same moment
    time.sleep(0.005)
print("new" if read_store_file(Path(uri[len("sqlite:///"):])).new else "exists", flush=True)
tracker = make_mlflow_tracker(uri)
with tracker.start_run(experiment="recrl/test", run_name=sys.argv[2]):
    tracker.log_metrics({"m": 1.0})
"""


def test_two_processes_creating_a_new_store_at_once_both_succeed(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / ".mlflow.db.recrl-new-999999").write_bytes(b"left by a creator killed with SIGKILL")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    go = tmp_path / "go"
    argv = [sys.executable, "-c", _CREATE_AND_LOG, uri]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": env}
    procs = [subprocess.Popen([*argv, str(tmp_path / f"ready{i}"), str(go)], **pipes) for i in range(2)]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "new"  # both saw no store and both went on to create it
        assert "Traceback" not in err
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2
    assert entries(store) == ["mlflow.db"]  # the stale temporary is gone, no lock file


# ---- interrupted creation (real processes and signals) --------------------------------------------


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_store_creation_leaves_no_store_and_one_line(tmp_path, sig):
    (tmp_path / "notes.txt").write_text("mine")
    before = tree_digest(tmp_path)
    # `recrl ui` creates the store (whole, under the lock) before it starts the server.
    proc = subprocess.Popen(
        [sys.executable, "-m", "recrl_cli", "ui", "--port", str(free_port())],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1", "MLFLOW_TRACKING_URI": ""},
    )  # fmt: skip
    _wait_for(lambda: not _no_temporaries(tmp_path), proc)  # the migration is under way
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    stderr = ANSI.sub("", err)
    assert proc.returncode == 128 + sig, f"rc={proc.returncode}\n{out}\n{stderr}"
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == ["error: interrupted" + ("" if sig == signal.SIGINT else " (SIGTERM)")], stderr
    assert tree_digest(tmp_path) == before  # no mlflow.db, no temporary, notes.txt unchanged


def test_ctrl_c_while_the_command_imports_is_one_line_exit_130(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "recrl_cli", "train", "mmoe", "--dry-run"],  # resolving a config imports torch
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip

    def importing_torch() -> bool:
        try:
            return "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            return False

    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc to see the imports")
    _wait_for(importing_torch, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert ANSI.sub("", err).strip() == "error: interrupted" and out == ""
    assert entries(tmp_path) == []


# ---- Ctrl-C / SIGTERM in-process: one line, 130 / 143 ---------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_inside_a_command_is_one_line_with_the_signal_status(cli, monkeypatch, sig):
    from recrl_cli import signals
    from recrl_cli.cli import info

    def interrupted(*args):
        if sig == signal.SIGINT:
            raise KeyboardInterrupt
        signals.raise_interrupt(sig, None)  # what the SIGTERM handler does

    monkeypatch.setattr(info, "tables", interrupted)
    result = cli("algos", "mmoe")
    assert result.exit_code == 128 + sig and isinstance(result.exception, SystemExit)
    assert ANSI.sub("", result.output).strip() == "error: interrupted" + (
        "" if sig == signal.SIGINT else " (SIGTERM)"
    )


def test_graceful_interrupt_checkpoints_on_sigterm_and_aborts_on_the_second(capsys):
    from recrl_cli.cli.common import graceful_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with graceful_interrupt() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is before
    assert "SIGTERM: stopping after this step" in capsys.readouterr().err
    from recrl_cli import signals

    signals.take()  # the test's SIGTERM is consumed


# ---- no store left behind by a command that fails before its run ---------------------------------


def _critics_id() -> str:
    return "c" * 32


FAILING_BEFORE_THE_RUN = {
    "train --resume, nothing to resume": (
        lambda d: ["train", "mmoe", "--resume", "--data", d],
        r"nothing to resume: no interrupted run",
    ),
    "evaluate an unknown run id": (lambda d: ["evaluate", "f" * 32, "--data", d], r"no MLflow run 'f{32}'"),
    "train rmtl --critics an unknown run id": (
        lambda d: ["train", "rmtl", "--critics", _critics_id(), "--data", d],
        r"no MLflow run 'c{32}'",
    ),
    "ablate rmtl --critics an unknown run id": (
        lambda d: ["ablate", "rmtl", "--critics", _critics_id(), "--data", d, "--pretrain-epochs", "1,2"],
        r"no MLflow run 'c{32}'",
    ),
    "train with a file as --runs-dir": (
        lambda d: ["train", "mmoe", "--data", d, "--runs-dir", "notes.txt"],
        r"notes\.txt",
    ),
}


@pytest.mark.parametrize("case", list(FAILING_BEFORE_THE_RUN))
def test_command_failing_before_its_run_leaves_no_store(cli, cli_dataset, tmp_path, monkeypatch, case):
    args, message = FAILING_BEFORE_THE_RUN[case]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: ./mlflow.db
    (tmp_path / "notes.txt").write_text("a file of the user's")
    before = tree_digest(tmp_path)
    line = one_line_error(cli(*args(cli_dataset.prepared)))
    assert re.search(message, line), line
    assert tree_digest(tmp_path) == before
    assert entries(tmp_path) == ["notes.txt"]  # no mlflow.db, no mlruns/, no runs/


def test_reading_a_store_in_a_missing_directory_creates_neither(cli, cli_dataset, tmp_path):
    uri = f"sqlite:///{tmp_path / 'new' / 'dir' / 'mlflow.db'}"
    line = one_line_error(cli("evaluate", "a" * 32, "--data", cli_dataset.prepared, "--tracking-uri", uri))
    assert f"no MLflow run '{'a' * 32}'" in line
    assert entries(tmp_path) == []


def test_a_store_path_that_can_never_be_created_fails_before_any_work(
    cli, cli_dataset, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("a file where the store's directory should be")
    before = tree_digest(tmp_path)
    uri = f"sqlite:///{tmp_path / 'notes.txt' / 'mlflow.db'}"
    line = one_line_error(cli("train", "mmoe", "--data", cli_dataset.prepared, "--tracking-uri", uri))
    assert line.endswith("notes.txt is not a directory"), line
    assert tree_digest(tmp_path) == before and entries(tmp_path) == ["notes.txt"]  # no runs/ either


# ---- usage errors: one line, exit 1, for every command ---------------------------------------------


USAGE_ERRORS = [
    (["train", "mmoe", "--seed", "abc"], r"invalid value for '--seed': .*integer; see '.* train --help'"),
    (["train"], r"missing argument 'algo'; see '.* train --help'"),
    (["evaluate"], r"missing argument 'source'"),
    (["evaluate", "abc", "--split"], r"option '--split' requires an argument"),
    (["ablate", "mmoe", "--seeds", "x"], r"invalid value for '--seeds'"),
    (["ablate", "mmoe", "--jobs", "1.5"], r"invalid value for '--jobs'"),
    (["prepare", "retailrocket", "--bogus"], r"no such option: --bogus"),
    (["prepare"], r"missing argument 'dataset'"),
    (
        ["synth", "retailrocket", "--events", "5"],
        r"invalid value for '--events': .*greater than or equal to 100",
    ),
    (["synth", "retailrocket", "--seed", "1e3"], r"invalid value for '--seed'"),
    (["ui", "--port", "x"], r"invalid value for '--port'; see '.* ui --help'|invalid value for '--port': "),
    (["ui", "--bogus"], r"no such option: --bogus"),
    (["text", "items"], r"missing argument 'data'; see '.* text items --help'"),
    (["text", "init-model", "m", "--data", "d", "--hidden", "1"], r"invalid value for '--hidden'"),
    (["text", "nosuch"], r"no such command 'nosuch'"),
    (["algos", "mmoe", "extra"], r"got unexpected extra argument"),
    (["nosuch"], r"no such command 'nosuch'"),
]


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_exit_1(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    line = one_line_error(cli(*args))
    assert re.search(message, line), line
    assert entries(tmp_path) == []


def test_usage_error_of_the_console_script_is_the_same_line(tmp_path):
    from faults import run_recrl

    line = one_line_process_error(run_recrl("train", "mmoe", "--seed", "abc", cwd=tmp_path))
    assert re.search(r"^error: invalid value for '--seed': .*; see '.*train --help'$", line), line
    assert entries(tmp_path) == []


def test_help_version_and_bare_groups_still_exit_0(cli):
    for args in (["--help"], ["--version"], ["train", "--help"], ["text", "--help"], [], ["text"]):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.stdout or "recrl " in result.stdout


# ---- recrl ui: SIGTERM stops the server and everything it started ---------------------------------


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: the process group
                members.append(int(entry.name))
    return members


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
            except OSError:
                continue
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_sigterm_to_recrl_ui_stops_its_mlflow_server(tmp_path, mlflow_sqlite_uri):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recrl_cli", "ui", "--port", str(port), "--tracking-uri", mlflow_sqlite_uri],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    try:

        def serving() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    return True
            except OSError:
                return False

        _wait_for(serving, proc)
        servers = _children(proc.pid)
        assert servers and all(_group_members(s) for s in servers)  # the server leads its own group
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err  # stopping the UI is how it ends
    assert "MLflow UI stopped" in out and "Traceback" not in err
    assert all(_group_members(s) == [] for s in servers)  # mlflow server and its uvicorn worker
    import socket

    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more


def test_ui_on_a_busy_port_is_one_line_and_creates_no_store(cli, tmp_path, monkeypatch):
    import socket

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        line = one_line_error(cli("ui", "--port", busy.getsockname()[1]))
    assert "cannot serve the MLflow UI on 127.0.0.1:" in line and "in use" in line
    assert entries(tmp_path) == []


# ---- the run's git SHA takes no lock in the source checkout ---------------------------------------


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_info_does_not_rewrite_the_index_of_the_checkout(tmp_path):
    from recrl_cli.pipeline import git_info

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    for command in (["init", "-q"], ["add", "f.txt"], ["commit", "-qm", "one"]):
        if command[0] == "add":
            (tmp_path / "f.txt").write_text("same content")
        subprocess.run(["git", *command], cwd=tmp_path, check=True, env=env, capture_output=True)
    os.utime(
        tmp_path / "f.txt", (1_600_000_000, 1_600_000_000)
    )  # stat-dirty: plain `git status` rewrites the index
    index = tmp_path / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    info = git_info(code_dir=tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", info["recrl.git_sha"]) and info["recrl.git_dirty"] == "false"
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    assert not (tmp_path / ".git" / "index.lock").exists()
