"""Pieces every command shares: the console, one-line errors, option aliases, progress, overrides."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from recrl_cli.errors import RecrlError
from recrl_cli.training.trainer import StopSignal

console = Console()
err_console = Console(stderr=True)

# --- option aliases (one definition, same help everywhere) -------------------------------------
ConfigOpt = Annotated[
    Path | None,
    # Typer renders help as rich markup: unescaped, "[data]" would vanish from --help.
    typer.Option("--config", "-c", help=escape("TOML file with [data], [train] and [model] tables.")),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set train.lr=0.003 (repeatable)."),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (default: train.seed = 2022).")]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto (CUDA when available), cpu or cuda. Default: auto.")
]
ExperimentOpt = Annotated[
    str | None, typer.Option("--experiment", "-e", help="MLflow experiment name (default: recrl/<dataset>).")
]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current directory.",
    ),
]


def fail(message: str) -> None:
    """Print one red error line and exit with code 1.

    The message is escaped: it often quotes user input ("unknown section [x]"), which rich would
    otherwise take for markup and drop.
    """
    line = " ".join(message.split()) or "unexpected error"
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one line and exit code 1, no traceback: every
    :class:`RecrlError`, and the operating system refusing a file operation (a permission, a full
    disk, a file where a directory should be), which is the user's machine, not a bug."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RecrlError as exc:
            text = str(exc).strip()
            fail(text.splitlines()[0] if text else type(exc).__name__)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}")

    return wrapper


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display; yields the ``progress(description, done, total)`` callback."""
    columns = (
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        tasks: dict[str, Any] = {}

        def update(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = progress.add_task(description, total=total)
            progress.update(tasks[description], completed=done, total=total)

        try:
            yield update
        except BaseException:  # Ctrl-C and SIGTERM too: the error line is all that is shown
            # On an error the half-done bars are noise: erase them (a terminal) or never print
            # them (a pipe, a log file), so the one error line is all the user sees.
            progress.live.transient = True
            raise


def stops_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    """For commands that write temporary outputs (an atomic output folder, a child process): SIGTERM is
    handled like Ctrl-C (:func:`recrl_cli.signals.sigterm_as_interrupt`), so the same clean-up runs,
    and either one ends with one error line and exit code 1 instead of a traceback, also when native
    code turned the interrupt into another exception or swallowed it."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from recrl_cli.signals import Terminated, sigterm_as_interrupt, stop_mark, stops_since

        mark = stop_mark()

        def stopped(sigterm: bool) -> None:
            what = "stopped by SIGTERM" if sigterm else "interrupted (Ctrl-C)"
            fail(f"{what}; no partial output was left")

        try:
            with sigterm_as_interrupt():
                result = command(*args, **kwargs)
        except BaseException as exc:
            stops = stops_since(mark)
            if stops or isinstance(exc, KeyboardInterrupt):
                stopped(stops[-1] == signal.SIGTERM if stops else isinstance(exc, Terminated))
            raise
        if stops := stops_since(mark):
            stopped(stops[-1] == signal.SIGTERM)
        return result

    return wrapper


@contextmanager
def graceful_interrupt() -> Iterator[StopSignal]:
    """First Ctrl-C asks the trainer to checkpoint and stop; a second one aborts at once."""
    stop = StopSignal()
    try:
        previous = signal.getsignal(signal.SIGINT)
    except ValueError:  # not the main thread (tests): no handler
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        err_console.print(
            "[yellow]stopping after this step and writing a checkpoint (Ctrl-C again to abort)[/]"
        )

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:
        yield stop
        return
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def parse_extra_options(args: list[str]) -> list[tuple[str, str]]:
    """Parse leftover ``--name value`` / ``--name=value`` pairs (model options like ``--base mmoe``).

    A bare ``--flag`` (followed by another option or nothing) means ``true``.
    """
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or token == "--":
            raise RecrlError(f"unexpected argument '{token}'")
        name, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                value = "true"
            else:
                value = args[i + 1]
                i += 1
        pairs.append((name.replace("-", "_"), value))
        i += 1
    return pairs
