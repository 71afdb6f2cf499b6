"""Data-parallel training: session-aligned shards, the global batch split across processes, and a real
2-process gloo run that ends with the metrics of the 1-process run.

Tolerance of the 2-process comparison: 1e-5 absolute on every metric (measured: ~1e-8 for MMoE, ~3e-6 for
RMTL's AUCs). The two runs see the same batches in the same order and the same initial weights, and the
gradient is the same sum; what differs is the ORDER of the floating-point additions (two half-batch sums
plus an all-reduce instead of one reduction over the batch), a ~1e-7 relative difference per step that Adam
carries forward. Dropout masks would differ (each process draws its own rows' masks), so these runs use none.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.multiprocessing as mp

from recrl_cli.config.loading import resolve_config
from recrl_cli.data.shards import RowShard, read_rows, session_aligned_shard
from recrl_cli.data.synth.retailrocket import write_retailrocket
from recrl_cli.nets.mtl.config import MTLConfig
from recrl_cli.training import distributed

TOLERANCE = 1e-5


def _sessions_file(path: Path, rows: int = 300, row_group_size: int = 7) -> np.ndarray:
    """A parquet file of contiguous sessions of 1-12 rows, in small row groups (cuts fall inside groups)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 13, size=rows)
    sessions = np.repeat(np.arange(lengths.size) * 10 + 5, lengths)[:rows]
    table = pa.table({"session_id": sessions, "value": np.arange(rows)})
    pq.write_table(table, path, row_group_size=row_group_size)
    return sessions


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_cover_the_split_once_and_cut_only_between_sessions(tmp_path, world):
    sessions = _sessions_file(tmp_path / "split.parquet")
    shards = [session_aligned_shard(tmp_path / "split.parquet", r, world) for r in range(world)]
    assert shards[0].start == 0 and shards[-1].stop == len(sessions)
    for left, right in itertools.pairwise(shards):
        assert left.stop == right.start
        assert sessions[right.start] != sessions[right.start - 1]  # never inside a session
    sizes = [s.num_rows for s in shards]
    assert max(sizes) - min(sizes) <= 2 * 12  # ~N/W each: a cut moves by less than one session
    for shard in shards:  # only the shard's rows, read from the overlapping row groups
        values = read_rows(tmp_path / "split.parquet", ["value"], shard).column("value").to_numpy()
        assert values.tolist() == list(range(shard.start, shard.stop))


def test_a_global_batch_is_split_exactly_between_the_processes():
    shards = [RowShard(0, 40, 100), RowShard(40, 41, 100), RowShard(41, 100, 100)]
    batch = torch.randperm(100, generator=torch.Generator().manual_seed(1))[:33]
    parts = [shard.localize(batch) for shard in shards]
    assert all(rows == 33 for _, rows in parts)
    joined = torch.cat([local + shard.start for (local, _), shard in zip(parts, shards, strict=True)])
    assert sorted(joined.tolist()) == sorted(batch.tolist())


def test_sharded_mean_is_the_batch_mean_in_one_process():
    values = torch.rand(6, 2)
    assert torch.allclose(distributed.sharded_mean(values, batch_rows=6), values.mean())
    assert distributed.sharded_mean(values[:0], batch_rows=6).item() == 0.0  # a rank without rows adds 0


# ---------------------------------------------------------------------------------------------- real gloo runs
@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket

    root = tmp_path_factory.mktemp("dist-data")
    write_retailrocket(root / "raw", num_events=3_000, seed=3)
    prepare_retailrocket(root / "raw", root / "out", RetailRocketPrepareParams(min_count=2))
    return root / "out"


def small_cfg(prepared: Path):
    options = {
        "data.prepared_dir": str(prepared), "train.epochs": 2, "train.batch_size": 256, "train.threads": 1,
        "train.device": "cpu", "model.dropout": 0.0, "model.expert_num": 2, "model.embed_dim": 8,
        "model.bottom_dims": "16", "model.tower_dims": "8",
    }  # fmt: skip
    return resolve_config("mmoe", MTLConfig, options=options)


def _train(rank: int, world: int, cfg, out: Path) -> None:
    """One process of a data-parallel run (``mp.spawn`` target): trains and writes what it ended with.

    The rendezvous is a file in ``out``, not a TCP port: a port picked free in the parent and bound seconds
    later by rank 0 (after two interpreters import torch) can be taken meanwhile by anything on the machine.
    A spawned process ends through :func:`distributed.end_process`, as ``recrl train --nproc`` workers do:
    gloo's threads outlive the group and abort the interpreter's finalization now and then under load.
    """
    import torch.distributed as dist

    from recrl_cli.pipeline import train_run
    from recrl_cli.tracking.base import NullTracker

    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"file://{out / 'rendezvous'}", rank=rank, world_size=world
        )
    result = train_run(cfg, NullTracker(), experiment="t", runs_root=out / "runs")
    if world > 1:
        distributed.leave_process_group()
    (out / f"metrics-{rank}.json").write_text(json.dumps(result.metrics))
    if world > 1:
        distributed.end_process(0)


