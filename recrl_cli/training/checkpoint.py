"""Checkpoint files: written atomically, read without running anything, checked against a schema.

A checkpoint is one ``torch.save`` dict written to a temporary file and renamed into place, so an
interrupt while writing never leaves a corrupt file behind.

Reading is safe: every file goes through ``torch.load(weights_only=True)``, whose unpickler builds
only tensors, storages and plain values and refuses every other class or function a pickle names,
so a ``model.pt`` from elsewhere (a download, a tracking server) cannot run code. No allow-list is
needed because recrl saves only plain data: dicts (``OrderedDict`` too), lists, tuples, tensors
(generator states are byte tensors), numbers, strings, booleans, ``None`` and torch dtypes.
:func:`save_checkpoint` enforces that, so a payload that could not be read back safely fails when
it is written (a bug), never when a user loads it.

A loaded payload is then checked against the schema of its kind (:func:`check_schema`): a file
that lacks a key or has one of the wrong type is a one-line :class:`DataError` that names it.
"""

from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from recrl_cli.errors import DataError

# Leaf values a checkpoint may hold besides tensors; containers are dict/OrderedDict, list, tuple.
_PLAIN_LEAVES = (bool, int, float, str, type(None))
RETRAIN = "it was written by an older recrl or is not a recrl file; train it again"

Schema = Mapping[str, Any]  # key (a trailing "?" = optional) -> type, tuple of types, or nested Schema


def check_plain(value: Any, where: str = "payload") -> None:
    """TypeError unless ``value`` is plain data that ``torch.load(weights_only=True)`` reads back."""
    kind = type(value)
    if kind in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"checkpoint {where} has a {type(key).__name__} key; use str or int keys")
            check_plain(item, f"{where}.{key}")
    elif kind in (list, tuple, torch.Size):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
    elif not (kind in _PLAIN_LEAVES or isinstance(value, torch.Tensor | torch.dtype)):
        raise TypeError(
            f"checkpoint {where} is a {kind.__module__}.{kind.__qualname__}: save only tensors, numbers, "
            "strings, None and lists/dicts of them, so that the file loads with weights_only=True"
        )


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plain data, see :func:`check_plain`) to ``path`` atomically."""
    check_plain(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# What rebuilding a model or an optimiser from a checked payload raises when its contents do not fit (a key
# missing deeper than the schemas look, a tensor of another shape): callers turn these into one line.
LOAD_ERRORS = (KeyError, IndexError, TypeError, ValueError, RuntimeError)


def error_detail(exc: BaseException) -> str:
    """An exception's message on one line, at most 300 characters (``missing 'x'`` for a KeyError)."""
    if isinstance(exc, KeyError):
        return f"missing {exc}"
    text = " ".join(str(exc).split())  # load_state_dict puts its reasons on the lines after the first
    if len(text) > 300:
        text = text[:297] + "..."
    return text or type(exc).__name__


def read_checkpoint(path: Path, what: str = "checkpoint") -> Any:
    """The object in a ``torch.save`` file, read with ``weights_only=True`` onto the CPU.

    Every failure is a one-line :class:`DataError`: missing, empty, not a torch file, truncated, or
    holding Python objects (a pickle that names a class or function, e.g. one that would run code:
    refused, and nothing in it runs). The result is not checked; see :func:`check_schema`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes), not a recrl {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:  # the safe unpickler met a class or function: nothing was built from it
            raise DataError(
                f"refused to load {path}: it holds Python objects ({found.group(1)}), not only tensors and plain "
                f"values, and nothing in it was run; {RETRAIN}"
            ) from None
        detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        detail = " ".join(detail.split("Check the documentation")[0].split()) or type(exc).__name__
        raise DataError(f"cannot read checkpoint {path}: not a recrl {what} or damaged ({detail})") from None
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise DataError(
            f"cannot read checkpoint {path}: not a recrl {what} or damaged ({error_detail(exc)})"
        ) from None


def type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _names(expected: Any) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("None" if t is type(None) else t.__name__ for t in types)


def check_schema(value: Any, schema: Schema, where: str, prefix: str = "") -> None:
    """DataError naming the first key of ``schema`` that ``value`` lacks or holds with another type.

    ``where`` starts the message (e.g. "runs/x/model.pt is not a usable saved model"); nested schemas
    are named with dots (``exported.tasks``).
    """
    if not isinstance(value, dict):
        what = f"'{prefix.rstrip('.')}' is" if prefix else "it holds"
        raise DataError(f"{where}: {what} a {type_name(value)}, not a dict; {RETRAIN}")
    for key, expected in schema.items():
        name = key.rstrip("?")
        if name not in value:
            if key.endswith("?"):
                continue
            raise DataError(f"{where}: it lacks '{prefix}{name}'; {RETRAIN}")
        item = value[name]
        if isinstance(expected, Mapping):
            check_schema(item, expected, where, f"{prefix}{name}.")
        elif not isinstance(item, expected) or (isinstance(item, bool) and bool not in _as_tuple(expected)):
            raise DataError(
                f"{where}: '{prefix}{name}' is a {type_name(item)} where a {_names(expected)} belongs; {RETRAIN}"
            )


def _as_tuple(expected: Any) -> tuple:
    return expected if isinstance(expected, tuple) else (expected,)


def load_checkpoint(path: Path, schema: Schema | None = None, what: str = "checkpoint") -> dict[str, Any]:
    """:func:`read_checkpoint`, then :func:`check_schema` (at least: a dict)."""
    payload = read_checkpoint(path, what)
    check_schema(payload, schema or {}, f"{path} is not a usable recrl {what}")
    return payload
