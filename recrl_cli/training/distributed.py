"""Data-parallel training over ``torch.distributed``: process group, gradient and metric reduction, launch.

How a W-process run works (``recrl train ... --nproc W`` or ``torchrun --nproc-per-node W -m recrl_cli train ...``):

* Every process joins one process group: NCCL when the run uses CUDA (process ``LOCAL_RANK`` on GPU
  ``LOCAL_RANK``), gloo on the CPU.
* Each process loads only its session-aligned share of every split (:mod:`recrl_cli.data.shards`).
* The trainer draws the same permutation of the WHOLE split on every process; a process trains on the rows
  of each global batch of B rows that it holds (B_r ≈ B/W). Its loss is its SUM over those rows divided by
  B·T and multiplied by W, so that DDP's gradient average over the W processes equals the gradient of the
  1-process batch mean (:func:`sharded_mean`). The only difference from a 1-process run is therefore the
  order of floating-point sums, plus dropout masks, which each process draws for its own rows.
* Validation and test predictions, labels, sessions and users are gathered in rank order (which restores
  the split's row order), so AUC, s-logloss and GAUC are computed over the whole split, identically on every
  process: early-stopping decisions agree without another message.
* Only rank 0 logs to MLflow and writes checkpoints, run state and artifacts.
* Teardown: a barrier, then ``destroy_process_group``, then the worker process ends without interpreter
  finalization (:func:`leave_process_group`, :func:`end_process`): gloo's threads outlive the group.

Models are wrapped in ``DistributedDataParallel`` for the gradient all-reduce. RMTL's critics update only the
table rows a batch touches (a leaf of gathered rows, not a module forward), so their step all-reduces by hand:
the union of the processes' rows, then one summed flat buffer (:func:`union_rows`, :func:`all_reduce_sum_`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun started for a group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when no process group is set up."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Rank 0 (or a plain single process): the one process that logs, prints and writes files."""
    return rank_world()[0] == 0


def backend_for(device_name: str) -> str:
    """NCCL when the run will use CUDA, gloo otherwise (gloo is the CPU backend)."""
    uses_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    return "nccl" if uses_cuda else "gloo"


@contextmanager
def process_group(device_name: str) -> Iterator[None]:
    """Join torchrun's process group for the duration of a command (nothing to do without torchrun)."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield
        return
    backend = backend_for(device_name)
    if backend == "nccl":  # one GPU per process: "cuda" then means this process's GPU everywhere
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    try:
        yield
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other processes may be gone or stuck
        raise
    leave_process_group()


def leave_process_group() -> None:
    """Tear the group down in order: every process is past its last collective before any leaves.

    Without the barrier a fast rank (rank 1: no files to write) closes its connections while rank 0 still
    works. ``destroy_process_group`` does NOT stop gloo's worker threads once DDP has wrapped a model on the
    group (measured with torch 2.13: they survive it and ``gc.collect()``, even with the DDP object, its
    reducer and logger gone): the process must still end with :func:`end_process`.
    """
    dist.barrier()
    dist.destroy_process_group()


def end_process(code: int = 0) -> NoReturn:
    """End a data-parallel worker process without interpreter finalization (output flushed first).

    Why: gloo's worker threads outlive ``destroy_process_group`` (see :func:`leave_process_group`). A worker
    thread that drops the last reference to a tensor created in Python must take the GIL to free the
    Python object; if the interpreter has begun to finalize, CPython ends that thread with
    ``pthread_exit``, whose forced unwind through torch's noexcept destructor calls ``std::terminate``:
    "terminate called without an active exception", SIGABRT, after a run that succeeded. Under load the
    gloo thread lags the main thread enough to hit that window (benchmarks/RELIABILITY_NOTES.md,
    "Distributed test flake"). ``os._exit`` is how multiprocessing's own fork children end, for the same
    reason: nothing is left to run but teardown, and teardown is what races.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(AttributeError, OSError, ValueError):  # a closed or replaced stream
            stream.flush()
    os._exit(code)


def _comm_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo reduces CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if rank_world()[1] > 1:
        dist.barrier()


