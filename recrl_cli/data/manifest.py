"""``manifest.json`` of a prepared dataset: write, read, validate, and hash files.

The manifest is the contract between ``recrl prepare`` and everything downstream: split files
and their sha256, row counts, tasks, feature cardinalities (embedding table sizes) and the
preparation parameters. ``fingerprint`` identifies the prepared data in tracked runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from recrl_cli.errors import DataError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val", "test")
_REQUIRED = ("schema_version", "dataset", "parameters", "tasks", "features", "splits", "fingerprint")
_CHUNK = 1 << 20
_HINT = "run `recrl prepare retailrocket` again"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(split_hashes: dict[str, str], parameters: dict[str, Any]) -> str:
    """sha256 over the split hashes (in split order) and the canonical JSON of the parameters."""
    digest = hashlib.sha256()
    for name in SPLITS:
        digest.update(f"{name}:{split_hashes[name]}\n".encode())
    digest.update(json.dumps(parameters, sort_keys=True, default=list).encode())
    return digest.hexdigest()


def validate_manifest(manifest: Any, where: str = "manifest") -> dict[str, Any]:
    """Check the keys and types downstream code relies on; return the manifest or raise DataError."""
    hint = _HINT
    if not isinstance(manifest, dict):
        raise DataError(f"{where} is not a JSON object; {hint}")
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}; {hint}")
    if manifest["schema_version"] != SCHEMA_VERSION:
        found = manifest["schema_version"]
        raise DataError(f"{where} has schema_version {found!r}, this recrl reads {SCHEMA_VERSION}; {hint}")
    splits = manifest["splits"]
    if not isinstance(splits, dict) or any(
        not isinstance(splits.get(s), dict) or "file" not in splits[s] for s in SPLITS
    ):
        raise DataError(f"{where} must describe the splits {', '.join(SPLITS)} with a file each; {hint}")
    features = manifest["features"]
    if not isinstance(features, list) or any(
        not isinstance(f, dict) or not isinstance(f.get("cardinality"), int) or "name" not in f
        for f in features
    ):
        raise DataError(f"{where} has malformed features (need name and integer cardinality); {hint}")
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Validate and write ``manifest.json`` (indented, keys in insertion order) into ``directory``."""
    validate_manifest(manifest)
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(directory: Path, dataset: str = "retailrocket") -> dict[str, Any]:
    """Read and validate ``directory/manifest.json``; missing or malformed raises DataError. ``dataset`` is the
    one the caller expects: a missing directory's hint names its `recrl prepare` command."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        hint = f"run `recrl prepare {dataset}`"
        raise DataError(f"no prepared dataset at {directory} (no {MANIFEST_NAME}); {hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); {_HINT}") from exc
    return validate_manifest(manifest, where=str(path))


def verify_splits(directory: Path, manifest: dict[str, Any]) -> None:
    """Raise DataError when a split file is missing or its sha256 differs from the manifest."""
    for name in SPLITS:
        entry = manifest["splits"][name]
        path = Path(directory) / entry["file"]
        if not path.is_file():
            raise DataError(f"split file {path} is missing; {_HINT}")
        if "sha256" in entry and file_sha256(path) != entry["sha256"]:
            raise DataError(f"split file {path} does not match its manifest hash; {_HINT}")
