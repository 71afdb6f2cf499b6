"""Out-of-core `recrl prepare kuairand --version 27k` on 27K-shaped proxies: peak memory under a budget.

The real KuaiRand-27K (322 M standard rows, ~46 GB of CSV) does not fit this machine's time; this
script writes 27K-shaped proxies (the 27K file layout with its four part files, 27,285 users, one video
per ``--rows-per-video`` rows as in 27K's 322 M rows over 32 M videos) at several sizes, and prepares
each twice in its own child process (``child_rss.py``): once under ``--memory-budget`` (user-range
partitions, user blocks cut to fit) and once in memory (one partition, one block). It reports wall
time and peak RSS of both, and checks that the two outputs are byte-identical. Bounded memory means:
the budgeted peak stays about flat as the size grows, while the in-memory peak grows with it.

    python benchmarks/bench_prepare_kuairand_27k.py --impressions 5000000 20000000 --memory-budget 1GiB
    python benchmarks/bench_prepare_kuairand_27k.py --impressions 300000 1000000 --memory-budget 600MiB
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from child_rss import run_child
from rich.console import Console
from rich.table import Table

SYNTH = """
from recrl_cli.data.synth.kuairand import write_kuairand
result = write_kuairand(Path(args["raw"]), version="27k", num_users=args["users"], num_items=args["items"],
                        num_impressions=args["impressions"], seed=args["seed"])
"""
PREPARE = """
from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
params = KuaiRandPrepareParams(version="27k", memory_budget=args["budget"], partitions=args["partitions"],
                               chunk_rows=args["chunk_rows"])
result = prepare_kuairand(Path(args["raw"]), Path(args["out"]), params)
"""
OUTPUTS = ("rows", "train", "val", "test", "users", "items")


def digest(directory: Path) -> str:
    """sha256 over the prepared parquet files (the manifest differs in its memory settings only)."""
    h = hashlib.sha256()
    for name in OUTPUTS:
        h.update((directory / f"{name}.parquet").read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, nargs="+", default=[5_000_000, 20_000_000])
    parser.add_argument("--users", type=int, default=27_285, help="User feature rows (27K: 27,285).")
    parser.add_argument("--rows-per-video", type=float, default=10.0, help="27K: 322 M rows / 32 M videos.")
    parser.add_argument("--memory-budget", default="1GiB", help="The budgeted run's --memory-budget.")
    parser.add_argument(
        "--partitions", type=int, default=0, help="Staging partitions (0: auto from CSV size)."
    )
    parser.add_argument("--no-in-memory", action="store_true", help="Skip the one-block comparison run.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="Where the proxies go (default: temp).")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="recrl-bench-kuairand-27k-"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = Table(title=f"27K-shaped proxies, prepare under --memory-budget {args.memory_budget} "
                        f"(1-min load average at start {load:.1f})")  # fmt: skip
    for column in ("standard rows", "CSV (logs)", "synth", "core rows / videos", "budgeted: wall / peak",
                   "blocks / partitions", "model peak", "in memory: wall / peak", "same bytes"):  # fmt: skip
        table.add_column(column, justify="right")
    try:
        for n in args.impressions:
            raw, out = work / f"raw-{n}", work / f"out-{n}"
            child = {"raw": str(raw), "users": args.users, "items": max(10, round(n / args.rows_per_video)),
                     "impressions": n, "seed": args.seed}  # fmt: skip
            synth = run_child("synth", SYNTH, child)
            (raw / "ground_truth.csv").unlink()  # not read by prepare; frees disk for larger proxies
            csv_mib = sum(p.stat().st_size for p in raw.glob("log_standard_*.csv")) / 2**20
            budgeted = run_child("prepare", PREPARE, child | {"out": str(out / "budget"), "budget": args.memory_budget,
                                                             "partitions": args.partitions, "chunk_rows": 10**10})  # fmt: skip
            m = budgeted["result"]
            core, mem = m["ncore"]["passes"][-1], m["memory"]
            same, in_memory = "-", "-"
            if not args.no_in_memory:
                one = run_child("prepare", PREPARE, child | {"out": str(out / "one"), "budget": "", "partitions": 1,
                                                            "chunk_rows": 10**10})  # fmt: skip
                same = "yes" if digest(out / "budget") == digest(out / "one") else "NO"
                in_memory = f"{one['wall_s']:.0f} s / {one['peak_mib']:,.0f} MiB"
            table.add_row(
                f"{n:,}", f"{csv_mib:,.0f} MiB", f"{synth['wall_s']:.0f} s", f"{core['rows']:,} / {core['items']:,}",
                f"{budgeted['wall_s']:.0f} s / {budgeted['peak_mib']:,.0f} MiB",
                f"{mem['blocks']} / {mem['partitions']}", f"{mem['estimated_peak_bytes'] / 2**20:,.0f} MiB",
                in_memory, same,
            )  # fmt: skip
            shutil.rmtree(raw, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            Console(width=200).print(table)  # after each size, so a long run shows its progress
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
