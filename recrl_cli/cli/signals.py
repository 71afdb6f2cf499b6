"""Ctrl-C and SIGTERM at the top of the ``recrl`` command: one line, never a traceback.

Standard library only, so that ``main`` can install it before the seconds of imports (torch, mlflow)
in which a Ctrl-C used to print a 57-line KeyboardInterrupt traceback.

SIGTERM (``kill``, a container or job scheduler stopping the process) is turned into the same
KeyboardInterrupt as Ctrl-C, so every clean-up path written for Ctrl-C (temporary output folders,
a tracking store being created, an MLflow run marked KILLED, a child server stopped) runs for it
too. The exit status is the shell's convention for a process ended by a signal: 128 + the signal
number (130 for SIGINT, 143 for SIGTERM), which is also what ``recrl train`` already returned after
a graceful Ctrl-C; bad input keeps exit status 1, so a script can tell "stopped" from "refused".
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from typing import Any, NoReturn

_received: list[int] = []  # signals turned into KeyboardInterrupt and not yet reported
_reported: list[bool] = []  # non-empty once this process has reported an interrupt


def raise_interrupt(signum: int, frame: Any) -> None:
    """A signal handler: the signal becomes a KeyboardInterrupt in the main thread."""
    _received.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """SIGTERM raises KeyboardInterrupt like SIGINT (main thread only; elsewhere a no-op)."""
    # ValueError: not the main thread; AttributeError: no SIGTERM on this platform.
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.signal(signal.SIGTERM, raise_interrupt)


def take() -> tuple[str, int]:
    """The line and exit status for the interrupt being reported now: ``("interrupted", 130)``,
    ``("interrupted (SIGTERM)", 143)``. Marks the process as interrupted (see finish)."""
    signum = _received[-1] if _received else signal.SIGINT
    _received.clear()
    _reported.append(True)
    text = "interrupted" if signum == signal.SIGINT else f"interrupted ({signal.Signals(signum).name})"
    return text, 128 + int(signum)


def ignore_further() -> None:
    """A second Ctrl-C while the process reports the first must not bring a traceback back."""
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is not None:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                signal.signal(sig, signal.SIG_IGN)


def report_and_exit() -> NoReturn:
    """For the top level: print ``error: interrupted`` on stderr (plain text: rich may not be
    imported yet) and end the process with 128 + the signal number."""
    ignore_further()
    text, status = take()
    with contextlib.suppress(OSError, ValueError):  # stderr closed (a pipe that went away)
        sys.stderr.write(f"error: {text}\n")
    finish(status)


def interrupted() -> bool:
    return bool(_reported)


def finish(status: int) -> NoReturn:
    """End an interrupted process with exactly `status`.

    A plain sys.exit is not enough: when the KeyboardInterrupt landed in code that a C extension
    ran through PyRun_String (torch does, while it imports), CPython remembers it as "unhandled"
    even though recrl caught it, and at exit kills itself with SIGINT instead of exiting 130 (a
    coin toss between -2 and 130 in tests). So: run the atexit hooks and flush, then _exit.
    """
    ignore_further()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
