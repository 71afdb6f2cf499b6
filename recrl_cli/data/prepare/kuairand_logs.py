"""Stage the raw KuaiRand standard logs as user-range partitioned parquet (n-core filter: ncore.py).

Staging streams each CSV once (``scan_csv`` -> ``sink_parquet`` with a partition key, constant memory)
into ``work/log_<k>/part=<p>/*.parquet``: partition ``p`` holds the users whose id falls in the
p-th of ``P`` equal id ranges (the range spans the user feature file's ids; ids outside it join the
first or last partition). A user block of the later row pass then reads only the partitions its id
range overlaps, so the pass reads the staged logs about once whatever the number of blocks, and no
step needs the logs sorted. Rows keep their ``file`` and ``line`` for a stable tie-break.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from recrl_cli.data.prepare.kuairand_spec import (
    BEHAVIOURS,
    LOG_SCHEMA,
    REQUIRED,
    STAGED,
    USER_SCHEMA,
    Progress,
)
from recrl_cli.data.prepare.ncore import BATCH_ROWS, ncore_filter
from recrl_cli.data.prepare.rawfiles import polars_read
from recrl_cli.errors import DataError

__all__ = ["StagedLogs", "ncore_filter", "stage_logs", "user_id_range"]


@dataclass(frozen=True)
class StagedLogs:
    """The staged standard logs: ``files[p]`` = parquet files of partition p (all raw files), N rows.

    Partition of a user id: ``clip((user_id - low) * P // span, 0, P - 1)``, monotone in the id.
    """

    files: dict[int, list[Path]]
    rows: int
    low: int
    span: int
    partitions: int

    def part_of(self, user_id: int) -> int:
        return min(max((user_id - self.low) * self.partitions // self.span, 0), self.partitions - 1)

    def scan(self, first_user: int | None = None, last_user: int | None = None) -> pl.LazyFrame:
        """Rows of users first_user..last_user (all when None), reading only the overlapping partitions."""
        lo = 0 if first_user is None else self.part_of(first_user)
        hi = self.partitions - 1 if last_user is None else self.part_of(last_user)
        paths = [f for p in range(lo, hi + 1) for f in self.files.get(p, [])]
        if not paths:  # an empty partition range: an empty frame of the staged schema
            return pl.LazyFrame(schema=_STAGED_SCHEMA)
        lf = pl.scan_parquet(paths, hive_partitioning=False).select(*STAGED, "file", "line")
        if first_user is not None:
            lf = lf.filter(pl.col("user_id").is_between(first_user, last_user))
        return lf

    def id_batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(user_ids, video_ids) int64 arrays of about batch_rows staged rows each: the n-core filter's
        batch source (memory: a few batches, whatever the partitions). Read through polars' streaming
        engine, not pyarrow, so the memory it frees is reused by the block pass that follows (a second
        allocator kept ~100 MiB more at the peak on the 5 M-row proxy)."""
        for frame in self.scan().select("user_id", "video_id").collect_batches(chunk_size=batch_rows):
            yield frame["user_id"].to_numpy(), frame["video_id"].to_numpy()


_STAGED_SCHEMA = {**{c: pl.Int64 for c in ("user_id", "video_id", "time_ms", "play_time_ms", "duration_ms")},
                  "date": pl.Int32, **dict.fromkeys(BEHAVIOURS, pl.Int8), "tab": pl.Int8,
                  "file": pl.Int8, "line": pl.Int64}  # fmt: skip
_STAGED_SCHEMA = {c: _STAGED_SCHEMA[c] for c in (*STAGED, "file", "line")}


# Ids, times and durations are never negative in KuaiRand; a negative one is a damaged or foreign file.
NON_NEGATIVE = ("user_id", "video_id", "time_ms", "play_time_ms", "duration_ms")


def _check_staged(path: Path, staged: pl.LazyFrame) -> None:
    """One pass over a file's staged rows: DataError on missing fields, labels other than 0/1, or a
    negative id, time or duration (naming the file, the column and the first data row)."""
    missing = pl.any_horizontal(pl.col(REQUIRED).is_null())
    first = staged.select(
        pl.len().alias("rows"), missing.sum().alias("missing"), pl.col("line").filter(missing).min().alias("at"),
        *(pl.col(c).lt(0).sum().alias(c) for c in NON_NEGATIVE),
        *(pl.col("line").filter(pl.col(c) < 0).min().alias(f"{c}@") for c in NON_NEGATIVE),
    ).collect().row(0, named=True)  # fmt: skip
    if first["missing"]:
        raise DataError(f"{path} has {first['missing']:,} rows with missing fields or labels other than "
                        f"0/1 (first at data row {first['at'] + 1})")  # fmt: skip
    for column in NON_NEGATIVE:
        if first[column]:
            raise DataError(f"{path} has {first[column]:,} rows with a negative {column} "
                            f"(first at data row {first[column + '@'] + 1})")  # fmt: skip


def user_id_range(users_csv: Path) -> tuple[int, int]:
    """(lowest id, number of ids up to the highest) of the user feature file: the partitioned range."""
    ids = polars_read(
        lambda: pl.scan_csv(users_csv, schema=USER_SCHEMA).select("user_id").drop_nulls().collect(), users_csv
    )["user_id"]
    if ids.len() == 0:
        return 0, 1
    return int(ids.min()), int(ids.max()) - int(ids.min()) + 1


def stage_logs(
    paths: list[Path], work: Path, partitions: int = 1, id_range: tuple[int, int] = (0, 1),
    progress: Progress = None,
) -> StagedLogs:  # fmt: skip
    """Stream each standard log to ``work/log_<k>/part=<p>/`` (narrow dtypes, ``file`` = k, ``line`` =
    data row); check for missing or non-binary fields and for no rows at all."""
    low, span = id_range
    report = progress or (lambda *_: None)
    part = ((pl.col("user_id") - low) * partitions // span).clip(0, partitions - 1).cast(pl.Int32)
    files: dict[int, list[Path]] = {}
    for k, path in enumerate(paths):
        report("stage logs (files)", k, len(paths))
        target = work / f"log_{k}"
        lf = pl.scan_csv(path, schema=LOG_SCHEMA, row_index_name="line").select(
            pl.col("user_id", "video_id", "time_ms", "play_time_ms", "duration_ms"),
            pl.col("date").cast(pl.Int32, strict=False),
            # Labels outside 0/1 become null (non-strict cast or the when) and are reported below.
            *(pl.when(pl.col(b).is_in([0, 1])).then(pl.col(b)).cast(pl.Int8) for b in BEHAVIOURS),
            pl.col("tab").cast(pl.Int8, strict=False),
            pl.lit(k, pl.Int8).alias("file"), pl.col("line").cast(pl.Int64), part.alias("part"),
        )  # fmt: skip
        sink = pl.PartitionBy(target, key="part", include_key=False)
        polars_read(lambda lf=lf, sink=sink: lf.sink_parquet(sink, compression="zstd", mkdir=True), path)
        written = sorted(target.glob("*/*.parquet"))
        if written:
            _check_staged(path, pl.scan_parquet(written, hive_partitioning=False))
        for f in written:  # hive directory "part=<p>"; a null user id was reported above
            files.setdefault(int(f.parent.name.partition("=")[2]), []).append(f)
    report("stage logs (files)", len(paths), len(paths))
    n = sum(pq.ParquetFile(f).metadata.num_rows for fs in files.values() for f in fs)
    if n == 0:  # one header-only file is tolerated (a tiny period); all of them is not data
        raise DataError(f"the standard logs {', '.join(p.name for p in paths)} have a header but no rows")
    return StagedLogs({p: sorted(fs) for p, fs in sorted(files.items())}, n, low, span, partitions)
