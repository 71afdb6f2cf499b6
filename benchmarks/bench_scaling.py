"""Scale-out figures (issue 9): data-parallel training 1 → 2 processes, and study throughput local vs Ray.

``train``: samples/s of the data-parallel train step on one machine's CPU. Every configuration runs in fresh
spawned processes with one thread each (gloo process group for W > 1), on the same synthetic RetailRocket
split: each process loads its session-aligned shard and runs the product's step
(:meth:`SupervisedMTL.update`: its rows of every global batch, forward, backward with the DDP all-reduce,
fused Adam) over one whole epoch after 3 warm-up steps; the epoch's wall time is the slowest rank's. Then the
validation split is scored the same way (each rank its shard, predictions gathered, metrics on rank 0's copy).
Efficiency = samples/s with W processes / (W × samples/s of 1 process). Because other jobs share the cores,
the CPU time summed over the ranks is reported too: "CPU efficiency" = CPU s of 1 process / CPU s of all W
for the same epoch (100 % = the split costs no extra work; communication and smaller per-rank matmuls cost). "1 process × 2 threads" is the other
way to use the same two cores, for comparison.

``study``: wall time of a small study (variants × seeds of a small MMoE, 1 epoch, 1 thread per run, every run
logged to a fresh MLflow SQLite store by the driver) through the local backend one run at a time, the local
backend with ``--jobs 2``, and a local Ray cluster of 2 CPUs (its start-up timed separately).

    python benchmarks/bench_scaling.py train --events 200000 --base mmoe
    python benchmarks/bench_scaling.py study --runs 4

The machine's load average is printed with every table: on a shared machine other jobs take turns on the
cores, so these figures are what was achieved under that load, and an idle machine does at least as well.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from rich.console import Console
from rich.table import Table

console = Console(width=200)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def make_dataset(root: Path, events: int) -> Path:
    from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket
    from recrl_cli.data.synth.retailrocket import write_retailrocket

    write_retailrocket(root / "raw", num_events=events, seed=0)
    prepare_retailrocket(root / "raw", root / "prepared", RetailRocketPrepareParams())
    return root / "prepared"


# ---------------------------------------------------------------------------------------------- train
def _train_worker(rank: int, world: int, port: int, threads: int, args: dict, out: str) -> None:
    import torch.distributed as dist

    from recrl_cli.algorithms.supervised import SupervisedMTL
    from recrl_cli.config.loading import resolve_config
    from recrl_cli.data.tensors import batch_indices, load_prepared, load_prepared_shard
    from recrl_cli.nets.mtl.config import MTLConfig

    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    device = torch.device("cpu")
    splits = ("train", "val")
    if world > 1:
        data = load_prepared_shard(Path(args["data"]), device, rank, world, splits)
    else:
        data = load_prepared(Path(args["data"]), device, splits)
    options = {"data.prepared_dir": args["data"], "train.batch_size": args["batch_size"]}
    cfg = resolve_config(args["base"], MTLConfig, options=options)
    torch.manual_seed(0)
    algo = SupervisedMTL(args["base"], cfg, data, device)
    total = data.shards["train"].total if data.shards else data.splits["train"].num_rows
    gen = torch.Generator().manual_seed(0)
    for step, idx in enumerate(batch_indices(total, args["batch_size"], gen, device)):
        if step == 3:
            break
        algo.update(idx)

    def timed(fn) -> tuple[float, float]:
        """(wall s of the slowest rank, CPU s summed over the ranks)."""
        if world > 1:
            dist.barrier()
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        wall = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        used = torch.tensor([time.process_time() - cpu], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(wall, op=dist.ReduceOp.MAX)
            dist.all_reduce(used)
        return float(wall), float(used)

    def epoch() -> None:
        for idx in batch_indices(total, args["batch_size"], gen, device):
            algo.update(idx)

    train_s, train_cpu = timed(epoch)
    val_rows = data.shards["val"].total if data.shards else data.splits["val"].num_rows
    val_s, _ = timed(lambda: algo.evaluate("val"))
    if rank == 0:
        Path(out).write_text(
            json.dumps(
                {
                    "rows": total,
                    "train_s": train_s,
                    "train_cpu": train_cpu,
                    "val_rows": val_rows,
                    "val_s": val_s,
                }
            )
        )
    if world > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_train(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp), args.events)
        settings = {"data": str(data), "base": args.base, "batch_size": args.batch_size}
        results = {}
        for label, world, threads in (("1 process × 1 thread", 1, 1), ("2 processes × 1 thread", 2, 1),
                                      ("1 process × 2 threads", 1, 2)):  # fmt: skip
            best = None
            for _ in range(args.repeats):
                out = Path(tmp, "out.json")
                before = load()
                mp.spawn(_train_worker, args=(world, _free_port(), threads, settings, str(out)), nprocs=world)
                got = json.loads(out.read_text())
                got["load"] = before
                if best is None or got["train_s"] < best["train_s"]:
                    best = got
            results[label] = best
    one = results["1 process × 1 thread"]
    base, base_cpu = one["rows"] / one["train_s"], one["train_cpu"]
    table = Table(title=f"data-parallel {args.base}, batch {args.batch_size}, CPU (best of {args.repeats})")
    for column in (
        "setting",
        "train rows",
        "train samples/s",
        "efficiency",
        "CPU s / epoch",
        "CPU efficiency",
        "val scoring rows/s",
        "load before",
    ):
        table.add_column(column, justify="left" if column in ("setting", "load before") else "right")
    for label, r in results.items():
        sps = r["rows"] / r["train_s"]
        workers = 2 if "2" in label else 1
        table.add_row(label, f"{r['rows']:,}", f"{sps:,.0f}", f"{sps / (workers * base):.0%}",
                      f"{r['train_cpu']:.1f}", f"{base_cpu / r['train_cpu']:.0%}",
                      f"{r['val_rows'] / r['val_s']:,.0f}", r["load"])  # fmt: skip
    console.print(table)
    console.print(f"after: {load()}; torch {torch.__version__}")


# ---------------------------------------------------------------------------------------------- study
def bench_study(args: argparse.Namespace) -> None:
    from recrl_cli.config.loading import resolve_config
    from recrl_cli.nets.mtl.config import MTLConfig
    from recrl_cli.pipeline import train_run
    from recrl_cli.study import run_study
    from recrl_cli.study_backends import ProcessPoolBackend, RayBackend
    from recrl_cli.tracking.mlflow_tracker import make_mlflow_tracker

    seeds = max(1, args.runs // 2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_dataset(root, args.events)
        options = {"data.prepared_dir": str(data), "train.epochs": 1, "train.threads": 1, "train.device": "cpu",
                   "model.embed_dim": args.embed_dim, "model.bottom_dims": args.bottom_dims, "model.tower_dims": "16"}  # fmt: skip
        cfg = resolve_config("mmoe", MTLConfig, options=options)
        axes = [("model.expert_num", ["2", "4"])]
        rows = []

        def timed_study(name: str, backend) -> None:
            tracker = make_mlflow_tracker(f"sqlite:///{root / (name.replace(' ', '_') + '.db')}")
            before = load()
            start = time.perf_counter()
            run_study(cfg, axes, seeds=seeds, tracker=tracker, experiment="bench", train_fn=train_run,
                      out_dir=root / name / "studies", train_kwargs={"runs_root": root / name}, backend=backend)  # fmt: skip
            seconds = time.perf_counter() - start
            rows.append((name, 2 * seeds, seconds, before))

        threads = torch.get_num_threads()
        timed_study("local, one by one", None)
        torch.set_num_threads(threads)
        timed_study("local, --jobs 2", ProcessPoolBackend(2))
        try:
            import ray
        except ImportError:
            ray = None
        if ray is not None:
            start = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            ray_start = time.perf_counter() - start
            try:
                timed_study("ray, 2 CPUs", RayBackend())
            finally:
                ray.shutdown()
    table = Table(
        title=f"study of {2 * seeds} runs (mmoe D={args.embed_dim} experts {args.bottom_dims}, {args.events:,} events, "
        f"2 variants × {seeds} seeds, 1 epoch, 1 thread each)"
    )
    for column in ("backend", "runs", "wall s", "runs/min", "load before"):
        table.add_column(column, justify="left" if column in ("backend", "load before") else "right")
    for name, runs, seconds, before in rows:
        table.add_row(name, str(runs), f"{seconds:.1f}", f"{60 * runs / seconds:.2f}", before)
    console.print(table)
    if ray is not None:
        console.print(f"Ray local cluster start (ray.init, 2 CPUs): {ray_start:.1f} s, not in the study time")
    console.print(f"after: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    train = sub.add_parser("train", help="samples/s of data-parallel training, 1 vs 2 processes")
    train.add_argument("--events", type=int, default=200_000)
    train.add_argument("--base", default="mmoe")
    train.add_argument("--batch-size", type=int, default=2048)
    train.add_argument("--repeats", type=int, default=2)
    study = sub.add_parser("study", help="study throughput: local one by one, local --jobs 2, Ray")
    study.add_argument("--events", type=int, default=20_000)
    study.add_argument("--runs", type=int, default=4)
    study.add_argument("--embed-dim", type=int, default=16, help="the runs' embedding width (their size)")
    study.add_argument("--bottom-dims", default="64", help="the runs' expert layer widths, e.g. 512,256")
    args = parser.parse_args()
    bench_train(args) if args.what == "train" else bench_study(args)


if __name__ == "__main__":
    main()
