"""Atomic output directories: all of a result appears at once, or none of it does.

Writers fill a hidden temporary directory beside the target (same filesystem, so the final
``rename`` is atomic) and only a successful exit moves it into place. Any exception removes the
temporary directory, so an interrupted ``prepare`` or ``synth`` never leaves a half-written
dataset that a later ``train`` would silently read. An existing target is replaced only after
the new content is complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from recrl_cli.errors import DataError

TMP_MARK = ".recrl-tmp-"


@contextlib.contextmanager
def atomic_output_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``target`` when the block exits cleanly.

    Example:
        >>> with atomic_output_dir(Path("out")) as tmp:   # doctest: +SKIP
        ...     (tmp / "a.txt").write_text("x")
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise DataError(f"output path {target} exists and is not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _unique_sibling(target, "")
        tmp.mkdir()  # plain mkdir (not mkdtemp) so the result gets the user's umask, not 0700
    except OSError as exc:
        raise DataError(f"cannot create output directory beside {target}: {exc.strerror}") from exc
    try:
        yield tmp
        _replace(tmp, target)
    except BaseException:
        # BaseException too: a Ctrl-C mid-write must not leave the temporary directory behind.
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``; an existing target is moved aside first and deleted last."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = _unique_sibling(target, "old-")
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)  # put the previous result back so the user loses nothing
        raise
    shutil.rmtree(old, ignore_errors=True)


def _unique_sibling(target: Path, tag: str) -> Path:
    """A hidden, not yet existing path in the target's directory (same filesystem: atomic rename)."""
    while True:
        path = target.parent / f".{target.name}{TMP_MARK}{tag}{secrets.token_hex(6)}"
        if not path.exists():
            return path
