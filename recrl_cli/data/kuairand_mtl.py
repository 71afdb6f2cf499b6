"""Prepared KuaiRand as feature rows for the MTL bases and RMTL (``recrl train mmoe --data <kuairand dir>``).

The MTL bases and RMTL read :class:`~recrl_cli.data.tensors.SplitTensors`: one row of categorical ids per
impression. ``recrl prepare kuairand`` writes a row table (one row per impression, sorted by user and time),
split row indices and user/video feature tables (:mod:`recrl_cli.data.kuairand_tensors`). This module turns
them into the same tensors the RetailRocket splits give, without writing anything:

* **fields** (F = 4 + user features + video features): ``item`` (the encoded video id; first, because the
  history item ids share its embedding rows), ``user`` (encoded user id), the user's categorical features and
  the video's categorical features gathered from their tables by id, ``first_tag`` (the video's first tag;
  0 when it has none) and ``tab`` (the log's scene/page of the impression, known when it is shown: 1 + tab,
  0 when blank, :data:`TAB_IDS` ids);
* **tasks** (:data:`MTL_TASKS`): ``is_click`` (the CTR task) and ``long_view`` (the conversion-like task: in
  KuaiRand a long view follows a click, so it is the CTCVR of the pair and ESMM's product structure fits it);
* **sessions**: the prepared ``session_id`` (KuaiSim's user-day sessions by default, inactivity gaps with
  ``prepare --session-key gap``); rows of a session are contiguous and in time order in every split, which is
  all RMTL's session MDP needs; **positions**: the row's 0-based rank in its session (over all splits, so a
  session cut by the per-user split keeps counting);
* **history** (2H columns after the fields, the layout of :func:`recrl_cli.data.tensors.history_columns`):
  the items of the user's H most recent rows *of earlier requests* (``gather_history(same_request=False)``:
  rows shown in the same request, at the same millisecond, are left out, so no label of a row shown together
  with the target leaks in) and their label code 1 + Σ_t 2^t·y_t over the two tasks (0 on padding). The
  window is an index range of the row table (``user_start`` + ``request_pos``): built here, not stored.

A test row's history reaches back into the user's train and val rows (they are earlier in time: KuaiRand's
splits are per user and in time order); it never contains a row of a later request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from recrl_cli.data.kuairand_tensors import (
    RowTable,
    gather_history,
    load_feature_table,
    load_row_table,
    load_split_rows,
)
from recrl_cli.data.manifest import open_prepared
from recrl_cli.data.prepare.kuairand import BEHAVIOURS
from recrl_cli.data.tensors import SPLITS, PreparedData, SplitTensors
from recrl_cli.errors import DataError

MTL_TASKS = ("is_click", "long_view")
#: H, history rows per sample (RetailRocket's default too); capped by the preparation's ``history_length``.
MTL_HISTORY = 10
TAB_IDS = 16  # KuaiRand's tab is 0..14: ids 1 + tab, 0 = blank (larger values share the last id)
_CHUNK = 262_144  # rows gathered at a time (bounds the [chunk, H, 7] feedback block)


def session_positions(session_ids: torch.Tensor) -> torch.Tensor:
    """0-based rank of every row in its session: session_ids [N] (contiguous runs) -> LongTensor [N]."""
    n = session_ids.shape[0]
    rows = torch.arange(n, dtype=torch.long)
    start = torch.zeros(n, dtype=torch.bool)
    if n:
        start[0] = True
        start[1:] = session_ids[1:] != session_ids[:-1]
    first = torch.where(start, rows, torch.zeros_like(rows)).cummax(0).values  # [N] first row of the session
    return rows - first


def tab_ids(tab: np.ndarray) -> torch.Tensor:
    """LongTensor [N] of tab ids: 1 + tab clipped to 1..TAB_IDS-1, 0 where the log left it blank (NaN/None)."""
    values = np.asarray(tab, dtype=np.float64)  # None / NaN where blank
    blank = np.isnan(values)
    ids = np.clip(np.where(blank, 0, values) + 1, 1, TAB_IDS - 1)
    return torch.from_numpy(np.where(blank, 0, ids).astype(np.int64))


def history_codes(feedback: torch.Tensor, mask: torch.Tensor, task_index: list[int]) -> torch.Tensor:
    """Label codes [B, H]: 1 + Σ_t 2^t·feedback[..., task_index[t]] on real rows, 0 on padding.

    Args:
        feedback: FloatTensor [B, H, 7], the logged behaviours of the history rows.
        mask: BoolTensor [B, H], True on real history rows.
        task_index: the behaviour index of each task.
    """
    powers = 2 ** torch.arange(len(task_index), dtype=torch.long)
    code = 1 + (feedback[..., task_index].long() * powers).sum(-1)
    return torch.where(mask, code, torch.zeros_like(code))


def mtl_fields(
    table: RowTable,
    users: Any,
    items: Any,
    rows: torch.Tensor,
    task_index: list[int],
    history: int,
    tab: torch.Tensor | None = None,
) -> torch.Tensor:
    """Feature ids of ``rows`` [B]: LongTensor [B, F + 2H] (fields, H history items, H label codes).

    ``users`` / ``items``: the :class:`~recrl_cli.data.kuairand_tensors.FeatureTable` s; ``tab``: LongTensor [N]
    tab ids of every row of the table (None: all 0).
    """
    item, user = table.item[rows], table.user[rows]
    tags = items.tags[item, :1] if items.tags is not None else torch.zeros_like(item)[:, None]
    tabs = (tab[rows] if tab is not None else torch.zeros_like(item))[:, None]
    parts = [item[:, None], user[:, None], users.ids[user], items.ids[item], tags, tabs]
    if history:
        hist = gather_history(table, rows, history, same_request=False)
        parts += [hist.items, history_codes(hist.feedback, hist.mask, task_index)]
    return torch.cat(parts, dim=1)


def mtl_manifest(manifest: dict[str, Any], users: Any, items: Any, history: int) -> dict[str, Any]:
    """The manifest as the MTL bases see it: the prepared one with ``tasks``, ``features`` and ``history``
    replaced by the feature-row view (fingerprint and splits unchanged, ``view`` = ``mtl``). ``history.column`` is
    what :attr:`PreparedData.history_length` looks for: the features carry the 2H history columns (here resolved
    from the row table's windows, not from a stored column)."""
    cards = {f["name"]: int(f["cardinality"]) for f in manifest["features"]}
    fields = [
        {"name": "item", "table": "items", "kind": "id", "cardinality": cards["item"]},
        {"name": "user", "table": "users", "kind": "id", "cardinality": cards["user"]},
        *({"name": n, "table": "users", "kind": "categorical", "cardinality": c}
          for n, c in zip(users.names, users.cardinalities, strict=True)),
        *({"name": n, "table": "items", "kind": "categorical", "cardinality": c}
          for n, c in zip(items.names, items.cardinalities, strict=True)),
        {"name": "first_tag", "table": "items", "kind": "categorical", "cardinality": max(1, items.tag_cardinality)},
        {"name": "tab", "table": "rows", "kind": "categorical", "cardinality": TAB_IDS},
    ]  # fmt: skip
    view = {key: value for key, value in manifest.items() if key not in ("tasks", "features", "history")}
    view["tasks"] = list(MTL_TASKS)
    view["features"] = fields
    if history:
        view["history"] = {
            "column": "rows.parquet window", "length": history, "table": manifest["tables"]["rows"]["file"],
            "window": "rows[user_start + max(0, request_pos - length) : user_start + request_pos]",
            "labels": list(MTL_TASKS),
        }  # fmt: skip
    view["view"] = "mtl"
    return view


def load_kuairand_mtl(
    directory: Path,
    device: torch.device | str = "cpu",
    splits: tuple[str, ...] = SPLITS,
    history: int | None = None,
) -> PreparedData:
    """A prepared KuaiRand directory as :class:`PreparedData` for the MTL bases and RMTL (see the module).

    ``history``: H (default :data:`MTL_HISTORY`, capped by the preparation's history_length; 0 = none).
    Features [S, F + 2H], labels [S, 2], session_ids / user_ids / positions [S] per split, on ``device``.
    """
    directory = Path(directory)
    manifest = open_prepared(directory, "kuairand")
    if manifest.get("dataset") != "kuairand" or "rows" not in manifest.get("tables", {}):
        raise DataError(f"{directory} is not a prepared KuaiRand dataset; run `recrl prepare kuairand`")
    limit = int(manifest.get("history", {}).get("length", MTL_HISTORY))
    history = min(MTL_HISTORY if history is None else int(history), limit)
    table = load_row_table(directory)
    users = load_feature_table(directory, "users")
    items = load_feature_table(directory, "items")
    rows_file = directory / manifest["tables"]["rows"]["file"]
    names = set(pq.read_schema(rows_file).names)
    if "session_id" not in names:
        raise DataError(f"{rows_file} has no session_id column; run `recrl prepare kuairand` again")
    extra = pq.read_table(rows_file, columns=["session_id", *(["tab"] if "tab" in names else [])])
    session_ids = torch.from_numpy(np.array(extra.column("session_id").to_numpy(), dtype=np.int64))
    tab = tab_ids(extra.column("tab").to_numpy(zero_copy_only=False)) if "tab" in names else None
    positions = session_positions(session_ids)
    task_index = [BEHAVIOURS.index(t) for t in MTL_TASKS]
    out: dict[str, SplitTensors] = {}
    for name in splits:
        rows = load_split_rows(directory, name)
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= table.num_rows):
            raise DataError(
                f"split {name!r} of {directory} points outside the row table; run `recrl prepare` again"
            )
        features = torch.cat(
            [mtl_fields(table, users, items, rows[i : i + _CHUNK], task_index, history, tab)
             for i in range(0, rows.numel(), _CHUNK)]
            or [torch.zeros(0, 4 + len(users.names) + len(items.names) + 2 * history, dtype=torch.long)]
        )  # fmt: skip
        out[name] = SplitTensors(
            features=features, labels=table.labels[rows][:, task_index].float(),
            session_ids=session_ids[rows], user_ids=table.user[rows], positions=positions[rows],
        ).to(torch.device(device))  # fmt: skip
    return PreparedData(manifest=mtl_manifest(manifest, users, items, history), splits=out)
