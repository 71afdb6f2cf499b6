"""The KuaiRand row table: core rows in user blocks, with indices, requests, sessions and the holdout.

Per block of users (<= ``chunk_rows`` rows, whole users), sorted by (user_id, time_ms, file, line):
the global row number, the user's first row and the row's position (a history window is the slice
``rows[user_start + max(0, user_pos - H) : user_start + user_pos]``: indices, never copies), requests
(rows of a user sharing ``time_ms``), sessions (user-day or inactivity gap) and the per-user
chronological holdout. Blocks are appended to ``rows.parquet`` and the split index files in fixed
row groups, so the bytes never depend on how the users were cut into blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recrl_cli.data.prepare.budget import user_blocks
from recrl_cli.data.prepare.kuairand_logs import StagedLogs
from recrl_cli.data.prepare.kuairand_spec import (
    BEHAVIOURS,
    ROW_COLUMNS,
    SPLIT_CODE,
    KuaiRandPrepareParams,
    Progress,
)
from recrl_cli.errors import DataError


def write_rows(
    staged: StagedLogs, users: pl.DataFrame, items: pl.DataFrame, params: KuaiRandPrepareParams, out: Path,
    chunk_rows: int | None = None, progress: Progress = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, np.ndarray]]:  # fmt: skip
    """Write ``rows.parquet`` (N rows sorted by user, time, file, line) and ``<split>.parquet`` (the
    ``row`` indices of each split) one user block at a time (<= ``chunk_rows`` rows, whole users);
    return their summaries and the masks [U+1], [I+1] of encoded users/videos that have a train row
    (the population the encoders are fitted on)."""
    report = progress or (lambda *_: None)
    users = users.with_columns(user=pl.int_range(1, pl.len() + 1, dtype=pl.Int32),
                               user_start=pl.col("rows").cum_sum() - pl.col("rows"))  # fmt: skip
    items = items.select("video_id", item=pl.int_range(1, pl.len() + 1, dtype=pl.Int32))
    block = pl.Series(user_blocks(users["rows"].to_numpy(), chunk_rows or params.chunk_rows))
    acc = RowStats(users.height, items.height)
    writers = {name: RowGroupWriter(out / f"{name}.parquet") for name in ("rows", *SPLIT_CODE)}
    blocks = block.unique(maintain_order=True)
    try:
        for k, b in enumerate(blocks):
            report("user blocks", k, blocks.len())
            part = users.filter(block == b)
            frame = block_rows(staged, part, items, params, acc.requests, acc.sessions)
            writers["rows"].write(frame)
            for name, code in SPLIT_CODE.items():
                index = pl.col("user_start") + pl.col("user_pos")
                writers[name].write(frame.filter(pl.col("split") == code).select(row=index))
            acc.add(frame)
            del frame  # the next block's read must not overlap this one in memory
        report("user blocks", blocks.len(), blocks.len())
    finally:
        for writer in writers.values():
            writer.close()
    return acc.summaries()


class RowGroupWriter:
    """Append blocks to one parquet file in row groups of a fixed size, so the bytes (and hashes)
    depend on the rows only, never on how ``chunk_rows`` cut them into blocks."""

    def __init__(self, path: Path, group_rows: int = 1 << 20) -> None:
        self.path, self.group_rows = path, group_rows
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.Table] = []

    def write(self, frame: pl.DataFrame) -> None:
        table = frame.to_arrow()
        if self.writer is None:  # created on the first block, even an empty one: the file always exists
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self.pending.append(table)
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
        table = pa.concat_tables(self.pending)
        start = 0
        while table.num_rows - start >= self.group_rows or (final and start < table.num_rows):
            # One contiguous chunk per group: pages (and so bytes) must not follow the block cuts.
            group = table.slice(start, self.group_rows).combine_chunks()
            self.writer.write_table(group, row_group_size=self.group_rows)
            start += self.group_rows
        self.pending = [table.slice(start)]

    def close(self) -> None:
        if self.writer is not None:
            self._flush(final=True)
            self.writer.close()


def block_rows(
    staged: StagedLogs, part: pl.DataFrame, items: pl.DataFrame, params: KuaiRandPrepareParams,
    request0: int, session0: int,
) -> pl.DataFrame:  # fmt: skip
    """All core rows of the users in ``part`` with their indices, requests, sessions and split."""
    lo, hi = part["user_id"].min(), part["user_id"].max()
    frame = (
        staged.scan(lo, hi)
        .join(part.lazy().select("user_id", "user", "rows", "user_start"), on="user_id", how="inner")
        .join(items.lazy(), on="video_id", how="inner")
        .sort("user_id", "time_ms", "file", "line")  # stable: file order breaks same-ms ties, as KuaiSim
        .collect(engine="streaming")
    )
    if frame.height != part["rows"].sum():
        raise DataError(
            f"internal: user block {lo}..{hi} has {frame.height} rows, the core counted {part['rows'].sum()}"
        )
    first_of_user = pl.col("user_id") != pl.col("user_id").shift(1)
    new_request = (first_of_user | (pl.col("time_ms") != pl.col("time_ms").shift(1))).fill_null(True)
    if params.session_key == "day":  # KuaiSim: the index of the row's calendar date among the user's
        new_session = first_of_user | (pl.col("date") != pl.col("date").shift(1))
    else:  # strictly longer than the gap: exactly session_gap_minutes stays in the session
        new_session = first_of_user | (pl.col("time_ms").diff() > params.session_gap_minutes * 60_000)
    user_pos = (pl.int_range(pl.len()) + part["user_start"].min() - pl.col("user_start")).cast(pl.Int32)
    test, val = params.test_per_user, params.val_per_user
    n = pl.col("rows")
    split = (
        pl.when((n - val - test) < params.min_train_share * n).then(-1)
        .when(pl.col("user_pos") >= n - test).then(SPLIT_CODE["test"])
        .when(pl.col("user_pos") >= n - test - val).then(SPLIT_CODE["val"])
        .otherwise(SPLIT_CODE["train"]).cast(pl.Int8)
    )  # fmt: skip
    return (
        frame.with_columns(
            user_pos=user_pos, new_request=new_request, new_session=new_session.fill_null(True)
        )
        .with_columns(
            request_id=pl.col("new_request").cum_sum().cast(pl.Int64) - 1 + request0,
            session_id=pl.col("new_session").cum_sum().cast(pl.Int64) - 1 + session0,
            request_pos=pl.when("new_request").then("user_pos").forward_fill(),
            split=split,
        )
        .select(ROW_COLUMNS)
    )


class RowStats:
    """Counts over the row blocks for the manifest; users and sessions never span two blocks."""

    def __init__(self, n_users: int, n_items: int) -> None:
        self.rows = self.requests = self.sessions = self.max_request = 0
        self.labels = np.zeros(len(BEHAVIOURS))
        self.split = {s: {"rows": 0, "users": 0, "sessions": 0, "labels": np.zeros(len(BEHAVIOURS))}
                      for s in SPLIT_CODE}  # fmt: skip
        self.users_out = 0
        self.train = {"user": np.zeros(n_users + 1, bool), "item": np.zeros(n_items + 1, bool)}
        self.items = np.zeros(n_items + 1, bool)

    def add(self, frame: pl.DataFrame) -> None:
        self.rows += frame.height
        self.requests = int(frame["request_id"].max()) + 1
        self.sessions = int(frame["session_id"].max()) + 1
        self.max_request = max(self.max_request, int(frame.group_by("request_id").len()["len"].max()))
        self.labels += frame.select(BEHAVIOURS).sum().to_numpy()[0]
        self.items[frame["item"].to_numpy()] = True
        self.users_out += frame.filter(pl.col("split") == -1)["user"].n_unique()
        for name, code in SPLIT_CODE.items():
            part = frame.filter(pl.col("split") == code)
            acc = self.split[name]
            acc["rows"] += part.height
            acc["users"] += part["user"].n_unique()
            acc["sessions"] += part["session_id"].n_unique()
            acc["labels"] += part.select(BEHAVIOURS).sum().to_numpy()[0] if part.height else 0
            if name == "train":
                self.train["user"][part["user"].to_numpy()] = True
                self.train["item"][part["item"].to_numpy()] = True

    def summaries(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, np.ndarray]]:
        def rates(labels: np.ndarray, n: int) -> dict[str, float]:
            return {b: float(labels[k] / n) if n else 0.0 for k, b in enumerate(BEHAVIOURS)}

        rows = {"file": "rows.parquet", "rows": self.rows, "users": int(self.train["user"].size - 1),
                "items": int(self.items.sum()), "requests": self.requests, "sessions": self.sessions,
                "max_request_size": self.max_request, "users_in_no_split": self.users_out,
                "positive_rate": rates(self.labels, self.rows), "columns": list(ROW_COLUMNS)}  # fmt: skip
        splits = {name: {"file": f"{name}.parquet", "rows": a["rows"], "users": a["users"],
                         "sessions": a["sessions"], "positive_rate": rates(a["labels"], a["rows"])}
                  for name, a in self.split.items()}  # fmt: skip
        return rows, splits, self.train
