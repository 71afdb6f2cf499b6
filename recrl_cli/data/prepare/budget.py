"""Memory budget of the out-of-core KuaiRand preparation: parse it, and cut the work to fit it.

``recrl prepare kuairand --memory-budget 4GiB`` bounds the preparation's peak resident memory by
choosing how many rows one user block may hold. The model (constants measured with
``benchmarks/bench_prepare_kuairand.py --calibrate``, see benchmarks/KUAIRAND_NOTES.md):

    peak ~ BASE + max(KEY_BYTES * raw videos, count tables, ITEM_BYTES * core videos) + ROW_BYTES * block rows

``BASE`` is the interpreter, polars/pyarrow and the streaming engine's buffers; the n-core pass holds
one count and one keep flag per raw video id (``ncore.py``; its actual table bytes also bound the
term, for ids with gaps); the block pass holds the core videos' ids and masks and later their feature
rows; a block of B rows is read, joined, sorted and written at about ``ROW_BYTES`` per row. Nothing
else grows with the data: staging and the n-core passes stream.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from recrl_cli.errors import ConfigError, DataError

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
# Measured on 27K-shaped proxies (KUAIRAND_NOTES.md), rounded up: imports ~90 MiB, the streaming engine
# ~150 MiB, the row-group writer's pending group (2^20 rows) ~200 MiB; ~230 bytes per block row. The n-core
# pass (ncore.py: flat count arrays, 5 bytes per id slot) peaked 350, 392 and 401 MiB at 1.57, 3.13 and
# 6.26 M raw videos (benchmarks/bench_prepare_kuairand_ncore.py): ~260 MiB of read-ahead, inside BASE,
# plus ~11 bytes per raw video. (The polars group-by it replaced grew ~260 bytes per video.)
BASE_BYTES = 450 * 2**20
KEY_BYTES = 12
# The 40 M proxy peaked 1,156 then 1,120 MiB under 1 GiB (model ~1,019 MiB) with blocks of ~1.65 M and
# ~1.15 M rows: the excess does not follow the blocks; its source is not identified (KUAIRAND_NOTES.md).
ITEM_BYTES = 200
ROW_BYTES = 300
PARTITION_CSV_BYTES = 128 * 2**20  # automatic partitions: one per this much standard-log CSV


def parse_bytes(text: str, name: str = "memory_budget") -> int:
    """``"4GiB"``, ``"512MiB"``, ``"1.5G"``, ``"800000000"`` -> bytes (binary units with an i)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ConfigError(f"{name} must be a size such as 4GiB, 512MiB or 2G, got {text!r}")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {text!r}")
    return value


def format_bytes(value: float) -> str:
    """Bytes as GiB (>= 1 GiB) or MiB, one decimal."""
    return f"{value / 2**30:.1f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def auto_partitions(csv_bytes: int) -> int:
    """Staging partitions for ``csv_bytes`` of standard logs: one per ``PARTITION_CSV_BYTES``."""
    return max(1, math.ceil(csv_bytes / PARTITION_CSV_BYTES))


@dataclass(frozen=True)
class BlockPlan:
    """How the block pass is cut: user blocks of <= ``chunk_rows`` starting rows (whole users, so a
    block holds at most ``largest_block_rows``) and the peak the model expects."""

    chunk_rows: int
    blocks: int
    largest_block_rows: int
    estimated_peak_bytes: int
    budget_bytes: int | None


def user_blocks(user_rows: np.ndarray, chunk_rows: int) -> np.ndarray:
    """(U,) block of each user (users in id order, ``user_rows`` rows each): the users whose first row
    falls in [b * chunk_rows, (b + 1) * chunk_rows) form block b, so a user never straddles two blocks."""
    start = np.cumsum(user_rows) - user_rows
    return np.unique(start // chunk_rows, return_inverse=True)[1]


def plan_blocks(
    budget: str, chunk_rows: int, raw_videos: int, core_videos: int, user_rows: np.ndarray,
    count_bytes: int = 0,
) -> BlockPlan:  # fmt: skip
    """Rows per user block: ``chunk_rows``, lowered until the model's peak stays within ``budget``.

    A block holds whole users, so the largest user's rows are a floor; a budget below what the counts
    and that one user need is a DataError naming about the smallest budget that fits. ``count_bytes``:
    the n-core count tables as allocated (``ncore.CountIndex.table_bytes``); it exceeds
    ``KEY_BYTES * raw_videos`` only when the ids leave most slots of a dense table empty.
    """
    user_rows = np.asarray(user_rows, dtype=np.int64)
    fixed = BASE_BYTES + max(KEY_BYTES * raw_videos, count_bytes, ITEM_BYTES * core_videos)
    limit = parse_bytes(budget) if budget else None
    rows = chunk_rows
    if limit is not None:
        largest_user = int(user_rows.max(initial=0))
        rows = min(chunk_rows, (limit - fixed) // ROW_BYTES - largest_user + 1)  # block <= this + largest - 1
        if rows < 1:
            need = fixed + ROW_BYTES * largest_user
            raise DataError(
                f"memory_budget {budget} is too small for these logs: counting {raw_videos:,} videos and one "
                f"block with the largest user ({largest_user:,} rows) need about {format_bytes(need)}; raise it"
            )
    block = user_blocks(user_rows, rows)
    largest = int(np.bincount(block, weights=user_rows).max(initial=0)) if user_rows.size else 0
    n_blocks = int(block.max()) + 1 if block.size else 0
    return BlockPlan(int(rows), n_blocks, largest, fixed + ROW_BYTES * largest, limit)
