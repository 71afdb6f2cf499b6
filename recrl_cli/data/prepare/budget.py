"""Memory budget of the out-of-core KuaiRand preparation: parse it, and cut the work to fit it.

``recrl prepare kuairand --memory-budget 4GiB`` bounds the preparation's peak resident memory by
choosing how many rows one user block may hold. The model (constants measured with
``benchmarks/bench_prepare_kuairand.py --calibrate``, see benchmarks/KUAIRAND_NOTES.md):

    peak ~ BASE + max(KEY_BYTES * raw videos, ITEM_BYTES * core videos) + ROW_BYTES * rows of one block

``BASE`` is the interpreter, polars/pyarrow and the streaming engine's buffers; the n-core pass holds
one count per raw video; the block pass holds the core videos' ids and masks and later their feature
rows; a block of B rows is read, joined, sorted and written at about ``ROW_BYTES`` per row. Nothing
else grows with the data: staging and the n-core passes stream.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from recrl_cli.errors import ConfigError, DataError

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
BASE_BYTES = 600 * 2**20
KEY_BYTES = 48
ITEM_BYTES = 96
ROW_BYTES = 450
PARTITION_CSV_BYTES = 512 * 2**20  # automatic partitions: one per this much standard-log CSV


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
    """How the block pass is cut: ``chunk_rows`` per user block and the peak it is expected to reach."""

    chunk_rows: int
    estimated_peak_bytes: int
    budget_bytes: int | None


def plan_blocks(
    budget: str, chunk_rows: int, raw_videos: int, core_videos: int, largest_user_rows: int
) -> BlockPlan:
    """Rows per user block: ``chunk_rows``, lowered so the model's peak stays within ``budget``.

    A block holds whole users, so the largest user's rows are a floor; a budget below what the
    counts and that one user need is a DataError naming the smallest budget that fits.
    """
    fixed = BASE_BYTES + max(KEY_BYTES * raw_videos, ITEM_BYTES * core_videos)
    if not budget:
        rows = chunk_rows
        return BlockPlan(rows, fixed + ROW_BYTES * max(rows, largest_user_rows), None)
    limit = parse_bytes(budget)
    rows = min(chunk_rows, (limit - fixed) // ROW_BYTES)
    if rows < largest_user_rows:
        need = fixed + ROW_BYTES * largest_user_rows
        raise DataError(
            f"memory_budget {budget} is too small for these logs: {raw_videos:,} videos to count and a "
            f"user with {largest_user_rows:,} rows need about {format_bytes(need)}; raise it"
        )
    return BlockPlan(int(rows), fixed + ROW_BYTES * int(rows), limit)
