"""Prepared KuaiRand for the simulator: everything on the device once, batches gathered by tensor indexing.

:class:`KuaiRandData` plays the part :class:`recrl_cli.data.tensors.PreparedData` plays for RetailRocket (it has
``manifest``, ``tasks`` and ``fingerprint``, which is all ``pipeline.train_run`` reads besides what it hands to
the algorithm). A training batch is a LongTensor [B] of row numbers; :func:`row_batch` turns it into the model's
inputs with :func:`recrl_cli.data.kuairand_tensors.gather_history`, with no per-row Python work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recrl_cli.data.kuairand_tensors import (
    FeatureTable,
    RowTable,
    gather_history,
    load_feature_table,
    load_row_table,
    load_split_rows,
)
from recrl_cli.data.manifest import read_manifest
from recrl_cli.data.prepare.kuairand import BEHAVIOURS
from recrl_cli.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class KuaiRandData:
    """A prepared KuaiRand directory loaded onto one device.

    Attributes:
        directory: the prepared directory (recorded in exports so a model can find its data again).
        manifest: its ``manifest.json``.
        rows: the user-sorted row table (N rows).
        users, items: encoded feature tables (row 0 = padding).
        splits: split name -> LongTensor [S] of row indices, ascending.
    """

    directory: Path
    manifest: dict[str, Any]
    rows: RowTable
    users: FeatureTable
    items: FeatureTable
    splits: dict[str, torch.Tensor]

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest["tasks"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("fingerprint", "unknown"))

    def positive_rate(self, split: str = "train") -> torch.Tensor:
        """FloatTensor [7]: share of positive labels of each behaviour over the rows of ``split``."""
        return self.rows.labels[self.splits[split]].float().mean(0)


def load_kuairand_data(directory: Path, device: torch.device | str = "cpu") -> KuaiRandData:
    """Load a directory written by ``recrl prepare kuairand`` (a :class:`DataError` for anything else)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.get("dataset") != "kuairand":
        raise DataError(f"{directory} holds {manifest.get('dataset')!r} data; the simulator needs "
                        "`recrl prepare kuairand` output")  # fmt: skip
    if list(manifest.get("tasks", ())) != list(BEHAVIOURS):
        raise DataError(f"{directory} has tasks {manifest.get('tasks')}, expected the 7 KuaiRand behaviours")
    return KuaiRandData(
        directory=directory, manifest=manifest, rows=load_row_table(directory, device),
        users=load_feature_table(directory, "users", device), items=load_feature_table(directory, "items", device),
        splits={s: load_split_rows(directory, s, device) for s in SPLITS},
    )  # fmt: skip


@dataclass(frozen=True)
class RowBatch:
    """Model inputs of B log rows (one target item each).

    Attributes:
        user: LongTensor [B]. hist_items: LongTensor [B, H], left-padded with 0. feedback: FloatTensor [B, H, 7].
        mask: BoolTensor [B, H], True on real history rows. target: LongTensor [B, 1]. labels: FloatTensor [B, 7].
        play_seconds: FloatTensor [B], the target row's logged play time (NaN where blank).
    """

    user: torch.Tensor
    hist_items: torch.Tensor
    feedback: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    labels: torch.Tensor
    play_seconds: torch.Tensor


def row_batch(
    table: RowTable, rows: torch.Tensor, history_length: int, same_request: bool = True
) -> RowBatch:
    """Gather the inputs of ``rows`` [B] (row indices of ``table``) in a few tensor ops."""
    hist = gather_history(table, rows, history_length, same_request=same_request)
    return RowBatch(user=table.user[rows], hist_items=hist.items, feedback=hist.feedback, mask=hist.mask,
                    target=table.item[rows][:, None], labels=table.labels[rows].float(),
                    play_seconds=table.play_seconds[rows])  # fmt: skip
