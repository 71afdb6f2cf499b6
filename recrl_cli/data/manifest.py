"""``manifest.json`` of a prepared dataset: write, read, validate, hash files, verify on load.

The manifest is the contract between ``recrl prepare`` and everything downstream: split files
and their sha256 and size, row counts, tasks, feature cardinalities (embedding table sizes) and the
preparation parameters. ``fingerprint`` identifies the prepared data in tracked runs; ``checksum``
is the sha256 of the manifest itself, so an edit of manifest.json is caught.

:func:`open_prepared` is how every loader reads a prepared directory: the manifest, then
:func:`verify_prepared` (sizes, parquet footers, columns against the manifest's features and tasks,
sha256 of every listed file). Verified directories are remembered by their files' size, mtime and
inode, so the several loads of one command hash the files once. On real-size RetailRocket (53 MB)
the hashes cost about 0.1 s against 1.5 s to load the splits (benchmarks/RELIABILITY_NOTES.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from recrl_cli.errors import DataError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
ITEM_TEXT = "item_text.parquet"  # written into a prepared directory by `recrl text items`
SPLITS = ("train", "val", "test")
_REQUIRED = ("schema_version", "dataset", "parameters", "tasks", "features", "splits", "fingerprint")
_HINT = "run `recrl prepare retailrocket` again"
# Columns of each prepared file besides the manifest's features and tasks (see the prepare modules).
_RETAILROCKET_BASE = ("session_id", "visitorid", "itemid", "timestamp", "position")
_KUAIRAND_TABLE_KEYS = {"users": ("user", "user_id"), "items": ("item", "video_id")}
_KUAIRAND_ROW_COLUMNS = ("item", "user", "user_start", "user_pos", "request_pos", "split")  # fmt: skip
_VERIFIED: set[tuple] = set()  # directories verified by this process, keyed by their files' stat


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, streamed (constant memory)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, its own ``checksum`` key left out."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=list).encode()).hexdigest()


def listed_files(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``name -> entry`` of every data file the manifest lists: the splits, then KuaiRand's tables."""
    entries = [*manifest["splits"].values(), *manifest.get("tables", {}).values()]
    return {e["file"]: e for e in entries if isinstance(e, dict) and "file" in e}


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Validate and write ``manifest.json`` (indented, keys in insertion order) into ``directory``.

    Completes ``manifest`` in place first: the size in bytes of every listed file present in
    ``directory`` and the manifest's own ``checksum`` (so the caller's dict equals the file)."""
    validate_manifest(manifest)
    for name, entry in listed_files(manifest).items():
        if (Path(directory) / name).is_file():
            entry["bytes"] = (Path(directory) / name).stat().st_size
    manifest.pop("checksum", None)
    manifest["checksum"] = manifest_checksum(json.loads(json.dumps(manifest, default=list)))
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


def prepared_names(directory: Path, dataset: str) -> set[str] | None:
    """The names ``recrl prepare <dataset>`` wrote into ``directory`` (its manifest, the files it lists,
    and ``recrl text items``' item text), or None when the directory holds no prepared ``dataset``: the
    test of whether a ``prepare --out`` folder may be replaced."""
    from recrl_cli.data.atomic import json_object

    manifest = json_object(Path(directory) / MANIFEST_NAME)
    if manifest is None or manifest.get("dataset") != dataset or not isinstance(manifest.get("splits"), dict):
        return None
    try:
        files = listed_files(manifest)
    except (AttributeError, TypeError):  # a manifest too damaged to list its files: not recognised
        return None
    return {MANIFEST_NAME, ITEM_TEXT, *files}


def prepare_hint(manifest: dict[str, Any]) -> str:
    """The command that rebuilds this prepared dataset."""
    dataset = str(manifest.get("dataset", "retailrocket"))
    version = manifest.get("version")
    extra = f" --version {version}" if dataset == "kuairand" and version and version != "pure" else ""
    return f"run `recrl prepare {dataset}{extra}` again"


def open_prepared(directory: Path, dataset: str = "retailrocket") -> dict[str, Any]:
    """:func:`read_manifest` then :func:`verify_prepared`: what every loader of prepared data calls."""
    manifest = read_manifest(directory, dataset)
    verify_prepared(directory, manifest)
    return manifest


def verify_prepared(directory: Path, manifest: dict[str, Any]) -> None:
    """Raise DataError (one line, naming the file, saying to prepare again) unless the directory is
    exactly what ``recrl prepare`` wrote: the manifest's checksum, then for every listed file its
    presence, size, parquet footer (row count, columns against the manifest's features and tasks),
    and last its sha256. Manifests from before a check existed (no ``checksum``, no ``bytes``) skip it."""
    directory = Path(directory)
    hint = prepare_hint(manifest)
    files = listed_files(manifest)
    key = _stat_key(directory, manifest, files)
    if key in _VERIFIED:
        return
    if "checksum" in manifest and manifest["checksum"] != manifest_checksum(manifest):
        raise DataError(f"{directory / MANIFEST_NAME} was changed after `recrl prepare` wrote it "
                        f"(its checksum differs); {hint}")  # fmt: skip
    expected = _expected_columns(manifest)
    for name, entry in files.items():
        path = directory / name
        if not path.is_file():
            raise DataError(f"{path} is missing; {hint}")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise DataError(f"{path} is {size:,} bytes, its manifest says {entry['bytes']:,} "
                            f"(truncated or changed); {hint}")  # fmt: skip
        try:
            meta = pq.read_metadata(path)
            columns = set(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several unrelated types for a damaged footer
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{path} is not a readable parquet file ({reason}); {hint}") from None
        if "rows" in entry and meta.num_rows != int(entry["rows"]):
            raise DataError(f"{path} has {meta.num_rows:,} rows, its manifest says {entry['rows']:,}; {hint}")
        want, exact = expected.get(name, (columns, True))
        if (columns != want) if exact else not want <= columns:
            missing, extra = sorted(want - columns), sorted(columns - want) if exact else []
            what = "; ".join(
                part for part in (f"lacks {', '.join(missing)}" if missing else "",
                                  f"has unlisted {', '.join(extra)}" if extra else "") if part
            )  # fmt: skip
            raise DataError(f"{path} does not match the features and tasks of its manifest ({what}); {hint}")
    for name, entry in files.items():
        if "sha256" in entry and file_sha256(directory / name) != entry["sha256"]:
            raise DataError(
                f"{directory / name} does not match its manifest hash (damaged or changed); {hint}"
            )
    _VERIFIED.add(key)


def _expected_columns(manifest: dict[str, Any]) -> dict[str, tuple[set[str], bool]]:
    """File name -> (columns, exact) for the datasets whose layout recrl knows: exactly these columns
    (a feature missing from the manifest shows as an unlisted column), or at least these (KuaiRand's row
    table, whose optional columns the loaders look for)."""
    dataset = manifest.get("dataset")
    features = manifest["features"]
    if dataset == "retailrocket":
        columns = {*_RETAILROCKET_BASE, *(f["name"] for f in features), *manifest["tasks"]}
        history = manifest.get("history")
        if history is not None:  # the history links and the label times the loader resolves them with
            columns |= {history["column"], *history["label_times"]}
        return {manifest["splits"][s]["file"]: (columns, True) for s in SPLITS}
    if dataset == "kuairand":
        out = {manifest["splits"][s]["file"]: ({"row"}, True) for s in SPLITS}
        tables = manifest.get("tables", {})
        if tables.get("rows"):
            out[tables["rows"]["file"]] = ({*_KUAIRAND_ROW_COLUMNS, *manifest["tasks"]}, False)
        for table, keys in _KUAIRAND_TABLE_KEYS.items():
            if tables.get(table):
                listed = (f["name"] for f in features if f.get("table") == table and f.get("kind") != "id")
                out[tables[table]["file"]] = ({*keys, *listed}, True)
        return out
    return {}


def _stat_key(directory: Path, manifest: dict[str, Any], files: dict[str, dict[str, Any]]) -> tuple:
    """What a verification result holds for: the manifest's content and each file's size, mtime, inode."""
    stats = []
    for name in (MANIFEST_NAME, *files):
        try:
            st = (directory / name).stat()
        except OSError:
            return ()  # a missing file is never cached: verification reports it
        stats.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
    body = json.dumps(manifest, sort_keys=True, default=list).encode()
    return (os.path.realpath(directory), hashlib.sha256(body).hexdigest(), *stats)


def verify_splits(directory: Path, manifest: dict[str, Any]) -> None:
    """Raise DataError when a split file is missing or its sha256 differs from the manifest."""
    for name in SPLITS:
        entry = manifest["splits"][name]
        path = Path(directory) / entry["file"]
        if not path.is_file():
            raise DataError(f"split file {path} is missing; {_HINT}")
        if "sha256" in entry and file_sha256(path) != entry["sha256"]:
            raise DataError(f"split file {path} does not match its manifest hash; {_HINT}")
