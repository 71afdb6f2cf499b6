"""Peak memory of the KuaiRand n-core counting step alone, at millions of synthetic video ids.

Writes 27K-shaped staged logs (parquet files of ``user_id, video_id``; 27,285 users, dense video ids
with lognormal popularity, ``--rows-per-video`` rows per video as in 27K's 322 M rows / 32 M videos),
then runs the n-core filter in fresh child processes (``child_rss.py``): the numpy counter that
``recrl prepare`` uses (``ncore.py``, reading the files in batches as ``StagedLogs.id_batches`` does)
and, for comparison, the polars group-by it replaced. A third child only imports, so that the
counting's own share of the peak is the difference. Prints wall time, peak RSS and bytes per raw video.

    python benchmarks/bench_prepare_kuairand_ncore.py --videos 1000000 4000000 8000000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from child_rss import run_child
from rich.console import Console
from rich.table import Table

WRITE = """
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
rng = np.random.default_rng(args["seed"])
rows, videos, users = args["rows"], args["videos"], args["users"]
pop = rng.lognormal(0.0, 1.6, videos); cdf = np.cumsum(pop / pop.sum())
act = rng.lognormal(0.0, 0.9, users); ucdf = np.cumsum(act / act.sum())
files = []
for k, start in enumerate(range(0, rows, 2_000_000)):  # ~2 M rows per file, like a staged partition
    n = min(2_000_000, rows - start)
    v = np.minimum(np.searchsorted(cdf, rng.random(n)), videos - 1).astype(np.int64)
    u = np.minimum(np.searchsorted(ucdf, rng.random(n)), users - 1).astype(np.int64)
    f = Path(args["dir"]) / f"part{k:04d}.parquet"
    pq.write_table(pa.table({"user_id": u, "video_id": v}), f, compression="zstd")
    files.append(str(f))
result = files
"""
IMPORTS = """
import numpy, polars, pyarrow.parquet
from recrl_cli.data.prepare.kuairand_logs import StagedLogs
result = None
"""
NUMPY = """
import polars as pl
from recrl_cli.data.prepare.ncore import BATCH_ROWS, ncore_filter
def batches():  # as StagedLogs.id_batches reads the staged files (which have more columns)
    for frame in pl.scan_parquet(args["files"]).collect_batches(chunk_size=BATCH_ROWS):
        yield frame["user_id"].to_numpy(), frame["video_id"].to_numpy()
users, items, passes, nbytes = ncore_filter(batches, args["n"])
result = {"passes": passes, "table_bytes": nbytes}
"""
POLARS = """
import polars as pl
lf0 = pl.scan_parquet(args["files"]).select("user_id", "video_id")
keep_u = keep_i = None
passes = []
while True:  # the group-by implementation that ncore.py replaced
    lf = lf0
    if keep_u is not None:
        lf = lf.filter(pl.col("user_id").is_in(keep_u.implode()) & pl.col("video_id").is_in(keep_i.implode()))
    users, items = pl.collect_all([lf.group_by("user_id").agg(rows=pl.len().cast(pl.Int64)),
                                   lf.group_by("video_id").agg(rows=pl.len().cast(pl.Int64))], engine="streaming")
    passes.append({"rows": int(users["rows"].sum()), "users": users.height, "items": items.height})
    ok_u, ok_i = users.filter(pl.col("rows") >= args["n"]), items.filter(pl.col("rows") >= args["n"])
    if ok_u.height == users.height and ok_i.height == items.height:
        break
    keep_u, keep_i = ok_u["user_id"], ok_i["video_id"]
result = {"passes": passes}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--rows-per-video", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=27_285)
    parser.add_argument("--n-core", type=int, default=20)
    parser.add_argument("--no-polars", action="store_true", help="Skip the group-by comparison.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = run_child("imports", IMPORTS)["peak_mib"]
    table = Table(title=f"n-core counting alone (imports only: {base:,.0f} MiB peak)")
    for col in ("raw videos", "rows", "passes", "numpy: wall / peak", "MiB above imports", "B / raw video",
                "count tables", "polars: wall / peak", "B / raw video ", "same passes"):  # fmt: skip
        table.add_column(col, justify="right")
    for videos in args.videos:
        work = Path(tempfile.mkdtemp(prefix="recrl-bench-ncore-"))
        try:
            rows = int(videos * args.rows_per_video)
            spec = {"rows": rows, "videos": videos, "users": args.users, "seed": args.seed, "dir": str(work)}
            files = run_child("write", WRITE, spec)["result"]
            job = {"files": files, "rows": rows, "n": args.n_core}
            ours = run_child("ncore-numpy", NUMPY, job)
            raw = ours["result"]["passes"][0]["items"]
            cells = [f"{raw:,}", f"{rows:,}", str(len(ours["result"]["passes"])),
                     f"{ours['wall_s']:.1f} s / {ours['peak_mib']:,.0f} MiB", f"{ours['peak_mib'] - base:,.0f}",
                     f"{(ours['peak_mib'] - base) * 2**20 / raw:.0f}",
                     f"{ours['result']['table_bytes'] / 2**20:,.0f} MiB"]  # fmt: skip
            if args.no_polars:
                cells += ["—", "—", "—"]
            else:
                ref = run_child("ncore-polars", POLARS, job)
                cells += [f"{ref['wall_s']:.1f} s / {ref['peak_mib']:,.0f} MiB",
                          f"{(ref['peak_mib'] - base) * 2**20 / raw:.0f}",
                          "yes" if ref["result"]["passes"] == ours["result"]["passes"] else "NO"]  # fmt: skip
            table.add_row(*cells)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