# Two fresh interpreters importing torch: ~10 s idle, ~40 s on a loaded 2-core box. In the fast suite: it is the
# check that data-parallel training means what it says.
def test_two_gloo_processes_end_with_the_metrics_of_one_process(prepared, tmp_path):
    cfg = small_cfg(prepared)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    threads = torch.get_num_threads()
    try:
        _train(0, 1, cfg, one)
    finally:
        torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_train, args=(2, cfg, two), nprocs=2, join=True)

    single = json.loads((one / "metrics-0.json").read_text())
    rank0 = json.loads((two / "metrics-0.json").read_text())
    rank1 = json.loads((two / "metrics-1.json").read_text())
    assert rank0 == rank1  # both processes scored the gathered split: identical numbers
    assert set(rank0) == set(single) and any(k.endswith("/auc") for k in single)
    worst = max(abs(rank0[k] - single[k]) for k in single)
    assert worst <= TOLERANCE, worst
    # rank 0 alone wrote the run: one run directory with the model, no second writer
    assert [p.name for p in (two / "runs").iterdir()] == [p.name for p in (one / "runs").iterdir()]
    assert (next((two / "runs").iterdir()) / "model.pt").is_file()


# ---------------------------------------------------------------------------------------------- the CLI
def test_nproc_relaunches_the_same_command_under_torchrun(cli, prepared, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(distributed, "launch", lambda n, args: calls.append((n, list(args))) or 0)
    runs, uri = tmp_path / "runs", f"sqlite:///{tmp_path / 'x.db'}"
    result = cli("train", "mmoe", "--nproc", 2, "--data", prepared, "--seed", 5, "--runs-dir", runs,
                 "--tracking-uri", uri, "--set", "train.batch_size=64", "--epochs", 1)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert calls == [(2, ["train", "mmoe", "--set", "train.batch_size=64", "--seed", "5", "--data", str(prepared),
                          "--tracking-uri", uri, "--runs-dir", str(runs), "--epochs", "1"])]  # fmt: skip
    argv = distributed.torchrun_argv(2, calls[0][1])
    assert argv[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert argv[5:8] == ["-m", "recrl_cli", "train"]


def test_nproc_errors_are_one_line(cli, prepared, monkeypatch):
    bad = cli("train", "mmoe", "--nproc", 0, "--data", prepared)
    assert bad.exit_code == 1 and bad.output.strip() == "error: --nproc must be at least 1, got 0"
    monkeypatch.setattr(distributed, "launch", lambda n, args: 1)
    failed = cli("train", "mmoe", "--nproc", 2, "--data", prepared)
    assert failed.exit_code == 1
    assert failed.output.strip().splitlines() == [
        "error: the 2 training processes failed (torchrun exit code 1); see above"
    ]
    assert "Traceback" not in failed.output


@pytest.mark.slow  # torchrun + 2 interpreters + MLflow: about a minute on the shared 2-core box
def test_recrl_train_rmtl_nproc_2_logs_one_run_with_the_1_process_metrics(cli, prepared, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["train", "rmtl", "--base", "mmoe", "--data", prepared, "--tracking-uri", uri, "--device", "cpu",
            "--pretrain-epochs", 1, "--critic-epochs", 1, "--polish-epochs", 1, "--batch-size", 256,
            "--critic-batch-size", 256, "--dropout", 0, "--critic-dropout", 0, "--threads", 1,
            "--embed-dim", 8, "--critic-embed-dim", 8]  # fmt: skip
    one = cli(*args, "--runs-dir", tmp_path / "one")
    assert one.exit_code == 0, one.output
    two = cli(*args, "--runs-dir", tmp_path / "two", "--nproc", 2)
    assert two.exit_code == 0, two.output
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2  # rank 1 logged nothing
    by_world = {r.data.tags.get("recrl.world_size", "1"): r.data.metrics for r in runs}
    single = {k: v for k, v in by_world["1"].items() if k.startswith("eval/")}
    double = {k: v for k, v in by_world["2"].items() if k.startswith("eval/")}
    assert set(single) == set(double) and any("pretrained/" in k for k in single)
    worst = max(abs(single[k] - double[k]) for k in single)
    assert worst <= TOLERANCE, worst


# ---------------------------------------------------------------------------------------------- stops
_FAKE_TORCHRUN = """
import pathlib, signal, sys, time
mark = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: (mark.write_text("SIGTERM"), sys.exit(0)))
mark.write_text("running")
time.sleep(120)
"""

_LAUNCHER = """
import sys
from recrl_cli import signals
from recrl_cli.training import distributed
signals.install()
distributed.torchrun_argv = lambda n, a: [sys.executable, "-c", sys.argv[1], sys.argv[2]]
try:
    distributed.launch(2, [])
except KeyboardInterrupt as stop:
    print(type(stop).__name__)
    sys.exit(143)
"""


def test_sigterm_to_an_nproc_run_reaches_torchrun_instead_of_orphaning_its_workers(tmp_path):
    """SIGTERM goes to the `recrl` process only (unlike a terminal's Ctrl-C): it must pass it on to torchrun,
    which stops its workers; subprocess.run would SIGKILL torchrun and leave the workers training."""
    mark = tmp_path / "torchrun.txt"
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, _FAKE_TORCHRUN, str(mark)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (mark.exists() and mark.read_text() == "running") and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert (proc.returncode, out.strip()) == (143, "Terminated"), err
    assert mark.read_text() == "SIGTERM"  # the stand-in torchrun got the stop and ended by itself


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_a_stopped_study_stops_its_pool_workers_instead_of_waiting_for_them():
    import concurrent.futures
    import multiprocessing

    from recrl_cli.study_backends import _stop_workers

    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(_sleep, 300)
        started = time.monotonic()
        while not any(p.is_alive() for p in (pool._processes or {}).values()):
            time.sleep(0.05)
        _stop_workers(pool)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            future.result(timeout=120)
        assert time.monotonic() - started < 120  # ended by the stop, not by the 300 s task
