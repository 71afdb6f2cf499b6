"""Cost of verifying prepared data on load, and which checks catch which damage.

Times, on one prepared RetailRocket directory (real size: ``recrl synth retailrocket --events 2756101``
then ``recrl prepare retailrocket``), best of ``--repeats``:

- ``stat``: the sizes of the split files against the manifest;
- ``footers``: sizes + parquet footers (row counts) + arrow schemas (columns against features and tasks);
- ``sha256``: streaming sha256 of every split file (``hashlib.file_digest``);
- ``verify_prepared``: all of the above, as every loader runs it (the per-process cache cleared), and
  the re-check of an already verified directory (stat of each file, as the later loads of a command);
- ``load_prepared``: reading the three splits into tensors (what the verification is added to).

Then it damages copies of the directory three ways (4 KiB zeroed in the middle of train.parquet, a
feature removed from manifest.json, train.parquet cut short by 100 kB) and reports which check
catches each one, and whether loading without any verification notices at all.

    python benchmarks/bench_verify_prepared.py datasets/prepared/retailrocket --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import torch
from rich.console import Console
from rich.table import Table

from recrl_cli.data import manifest as mf
from recrl_cli.data import tensors
from recrl_cli.errors import DataError


def best_ms(action: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return 1000 * best


def split_paths(directory: Path, manifest: dict) -> list[Path]:
    return [directory / e["file"] for e in mf.listed_files(manifest).values()]


def check_stat(directory: Path, manifest: dict) -> None:
    for name, entry in mf.listed_files(manifest).items():
        if (directory / name).stat().st_size != entry.get("bytes", -1):
            raise DataError(f"{name}: size")


def check_footers(directory: Path, manifest: dict) -> None:
    check_stat(directory, manifest)
    for name, entry in mf.listed_files(manifest).items():
        if pq.read_metadata(directory / name).num_rows != entry["rows"]:
            raise DataError(f"{name}: rows")
    features = {f["name"] for f in manifest["features"]}
    for name in mf.listed_files(manifest):
        columns = set(pq.read_schema(directory / name).names)
        if columns - {"session_id", "visitorid", "itemid", "timestamp", "position"} != features | set(
            manifest["tasks"]
        ):
            raise DataError(f"{name}: columns")


def check_sha(directory: Path, manifest: dict) -> None:
    for name, entry in mf.listed_files(manifest).items():
        if mf.file_sha256(directory / name) != entry["sha256"]:
            raise DataError(f"{name}: sha256")


def full_verify(directory: Path, manifest: dict) -> None:
    mf._VERIFIED.clear()  # measure the first load of a process, not the cached re-check
    mf.verify_prepared(directory, manifest)


def unverified_load(directory: Path) -> None:
    """Load the three splits the way recrl did before the verification existed."""
    manifest = json.loads((directory / "manifest.json").read_text())
    saved = tensors.verify_prepared
    tensors.verify_prepared = lambda *_: None
    try:
        for split in mf.SPLITS:
            tensors.load_split(directory, manifest, split)
    finally:
        tensors.verify_prepared = saved


def damage(kind: str, directory: Path) -> None:
    train = directory / "train.parquet"
    if kind == "4 KiB zeroed in train.parquet":
        with open(train, "r+b") as fh:
            fh.seek(train.stat().st_size // 2)
            fh.write(bytes(4096))
    elif kind == "feature removed from manifest.json":
        path = directory / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["features"] = manifest["features"][:-1]
        path.write_text(json.dumps(manifest, indent=2))
    else:
        os.truncate(train, train.stat().st_size - 100_000)


def caught(check: Callable[[], object]) -> str:
    try:
        check()
    except (DataError, OSError, ValueError, KeyError) as exc:
        return f"yes ({type(exc).__name__})"
    except Exception as exc:  # pyarrow's many error types: a crash still notices the damage
        return f"crash ({type(exc).__name__})"
    return "NO"


def damage_row(copy: Path) -> list[str]:
    m = json.loads((copy / "manifest.json").read_text())
    checks = (check_stat, check_footers, check_sha, full_verify)
    return [*(caught(lambda c=c: c(copy, m)) for c in checks), caught(lambda: unverified_load(copy))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    directory = args.directory
    manifest = mf.read_manifest(directory)
    size = sum(p.stat().st_size for p in split_paths(directory, manifest))
    console = Console()
    console.print(f"{directory}: {size / 2**20:.1f} MiB in {len(split_paths(directory, manifest))} files; "
                  f"load {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")  # fmt: skip
    timings = Table(title="verification cost (best of repeats)")
    timings.add_column("check")
    timings.add_column("ms", justify="right")
    for name, action in (
        ("stat (sizes)", lambda: check_stat(directory, manifest)),
        ("footers + schemas", lambda: check_footers(directory, manifest)),
        ("sha256 (streaming)", lambda: check_sha(directory, manifest)),
        ("verify_prepared (all)", lambda: full_verify(directory, manifest)),
        ("verify_prepared (cached re-check)", lambda: mf.verify_prepared(directory, manifest)),
        ("load_prepared (no cache)", lambda: (mf._VERIFIED.clear(), tensors.load_prepared(directory, torch.device("cpu")))),
    ):  # fmt: skip
        timings.add_row(name, f"{best_ms(action, args.repeats):,.1f}")
    console.print(timings)

    found = Table(title="which check catches which damage")
    for column in ("damage", "stat", "footers + schemas", "sha256", "verify_prepared", "load without checks"):
        found.add_column(column)
    with tempfile.TemporaryDirectory(dir=directory.parent) as scratch:
        for kind in ("4 KiB zeroed in train.parquet", "feature removed from manifest.json",
                     "train.parquet cut by 100 kB"):  # fmt: skip
            copy = Path(scratch) / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(directory, copy)
            damage(kind, copy)
            found.add_row(kind, *damage_row(copy))
    console.print(found)


if __name__ == "__main__":
    main()
