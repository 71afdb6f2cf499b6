"""``recrl ui``: the MLflow UI over the same tracking store the runs were logged to."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Annotated

import typer

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
    from recrl_cli.tracking.server import ui_command

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        console.print(f"runs are on a tracking server already: open {uri} in a browser")
        return
    console.print(f"MLflow UI for {uri} on [bold]http://{host}:{port}[/] (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(ui_command(uri, host=host, port=port), check=False)


ui_command_cli = friendly_errors(ui)
