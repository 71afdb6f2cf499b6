"""Signals as exceptions: SIGTERM takes the same clean-up path as Ctrl-C, and a stop ends in one line.

The one home of recrl's signal handling; standard library only, so that the ``recrl`` entry point can
install it before the seconds of imports (torch, mlflow) in which a Ctrl-C used to print a 57-line
traceback.

Python turns SIGINT into :class:`KeyboardInterrupt`, so every ``except BaseException`` / ``finally``
clean-up (temporary output folders, child processes) runs on Ctrl-C. SIGTERM, what ``kill``, systemd,
docker stop or a batch scheduler send, kills the process outright by default and no clean-up runs.
:func:`sigterm_as_interrupt` raises :class:`Terminated`, a ``KeyboardInterrupt``, instead, so code
written for Ctrl-C handles both, and records the stop, so that a stop whose exception native code
swallowed is still seen (:func:`stops_since`). :func:`deferred_signals` holds both signals over a step that must
not be cut in two (swapping an output folder into place, removing a temporary one).

Handlers can only be installed from the main thread; elsewhere both helpers do nothing.

A signal arriving while a long C call runs (a polars collect, a parquet write) is handled when the
call returns: Python runs signal handlers between bytecodes only.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any, NoReturn


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same clean-up runs."""


# Every signal the handler below received, in order. Native code that calls back into Python (polars
# converting a schema, say) can swallow the exception a handler raises or turn it into another one,
# so whoever must not finish after a stop compares :func:`stop_mark` before and after instead.
_stops: list[int] = []
_marks: list[int] = []  # stop_mark() at the entry of each open sigterm_as_interrupt block, outermost first
_taken: list[int] = [0]  # stop_mark() after the last stop reported (take): earlier stops are consumed
_reported: list[bool] = []  # non-empty once this process has reported a stop


def stop_mark() -> int:
    """A position in the record of received stops: pass it to :func:`stops_since` later."""
    return len(_stops)


def stops_since(mark: int) -> list[int]:
    """Signal numbers received (SIGINT, SIGTERM) since ``mark``, in order."""
    return _stops[mark:]


def stops_in_block() -> list[int]:
    """Stops received since the outermost open :func:`sigterm_as_interrupt` block began (a command's
    whole run, when the CLI opened one): what an output must not be completed after."""
    return stops_since(_marks[0]) if _marks else []


def raise_stop(stops: list[int]) -> None:
    """Raise what the last of ``stops`` stands for (Terminated or KeyboardInterrupt); nothing if empty."""
    if stops:
        raise Terminated("stopped by SIGTERM") if stops[-1] == signal.SIGTERM else KeyboardInterrupt


def raise_interrupt(signum: int, frame: Any) -> None:
    """A signal handler: record the signal and raise it as KeyboardInterrupt (Terminated for SIGTERM)
    in the main thread."""
    _stops.append(signum)
    raise_stop([signum])


_on_stop = raise_interrupt


def install() -> None:
    """For the top level: SIGTERM raises :class:`Terminated` like SIGINT raises KeyboardInterrupt, for the
    whole process (main thread only; elsewhere a no-op)."""
    # ValueError: not the main thread; AttributeError: no SIGTERM on this platform.
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.signal(signal.SIGTERM, raise_interrupt)


def take(stop: BaseException | None = None) -> tuple[str, int]:
    """The line and exit status for the stop being reported now: ``("interrupted", 130)``,
    ``("interrupted (SIGTERM)", 143)`` (the shell's 128 + signal number, so a script can tell
    "stopped" from "refused", which is exit status 1). The signal is read off ``stop``, the exception
    that ended the command (:class:`Terminated` for SIGTERM), or else off the last stop not yet
    reported. Consumes the stops received so far and marks the process as stopped (:func:`finish`)."""
    pending = _stops[_taken[0] :]
    if stop is not None:
        signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
    else:
        signum = pending[-1] if pending else signal.SIGINT
    _taken[0] = stop_mark()
    _reported.append(True)
    text = "interrupted" if signum == signal.SIGINT else f"interrupted ({signal.Signals(signum).name})"
    return text, 128 + int(signum)


def ignore_further() -> None:
    """A second Ctrl-C while the process reports the first must not bring a traceback back."""
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is not None:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                signal.signal(sig, signal.SIG_IGN)


def report_and_exit(stop: BaseException | None = None) -> NoReturn:
    """For the top level: print ``error: interrupted`` on stderr (plain text: rich may not be
    imported yet) and end the process with 128 + the signal number (``stop``: see :func:`take`)."""
    ignore_further()
    text, status = take(stop)
    with contextlib.suppress(OSError, ValueError):  # stderr closed (a pipe that went away)
        sys.stderr.write(f"error: {text}\n")
    finish(status)


def interrupted() -> bool:
    """Whether this process has reported a stop (its exit status must then be exactly the one reported)."""
    return bool(_reported)


def finish(status: int) -> NoReturn:
    """End a stopped process with exactly ``status``.

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


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread, and so does SIGINT
    raise KeyboardInterrupt where Python's default handler is in place (a command's own Ctrl-C handler,
    like training's checkpoint-and-stop, is left alone); both are recorded (:func:`stops_since`). The
    previous handlers are restored after. Nests. Off the main thread it does nothing."""
    previous: dict[int, Any] = {}
    try:
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _on_stop)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_stop)
    except ValueError:  # not the main thread: no handler can be installed
        yield
        return
    _marks.append(stop_mark())
    try:
        yield
    finally:
        _marks.pop()
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def deferred_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold ``signums`` while the block runs; each one that arrived is re-raised, with the handler that
    was in place before, once the block is over (so a swap or a clean-up is never cut in two)."""
    pending: list[int] = []

    def record(signum: int, frame: Any) -> None:
        if signum not in pending:
            pending.append(signum)

    previous: dict[int, Any] = {}
    try:
        for signum in signums:
            previous[signum] = signal.signal(signum, record)
    except ValueError:  # not the main thread
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in pending:
            signal.raise_signal(signum)  # delivered now, to the handler restored above
