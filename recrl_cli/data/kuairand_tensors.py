"""Prepared KuaiRand as tensors: the row table, split row indices, feature tables and history windows.

``recrl prepare kuairand`` stores one row per impression, sorted by (user, time), with the index of
the user's first row (``user_start``), the row's position among the user's rows (``user_pos``) and
the position of its request's first row (``request_pos``). The history of row r is then a slice of
the same table, ``rows[user_start + max(0, end - H) : user_start + end]``, where ``end`` is

- ``user_pos`` (``same_request=True``, KuaiSim's reader): every earlier row of the user, including
  earlier rows of r's own request (shown at the same millisecond, in file order);
- ``request_pos`` (``same_request=False``): only rows of earlier requests.

:func:`gather_history` builds the [B, H] window indices of a batch in one tensor expression and
gathers items and the 7 feedback labels, left-padded as KuaiSim does (the most recent row sits at
position H - 1). Nothing is copied per row and there is no Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from recrl_cli.data.manifest import open_prepared
from recrl_cli.data.prepare.kuairand import BEHAVIOURS
from recrl_cli.errors import DataError

_COLUMNS = ("item", "user", "user_start", "user_pos", "request_pos", "split")


@dataclass(frozen=True)
class RowTable:
    """The prepared row table, row-aligned tensors on one device (N rows).

    Attributes:
        item: LongTensor [N], encoded video id (1..I; 0 is kept for padding).
        user: LongTensor [N], encoded user id (1..U).
        labels: ByteTensor [N, 7], 0/1 per behaviour in ``BEHAVIOURS`` order (uint8 keeps 27K small).
        user_start: LongTensor [N], row index of the user's first row.
        user_pos: LongTensor [N], position of the row among its user's rows.
        request_pos: LongTensor [N], ``user_pos`` of the first row of the row's request.
        split: CharTensor [N], 0 train, 1 val, 2 test, -1 user in no split.
        play_seconds: FloatTensor [N], logged play time in seconds (NaN where blank); 0 without a click.
    """

    item: torch.Tensor
    user: torch.Tensor
    labels: torch.Tensor
    user_start: torch.Tensor
    user_pos: torch.Tensor
    request_pos: torch.Tensor
    split: torch.Tensor
    play_seconds: torch.Tensor

    @property
    def num_rows(self) -> int:
        return int(self.item.shape[0])

    def to(self, device: torch.device | str) -> RowTable:
        return RowTable(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class History:
    """History windows of a batch of B rows, H = window length, left-padded.

    Attributes:
        items: LongTensor [B, H], encoded video ids, 0 on padding.
        feedback: FloatTensor [B, H, 7], the logged labels of those rows, 0 on padding.
        mask: BoolTensor [B, H], True on real rows.
        lengths: LongTensor [B], real rows per window (<= H).
        index: LongTensor [B, H], row index in the table, -1 on padding.
    """

    items: torch.Tensor
    feedback: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    index: torch.Tensor


def load_row_table(directory: Path, device: torch.device | str = "cpu") -> RowTable:
    """Read ``rows.parquet`` of a prepared KuaiRand directory (checked against its manifest)."""
    directory = Path(directory)
    manifest = open_prepared(directory, "kuairand")
    info = manifest.get("tables", {}).get("rows")
    if manifest.get("dataset") != "kuairand" or not info:
        raise DataError(f"{directory} is not a prepared KuaiRand dataset; run `recrl prepare kuairand`")
    path = directory / info["file"]
    if not path.is_file():
        raise DataError(f"{path} is missing; run `recrl prepare kuairand` again")
    names = set(pq.read_schema(path).names)
    table = pq.read_table(
        path, columns=[*_COLUMNS, *BEHAVIOURS, *(["play_time_ms"] if "play_time_ms" in names else [])]
    )
    if table.num_rows != info["rows"]:
        raise DataError(f"{path} has {table.num_rows} rows, its manifest says {info['rows']}")

    def col(name: str, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(table.column(name).to_numpy().astype(np.int64)).to(dtype)

    labels = np.stack([table.column(b).to_numpy() for b in BEHAVIOURS], 1).astype(np.uint8)
    if "play_time_ms" in table.column_names:  # blanks become NaN: the play-time head skips them
        play = table.column("play_time_ms").to_numpy(zero_copy_only=False).astype(np.float32) / 1000.0
    else:
        play = np.full(table.num_rows, np.nan, np.float32)
    return RowTable(
        item=col("item", torch.long), user=col("user", torch.long), labels=torch.from_numpy(labels),
        user_start=col("user_start", torch.long), user_pos=col("user_pos", torch.long),
        request_pos=col("request_pos", torch.long), split=col("split", torch.int8),
        play_seconds=torch.from_numpy(play),
    ).to(device)  # fmt: skip


@dataclass(frozen=True)
class FeatureTable:
    """Encoded features of users or videos, indexed by the encoded id (row 0 = padding, all zeros).

    Attributes:
        names: the F categorical feature names, in manifest order.
        ids: LongTensor [R + 1, F], feature ids per user/video (0 = missing or unseen in train).
        cardinalities: embedding table size of each of the F features.
        tags: LongTensor [R + 1, L] (videos only; ``None`` for users), tag ids right-padded with 0.
        tag_cardinality: embedding table size of the tags (0 for users).
    """

    names: list[str]
    ids: torch.Tensor
    cardinalities: list[int]
    tags: torch.Tensor | None = None
    tag_cardinality: int = 0


def load_feature_table(directory: Path, table: str, device: torch.device | str = "cpu") -> FeatureTable:
    """Read ``users.parquet`` or ``items.parquet`` (``table`` = ``users`` / ``items``) as dense id tensors,
    so that ``ids[item]`` (item: LongTensor [B, H] or [B]) gathers a batch's features in one step."""
    directory = Path(directory)
    manifest = open_prepared(directory, "kuairand")
    if table not in ("users", "items") or table not in manifest.get("tables", {}):
        raise DataError(f"{directory} has no KuaiRand {table!r} table; run `recrl prepare kuairand`")
    feats = [f for f in manifest["features"] if f.get("table") == table and f.get("kind") == "categorical"]
    frame = pq.read_table(directory / manifest["tables"][table]["file"])
    key = "user" if table == "users" else "item"
    order = frame.column(key).to_numpy()
    if not np.array_equal(order, np.arange(1, order.size + 1)):
        raise DataError(f"{directory}/{table}.parquet is not ordered by {key} 1..{order.size}")
    ids = np.zeros((order.size + 1, len(feats)), np.int64)
    for j, f in enumerate(feats):
        ids[1:, j] = frame.column(f["name"]).to_numpy()
    tags, tag_card = None, 0
    if table == "items":
        lists = frame.column("tags").combine_chunks()  # offsets [I + 1] into a flat values array
        offsets = lists.offsets.to_numpy()
        values = lists.values.to_numpy()
        lengths = np.diff(offsets)
        row = np.repeat(np.arange(order.size), lengths)  # the video of each flat value
        dense = np.zeros((order.size + 1, max(1, int(lengths.max(initial=0)))), np.int64)
        dense[row + 1, np.arange(values.size) - (offsets[:-1] - offsets[0])[row]] = values
        tags = torch.from_numpy(dense).to(device)
        tag_card = next(f["cardinality"] for f in manifest["features"] if f["name"] == "tags")
    return FeatureTable(
        names=[f["name"] for f in feats], ids=torch.from_numpy(ids).to(device),
        cardinalities=[int(f["cardinality"]) for f in feats], tags=tags, tag_cardinality=int(tag_card),
    )  # fmt: skip


