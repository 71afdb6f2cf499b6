"""Checks and reads of raw CSV files shared by every ``recrl prepare`` reader.

A raw download can be missing, empty, from another release (other columns) or cut short mid-line;
polars would silently fill a cut line's missing trailing fields with null, so each file is checked
before any scan, and every polars parse failure becomes one ``DataError`` line naming the file.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from recrl_cli.errors import DataError

T = TypeVar("T")
TAIL_BYTES = 65_536  # the last line of any raw file fits well inside this


def check_csv_file(path: Path, columns: Sequence[str], hint: str, source: str = "") -> None:
    """Exists, non-empty, exact header, and a last line that is not cut short; else DataError.

    ``hint`` says how to get the file (download or ``recrl synth``); ``source`` names the dataset in
    the header message ("the 19 KuaiRand columns"). A UTF-8 BOM or CRLF line ends are accepted.
    """
    if not path.is_file():
        raise DataError(f"missing {path}: {hint}")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path} is empty: {hint}")
    try:
        with open(path, "rb") as fh:
            header = fh.readline().decode("utf-8-sig", "replace").strip()
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    expected = ",".join(columns)
    if header != expected:
        what = f"the {len(columns)} {source} columns " if source else ""
        raise DataError(f"{path} has header {header[:80]!r}, expected {what}{expected[:80]!r}")
    # A last line without its newline and with too few fields was cut mid-download (quoted fields
    # may hold commas, hence the csv reader rather than a comma count).
    last = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    if not tail.endswith(b"\n") and len(next(csv.reader([last]), [])) < len(columns):
        raise DataError(f"{path} ends with a truncated line {last[:60]!r}")


def polars_read(action: Callable[[], T], path: Path) -> T:
    """Run a polars read of ``path``; a parse failure becomes a one-line DataError naming the file."""
    try:
        return action()
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} could not be parsed: {reason}") from exc


def collect(frame: pl.LazyFrame, path: Path) -> pl.DataFrame:
    """Collect ``frame`` (a scan of ``path``) with the streaming engine, errors as in ``polars_read``."""
    result: Any = polars_read(lambda: frame.collect(engine="streaming"), path)
    return result
