"""Where the runs of a study execute: this process (default), a local process pool, or a Ray cluster.

Scheduling is left to existing engines: :class:`concurrent.futures.ProcessPoolExecutor` for
``--backend local --jobs N`` and Ray tasks (``num_cpus`` / ``num_gpus`` declared, results taken with
``ray.wait`` as they finish) for ``--backend ray``.

Only the driver talks to MLflow. A task trains with an in-memory :class:`RecordingTracker` under a
stand-in parent run and returns what it logged (params, every metric with its step, tags, artifact
bytes); the driver replays that as a nested run under the real study parent, as each task finishes.
Why not let each task log to the tracking store itself:

* the default store is a SQLite file, which takes one writer at a time (concurrent runs fail with
  "database is locked"), and a file on the driver's disk is not even visible from other Ray nodes;
* workers then need no route to (or credentials for) a tracking server;
* the nested runs are made by the same tracker calls as the local backend's, so they match by construction.

The price: a run appears in MLflow when it has finished, not while it trains, and an interrupted
parallel study restarts its unfinished variants from scratch (finished ones are still skipped).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from recrl_cli.config.schema import RunConfig
from recrl_cli.errors import ConfigError, RecrlError
from recrl_cli.tracking.base import PARENT_TAG, RUN_NAME_TAG, RecordedRun, RecordingTracker, Tracker


@dataclass(frozen=True)
class RunTask:
    """One variant × seed run, everything a worker process needs (picklable)."""

    variant: str
    seed_index: int
    cfg: RunConfig
    experiment: str
    run_name: str
    tags: dict[str, str]
    runs_root: str
    cwd: str  # the driver's directory: relative paths (data, runs) mean the same in a worker


@dataclass(frozen=True)
class RunOutcome:
    """What a finished task sends back: its test/val metrics and everything it logged."""

    variant: str
    seed_index: int
    metrics: dict[str, float]
    record: RecordedRun


def execute(task: RunTask) -> RunOutcome:
    """Train one run in this (worker) process, recording instead of logging."""
    from recrl_cli.pipeline import train_run

    if os.path.isdir(task.cwd):  # a worker starts elsewhere (Ray: its session directory)
        os.chdir(task.cwd)
    tracker = RecordingTracker()
    with tracker.start_run(experiment=task.experiment, run_name="stand-in parent"):
        result = train_run(
            task.cfg, tracker, experiment=task.experiment, runs_root=Path(task.runs_root),
            run_name=task.run_name, nested=True, extra_tags=task.tags,
        )  # fmt: skip
    return RunOutcome(task.variant, task.seed_index, dict(result.metrics), tracker.runs[result.run_id])


def replay(record: RecordedRun, tracker: Tracker, experiment: str) -> str:
    """Log a recorded run as a nested run of the tracker's open run; returns the new run id."""
    tags = {k: v for k, v in record.tags.items() if k not in (RUN_NAME_TAG, PARENT_TAG)}
    with tracker.start_run(experiment=experiment, run_name=record.name, tags=tags, nested=True) as run_id:
        tracker.log_params(record.params)
        for dataset, context in record.datasets:
            tracker.log_dataset(dataset, context)
        # One call per (step, repeat) instead of one per value: a key logged twice at a step keeps both values.
        calls: dict[tuple[int, int], dict[str, float]] = {}
        for key, history in record.metrics.items():
            seen: dict[int, int] = {}
            for step, value in history:
                repeat = seen[step] = seen.get(step, -1) + 1
                calls.setdefault((step, repeat), {})[key] = value
        for (step, _), metrics in sorted(calls.items()):
            tracker.log_metrics(metrics, step=step)
        with tempfile.TemporaryDirectory() as tmp:
            for artifact, content in record.artifacts.items():
                path = Path(tmp, artifact)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
                folder = artifact.rpartition("/")[0]
                tracker.log_artifact(path, folder or None)
        for model in record.models:
            tracker.log_model(model.model, model.input_example, name=model.name, metadata=model.metadata,
                              step=model.step)  # fmt: skip
    return run_id


class Backend(Protocol):
    """Runs tasks somewhere and yields their outcomes in the order they finish."""

    def run(self, tasks: list[RunTask]) -> Iterator[RunOutcome]: ...


class ProcessPoolBackend:
    """``--backend local --jobs N``: N worker processes on this machine (spawned: no forked torch state)."""

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs

    def run(self, tasks: list[RunTask]) -> Iterator[RunOutcome]:
        import multiprocessing

        # Each worker gets an equal share of the cores unless the runs fix their own thread count.
        threads = str(max(1, (os.cpu_count() or 1) // self.jobs))
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            self.jobs, mp_context=context, initializer=_start_worker, initargs=(threads,)
        ) as pool:
            futures = [pool.submit(execute, task) for task in tasks]
            try:
                for future in as_completed(futures):
                    yield future.result()
            except BaseException:
                # Ctrl-C reached the workers too (one foreground process group); SIGTERM reached only
                # this process, and leaving the pool would wait for every running variant to finish.
                # Pass the stop on: each worker ends its run as stopped (see _start_worker).
                _stop_workers(pool)
                raise
            finally:
                for future in futures:
                    future.cancel()


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM every live worker of ``pool`` (the executor has no public way before Python 3.14)."""
    import signal

    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(process.pid, signal.SIGTERM)


def _start_worker(threads: str) -> None:
    """A pool worker: SIGTERM is a stop like Ctrl-C (its run ends KILLED, not killed mid-write), and
    an equal share of the cores unless the runs fix their own thread count."""
    from recrl_cli import signals

    signals.install()
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


class RayBackend:
    """``--backend ray``: one Ray task per run on the cluster at ``address`` (a local one when None)."""

    def __init__(
        self, address: str | None = None, cpus_per_task: float = 1.0, gpus_per_task: float = 0.0
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'recrl[ray]'") from None
        if cpus_per_task <= 0 or gpus_per_task < 0:
            raise ConfigError("--cpus-per-task must be > 0 and --gpus-per-task >= 0")
        self.ray, self.address = ray, address
        self.cpus, self.gpus = cpus_per_task, gpus_per_task

    def run(self, tasks: list[RunTask]) -> Iterator[RunOutcome]:
        ray = self.ray
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, log_to_driver=False)
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(execute)
        pending = {remote.remote(task): task for task in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(done[0])
                yield _ray_result(ray, done[0], task)
        finally:
            for ref in pending:  # interrupted or failed: stop what has not finished
                ray.cancel(ref)
            if started:
                ray.shutdown()


def _ray_result(ray: Any, ref: Any, task: RunTask) -> RunOutcome:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None) or exc
        if isinstance(cause, RecrlError):
            raise type(cause)(str(cause)) from None
        first = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise RecrlError(f"run '{task.run_name}' failed on the Ray cluster: {first}") from None


def make_backend(
    name: str,
    *,
    jobs: int = 1,
    address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
) -> Backend | None:
    """The backend of ``--backend NAME``; None means the runs execute one by one in this process."""
    if name == "local":
        if address is not None:
            raise ConfigError("--address is for --backend ray")
        return ProcessPoolBackend(jobs) if jobs != 1 else None
    if name == "ray":
        return RayBackend(address, cpus_per_task, gpus_per_task)
    raise ConfigError(f"unknown --backend '{name}'; use local or ray")
