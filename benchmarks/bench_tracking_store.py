"""Measure what the SQLite tracking store costs: creating one (MLflow's ~70 migrations, now in a
temporary file renamed into place under a lock), checking an existing one, and opening it.

Usage (repo root, package installed or ``PYTHONPATH=.``): ``python benchmarks/bench_tracking_store.py [--repeats 3]``

Each creation runs in a fresh directory of one process (mlflow imported once, before the clock
starts); the check is the read-only inspection every command does before MLflow touches a store
(sqlite_master, alembic_version, record counts, MLflow's head revision). The window in which a
Ctrl-C used to leave a half-migrated store is the creation time. CPU seconds of this process are
printed beside the wall time: on a shared, loaded machine they are what an idle core would take.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    t0, c0 = time.perf_counter(), time.process_time()
    import mlflow  # noqa: F401

    import_s, import_cpu = time.perf_counter() - t0, time.process_time() - c0
    from recrl_cli.tracking.mlflow_tracker import make_mlflow_tracker
    from recrl_cli.tracking.sqlite_store import prepare_store, read_store_file, store_state

    create, check, open_ = [], [], []  # (wall s, CPU s)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            db = Path(tmp) / f"s{i}" / "mlflow.db"
            t, c = time.perf_counter(), time.process_time()
            prepare_store(db, db.parent / "mlruns")
            create.append((time.perf_counter() - t, time.process_time() - c))
            t, c = time.perf_counter(), time.process_time()
            assert store_state(db) == "ready" and not read_store_file(db).new
            check.append((time.perf_counter() - t, time.process_time() - c))
            t, c = time.perf_counter(), time.process_time()
            make_mlflow_tracker(f"sqlite:///{db}")
            open_.append((time.perf_counter() - t, time.process_time() - c))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"| step (load average {load:.1f}, {os.cpu_count()} CPUs) | wall best s | wall worst s | CPU best s |"
    )
    print("|---|---:|---:|---:|")
    print(f"| import mlflow | {import_s:.2f} | {import_s:.2f} | {import_cpu:.2f} |")
    for name, values in (("create a new store", create), ("check an existing store", check),
                         ("open it (MlflowTracker)", open_)):  # fmt: skip
        walls = [w for w, _ in values]
        print(f"| {name} | {min(walls):.2f} | {max(walls):.2f} | {min(c for _, c in values):.2f} |")


if __name__ == "__main__":
    main()
