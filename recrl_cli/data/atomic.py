"""Atomic, guarded output directories: all of a result appears at once or none of it does, and
nothing that recrl did not write is ever replaced without ``--force``.

Writers fill a hidden temporary directory beside the target (same filesystem, so the final
``rename`` is atomic) and only a successful exit moves it into place. Any exception, Ctrl-C and
SIGTERM included (:mod:`recrl_cli.signals`), removes the temporary directory, so an interrupted
``prepare`` or ``synth`` never leaves a half-written dataset that a later ``train`` would silently
read. An existing target is replaced only after the new content is complete.

Before any work starts, :func:`check_output_dir` decides whether the target may be replaced:

- a missing or empty folder, or a previous recrl output of the same kind (its marker file says so
  and it holds nothing else): yes;
- any other folder: only with ``force``;
- the command's input folders, a folder containing one of them, the current directory, the home
  directory or one of their parents: never, ``force`` or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from recrl_cli.errors import DataError
from recrl_cli.signals import deferred_signals, raise_stop, sigterm_as_interrupt, stops_in_block

TMP_MARK = ".recrl-tmp-"
_SHOWN = 3  # names quoted in an error message


@dataclass(frozen=True)
class OutputKind:
    """What a command writes: ``what`` names it in messages ("prepared retailrocket data");
    ``owned(folder)`` is the set of names a previous output of this kind wrote there, read from its
    marker file, or ``None`` when the folder is no such output."""

    what: str
    owned: Callable[[Path], set[str] | None]


def json_object(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object (a marker file)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def check_output_dir(
    target: Path, kind: OutputKind, *, inputs: Iterable[Path] = (), force: bool = False, flag: str = "--out"
) -> None:
    """Raise DataError unless ``target`` may be replaced by an output of ``kind`` (rules: module doc)."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise DataError(f"output path {target} exists and is not a directory")
    here = _resolved(target)
    never = "recrl never replaces it, not even with --force"
    for name, place in (("the current directory", Path.cwd()), ("the home directory", Path.home())):
        place = _resolved(place)
        if here == place or here in place.parents:
            where = name if here == place else f"a folder above {name}"
            raise DataError(f"{flag} {target} is {where}; {never}: name a new folder for the output")
    for raw in inputs:
        source = _resolved(Path(raw))
        if here == source:
            raise DataError(f"{flag} {target} is the input folder {raw}; {never}: choose another {flag}")
        if here in source.parents:
            raise DataError(
                f"{flag} {target} contains the input folder {raw}; {never}: choose another {flag}"
            )
    if not target.exists() or force:
        return
    names = _entries(target)
    if not names:
        return
    owned = kind.owned(target)
    if owned is None:
        raise DataError(
            f"{flag} {target} is not empty and holds no {kind.what} ({_quote(names)}); "
            f"choose a new or empty folder, or pass --force to replace it"
        )
    foreign = [n for n in names if n not in owned]
    if foreign:
        raise DataError(
            f"{flag} {target} holds {kind.what} but also files recrl did not write ({_quote(foreign)}); "
            "move them away, or pass --force to replace the folder with them"
        )


@contextlib.contextmanager
def atomic_output_dir(
    target: Path, kind: OutputKind | None = None, *, inputs: Iterable[Path] = (), force: bool = False
) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``target`` when the block exits cleanly.

    With ``kind``, :func:`check_output_dir` runs on entry and again just before the swap (a file
    put into the target meanwhile stops the swap). SIGTERM is handled like Ctrl-C inside the block.

    Example:
        >>> with atomic_output_dir(Path("out")) as tmp:   # doctest: +SKIP
        ...     (tmp / "a.txt").write_text("x")
    """
    target, inputs = Path(target), tuple(inputs)
    if kind is not None:
        check_output_dir(target, kind, inputs=inputs, force=force)
    elif target.exists() and not target.is_dir():
        raise DataError(f"output path {target} exists and is not a directory")
    with sigterm_as_interrupt():
        tmp = _unique_sibling(target, "")
        try:
            # Created inside the clean-up block: a stop arriving just after the mkdir must remove it too.
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp.mkdir()  # plain mkdir (not mkdtemp) so the result gets the user's umask, not 0700
            except OSError as exc:
                raise DataError(f"cannot create output directory beside {target}: {exc.strerror}") from exc
            yield tmp
            with deferred_signals():  # the check and the swap are one step: never cut in two
                raise_stop(stops_in_block())  # a stop whose exception native code swallowed
                if kind is not None:
                    check_output_dir(target, kind, inputs=inputs, force=force)
                _replace(tmp, target)
        except BaseException:
            # BaseException too: Ctrl-C or SIGTERM mid-write must not leave the temporary directory behind.
            with deferred_signals():
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
    if old.is_symlink():  # --out was a link to a folder: the link is replaced, its folder kept
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


def _unique_sibling(target: Path, tag: str) -> Path:
    """A hidden, not yet existing path in the target's directory (same filesystem: atomic rename)."""
    while True:
        path = target.parent / f".{target.name}{TMP_MARK}{tag}{secrets.token_hex(6)}"
        if not path.exists():
            return path


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))  # no expanduser: a literal "~" is a folder named so, as written


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir())
    except OSError as exc:
        raise DataError(f"cannot list the output folder {folder}: {exc.strerror}") from exc


def _quote(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return f"{shown} and {len(names) - _SHOWN} more" if len(names) > _SHOWN else shown
