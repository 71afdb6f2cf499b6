"""``recrl ui``: the MLflow UI over the same tracking store the runs were logged to."""

from __future__ import annotations

from typing import Annotated

import typer

from recrl_cli import signals
from recrl_cli.cli.common import TrackingUriOpt, console, friendly_errors


def ui(
    port: Annotated[int, typer.Option("--port", help="Port of the UI.")] = 5000,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; keep 127.0.0.1 unless you know you need more.")
    ] = "127.0.0.1",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Start the MLflow UI (mlflow server) on http://HOST:PORT over the project's tracking store."""
    from recrl_cli.tracking.base import resolve_tracking_uri
    from recrl_cli.tracking.server import (
        check_port_free,
        run_server_in_foreground,
        sqlite_artifact_root,
        sqlite_db_path,
        ui_command,
    )

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        console.print(f"runs are on a tracking server already: open {uri} in a browser")
        return
    check_port_free(host, port)  # before a store is created for a server that cannot start
    db, root = sqlite_db_path(uri), sqlite_artifact_root(uri)
    if db is not None and root is not None:
        # Created (or repaired) here, whole, under the lock: `mlflow server` would migrate a new
        # file in place, where a Ctrl-C in its first seconds leaves it half-migrated.
        from recrl_cli.tracking.sqlite_store import prepare_store

        prepare_store(db, root)
    console.print(f"MLflow UI for {uri} on [bold]http://{host}:{port}[/] (Ctrl-C to stop)")
    try:
        run_server_in_foreground(ui_command(uri, host=host, port=port))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way to stop a UI; its server is stopped
        signals.take()  # consumed: this is not an error
        console.print("MLflow UI stopped")


ui_command_cli = friendly_errors(ui)
