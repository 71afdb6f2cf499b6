"""Run every benchmark in this folder, one after the other, and stop at the first failure.

    python benchmarks/run_all.py            # the quick settings (a few minutes on 2 cores)
    python benchmarks/run_all.py --full     # the settings behind benchmarks/RESULTS.md (tens of minutes)

Each script prints its own table; this runner only chooses the arguments and reports the wall time of
each. The ``--full`` arguments are exactly the commands quoted in RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script, quick arguments, full arguments)
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    ("bench_metrics.py", ["--sizes", "1e5", "--repeats", "1"], ["--sizes", "1e5", "1e6", "--repeats", "3"]),
    ("bench_prepare_retailrocket.py", ["--events", "200000"], ["--events", "2756101"]),
    ("bench_mtl_throughput.py", ["--steps", "3", "--repeats", "2"], []),
    ("bench_rmtl_critic.py", [], []),
    (
        "bench_mtl_accuracy.py",
        ["--events", "50000", "--epochs", "2", "--bases", "mmoe"],
        ["--events", "1000000", "--epochs", "20"],
    ),
    (
        "bench_hrlrec.py",
        [
            "--users",
            "150",
            "--items",
            "300",
            "--impressions",
            "15000",
            "--seeds",
            "2",
            "--iterations",
            "10",
            "--eval-days",
            "2",
            "--day-steps",
            "3",
        ],
        [
            "--seeds",
            "5",
            "--iterations",
            "100",
            "--batch-users",
            "16",
            "--batch-size",
            "32",
            "--day-steps",
            "6",
        ],
    ),
    ("bench_scaling.py", ["train", "--events", "20000", "--repeats", "1"], ["train", "--events", "200000"]),
    ("bench_scaling.py", ["study", "--runs", "2"], ["study", "--runs", "4"]),
    ("bench_tracking_store.py", ["--repeats", "1"], ["--repeats", "3"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="use the settings behind RESULTS.md")
    parser.add_argument("--only", default="", help="comma-separated script names to run (default: all)")
    args = parser.parse_args()
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    timings: list[tuple[str, float]] = []
    for script, quick, full in BENCHMARKS:
        if wanted and script not in wanted and script.removesuffix(".py") not in wanted:
            continue
        argv = [sys.executable, str(HERE / script), *(full if args.full else quick)]
        print(f"\n=== {' '.join([script, *argv[2:]])}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(argv, cwd=HERE.parent)
        timings.append((script, time.perf_counter() - start))
        if code != 0:
            print(f"{script} failed with exit code {code}", file=sys.stderr)
            return code
    print("\n" + "\n".join(f"{name:<32} {seconds:8.1f} s" for name, seconds in timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
