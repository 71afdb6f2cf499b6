"""Signals as exceptions: SIGTERM takes the same clean-up path as Ctrl-C.

Python turns SIGINT into :class:`KeyboardInterrupt`, so every ``except BaseException`` / ``finally``
clean-up (temporary output folders, child processes) runs on Ctrl-C. SIGTERM, what ``kill``, systemd,
docker stop or a batch scheduler send, kills the process outright by default and no clean-up runs.
:func:`sigterm_as_interrupt` raises :class:`Terminated`, a ``KeyboardInterrupt``, instead, so code
written for Ctrl-C handles both. :func:`deferred_signals` holds both signals over a step that must
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


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated("stopped by SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread; the previous
    handler is restored after. Nests (an inner block restores the outer one's handler)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: no handler can be installed
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
