"""Shared pytest fixtures."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# ---- MLflow tracking fixtures (recrl_cli.tracking) -------------------------------------------
# A new MLflow sqlite DB runs Alembic migrations (seconds); every test copies one migrated
# template instead. The server is session-scoped because its start is the expensive part.


def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = tmp_path_factory.getbasetemp() / "mlflow-template" / "mlflow.db"
    if not template.exists():
        from recrl_cli.tracking.mlflow_tracker import make_mlflow_tracker

        make_mlflow_tracker(f"sqlite:///{template}")  # creates and migrates the file
    return template


@pytest.fixture
def mlflow_sqlite_uri(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A `sqlite:///` URI of a fresh, already migrated MLflow DB under tmp_path."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_template(tmp_path_factory), db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The http URI of a real `mlflow server` on a free loopback port (tmp sqlite + artifacts)."""
    from recrl_cli.tracking.server import free_port, start_server, stop_server, wait_until_healthy

    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = start_server(f"sqlite:///{root / 'mlflow.db'}", port=port, artifact_root=root / "artifacts")
    try:
        _migrated_template(tmp_path_factory)  # overlaps with the server's start-up (own DB)
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, timeout_s=120, proc=proc)
        yield url
    finally:
        stop_server(proc)


# ---- end of MLflow tracking fixtures ----------------------------------------------------------
