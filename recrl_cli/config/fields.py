"""Config fields that carry their own help text.

``param(default, help=...)`` is a ``dataclasses.field`` whose metadata holds the help string, so
one definition feeds ``--help`` tables, ``recrl algos`` and MLflow params.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Cfg:
    ...     lr: float = param(1e-3, help="Adam learning rate.")
    >>> field_help(Cfg)["lr"]
    'Adam learning rate.'
"""

from __future__ import annotations

import dataclasses
from typing import Any


def param(default: Any, *, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with a default, a help string and optional allowed string values."""
    metadata = {"help": help, "choices": choices}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults so configs stay immutable")
    return dataclasses.field(default=default, metadata=metadata)


def field_help(cls: type) -> dict[str, str]:
    """Map each field name of a config dataclass to its help string."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def field_choices(cls: type) -> dict[str, tuple[str, ...] | None]:
    """Map each field name of a config dataclass to its allowed values (``None`` = any)."""
    return {f.name: f.metadata.get("choices") for f in dataclasses.fields(cls)}
