"""Shared pytest fixtures."""

import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result

# Logging a model in MLflow's PyTorch flavour costs seconds of torch.export per run: off for the suite (model.pt
# is still logged); the tests of the logged model turn it back on (monkeypatch.setenv("RECRL_LOG_MODEL", "1")).
os.environ["RECRL_LOG_MODEL"] = "0"


def pytest_configure(config: pytest.Config) -> None:
    """Give the suite a terminal's Ctrl-C, wherever it was started from.

    A shell starts a background job (`make test &` in a script, nohup, a CI step run in the background)
    with SIGINT ignored, and every process it starts inherits that: recrl then rightly leaves SIGINT
    alone (no terminal can send it), and the Ctrl-C tests, in process and in the `recrl` processes they
    start, found nothing to interrupt (four failures in such a run). The tests are about what a user at a
    terminal gets, so SIGINT gets Python's default handler back before they start; child processes then
    inherit the default disposition.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# ---- MLflow tracking fixtures (recrl_cli.tracking) -------------------------------------------
# A new MLflow sqlite DB runs Alembic migrations (seconds); every test copies one migrated
# template instead. The server is session-scoped because its start is the expensive part.


def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = tmp_path_factory.getbasetemp() / "mlflow-template" / "mlflow.db"
    if not template.exists():
        from recrl_cli.tracking.sqlite_store import prepare_store

        prepare_store(template, template.parent / "mlruns")  # creates and migrates the file
    return template


@pytest.fixture
def mlflow_sqlite_uri(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A `sqlite:///` URI of a fresh, already migrated MLflow DB under tmp_path."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_template(tmp_path_factory), db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="session")
def new_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], str]:
    """`new_mlflow_db(directory)` copies a migrated MLflow DB to `directory/mlflow.db` and returns
    its `sqlite:///` URI: for module- or session-scoped fixtures, where `mlflow_sqlite_uri` cannot go."""

    def make(directory: Path) -> str:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_template(tmp_path_factory), directory / "mlflow.db")
        return f"sqlite:///{directory / 'mlflow.db'}"

    return make


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The http URI of a real `mlflow server` on a free loopback port (tmp sqlite + artifacts)."""
    from recrl_cli.errors import TrackingError
    from recrl_cli.tracking.server import free_port, start_server, stop_server, wait_until_healthy

    root = tmp_path_factory.mktemp("mlflow-server")
    # free_port closes its probe socket before the server binds: another process (a Ray or gloo
    # worker of a concurrent test, another suite's server) can take the port in between. Then either
    # our server exits at once ("address already in use"), or, worse, the other process answers
    # /health. Only our server's own "Uvicorn running on <url>" line proves it holds the port; else
    # start again on a new port. That is this fixture's race, not a failure of what is under test.
    for attempt in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(f"sqlite:///{root / 'mlflow.db'}", port=port, artifact_root=root / "artifacts")
        try:
            _migrated_template(tmp_path_factory)  # overlaps with the server's start-up (own DB)
            wait_until_healthy(url, timeout_s=120, proc=proc)
            if _holds_port(proc, url):
                break
            raise TrackingError(f"another process answers on {url}")
        except TrackingError as exc:
            taken = "address already in use" in _server_log(proc) or "another process" in str(exc)
            stop_server(proc)
            if attempt == 2 or not taken:
                raise
    try:
        yield url
    finally:
        stop_server(proc)


def _holds_port(proc, url: str, timeout_s: float = 60.0) -> bool:
    """Whether our server logged that it listens on ``url`` (False once it exits without doing so)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if f"uvicorn running on {url}" in _server_log(proc):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def _server_log(proc) -> str:
    """What the server wrote (lower case), read before stop_server removes its log file."""
    try:
        return proc.log_path.read_text(errors="replace").lower()
    except (OSError, AttributeError):
        return ""


# ---- end of MLflow tracking fixtures ----------------------------------------------------------


# ---- CLI fixtures (tests/test_cli*.py) ------------------------------------------------------------
# One small synthetic RetailRocket dataset per session, made through the CLI itself (synth, then
# prepare), so that every CLI test trains on the same files in a second or two.

CLI_EVENTS = 5000


@dataclass(frozen=True)
class CliDataset:
    raw: Path  # the raw Kaggle-format files written by `recrl synth`
    prepared: Path  # the splits + manifest written by `recrl prepare`
    synth_output: str  # what `recrl synth` printed
    prepare_output: str  # what `recrl prepare` printed


def invoke_cli(*args: object, env: dict[str, str] | None = None) -> Result:
    """Run `recrl ARGS` in-process as a user would; a wide terminal so rich never truncates."""
    from typer.testing import CliRunner

    from recrl_cli.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250", **(env or {})})


@pytest.fixture(scope="session")
def cli() -> Callable[..., Result]:
    """`cli("train", "mmoe", ...)`: see invoke_cli."""
    return invoke_cli


@pytest.fixture(scope="session")
def cli_dataset(tmp_path_factory: pytest.TempPathFactory) -> CliDataset:
    root = tmp_path_factory.mktemp("cli-data")
    raw, prepared = root / "raw", root / "prepared"
    synth = invoke_cli("synth", "retailrocket", "--events", CLI_EVENTS, "--seed", 3, "--out", raw)
    assert synth.exit_code == 0, synth.output
    prep = invoke_cli("prepare", "retailrocket", "--raw", raw, "--out", prepared)
    assert prep.exit_code == 0, prep.output
    return CliDataset(raw, prepared, synth.stdout, prep.stdout)


# ---- end of CLI fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch on one thread for a module (opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _restore_mlflow_tracking_uri() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` writes ``MLFLOW_TRACKING_URI`` into the process environment: undo it after
    every test, so that a later test's default store (``./mlflow.db``) never depends on the test order."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") == before:
        return
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(before)  # None unsets both mlflow's global and the variable
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
