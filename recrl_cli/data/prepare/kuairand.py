"""``recrl prepare kuairand``: raw KuaiRand logs -> a user-sorted row table, index splits, feature tables.

Follows KuaiSim's notebook and reader (``../shared/research/hac_kuaisim.md`` §2), vectorised and out
of core:

1. check every raw file (exists, non-empty, exact header, last line complete);
2. stage the standard logs as parquet partitioned by user-id range (``kuairand_logs.py``: streaming
   ``scan_csv`` -> ``sink_parquet``, narrow dtypes, file and line kept for a stable tie-break); the
   random-exposure log is not read (KuaiSim does not);
3. iterated user/item n-core filter on the staged (user_id, video_id) columns until a pass removes
   nothing (the unique maximal n-core, the same rows as KuaiSim's in-place decrementing loop);
4. the row table one user block at a time (``kuairand_rows.py``), each block reading only its
   partitions; ``memory_budget`` caps the block size (``budget.py``);
5. user and video feature tables encoded with vocabularies fitted on the training users/videos only
   (``kuairand_features.py``);
6. ``manifest.json``; everything inside an atomic output directory.

Materialised in memory: per-user and per-video row counts (27K: <= 27,285 users and 32 M videos), one
user block of rows, the kept videos' feature rows and the user feature table. Everything else streams.
The memory settings never change the output: any ``chunk_rows``/``partitions`` gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recrl_cli import __version__
from recrl_cli.data import manifest as mf
from recrl_cli.data.atomic import OutputKind, atomic_output_dir, check_output_dir
from recrl_cli.data.prepare.budget import auto_partitions, plan_blocks
from recrl_cli.data.prepare.kuairand_features import encode_items, encode_users
from recrl_cli.data.prepare.kuairand_logs import StagedLogs, ncore_filter, stage_logs, user_id_range
from recrl_cli.data.prepare.kuairand_rows import RowGroupWriter, block_rows, write_rows
from recrl_cli.data.prepare.kuairand_spec import (  # re-exported: the public face of the reader
    BEHAVIOURS,
    HINT,
    ITEM_FEATURE_CHOICES,
    KUAISIM_USER_FEATURES,
    LOG_COLUMNS,
    LOG_SCHEMA,
    REQUIRED,
    ROW_COLUMNS,
    SOURCE_NAME,
    SPLIT_CODE,
    STAGED,
    USER_COLUMNS,
    USER_FEATURE_CHOICES,
    USER_SCHEMA,
    VERSIONS,
    VIDEO_COLUMNS,
    VIDEO_SCHEMA,
    KuaiRandPrepareParams,
    Progress,
    raw_files,
)  # fmt: skip
from recrl_cli.data.prepare.rawfiles import check_csv_file
from recrl_cli.errors import DataError

__all__ = [
    "BEHAVIOURS", "HINT", "ITEM_FEATURE_CHOICES", "KUAISIM_USER_FEATURES", "LOG_COLUMNS", "LOG_SCHEMA", "REQUIRED",
    "ROW_COLUMNS", "SOURCE_NAME", "SPLIT_CODE", "STAGED", "USER_COLUMNS", "USER_FEATURE_CHOICES", "USER_SCHEMA",
    "VERSIONS", "VIDEO_COLUMNS", "VIDEO_SCHEMA", "KuaiRandPrepareParams", "Progress", "RowGroupWriter",
    "StagedLogs", "block_rows", "encode_items", "encode_users", "ncore_filter", "prepare_kuairand", "raw_files",
    "stage_logs", "write_rows",
]  # fmt: skip
OUTPUT = OutputKind("prepared kuairand data", lambda folder: mf.prepared_names(folder, "kuairand"))
MEMORY_PARAMETERS = ("chunk_rows", "memory_budget", "partitions")  # cut the work, never change the output


def _check_file(path: Path, columns: tuple[str, ...], hint: str) -> None:
    """Exists, non-empty, exact header, last line complete (``rawfiles.check_csv_file``)."""
    check_csv_file(path, columns, hint, source="KuaiRand")


def prepare_kuairand(
    raw_dir: Path, out_dir: Path, params: KuaiRandPrepareParams | None = None, progress: Progress = None,
    *, force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Write rows/users/items/train/val/test parquet + ``manifest.json`` atomically; return the manifest.

    ``out_dir`` is checked first (``atomic.check_output_dir``): only a previous KuaiRand preparation is
    replaced, any other non-empty folder only with ``force``, the raw folder or a folder holding it never."""
    params = params or KuaiRandPrepareParams()
    raw_dir, report = Path(raw_dir), progress or (lambda *_: None)
    check_output_dir(Path(out_dir), OUTPUT, inputs=(raw_dir,), force=force)
    files = raw_files(params.version)
    hint = HINT.format(name=SOURCE_NAME[params.version], raw=raw_dir, version=params.version)
    steps = 6
    report("validate raw files", 0, steps)
    for name in files["standard"]:
        _check_file(raw_dir / name, LOG_COLUMNS, hint)
    _check_file(raw_dir / files["users"], USER_COLUMNS, hint)
    _check_file(raw_dir / files["videos"], VIDEO_COLUMNS, hint)
    with atomic_output_dir(Path(out_dir), OUTPUT, inputs=(raw_dir,), force=force) as tmp:
        work = tmp / ".staging"
        work.mkdir()
        report("stage standard logs", 1, steps)
        logs = [raw_dir / n for n in files["standard"]]
        n_parts = params.partitions or auto_partitions(sum(p.stat().st_size for p in logs))
        id_range = user_id_range(raw_dir / files["users"])
        staged = stage_logs(logs, work, n_parts, id_range, progress=progress)
        n_raw = staged.rows
        report(f"{params.n_core}-core filter", 2, steps)
        users, items, passes, count_bytes = ncore_filter(staged.id_batches, params.n_core)
        if users.height == 0:
            raise DataError(f"no rows survive the {params.n_core}-core filter of {n_raw:,} standard rows; "
                            "lower n_core")  # fmt: skip
        plan = plan_blocks(params.memory_budget, params.chunk_rows, passes[0]["items"], items.height,
                           users["rows"].to_numpy(), count_bytes)  # fmt: skip
        report("rows, requests, sessions, holdout", 3, steps)
        rows_info, split_info, in_train = write_rows(
            staged, users, items, params, tmp, chunk_rows=plan.chunk_rows, progress=progress
        )
        if split_info["train"]["rows"] == 0:
            raise DataError(f"no user keeps a train row after holding out {params.val_per_user}+"
                            f"{params.test_per_user} rows each; lower the holdout or min_train_share")  # fmt: skip
        report("user and video features", 4, steps)
        user_table, user_feats, u_missing = encode_users(
            raw_dir / files["users"], users, in_train["user"], params
        )
        item_table, item_feats, i_missing = encode_items(
            raw_dir / files["videos"], items, in_train["item"], params
        )
        shutil.rmtree(work)
        report("write", 5, steps)
        user_table.write_parquet(tmp / "users.parquet", compression="zstd")
        item_table.write_parquet(tmp / "items.parquet", compression="zstd")
        tables = {"rows": rows_info,
                  "users": {"file": "users.parquet", "rows": user_table.height, "without_features": u_missing},
                  "items": {"file": "items.parquet", "rows": item_table.height, "without_features": i_missing}}  # fmt: skip
        for info in (*split_info.values(), *tables.values()):
            info["sha256"] = mf.file_sha256(tmp / info["file"])
        parameters = {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()
        }
        features = [{"name": "user", "table": "users", "kind": "id", "cardinality": users.height + 1},
                    {"name": "item", "table": "items", "kind": "id", "cardinality": items.height + 1},
                    *user_feats, *item_feats]  # fmt: skip
        manifest = {
            "schema_version": mf.SCHEMA_VERSION, "dataset": "kuairand", "version": params.version,
            "recrl_version": __version__, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parameters": parameters, "tasks": list(BEHAVIOURS), "features": features, "splits": split_info,
            "tables": tables,
            "history": {"table": "rows.parquet", "length": params.history_length,
                        "window": "rows[user_start + max(0, user_pos - length) : user_start + user_pos]"},
            "ncore": {"n": params.n_core, "passes": passes},
            "memory": {"budget_bytes": plan.budget_bytes, "chunk_rows": plan.chunk_rows, "blocks": plan.blocks,
                       "largest_block_rows": plan.largest_block_rows, "partitions": n_parts,
                       "estimated_peak_bytes": plan.estimated_peak_bytes},
            "raw": {"standard_rows": n_raw, "files": {n: {"bytes": (raw_dir / n).stat().st_size}
                                                      for n in (*files["standard"], files["users"], files["videos"])}},
            "fingerprint": _fingerprint(split_info, tables, parameters),
        }  # fmt: skip
        mf.write_manifest(tmp, manifest)
    report("done", steps, steps)
    return manifest


def _fingerprint(splits: dict[str, dict], tables: dict[str, dict], parameters: dict[str, Any]) -> str:
    """sha256 over the split files, the tables they index (splits hold row numbers only) and the
    parameters that shape the data (the memory settings only cut the work, so they are left out)."""
    shaping = {k: v for k, v in parameters.items() if k not in MEMORY_PARAMETERS}
    tables_sha = {k: v["sha256"] for k, v in tables.items()}
    return mf.fingerprint({k: v["sha256"] for k, v in splits.items()}, {"parameters": shaping, **tables_sha})