# ---------------------------------------------------------------------------------------------- reductions
def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Sum each tensor over the processes, in place, through ONE flat buffer (one message, not one per tensor)."""
    if rank_world()[1] == 1 or not tensors:
        return
    device, dtype = _comm_device(), tensors[0].dtype
    flat = torch.cat([t.reshape(-1).to(device, dtype) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """A copy of ``values`` summed over the processes (the tensor itself when there is one process)."""
    out = values.detach().clone()
    all_reduce_sum_([out])
    return out


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's rows of ``t`` [N_r, ...] in rank order → [Σ N_r, ...] on ``t``'s device.

    Shards are contiguous row ranges in rank order, so this restores the split's own row order.
    """
    _, world = rank_world()
    if world == 1:
        return t
    device = _comm_device()
    size = torch.tensor([t.shape[0]], device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    padded = torch.zeros((max(counts), *t.shape[1:]), dtype=t.dtype, device=device)
    padded[: t.shape[0]] = t.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)  # all_gather needs equal shapes: pad, then trim
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]).to(t.device)


def union_rows(rows: torch.Tensor) -> torch.Tensor:
    """Sorted unique union [U] of every process's row ids ``rows`` [U_r]."""
    return torch.unique(gather_rows(rows)) if rank_world()[1] > 1 else rows


# ---------------------------------------------------------------------------------------------- training
def sharded_mean(per_element: torch.Tensor, batch_rows: int) -> torch.Tensor:
    """This process's share of a global batch mean, scaled for DDP's average over the W processes.

    per_element [B_r, T] (this process's rows of a global batch of B rows) → Σ / (B·T) · W. DDP divides the
    summed gradients by W, so the result is the gradient of the mean over all B·T elements. A process with
    no row of the batch contributes 0 (a mean would be NaN).
    """
    _, world = rank_world()
    cols = per_element.shape[1] if per_element.dim() > 1 else 1
    return per_element.sum() * (world / (batch_rows * cols))


def global_mean(share: torch.Tensor) -> float:
    """The batch mean a :func:`sharded_mean` share belongs to (for logging): Σ over processes / W."""
    _, world = rank_world()
    return float(all_sum(share.detach().reshape(1)).item() / world)


def data_parallel(module: nn.Module) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel in a multi-process run, else ``module`` itself.

    Train steps call the wrapper (its backward all-reduces the gradients); scoring, state dicts and export keep
    using the bare module, whose parameters the wrapper shares, so checkpoints have the 1-process key names.
    """
    if rank_world()[1] == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = next(module.parameters()).is_cuda
    ids = [torch.cuda.current_device()] if on_cuda else None
    return DistributedDataParallel(module, device_ids=ids)


def decorrelate_rng(seed: int, step: int) -> None:
    """Give ranks > 0 their own dropout stream (rank 0 keeps the 1-process stream).

    Every rank starts from the same seed, so the models are built identically; without this, rank r's dropout
    masks would repeat rank 0's for the same local row positions.
    """
    rank, world = rank_world()
    if world > 1 and rank > 0:
        torch.manual_seed((seed * 1_000_003 + rank * 7_919 + step) % (2**63))


class SyncedStop:
    """A stop request seen by any process stops all of them at the same step (else the others would hang).

    Duck-types :class:`recrl_cli.training.trainer.StopSignal`: the trainer reads ``requested`` once per step,
    which here costs one tiny all-reduce.
    """

    def __init__(self, local) -> None:
        self.local = local

    @property
    def requested(self) -> bool:
        flag = torch.tensor([1.0 if self.local.requested else 0.0], device=_comm_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    @requested.setter
    def requested(self, value: bool) -> None:
        self.local.requested = value


# ---------------------------------------------------------------------------------------------- launch
def torchrun_argv(nproc: int, args: Sequence[str]) -> list[str]:
    """The command that runs ``recrl <args>`` in ``nproc`` processes on this machine through torchrun."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", "recrl_cli", *args,
    ]  # fmt: skip


def launch(nproc: int, args: Sequence[str], grace_s: float = 60.0) -> int:
    """Run ``recrl <args>`` in ``nproc`` local processes; returns torchrun's exit code.

    A stop of this process is passed on. Ctrl-C in a terminal reaches every process of the foreground
    group, torchrun and its workers included, so they checkpoint and stop by themselves: wait for
    them. SIGTERM reaches this process alone: pass it to torchrun, which terminates its workers
    (they checkpoint on it too), and wait. ``subprocess.run`` would instead SIGKILL torchrun and leave
    the workers running. A second stop, or ``grace_s`` without an end, kills torchrun.
    """
    from recrl_cli.signals import Terminated

    proc = subprocess.Popen(torchrun_argv(nproc, args))
    try:
        return proc.wait()
    except BaseException as stop:
        if isinstance(stop, Terminated) and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except BaseException:
            proc.kill()
            proc.wait()
        raise
