"""Prepared splits as whole tensors on the device.

Training never goes through a per-row ``Dataset.__getitem__``: a split is loaded once into a few
dense tensors and batches are index slices of them (see :func:`batch_indices`). On RetailRocket
this is what makes a step cost the model's arithmetic and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from recrl_cli.data.manifest import open_prepared, verify_prepared
from recrl_cli.data.shards import RowShard, read_rows, session_aligned_shard
from recrl_cli.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitTensors:
    """One split, row-aligned tensors on one device.

    Attributes:
        features: LongTensor [N, F + 2H], encoded categorical ids (0 = missing/unknown), then, when the data
            carry a session history, H history item ids and H label codes (:func:`history_columns`).
        labels: FloatTensor [N, T], 0/1 per task.
        session_ids: LongTensor [N], session of each row (for s-logloss and the MDP).
        user_ids: LongTensor [N], raw visitor/user id (for GAUC).
        positions: LongTensor [N], 0-based position of the row in its session.
    """

    features: torch.Tensor
    labels: torch.Tensor
    session_ids: torch.Tensor
    user_ids: torch.Tensor
    positions: torch.Tensor

    @property
    def num_rows(self) -> int:
        return int(self.features.shape[0])

    def to(self, device: torch.device) -> SplitTensors:
        return SplitTensors(*(t.to(device) for t in self._tensors()))

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.features, self.labels, self.session_ids, self.user_ids, self.positions)


@dataclass(frozen=True)
class PreparedData:
    """A prepared dataset: its manifest and the requested splits as tensors."""

    manifest: dict[str, Any]
    splits: dict[str, SplitTensors]
    # Data-parallel runs: the row range of each split this process holds (None: whole splits).
    shards: dict[str, RowShard] | None = None

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest["tasks"])

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.manifest["features"]]

    @property
    def cardinalities(self) -> list[int]:
        return [int(f["cardinality"]) for f in self.manifest["features"]]

    @property
    def history_length(self) -> int:
        """H: history columns per row after the F fields (features are [N, F + 2H]); 0 without a history."""
        history = self.manifest.get("history", {})
        return int(history.get("length", 0)) if "column" in history else 0

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("fingerprint", "unknown"))


def load_split(
    directory: Path, manifest: dict[str, Any], split: str, shard: RowShard | None = None
) -> SplitTensors:
    """Read one parquet split (or only the rows of ``shard``) into CPU tensors, checked against the manifest
    (:func:`~recrl_cli.data.manifest.verify_prepared`, once per process)."""
    verify_prepared(directory, manifest)
    info = manifest.get("splits", {}).get(split)
    if info is None:
        raise DataError(f"split '{split}' is not in {directory / 'manifest.json'}")
    path = directory / info["file"]
    if not path.is_file():
        raise DataError(f"{path} is missing; run `recrl prepare` again")
    features = [f["name"] for f in manifest["features"]]
    tasks = list(manifest["tasks"])
    columns = ["session_id", "visitorid", "position", *features, *tasks]
    if shard is not None:
        if shard.total != int(info["rows"]):
            raise DataError(
                f"{path} has {shard.total} rows, manifest says {info['rows']}; run `recrl prepare`"
            )
        table = read_rows(path, columns, shard)
    else:
        try:
            table = pq.read_table(path, columns=columns)
        except Exception as exc:  # pyarrow raises several unrelated types for bad files
            raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if shard is None and table.num_rows != int(info["rows"]):
        raise DataError(
            f"{path} has {table.num_rows} rows, manifest says {info['rows']}; run `recrl prepare`"
        )

    # Each column is converted once, straight into a writable array that torch then shares
    # (torch.from_numpy keeps no copy). Arrow's zero-copy views are read-only: torch warns about
    # them, and a tensor over a read-only buffer must never be written to.
    n = table.num_rows

    def values(name: str) -> np.ndarray:
        col = table.column(name)
        if col.null_count:
            raise DataError(
                f"{path} has {col.null_count} missing values in '{name}'; run `recrl prepare` again"
            )
        return col.to_numpy()

    def filled(out: np.ndarray, names: list[str]) -> torch.Tensor:
        try:
            if out.ndim == 1:
                out[:] = values(names[0])
            else:
                for j, name in enumerate(names):
                    out[:, j] = values(name)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path} has a column of the wrong type: {str(exc).splitlines()[0]}") from None
        return torch.from_numpy(out)

    feature_ids = filled(np.empty((n, len(features)), np.int64), features)
    if "column" in manifest.get("history", {}):  # RetailRocket's row links (KuaiRand's history is its own)
        feature_ids = torch.cat([feature_ids, history_columns(directory, manifest, path, shard)], dim=1)
    return SplitTensors(
        features=feature_ids,
        labels=filled(np.empty((n, len(tasks)), np.float32), tasks),
        session_ids=filled(np.empty(n, np.int64), ["session_id"]),
        user_ids=filled(np.empty(n, np.int64), ["visitorid"]),
        positions=filled(np.empty(n, np.int64), ["position"]),
    )


def history_columns(
    directory: Path, manifest: dict[str, Any], path: Path, shard: RowShard | None = None
) -> torch.Tensor:
    """The 2H history columns of the rows of split file ``path`` (or of ``shard``): LongTensor [n, 2H].

    Columns 0..H-1: the encoded item id (the manifest's ``history.item_field``) of each linked earlier row, 0 on
    padding; columns H..2H-1: its label code as of this row's time, 0 on padding, else 1 + Σ_t 2^t·[task t's
    event (``<task>_ts``) happened strictly before this row's timestamp]. Resolved through the split's
    ``hist_prev`` links into the row table (every split's item/label/time columns, read once per call): the
    prepared files hold indices, not copies.
    """
    info = manifest["history"]
    length, tasks = int(info["length"]), list(manifest["tasks"])
    times = list(info["label_times"])
    table_cols = [info["item_field"], *tasks, *times]
    parts = [
        pq.read_table(directory / manifest["splits"][s]["file"], columns=table_cols) for s in info["order"]
    ]
    item = np.concatenate([p.column(info["item_field"]).to_numpy() for p in parts]).astype(np.int64)
    label = np.stack([np.concatenate([p.column(t).to_numpy() for p in parts]) for t in tasks], 1)
    when = np.stack([np.concatenate([p.column(t).to_numpy() for p in parts]) for t in times], 1)
    own = read_rows(path, [info["column"], "timestamp"], shard) if shard is not None else pq.read_table(
        path, columns=[info["column"], "timestamp"])  # fmt: skip
    links = np.asarray(own.column(info["column"]).combine_chunks().flatten().to_numpy()).reshape(-1, length)
    now = own.column("timestamp").to_numpy()[:, None]  # [n, 1]
    pad = links < 0
    safe = np.where(pad, 0, links)
    known = (label[safe] > 0) & (when[safe] >= 0) & (when[safe] < now[..., None])  # [n, H, T]
    code = 1 + (known * (1 << np.arange(len(tasks)))).sum(-1)
    items = np.where(pad, 0, item[safe])
    return torch.from_numpy(np.concatenate([items, np.where(pad, 0, code)], axis=1).astype(np.int64))


def load_prepared(directory: Path, device: torch.device, splits: tuple[str, ...] = SPLITS) -> PreparedData:
    """Load the manifest and the given splits of a prepared dataset onto ``device``."""
    directory = Path(directory)
    manifest = open_prepared(directory)
    loaded = {name: load_split(directory, manifest, name).to(device) for name in splits}
    return PreparedData(manifest=manifest, splits=loaded)


def load_prepared_shard(
    directory: Path, device: torch.device, rank: int, world: int, splits: tuple[str, ...] = SPLITS
) -> PreparedData:
    """Like :func:`load_prepared`, but only process ``rank``'s session-aligned share of every split."""
    directory = Path(directory)
    manifest = open_prepared(directory)
    shards, loaded = {}, {}
    for name in splits:
        info = manifest.get("splits", {}).get(name)
        if info is None:
            raise DataError(f"split '{name}' is not in {directory / 'manifest.json'}")
        shards[name] = session_aligned_shard(directory / info["file"], rank, world)
        loaded[name] = load_split(directory, manifest, name, shards[name]).to(device)
    return PreparedData(manifest=manifest, splits=loaded, shards=shards)


def batch_indices(
    num_rows: int, batch_size: int, generator: torch.Generator | None, device: torch.device, start: int = 0
) -> Iterator[torch.Tensor]:
    """Yield index tensors [B] covering ``num_rows`` once, from batch number ``start`` on.

    A permutation is drawn from ``generator`` (shuffled epoch) or rows are taken in order
    (``generator=None``). Passing the generator state saved at the epoch start and ``start``
    reproduces the remainder of an interrupted epoch exactly.
    """
    if generator is not None:
        order = torch.randperm(num_rows, generator=generator).to(device)
    else:
        order = torch.arange(num_rows, device=device)
    for begin in range(start * batch_size, num_rows, batch_size):
        yield order[begin : begin + batch_size]


def num_batches(num_rows: int, batch_size: int) -> int:
    return (num_rows + batch_size - 1) // batch_size
