"""Speed and memory of `recrl synth retailrocket` + `recrl prepare retailrocket` at a given scale.

Each stage runs in its own child process so that its peak resident memory (VmHWM, the figure the
target "<= 4 GiB" refers to) is measured alone; wall times are taken in the child around the call.
Default scale is the real RetailRocket size (2,756,101 events, ~20.3 M property rows, ~900 MB CSV).

    python benchmarks/bench_prepare_retailrocket.py --events 2756101
    python benchmarks/bench_prepare_retailrocket.py --events 200000 --workdir /some/dir --keep
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
from pathlib import Path

from child_rss import run_child
from rich.console import Console
from rich.table import Table

SYNTH = """
from recrl_cli.data.synth.retailrocket import write_retailrocket
result = write_retailrocket(Path(args["raw"]), num_events=args["events"], seed=args["seed"])
"""
PREPARE = """
from recrl_cli.data.prepare.retailrocket import prepare_retailrocket
result = prepare_retailrocket(Path(args["raw"]), Path(args["out"]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_756_101, help="Events to generate (real: 2756101).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="Where raw/ and prepared/ go (default: temp)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the generated files.")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="recrl-bench-prepare-"))
    raw, out = work / "raw", work / "prepared"
    try:
        child = {"raw": str(raw), "out": str(out), "events": args.events, "seed": args.seed}
        synth = run_child("synth", SYNTH, child)
        prep = run_child("prepare", PREPARE, child)
        raw_bytes = sum(p.stat().st_size for p in raw.glob("*.csv") if p.name != "ground_truth.csv")
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # max over both children
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    s, m = synth["result"], prep["result"]
    rows_out = {name: info["rows"] for name, info in m["splits"].items()}
    props = s["rows"]["item_properties_part1.csv"] + s["rows"]["item_properties_part2.csv"]
    table = Table(title=f"RetailRocket synth + prepare at {args.events:,} events (seed {args.seed})")
    table.add_column("measure", style="cyan")
    table.add_column("value", justify="right")
    rows = [
        ("synth wall time", f"{synth['wall_s']:.1f} s"),
        ("synth peak RSS", f"{synth['peak_mib']:,.0f} MiB"),
        ("raw CSV size (events + properties + tree)", f"{raw_bytes / 2**20:,.0f} MiB"),
        ("events rows in", f"{m['raw']['events_rows']:,}"),
        ("events after dedup", f"{m['raw']['events_after_dedup']:,}"),
        ("property rows in", f"{props:,}"),
        ("prepare wall time", f"{prep['wall_s']:.1f} s"),
        ("prepare peak RSS", f"{prep['peak_mib']:,.0f} MiB"),
        ("item-session rows out (train/val/test)", " / ".join(f"{v:,}" for v in rows_out.values())),
        ("sessions (train)", f"{m['splits']['train']['sessions']:,}"),
        ("oracle AUC click / pay", f"{s['oracle_auc']['click']:.3f} / {s['oracle_auc']['pay']:.3f}"),
        ("max child RSS (getrusage)", f"{children:,.0f} MiB"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


if __name__ == "__main__":
    main()
