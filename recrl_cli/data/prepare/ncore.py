"""Iterated n-core filter over (user_id, video_id) rows, counted in flat numpy arrays.

KuaiRand-27K has ~32 M raw videos. A polars group-by keeps a hash table of ~160 bytes per distinct
key (measured, benchmarks/KUAIRAND_NOTES.md), about 5 GiB at 27K, which no memory budget could cut.
The raw ids are dense integers, so each pass here counts into a flat array indexed by ``id - low``
(4 bytes per id slot, plus a 1-byte keep mask), reading the rows in batches of ``BATCH_ROWS``. When
the ids are sparse (the id span exceeds ``max(rows, DENSE_FLOOR)``, e.g. hashed 64-bit ids) a dense
array could be arbitrarily large, so the index is the sorted array of distinct ids instead
(``searchsorted``; 8 + 4 + 1 bytes per distinct id, built by one extra read).

Memory, whatever the path: the two count tables (``CountIndex.table_bytes``) plus one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

BATCH_ROWS = 1 << 18  # ~2 MiB per int64 column: the batch's transients stay far below the tables
DENSE_FLOOR = 1 << 20  # spans up to this are dense whatever the row count (<= 5 MiB per table)

# A batch source: called once per pass, yields (user_ids, video_ids) int64 arrays of equal length.
Batches = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class CountIndex:
    """Maps raw ids to count slots 0..size-1, monotone in the id: ``id - low`` (dense) or the rank of
    the id among the sorted distinct ``keys`` (sparse)."""

    low: int
    size: int
    keys: np.ndarray | None  # (size,) int64 sorted distinct ids, or None when dense
    count_dtype: type

    def slots(self, ids: np.ndarray) -> np.ndarray:
        return ids - self.low if self.keys is None else np.searchsorted(self.keys, ids)

    def ids(self, slots: np.ndarray) -> np.ndarray:
        return slots.astype(np.int64) + self.low if self.keys is None else self.keys[slots]

    @property
    def table_bytes(self) -> int:
        """Counts + keep mask (+ the keys when sparse) held for the whole filter."""
        per_slot = np.dtype(self.count_dtype).itemsize + 1 + (0 if self.keys is None else 8)
        return self.size * per_slot


def build_index(batches: Batches, column: int, low: int, high: int, rows: int) -> CountIndex:
    """Dense index over ids low..high when the span is at most ``max(rows, DENSE_FLOOR)`` slots,
    else a sparse one from the distinct ids (one read of ``column`` of every batch)."""
    dtype = np.int32 if rows < 2**31 else np.int64
    span = high - low + 1
    if span <= max(rows, DENSE_FLOOR):
        return CountIndex(low, span, None, dtype)
    keys, pending, held = np.empty(0, dtype=np.int64), [], 0
    for batch in batches():
        pending.append(np.unique(batch[column]))
        held += pending[-1].size
        if held > max(keys.size, 8 * BATCH_ROWS):  # merge when the pending ids outgrow the keys:
            keys, pending, held = np.unique(np.concatenate([keys, *pending])), [], 0  # amortised O(K log K)
    keys = np.unique(np.concatenate([keys, *pending]))  # sorted distinct; transient ~3x keys
    return CountIndex(low, keys.size, keys, dtype)


def add_counts(counts: np.ndarray, slots: np.ndarray) -> None:
    """counts[s] += number of occurrences of s in ``slots``: bincount when the table is small next to
    the batch (its int64 output is table-sized), else sort the batch (memory ~ the batch)."""
    if slots.size == 0:
        return
    if counts.size <= 4 * slots.size:
        counts += np.bincount(slots, minlength=counts.size).astype(counts.dtype, copy=False)
    else:
        # int32 slots sort faster and in half the memory (slots < size <= 2^31 here in practice)
        uniq, n = np.unique(slots.astype(np.int32) if counts.size < 2**31 else slots, return_counts=True)
        counts[uniq] += n.astype(counts.dtype, copy=False)


def frame_batches(log: pl.LazyFrame, batch_rows: int = BATCH_ROWS) -> Batches:
    """A batch source over an in-memory frame (collected once): the small-data and test path."""
    frame = log.select(pl.col("user_id").cast(pl.Int64), pl.col("video_id").cast(pl.Int64)).collect()

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, frame.height, batch_rows):
            part = frame.slice(start, batch_rows)
            yield part["user_id"].to_numpy(), part["video_id"].to_numpy()

    return batches


def ncore_filter(
    log: pl.LazyFrame | Batches, n: int
) -> tuple[pl.DataFrame, pl.DataFrame, list[dict[str, int]], int]:
    """Drop every row whose user or video has fewer than ``n`` rows among the kept rows, recount,
    repeat until a pass drops nothing.

    ``log``: a frame with user_id, video_id, or a batch source (``Batches``) read once per pass.
    Returns users [U: user_id, rows] and videos [I: video_id, rows] of the core, sorted by id, one
    {rows, users, items} entry per pass (the first = before filtering, the last = the core), and the
    bytes of the count tables (what the memory model charges for this step).
    """
    batches = frame_batches(log) if isinstance(log, pl.LazyFrame) else log
    rows, lo_u, hi_u, lo_i, hi_i = 0, None, None, None, None
    for u, i in batches():  # min, max and length in one read: they choose dense or sparse
        if u.size:
            rows += u.size
            lo_u = int(u.min()) if lo_u is None else min(lo_u, int(u.min()))
            hi_u = int(u.max()) if hi_u is None else max(hi_u, int(u.max()))
            lo_i = int(i.min()) if lo_i is None else min(lo_i, int(i.min()))
            hi_i = int(i.max()) if hi_i is None else max(hi_i, int(i.max()))
    if rows == 0:
        empty = pl.DataFrame(schema={"user_id": pl.Int64, "rows": pl.Int64})
        return empty, empty.rename({"user_id": "video_id"}), [{"rows": 0, "users": 0, "items": 0}], 0
    index_u = build_index(batches, 0, lo_u, hi_u, rows)
    index_i = build_index(batches, 1, lo_i, hi_i, rows)
    keep_u = keep_i = None
    passes = []
    while True:
        count_u = np.zeros(index_u.size, dtype=index_u.count_dtype)
        count_i = np.zeros(index_i.size, dtype=index_i.count_dtype)
        for u, i in batches():
            su, si = index_u.slots(u), index_i.slots(i)
            if keep_u is not None:
                kept = keep_u[su] & keep_i[si]
                su, si = su[kept], si[kept]
            add_counts(count_u, su)
            add_counts(count_i, si)
        seen_u, seen_i = count_u > 0, count_i > 0
        passes.append({"rows": int(count_u.sum(dtype=np.int64)), "users": int(seen_u.sum()),
                       "items": int(seen_i.sum())})  # fmt: skip
        keep_u, keep_i = count_u >= max(n, 1), count_i >= max(n, 1)
        if int(keep_u.sum()) == passes[-1]["users"] and int(keep_i.sum()) == passes[-1]["items"]:
            break
    table_bytes = index_u.table_bytes + index_i.table_bytes
    return _table(index_u, count_u, "user_id"), _table(index_i, count_i, "video_id"), passes, table_bytes


def _table(index: CountIndex, counts: np.ndarray, name: str) -> pl.DataFrame:
    """[K: name, rows] for the slots with a count, in id order (slots are monotone in the id)."""
    slots = np.flatnonzero(counts)
    return pl.DataFrame({name: index.ids(slots), "rows": counts[slots].astype(np.int64)},
                        schema={name: pl.Int64, "rows": pl.Int64})  # fmt: skip
