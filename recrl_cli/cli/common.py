"""Pieces every command shares: the console, one-line errors, option aliases, progress, overrides."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from recrl_cli import signals
from recrl_cli.errors import RecrlError

if TYPE_CHECKING:
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
TagOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        help="MLflow run tag KEY=VALUE (repeatable): shown in the UI, searchable as tags.KEY = 'VALUE'.",
    ),
]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current directory.",
    ),
]


def error_line(message: str) -> None:
    """Print ``error: <message>`` as one red line on stderr.

    The message is escaped: it often quotes user input ("unknown section [x]"), which rich would
    otherwise take for markup and drop.
    """
    line = " ".join(message.split()) or "unexpected error"
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    """Print one red error line and exit with code 1."""
    error_line(message)
    raise typer.Exit(code=1)


class _Interrupted(Exception):
    """A KeyboardInterrupt (Ctrl-C, or SIGTERM via signals) carried past Typer, which would
    otherwise turn it into a silent exit 130."""


class RecrlGroup(TyperGroup):
    """The root command group: every way a command line can fail ends here, as one line.

    Click and Typer report their own parse errors (a bad int, an unknown option, a missing
    argument, a value out of range) as a usage panel with exit status 2; recrl's own checks of the
    same arguments print one ``error:`` line with exit status 1. Running the command in click's
    non-standalone mode and catching its exceptions here gives both the same form: one line,
    ``error: <what>; see '<command> --help'``, exit status 1. ``--help`` and ``--version`` still
    print and exit 0; ``recrl`` or ``recrl text`` alone print their help. A Ctrl-C or SIGTERM
    during a command is ``error: interrupted`` with exit status 130 (143 for SIGTERM).

    Both the console script (``recrl_cli.cli.app:main``) and CliRunner tests (``invoke(app)``)
    call this ``main``, so the in-process tests see exactly what the user sees.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted from exc

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        _show_flags_as_flags(self)
        if not standalone_mode:  # a caller that handles click's exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # click's exceptions (Typer's public base class of them)
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `recrl`, `recrl text`
                console.print(ctx.get_help(), highlight=False, soft_wrap=True, markup=False)
                sys.exit(0)
            if exc.exit_code == 2:  # a usage error: bad value, unknown option, missing argument, ...
                fail_usage(exc)
            error_line(exc.format_message())  # a file that cannot be opened and the like
            sys.exit(1)
        except typer.Abort:  # EOF at a prompt
            error_line("aborted")
            sys.exit(1)
        except _Interrupted as exc:
            text, status = signals.take(exc.__cause__)
            error_line(text)
            sys.exit(status)
        except RecrlError as exc:  # raised outside a command body (a callback): still one line
            error_line(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            sys.exit(1)
        # Non-standalone click returns the command's value, or the code of a typer.Exit it raised.
        sys.exit(result if isinstance(result, int) else 0)


def _show_flags_as_flags(command: Any) -> None:
    """Typer's help shows a flag's type (``--dry-run <bool>``) as if it took a value: show no type for flags
    (``--help`` included, which click makes on demand)."""
    if getattr(command, "_recrl_flags_shown", False):
        return
    command._recrl_flags_shown = True
    for param in getattr(command, "params", ()):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    make_help_option = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _show_flags_as_flags(sub)


def fail_usage(exc: typer.TyperException) -> None:
    """One line for a click/Typer parse error, pointing at the command's --help; exit status 1."""
    text = " ".join(exc.format_message().split()).rstrip(".") or "bad command line"
    text = text[0].lower() + text[1:]
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "recrl"
    error_line(f"{text}; see '{where} --help'")
    sys.exit(1)


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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold blue]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        tasks: dict[str, Any] = {}

        def update(description: str, done: int, total: int, status: str = "") -> None:
            """One bar per ``description``; ``status`` (a loss, the latest validation score) is shown beside it."""
            if description not in tasks:
                tasks[description] = progress.add_task(description, total=total, status=status)
            progress.update(tasks[description], completed=done, total=total, status=status)

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
    and either one ends with one error line and the stopped exit status (130 for Ctrl-C, 143 for
    SIGTERM, as every other command) instead of a traceback, also when native code turned the
    interrupt into another exception or swallowed it."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark = signals.stop_mark()

        def stopped(sigterm: bool) -> None:
            signals.take(
                signals.Terminated() if sigterm else KeyboardInterrupt()
            )  # reported: ends with this status
            what = "stopped by SIGTERM" if sigterm else "interrupted (Ctrl-C)"
            error_line(f"{what}; no partial output was left")
            raise typer.Exit(code=128 + int(signal.SIGTERM if sigterm else signal.SIGINT))

        try:
            with signals.sigterm_as_interrupt():
                result = command(*args, **kwargs)
        except BaseException as exc:
            stops = signals.stops_since(mark)
            if stops or isinstance(exc, KeyboardInterrupt):
                stopped(stops[-1] == signal.SIGTERM if stops else isinstance(exc, signals.Terminated))
            raise
        if stops := signals.stops_since(mark):
            stopped(stops[-1] == signal.SIGTERM)
        return result

    return wrapper


@contextmanager
def graceful_interrupt() -> Iterator[StopSignal]:
    """First Ctrl-C or SIGTERM asks the trainer to checkpoint and stop; a second one aborts at once
    (as a KeyboardInterrupt, which the top level reports in one line)."""
    from recrl_cli.training.trainer import StopSignal

    stop = StopSignal()
    catch = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    try:
        previous = {sig: signal.getsignal(sig) for sig in catch}
    except ValueError:  # not the main thread (tests): no handler
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            signals.raise_interrupt(signum, frame)
        stop.requested = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        err_console.print(
            f"[yellow]{name}: stopping after this step and writing a checkpoint (Ctrl-C again to abort)[/]"
        )

    try:
        for sig in catch:
            signal.signal(sig, handler)
    except ValueError:
        yield stop
        return
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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


RESERVED_TAG_PREFIXES = ("mlflow.", "recrl.")  # what MLflow's UI and recrl itself read back


def parse_tags(items: list[str] | None) -> dict[str, str]:
    """``--tag KEY=VALUE`` options as a dict; a malformed one or a reserved key is a one-line ConfigError."""
    from recrl_cli.errors import ConfigError

    tags: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--tag needs KEY=VALUE, got '{item}'")
        if key.startswith(RESERVED_TAG_PREFIXES):
            raise ConfigError(
                f"--tag {key}: keys starting with mlflow. or recrl. are set by recrl; choose another"
            )
        tags[key] = value
    return tags
