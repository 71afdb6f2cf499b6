"""Signals as exceptions: SIGTERM takes the same clean-up path as Ctrl-C.

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

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same clean-up runs."""


# Every signal the handler below received, in order. Native code that calls back into Python (polars
# converting a schema, say) can swallow the exception a handler raises or turn it into another one,
# so whoever must not finish after a stop compares :func:`stop_mark` before and after instead.
_stops: list[int] = []
_marks: list[int] = []  # stop_mark() at the entry of each open sigterm_as_interrupt block, outermost first


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


def _on_stop(signum: int, frame: Any) -> None:
    _stops.append(signum)
    raise_stop([signum])


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
