"""``recrl prepare kuairand``: raw KuaiRand logs -> a user-sorted row table, index splits, feature tables.

Follows KuaiSim's notebook and reader (``../shared/research/hac_kuaisim.md`` §2), vectorised:

1. check every raw file (exists, non-empty, exact header, last line complete);
2. stage the standard logs as parquet (streaming ``scan_csv`` -> ``sink_parquet``, narrow dtypes,
   file and line kept for a stable tie-break); the random-exposure log is not read (KuaiSim does not);
3. iterated user/item n-core filter on the staged (user_id, video_id) columns until a pass removes
   nothing (the unique maximal n-core, the same rows as KuaiSim's in-place decrementing loop);
4. per block of users (<= ``chunk_rows`` rows), sorted by (user_id, time_ms, file, line): global row
   number, the user's first row and the row's position (a history window is the slice
   ``rows[user_start + max(0, user_pos - H) : user_start + user_pos]``: indices, never copies),
   requests (rows of a user sharing ``time_ms``), sessions (user-day or inactivity gap) and the
   per-user chronological holdout; written to ``rows.parquet`` and the split index files block by block;
5. user and item feature tables encoded with vocabularies fitted on the training users/videos only;
6. ``manifest.json``; everything inside an atomic output directory.

Materialised in memory: per-user and per-video row counts (27K: <= 27,285 users and 32 M videos), one
user block of rows, the kept videos' feature rows and the user feature table. Everything else streams.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recrl_cli import __version__
from recrl_cli.config.fields import param
from recrl_cli.data import manifest as mf
from recrl_cli.data.atomic import atomic_output_dir
from recrl_cli.data.prepare.encoding import encode_all, fit_vocab, fit_vocabs
from recrl_cli.errors import ConfigError, DataError

Progress = Callable[[str, int, int], None] | None

VERSIONS = ("pure", "1k", "27k")
# The 7 behaviours in KuaiSim's order (the label axis of every [.., 7] tensor).
BEHAVIOURS = ("is_click", "long_view", "is_like", "is_comment", "is_forward", "is_follow", "is_hate")
LOG_COLUMNS = ("user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
               "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
               "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab")  # fmt: skip
LOG_SCHEMA = dict.fromkeys(LOG_COLUMNS, pl.Int64)
_USER_TYPES = {"user_active_degree": pl.String, "follow_user_num_range": pl.String,
               "fans_user_num_range": pl.String, "friend_user_num_range": pl.String,
               "register_days_range": pl.String, "onehot_feat4": pl.Float64,
               **{f"onehot_feat{k}": pl.Float64 for k in range(12, 18)}}  # fmt: skip
USER_COLUMNS = ("user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
                "follow_user_num", "follow_user_num_range", "fans_user_num", "fans_user_num_range",
                "friend_user_num", "friend_user_num_range", "register_days", "register_days_range",
                *(f"onehot_feat{k}" for k in range(18)))  # fmt: skip
USER_SCHEMA = {c: _USER_TYPES.get(c, pl.Int64) for c in USER_COLUMNS}
VIDEO_SCHEMA = {"video_id": pl.Int64, "author_id": pl.Int64, "video_type": pl.String, "upload_dt": pl.String,
                "upload_type": pl.String, "visible_status": pl.Float64, "video_duration": pl.Float64,
                "server_width": pl.Float64, "server_height": pl.Float64, "music_id": pl.Int64,
                "music_type": pl.Float64, "tag": pl.String}  # fmt: skip
VIDEO_COLUMNS = tuple(VIDEO_SCHEMA)


def raw_files(version: str) -> dict[str, list[str] | str]:
    """File names of one KuaiRand version: ``standard`` (in KuaiSim's concatenation order), ``random``,
    ``users`` and ``videos``. 27K splits each standard period into ``_part1``/``_part2``."""
    v = version.lower()
    periods = ("4_08_to_4_21", "4_22_to_5_08")
    parts = ("_part1", "_part2") if v == "27k" else ("",)
    return {
        "standard": [f"log_standard_{p}_{v}{part}.csv" for p in periods for part in parts],
        "random": f"log_random_4_22_to_5_08_{v}.csv",
        "users": f"user_features_{v}.csv",
        "videos": f"video_features_basic_{v}.csv",
    }


SOURCE_NAME = {"pure": "KuaiRand-Pure", "1k": "KuaiRand-1K", "27k": "KuaiRand-27K"}
HINT = ("download {name} from Zenodo record 10439422 (https://zenodo.org/records/10439422) into {raw} "
        "or run `recrl synth kuairand --version {version}`")  # fmt: skip
# KuaiSim's reader uses these user columns (hac_kuaisim.md §2.1) and these video columns (+ tag).
KUAISIM_USER_FEATURES = ("user_active_degree", "is_live_streamer", "is_video_author", "follow_user_num_range",
                         "fans_user_num_range", "friend_user_num_range", "register_days_range", "onehot_feat0",
                         "onehot_feat1", "onehot_feat6", "onehot_feat9", "onehot_feat10", "onehot_feat11")  # fmt: skip
ITEM_FEATURE_CHOICES = ("video_type", "upload_type", "music_type", "upload_dt", "visible_status", "author_id")
USER_FEATURE_CHOICES = tuple(c for c in USER_COLUMNS if c != "user_id")
STAGED = ("user_id", "video_id", "date", "time_ms", *BEHAVIOURS, "play_time_ms", "duration_ms", "tab")
REQUIRED = ("user_id", "video_id", "date", "time_ms", *BEHAVIOURS)  # play time, duration, tab may be blank
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}  # -1: user left out of every split (too few rows)
ROW_COLUMNS = ("user", "item", "user_id", "video_id", "time_ms", "date", "request_id", "session_id",
               "user_start", "user_pos", "request_pos", "split", *BEHAVIOURS, "play_time_ms", "duration_ms",
               "tab")  # fmt: skip


@dataclass(frozen=True)
class KuaiRandPrepareParams:
    """How raw KuaiRand logs become the row table, splits and feature tables (defaults: KuaiSim's)."""

    version: str = param("pure", help="KuaiRand version whose files to read.", choices=VERSIONS)
    n_core: int = param(
        20, help="Keep rows whose user and video each have >= n_core rows, iterated (1 = off)."
    )
    session_key: str = param(
        "day", help="day: a session per user and calendar day (UTC+8 `date`, KuaiSim); gap: inactivity gap.",
        choices=("day", "gap"),
    )  # fmt: skip
    session_gap_minutes: int = param(30, help="With session_key=gap: idle strictly longer starts a session.")
    history_length: int = param(100, help="At most this many previous rows of the user form a history.")
    val_per_user: int = param(5, help="Each user's rows before the test rows that go to validation.")
    test_per_user: int = param(5, help="Each user's last rows that go to test.")
    min_train_share: float = param(
        0.6, help="Users whose train rows are below this share of their rows join no split (KuaiSim: n < 25)."
    )
    min_count: int = param(5, help="Feature values of fewer train users/videos share the rare id 1.")
    user_features: tuple[str, ...] = param(KUAISIM_USER_FEATURES, help="User columns to encode.")
    item_features: tuple[str, ...] = param(("video_type", "upload_type", "music_type"),
                                           help="Video columns to encode (tags are always encoded).")  # fmt: skip
    chunk_rows: int = param(10_000_000, help="Rows per user block of the out-of-core pass (bounds memory).")

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ConfigError(f"version must be one of {', '.join(VERSIONS)}, got {self.version!r}")
        if self.session_key not in ("day", "gap"):
            raise ConfigError(f"session_key must be 'day' or 'gap', got {self.session_key!r}")
        for name in ("n_core", "session_gap_minutes", "history_length", "min_count", "chunk_rows"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("val_per_user", "test_per_user"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if not 0 <= self.min_train_share <= 1:
            raise ConfigError(f"min_train_share must lie in [0, 1], got {self.min_train_share!r}")
        for name, allowed in (
            ("user_features", USER_FEATURE_CHOICES),
            ("item_features", ITEM_FEATURE_CHOICES),
        ):
            bad = [c for c in getattr(self, name) if c not in allowed]
            if bad or len(set(getattr(self, name))) != len(getattr(self, name)):
                raise ConfigError(
                    f"{name} must be distinct names from {', '.join(allowed)}; got {bad or 'repeats'}"
                )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def prepare_kuairand(
    raw_dir: Path, out_dir: Path, params: KuaiRandPrepareParams | None = None, progress: Progress = None
) -> dict[str, Any]:
    """Write rows/users/items/train/val/test parquet + ``manifest.json`` atomically; return the manifest."""
    params = params or KuaiRandPrepareParams()
    raw_dir, report = Path(raw_dir), progress or (lambda *_: None)
    files = raw_files(params.version)
    hint = HINT.format(name=SOURCE_NAME[params.version], raw=raw_dir, version=params.version)
    steps = 6
    report("validate raw files", 0, steps)
    for name in files["standard"]:
        _check_file(raw_dir / name, LOG_COLUMNS, hint)
    _check_file(raw_dir / files["users"], USER_COLUMNS, hint)
    _check_file(raw_dir / files["videos"], VIDEO_COLUMNS, hint)
    with atomic_output_dir(Path(out_dir)) as tmp:
        work = tmp / ".staging"
        work.mkdir()
        report("stage standard logs", 1, steps)
        staged, n_raw = stage_logs([raw_dir / n for n in files["standard"]], work)
        report(f"{params.n_core}-core filter", 2, steps)
        users, items, passes = ncore_filter(staged.select("user_id", "video_id"), params.n_core)
        if users.height == 0:
            raise DataError(f"no rows survive the {params.n_core}-core filter of {n_raw:,} standard rows; "
                            "lower n_core")  # fmt: skip
        report("rows, requests, sessions, holdout", 3, steps)
        rows_info, split_info, in_train = write_rows(staged, users, items, params, tmp)
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
            "raw": {"standard_rows": n_raw, "files": {n: {"bytes": (raw_dir / n).stat().st_size}
                                                      for n in (*files["standard"], files["users"], files["videos"])}},
            "fingerprint": _fingerprint(split_info, tables, parameters),
        }  # fmt: skip
        mf.write_manifest(tmp, manifest)
    report("done", steps, steps)
    return manifest


def _fingerprint(splits: dict[str, dict], tables: dict[str, dict], parameters: dict[str, Any]) -> str:
    """sha256 over the split files, the tables they index (splits hold row numbers only) and the
    parameters that shape the data (``chunk_rows`` only bounds memory, so it is left out)."""
    shaping = {k: v for k, v in parameters.items() if k != "chunk_rows"}
    tables_sha = {k: v["sha256"] for k, v in tables.items()}
    return mf.fingerprint({k: v["sha256"] for k, v in splits.items()}, {"parameters": shaping, **tables_sha})


# ---- raw files ------------------------------------------------------------------------------------


def _check_file(path: Path, columns: tuple[str, ...], hint: str) -> None:
    """Exists, non-empty, exact header, and a last line that is not cut short; else DataError."""
    if not path.is_file():
        raise DataError(f"missing {path}: {hint}")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path} is empty: {hint}")
    try:
        with open(path, "rb") as fh:
            header = fh.readline().decode("utf-8-sig", "replace").strip()  # a BOM or CRLF is fine
            fh.seek(max(0, size - 65_536))
            tail = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    if header != ",".join(columns):
        raise DataError(f"{path} has header {header[:80]!r}..., expected the {len(columns)} KuaiRand columns "
                        f"{','.join(columns)[:80]!r}...")  # fmt: skip
    # polars fills missing trailing fields with null, so a download cut mid-line must be caught here
    # (a last line without its newline and with too few fields; quoted fields may hold commas).
    last = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    if not tail.endswith(b"\n") and len(next(csv.reader([last]), [])) < len(columns):
        raise DataError(f"{path} ends with a truncated line {last[:60]!r}")


def _run(action: Callable[[], Any], path: Path) -> Any:
    """Run a polars read of ``path``; a parse failure becomes a one-line DataError naming the file."""
    try:
        return action()
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} could not be parsed: {reason}") from exc


def stage_logs(paths: list[Path], work: Path) -> tuple[pl.LazyFrame, int]:
    """Stream each standard log to ``work/log_<k>.parquet`` (narrow dtypes, ``file`` = k, ``line`` = data
    row); check for missing or non-binary fields and for no rows at all; return a scan over all and the
    row count."""
    staged = []
    for k, path in enumerate(paths):
        target = work / f"log_{k}.parquet"
        lf = pl.scan_csv(path, schema=LOG_SCHEMA, row_index_name="line").select(
            pl.col("user_id", "video_id", "time_ms", "play_time_ms", "duration_ms"),
            pl.col("date").cast(pl.Int32, strict=False),
            # Labels outside 0/1 become null (non-strict cast or the when) and are reported below.
            *(pl.when(pl.col(b).is_in([0, 1])).then(pl.col(b)).cast(pl.Int8) for b in BEHAVIOURS),
            pl.col("tab").cast(pl.Int8, strict=False),
            pl.lit(k, pl.Int8).alias("file"), pl.col("line").cast(pl.Int64),
        )  # fmt: skip
        _run(lambda lf=lf, target=target: lf.sink_parquet(target, compression="zstd"), path)
        bad = pl.scan_parquet(target).filter(pl.any_horizontal(pl.col(REQUIRED).is_null()))
        first = bad.select(pl.len(), pl.col("line").first()).collect()
        if first["len"][0]:
            raise DataError(f"{path} has {first['len'][0]:,} rows with missing fields or labels other than 0/1 "
                            f"(first at data row {first['line'][0] + 1})")  # fmt: skip
        staged.append(target)
    n = sum(pq.ParquetFile(p).metadata.num_rows for p in staged)
    if n == 0:  # one header-only file is tolerated (a tiny period); all of them is not data
        raise DataError(f"the standard logs {', '.join(p.name for p in paths)} have a header but no rows")
    return pl.scan_parquet(staged).select(*STAGED, "file", "line"), n


# ---- n-core ----------------------------------------------------------------------------------------


def ncore_filter(log: pl.LazyFrame, n: int) -> tuple[pl.DataFrame, pl.DataFrame, list[dict[str, int]]]:
    """Iterated n-core over (user_id, video_id) rows: drop every row whose user or video has fewer than
    ``n`` rows among the kept rows, recount, repeat until a pass drops nothing.

    Returns users [U: user_id, rows] and videos [I: video_id, rows] of the core, sorted by id, and one
    {rows, users, items} entry per pass (the first = before filtering, the last = the core). Memory:
    the two count tables, never the rows (each pass streams the scan).
    """
    keep_u = keep_i = None
    passes = []
    while True:
        lf = log
        if keep_u is not None:
            lf = lf.filter(
                pl.col("user_id").is_in(keep_u.implode()) & pl.col("video_id").is_in(keep_i.implode())
            )
        users, items = pl.collect_all([lf.group_by("user_id").agg(rows=pl.len().cast(pl.Int64)),
                                       lf.group_by("video_id").agg(rows=pl.len().cast(pl.Int64))], engine="streaming")  # fmt: skip
        passes.append({"rows": int(users["rows"].sum()), "users": users.height, "items": items.height})
        ok_u, ok_i = users.filter(pl.col("rows") >= n), items.filter(pl.col("rows") >= n)
        if ok_u.height == users.height and ok_i.height == items.height:
            return users.sort("user_id"), items.sort("video_id"), passes
        keep_u, keep_i = ok_u["user_id"], ok_i["video_id"]


# ---- row table -------------------------------------------------------------------------------------


def write_rows(
    staged: pl.LazyFrame, users: pl.DataFrame, items: pl.DataFrame, params: KuaiRandPrepareParams, out: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Write ``rows.parquet`` (N rows sorted by user, time, file, line) and ``<split>.parquet`` (the
    ``row`` indices of each split) block by block; return their summaries and the masks [U+1], [I+1]
    of encoded users/videos that have a train row (the population the encoders are fitted on)."""
    users = users.with_columns(user=pl.int_range(1, pl.len() + 1, dtype=pl.Int32),
                               user_start=pl.col("rows").cum_sum() - pl.col("rows"))  # fmt: skip
    items = items.select("video_id", item=pl.int_range(1, pl.len() + 1, dtype=pl.Int32))
    block = users["user_start"] // params.chunk_rows
    acc = _RowStats(users.height, items.height)
    writers = {name: _RowGroupWriter(out / f"{name}.parquet") for name in ("rows", *SPLIT_CODE)}
    try:
        for b in block.unique(maintain_order=True):
            part = users.filter(block == b)
            frame = _block_rows(staged, part, items, params, acc.requests, acc.sessions)
            writers["rows"].write(frame)
            for name, code in SPLIT_CODE.items():
                index = pl.col("user_start") + pl.col("user_pos")
                writers[name].write(frame.filter(pl.col("split") == code).select(row=index))
            acc.add(frame)
    finally:
        for writer in writers.values():
            writer.close()
    return acc.summaries()


class _RowGroupWriter:
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
            self.writer.write_table(table.slice(start, self.group_rows), row_group_size=self.group_rows)
            start += self.group_rows
        self.pending = [table.slice(start)]

    def close(self) -> None:
        if self.writer is not None:
            self._flush(final=True)
            self.writer.close()


def _block_rows(
    staged: pl.LazyFrame, part: pl.DataFrame, items: pl.DataFrame, params: KuaiRandPrepareParams,
    request0: int, session0: int,
) -> pl.DataFrame:  # fmt: skip
    """All core rows of the users in ``part`` with their indices, requests, sessions and split."""
    lo, hi = part["user_id"].min(), part["user_id"].max()
    frame = (
        staged.filter(pl.col("user_id").is_between(lo, hi))
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


class _RowStats:
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


# ---- feature tables --------------------------------------------------------------------------------


def encode_users(
    path: Path, users: pl.DataFrame, in_train: np.ndarray, params: KuaiRandPrepareParams
) -> tuple[pl.DataFrame, list[dict[str, Any]], int]:
    """users.parquet: one row per core user (``user`` 1..U, raw ``user_id``, Int32 feature ids), with
    vocabularies fitted on the users that have a train row (each user counted once)."""
    raw = _run(lambda: pl.scan_csv(path, schema=USER_SCHEMA).collect(engine="streaming"), path)
    raw = raw.unique("user_id", keep="first", maintain_order=True).select("user_id", *params.user_features)
    table = users.select(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("user"), "user_id").join(
        raw, on="user_id", how="left", maintain_order="left"
    )
    missing = users.height - users.join(raw, on="user_id", how="semi").height
    vocabs = fit_vocabs(table.filter(pl.Series(in_train[1:])), params.user_features, params.min_count)
    features = [{"name": c, "table": "users", "kind": "categorical", "cardinality": v.cardinality}
                for c, v in vocabs.items()]  # fmt: skip
    return encode_all(table, vocabs), features, missing


def encode_items(
    path: Path, items: pl.DataFrame, in_train: np.ndarray, params: KuaiRandPrepareParams
) -> tuple[pl.DataFrame, list[dict[str, Any]], int]:
    """items.parquet: one row per core video (``item`` 1..I, raw ``video_id``, Int32 feature ids and
    ``tags`` List[Int32]); vocabularies fitted on the videos that have a train row. Only the core
    videos' rows are read (the filter streams through 27K's 32 M-row file)."""
    wanted = items["video_id"].implode()
    lf = pl.scan_csv(path, schema=VIDEO_SCHEMA).filter(pl.col("video_id").is_in(wanted))
    raw = _run(lambda: lf.collect(engine="streaming"), path)
    raw = raw.unique("video_id", keep="first", maintain_order=True).select(
        "video_id", *params.item_features,
        tags=pl.col("tag").str.split(",").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )  # fmt: skip
    table = items.select(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("item"), "video_id").join(
        raw, on="video_id", how="left", maintain_order="left"
    )
    table = table.with_columns(pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    train = table.filter(pl.Series(in_train[1:]))
    vocabs = fit_vocabs(train, params.item_features, params.min_count)
    # A tag's count = the train videos carrying it; a video's list keeps its tags' ids (0 = unseen).
    tag = fit_vocab(
        train.select(pl.col("tags").list.unique().explode().alias("tags")), "tags", params.min_count
    )
    encoded = encode_all(table, vocabs).with_columns(
        pl.col("tags").list.eval(
            pl.element().replace_strict(tag.table["value"], tag.table["id"], default=0, return_dtype=pl.Int32)
        )
    )
    features = [{"name": c, "table": "items", "kind": "categorical", "cardinality": v.cardinality}
                for c, v in vocabs.items()]  # fmt: skip
    max_tags = int(encoded["tags"].list.len().max() or 0)
    features.append({"name": "tags", "table": "items", "kind": "multi", "cardinality": tag.cardinality,
                     "max_len": max_tags})  # fmt: skip
    return encoded, features, items.height - items.join(raw, on="video_id", how="semi").height
