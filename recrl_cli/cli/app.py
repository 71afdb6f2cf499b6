"""The ``recrl`` console script: the one entry point, light enough to guard its own imports.

``main`` installs the signal handling before anything heavy is imported (the commands pull in
torch and, later, mlflow: seconds on a loaded machine), so a Ctrl-C or SIGTERM at any moment ends
with one ``error: interrupted`` line and exit status 130 (143 for SIGTERM), never a traceback. The
Typer application itself lives in :mod:`recrl_cli.cli.commands`; ``app`` is still importable from
here for tests and embedding.
"""

from __future__ import annotations

from typing import Any

from recrl_cli import signals


def main() -> None:
    """Run ``recrl`` with ``sys.argv``; every outcome is an exit status (see RecrlGroup.main)."""
    signals.install()
    try:
        from recrl_cli.cli.commands import app

        app()  # exits: RecrlGroup.main turns usage errors and interrupts into one line
    except KeyboardInterrupt as stop:  # during the imports, or the instant before a handler was reached
        signals.report_and_exit(stop)
    except SystemExit as exc:
        if signals.interrupted():  # reported by RecrlGroup: end with exactly its status
            signals.finish(exc.code if isinstance(exc.code, int) else 1)
        raise


def __getattr__(name: str) -> Any:
    if name == "app":  # `from recrl_cli.cli.app import app`, without importing it for `main`
        from recrl_cli.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
