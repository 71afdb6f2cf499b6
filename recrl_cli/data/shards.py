"""One process's share of a prepared split: a contiguous, session-aligned row range read on its own.

Data-parallel training (:mod:`recrl_cli.training.distributed`) gives each of W processes the rows
``[start, stop)`` of every split. The cuts are moved forward to the next session boundary so that a
session never straddles two processes: RMTL's session MDP (next row, done flag, previous labels) is then
built locally and is exactly the single-process MDP restricted to the shard. A process reads only the
parquet row groups that overlap its range (plus the ``session_id`` column of the few groups around each
cut), so its peak memory is its shard, not the whole split.

The trainer still draws ONE permutation of the whole split per epoch (the same generator state on every
rank); :meth:`RowShard.localize` keeps the rows of a global batch that this process holds. Together the W
processes therefore see exactly the batches a single process would, which is what makes a W-process run
match the 1-process run up to floating-point summation order.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recrl_cli.errors import DataError


@dataclass(frozen=True)
class RowShard:
    """Rows ``[start, stop)`` of a split of ``total`` rows held by this process."""

    start: int
    stop: int
    total: int

    @property
    def num_rows(self) -> int:
        return self.stop - self.start

    def localize(self, idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Global row numbers idx [B] → (this shard's local row numbers [B_r], B).

        B_r varies around B/W from batch to batch (the global permutation decides); the caller divides
        its summed loss by the global B so that the W shares add up to the 1-process batch mean.
        """
        keep = (idx >= self.start) & (idx < self.stop)
        return idx[keep] - self.start, int(idx.numel())


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def _group_offsets(pf: pq.ParquetFile) -> list[int]:
    """First row of every row group, plus the total row count at the end."""
    offsets = [0]
    for g in range(pf.num_row_groups):
        offsets.append(offsets[-1] + pf.metadata.row_group(g).num_rows)
    return offsets


def _session_column(pf: pq.ParquetFile, group: int) -> np.ndarray:
    return pf.read_row_group(group, columns=["session_id"]).column(0).to_numpy()


def _next_boundary(pf: pq.ParquetFile, offsets: list[int], cut: int) -> int:
    """The first row >= ``cut`` that starts a new session (rows of a session are contiguous)."""
    total = offsets[-1]
    if cut <= 0 or cut >= total:
        return min(max(cut, 0), total)
    group = bisect.bisect_right(offsets, cut - 1) - 1  # the group holding row cut-1
    col = _session_column(pf, group)[cut - 1 - offsets[group] :]
    last, col, pos = col[0], col[1:], cut  # col[0] is now row `cut`
    while True:
        change = np.flatnonzero(col != last)
        if change.size:
            return pos + int(change[0])
        pos += col.size
        group += 1
        if group >= pf.num_row_groups:
            return total
        col = _session_column(pf, group)


def session_aligned_shard(path: Path, rank: int, world: int) -> RowShard:
    """Process ``rank``'s share of the parquet file at ``path``: ~1/world of the rows, cut at sessions."""
    pf = _open(path)
    offsets = _group_offsets(pf)
    total = offsets[-1]
    cuts = [0, *(_next_boundary(pf, offsets, r * total // world) for r in range(1, world)), total]
    return RowShard(cuts[rank], cuts[rank + 1], total)


def read_rows(path: Path, columns: list[str], shard: RowShard) -> pa.Table:
    """Rows ``[shard.start, shard.stop)`` of ``columns``, reading only the row groups that overlap them."""
    pf = _open(path)
    offsets = _group_offsets(pf)
    if offsets[-1] != shard.total:
        raise DataError(f"{path} has {offsets[-1]} rows, expected {shard.total}; run `recrl prepare`")
    first = bisect.bisect_right(offsets, shard.start) - 1
    groups = [g for g in range(max(first, 0), pf.num_row_groups) if offsets[g] < shard.stop]
    if shard.num_rows == 0 or not groups:
        return pf.schema_arrow.empty_table().select(columns)
    try:
        table = pf.read_row_groups(groups, columns=columns)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return table.slice(shard.start - offsets[groups[0]], shard.num_rows)
