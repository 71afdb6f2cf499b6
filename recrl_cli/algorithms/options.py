"""Every algorithm's options (name, kind, default, meaning, choices) as plain data, for ``--help`` without torch.

The config classes live next to the networks they configure, and importing them imports torch (seconds). So the
option tables are generated from those classes once (:func:`generate`) and kept in ``options.cache.json`` next to
this file, keyed by a fingerprint of the package's sources (paths, sizes and modification times of every ``.py``
file): any change of the code regenerates them, so a table is never stale. Without a writable package directory
the tables are generated on every call (correct, only slower).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().with_name("options.cache.json")


def fingerprint(root: Path = PACKAGE) -> str:
    """A digest of the paths, sizes and modification times of the package's ``.py`` files."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _kind(annotation: Any) -> str:
    """``int``, ``float``, ``str``, ``bool``, ``ints`` / ``floats`` (comma lists), with ``?`` when optional."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(inner[0]) + "?"
    if origin is tuple:
        return _kind(typing.get_args(annotation)[0]) + "s"
    return getattr(annotation, "__name__", str(annotation))


def describe(cls: type) -> list[dict[str, Any]]:
    """One record per field of a config dataclass: name, kind, default, help, choices."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default
        out.append({
            "name": f.name,
            "kind": _kind(hints[f.name]),
            "default": list(default) if isinstance(default, tuple) else default,
            "help": f.metadata.get("help", ""),
            "choices": list(f.metadata.get("choices") or ()) or None,
        })  # fmt: skip
    return out


def generate() -> dict[str, Any]:
    """The option tables of ``[train]``, ``[data]`` and every registered algorithm's ``[model]`` (imports torch)."""
    from recrl_cli.algorithms.registry import ALGORITHMS
    from recrl_cli.config.schema import DataConfig, TrainConfig

    return {
        "train": describe(TrainConfig),
        "data": describe(DataConfig),
        "model": {name: describe(spec.config_cls) for name, spec in ALGORITHMS.items()},
    }


def tables() -> dict[str, Any]:
    """:func:`generate`'s tables, from the cache when it matches the sources (no torch then)."""
    key = fingerprint()
    try:
        cached = json.loads(CACHE.read_text())
        if cached.get("fingerprint") == key:
            return cached["tables"]
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    fresh = generate()
    tmp = CACHE.with_name(f"{CACHE.name}.{os.getpid()}.tmp")
    try:  # atomic: a concurrent reader sees the old file or the new one, never half of one
        tmp.write_text(json.dumps({"fingerprint": key, "tables": fresh}, default=str))
        os.replace(tmp, CACHE)
    except OSError:  # a read-only install: correct, only slower next time
        tmp.unlink(missing_ok=True)
    return fresh


def flag_text(record: dict[str, Any]) -> str:
    """How the option is typed: ``--faithful / --no-faithful`` for a flag, ``--expert-num INT`` otherwise."""
    option = "--" + record["name"].replace("_", "-")
    if record["kind"] == "bool":
        return f"{option} / --no-{option[2:]}"
    kind = record["kind"]
    metavar = {"ints": "INT,...", "floats": "FLOAT,...", "strs": "TEXT,...", "str": "TEXT"}.get(
        kind.rstrip("?"), kind.rstrip("?").upper()
    )
    return f"{option} {metavar}"


def default_text(record: dict[str, Any]) -> str:
    default = record["default"]
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, list):
        return ",".join(map(str, default)) or "(none)"
    if default is None or default == "":
        return "(none)"
    return str(default)
