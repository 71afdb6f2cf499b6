"""Speed and memory of `recrl synth kuairand` + `recrl prepare kuairand` + history gathers at a given scale.

Each stage runs in its own child process (``child_rss.py``) so that its peak resident memory (VmHWM)
is measured alone; wall times are taken in the child around the call. Default scale is the real KuaiRand-Pure
size (27,285 users, 7,583 videos, 1,436,609 standard + 1,186,059 random log rows, ~190 MB of CSV).
When ../shared/data/kuairand holds the real Pure user/video feature files, they replace the
synthetic ones before `prepare` (same id ranges), so the real feature files go through the reader.

    python benchmarks/bench_prepare_kuairand.py
    python benchmarks/bench_prepare_kuairand.py --impressions 200000 --users 4000 --items 2000 --keep
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from child_rss import run_child
from rich.console import Console
from rich.table import Table

# The real files: $RECRL_KUAIRAND_DIR, else ../shared/data/kuairand beside the repository.
REAL_DIR = Path(
    os.environ.get("RECRL_KUAIRAND_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared/data/kuairand"
)

SYNTH = """
from recrl_cli.data.synth.kuairand import write_kuairand
result = write_kuairand(Path(args["raw"]), version=args["version"], num_users=args["users"],
                        num_items=args["items"], num_impressions=args["impressions"], seed=args["seed"])
"""
PREPARE = """
from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
params = KuaiRandPrepareParams(version=args["version"], chunk_rows=args["chunk_rows"],
                               memory_budget=args.get("memory_budget", ""), partitions=args.get("partitions", 0))
result = prepare_kuairand(Path(args["raw"]), Path(args["out"]), params)
"""
TENSORS = """
import torch
from recrl_cli.data.kuairand_tensors import gather_history, load_row_table, load_split_rows
torch.set_num_threads(args["threads"])
begin = time.perf_counter()  # after the imports
table = load_row_table(Path(args["out"]))
rows = load_split_rows(Path(args["out"]), "train")
loaded = time.perf_counter()
gen = torch.Generator().manual_seed(0)
batches, size = 200, 128
for _ in range(batches):
    gather_history(table, rows[torch.randint(rows.numel(), (size,), generator=gen)], 100)
gather_s = time.perf_counter() - loaded
result = {"load_s": loaded - begin, "gather_ms_per_batch": 1000 * gather_s / batches, "batch": size,
          "rows": table.num_rows}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="pure", choices=("pure", "1k", "27k"))
    parser.add_argument("--users", type=int, default=None, help="User feature rows (default: real size).")
    parser.add_argument("--items", type=int, default=None, help="Video feature rows (default: real size).")
    parser.add_argument("--impressions", type=int, default=None, help="Standard log rows (default: real).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-rows", type=int, default=10_000_000, help="prepare's user-block size.")
    parser.add_argument(
        "--memory-budget", default="", help="prepare's memory budget, e.g. 1GiB (default: none)."
    )
    parser.add_argument("--partitions", type=int, default=0, help="prepare's staging partitions (0: auto).")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for the gathers (small ops: 1 is fastest)."
    )
    parser.add_argument("--no-real-features", action="store_true", help="Keep the synthetic feature files.")
    parser.add_argument("--workdir", type=Path, default=None, help="Where raw/ and prepared/ go (temp).")
    parser.add_argument("--keep", action="store_true", help="Keep the generated files.")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="recrl-bench-kuairand-"))
    raw, out = work / "raw", work / "prepared"
    keys = (
        "version",
        "users",
        "items",
        "impressions",
        "seed",
        "chunk_rows",
        "memory_budget",
        "partitions",
        "threads",
    )
    child = {k: getattr(args, k) for k in keys} | {"raw": str(raw), "out": str(out)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # other jobs on the machine
    try:
        synth = run_child("synth", SYNTH, child)
        real = []
        if args.version == "pure" and not args.no_real_features:
            for name in ("user_features_pure.csv", "video_features_basic_pure.csv"):
                if (REAL_DIR / name).is_file():
                    shutil.copyfile(REAL_DIR / name, raw / name)
                    real.append(name)
        prep = run_child("prepare", PREPARE, child)
        tens = run_child("tensors", TENSORS, child)
        raw_mib = sum(p.stat().st_size for p in raw.glob("*.csv") if p.name != "ground_truth.csv") / 2**20
        out_mib = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    s, m, t = synth["result"], prep["result"], tens["result"]
    core = m["ncore"]["passes"][-1]
    table = Table(
        title=f"KuaiRand-{args.version} synth + prepare (seed {args.seed}, 1-min load average at start {load:.1f})"
    )
    table.add_column("measure", style="cyan")
    table.add_column("value", justify="right")
    rows = [
        ("synth wall time", f"{synth['wall_s']:.1f} s"),
        ("synth peak RSS", f"{synth['peak_mib']:,.0f} MiB"),
        ("raw CSV size (logs + features)", f"{raw_mib:,.0f} MiB"),
        ("standard / random log rows", f"{m['raw']['standard_rows']:,} / {s['rows'][f'log_random_4_22_to_5_08_{args.version}.csv']:,}"),
        ("real feature files used", ", ".join(real) or "none"),
        ("standard-log positive rates", ", ".join(f"{b.removeprefix('is_')} {r:.4g}" for b, r in s["positive_rate"].items())),
        ("random-log click rate / oracle click AUC", f"{s['random_click_rate']:.3f} / {s['oracle_auc']['is_click']:.3f}"),
        ("prepare wall time", f"{prep['wall_s']:.1f} s"),
        ("prepare peak RSS", f"{prep['peak_mib']:,.0f} MiB"),
        ("prepare budget / block rows / partitions",
         f"{args.memory_budget or 'none'} / {m['memory']['chunk_rows']:,} / {m['memory']['partitions']}"),
        (f"{m['ncore']['n']}-core filtering passes", str(len(m["ncore"]["passes"]) - 1)),
        ("core rows / users / videos", f"{core['rows']:,} / {core['users']:,} / {core['items']:,}"),
        *([("KuaiSim's 20-core of real Pure", "1,341,250 / 19,574 / 5,659")] if args.version == "pure" else []),
        ("rows train / val / test", " / ".join(f"{m['splits'][k]['rows']:,}" for k in ("train", "val", "test"))),
        ("requests / sessions", f"{m['tables']['rows']['requests']:,} / {m['tables']['rows']['sessions']:,}"),
        ("prepared size", f"{out_mib:,.0f} MiB"),
        ("load row table (wall / peak RSS)", f"{t['load_s']:.2f} s / {tens['peak_mib']:,.0f} MiB"),
        (f"gather_history B={t['batch']}, H=100", f"{t['gather_ms_per_batch']:.2f} ms per batch"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


if __name__ == "__main__":
    main()