def load_split_rows(directory: Path, split: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """LongTensor [S]: the row indices of one split (``train``, ``val`` or ``test``), ascending."""
    directory = Path(directory)
    info = open_prepared(directory, "kuairand")["splits"].get(split)
    if info is None:
        raise DataError(f"{directory} has no split {split!r}")
    rows = pq.read_table(directory / info["file"], columns=["row"]).column("row").to_numpy()
    return torch.from_numpy(rows.astype(np.int64)).to(device)


def history_index(
    rows: torch.Tensor, user_start: torch.Tensor, end_pos: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window indices of a batch: ([B, H] row index or -1, [B, H] mask), left-padded.

    Args:
        rows: LongTensor [B], rows whose histories to build.
        user_start: LongTensor [N], first row of each row's user.
        end_pos: LongTensor [N], the user position the window ends before (exclusive).
        length: H, the window length.
    """
    end = user_start[rows] + end_pos[rows]  # [B] one past the most recent history row
    n = end_pos[rows].clamp(max=length)  # [B]
    offset = torch.arange(-length, 0, device=rows.device)  # [H]: -H .. -1
    mask = offset[None, :] >= -n[:, None]
    index = torch.where(mask, end[:, None] + offset[None, :], torch.full_like(mask, -1, dtype=torch.long))
    return index, mask


def gather_history(table: RowTable, rows: torch.Tensor, length: int, *, same_request: bool = True) -> History:
    """Items [B, H] and feedback [B, H, 7] of the ``length`` rows before each of ``rows`` [B].

    ``same_request=True`` reproduces KuaiSim (earlier rows of the same request are history);
    ``False`` keeps only earlier requests, so no row shown at the same millisecond leaks in.
    """
    if length < 1:
        raise ValueError(f"history length must be >= 1, got {length}")
    end_pos = table.user_pos if same_request else table.request_pos
    index, mask = history_index(rows, table.user_start, end_pos, length)
    safe = index.clamp(min=0)
    items = torch.where(mask, table.item[safe], torch.zeros_like(safe))
    feedback = table.labels[safe].to(torch.float32) * mask[..., None]
    return History(items=items, feedback=feedback, mask=mask, lengths=mask.sum(1), index=index)
