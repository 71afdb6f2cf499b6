"""``recrl prepare retailrocket``: raw Kaggle CSVs -> item-session parquet splits + manifest.

One output row = one item in one session (N rows): ``click`` = any add-to-cart, ``pay`` = any
transaction, ``position`` = 0-based rank of the item's first event in the session, and item
features taken from the property change log AS OF the row's timestamp (value at or before it;
none yet = missing). Sessions are split 6:2:2 by start time, whole, and categorical features are
frequency-rank encoded on the train split only (see ``encoding.py``). Polars lazy scans push the
property filter into the 20 M-row log so only the six needed properties are materialised.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recrl_cli import __version__
from recrl_cli.config.fields import param
from recrl_cli.data import manifest as mf
from recrl_cli.data.atomic import OutputKind, atomic_output_dir, check_output_dir
from recrl_cli.data.prepare.encoding import encode_all, fit_vocabs
from recrl_cli.data.prepare.rawfiles import check_csv_file
from recrl_cli.data.prepare.rawfiles import collect as _collect
from recrl_cli.errors import ConfigError, DataError

Progress = Callable[[str, int, int], None] | None
EVENTS, TREE = "events.csv", "category_tree.csv"
PROPS = ("item_properties_part1.csv", "item_properties_part2.csv")
EVENTS_SCHEMA = {"timestamp": pl.Int64, "visitorid": pl.Int64, "event": pl.String, "itemid": pl.Int64,
                 "transactionid": pl.Int64}  # fmt: skip
PROPS_SCHEMA = {"timestamp": pl.Int64, "itemid": pl.Int64, "property": pl.String, "value": pl.String}
TREE_SCHEMA = {"categoryid": pl.Int64, "parentid": pl.Int64}
EVENT_ORDER = {"view": 0, "addtocart": 1, "transaction": 2}  # same-ms tie-break: view < cart < buy
# Output feature column <- raw property key (item and position_bucket are derived, not looked up).
PROPERTY_OF = {"category": "categoryid", "available": "available", "price": "790",
               "prop_888": "888", "prop_364": "364", "prop_776": "776"}  # fmt: skip
FEATURES = ("item", "category", "parent_category", "available", "price_bucket",
            "prop_888", "prop_364", "prop_776", "position_bucket")  # fmt: skip
TASKS = ("click", "pay")
OUTPUT = OutputKind("prepared retailrocket data", lambda folder: mf.prepared_names(folder, "retailrocket"))
HINT = (
    "download RetailRocket from Kaggle (retailrocket/ecommerce-dataset) into {} "
    "or run `recrl synth retailrocket`"
)


@dataclass(frozen=True)
class RetailRocketPrepareParams:
    """How raw RetailRocket events become item-session samples."""

    session_gap_minutes: int = param(30, help="New session when a visitor is idle strictly longer than this.")
    session_key: str = param(
        "gap", help="gap: inactivity sessions; visitor: one session per visitor (RMTL code).",
        choices=("gap", "visitor"),
    )  # fmt: skip
    split: tuple[float, float, float] = param(
        (0.6, 0.2, 0.2), help="Train/val/test shares of sessions by start."
    )
    min_count: int = param(5, help="Values seen fewer times in train share the rare id 1.")
    price_buckets: int = param(20, help="Log-price quantile buckets, fitted on train.")
    min_session_items: int = param(1, help="Drop sessions with fewer distinct items.")
    history_length: int = param(10, help="Each row links to this many earlier rows of its visitor (history).")

    def __post_init__(self) -> None:
        if self.session_key not in ("gap", "visitor"):
            raise ConfigError(f"session_key must be 'gap' or 'visitor', got {self.session_key!r}")
        for name in (
            "session_gap_minutes",
            "min_count",
            "price_buckets",
            "min_session_items",
            "history_length",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        split = tuple(self.split)
        if len(split) != 3 or any(not 0 < s < 1 for s in split) or not math.isclose(sum(split), 1.0):
            raise ConfigError(f"split must be three shares in (0, 1) that sum to 1, got {self.split!r}")


def prepare_retailrocket(
    raw_dir: Path, out_dir: Path, params: RetailRocketPrepareParams | None = None, progress: Progress = None,
    *, force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Write ``train/val/test.parquet`` + ``manifest.json`` to ``out_dir`` atomically; return the manifest.

    ``out_dir`` is checked first (``atomic.check_output_dir``): only a previous RetailRocket preparation
    is replaced, any other non-empty folder only with ``force``, the raw folder or a folder holding it never."""
    params = params or RetailRocketPrepareParams()
    raw_dir, report = Path(raw_dir), progress or (lambda *_: None)
    check_output_dir(Path(out_dir), OUTPUT, inputs=(raw_dir,), force=force)
    steps = 6
    report("validate raw files", 0, steps)
    for name, schema in ((EVENTS, EVENTS_SCHEMA), *((p, PROPS_SCHEMA) for p in PROPS)):
        _check_file(raw_dir, name, list(schema))
    has_tree = (raw_dir / TREE).exists() and _check_file(raw_dir, TREE, list(TREE_SCHEMA))
    report("read events", 1, steps)
    events, n_raw = read_events(raw_dir / EVENTS)
    report("sessions", 2, steps)
    rows = item_sessions(events, params)
    report("item properties (as-of)", 3, steps)
    props = pl.concat([read_properties(raw_dir / p) for p in PROPS])
    tree = _collect(pl.scan_csv(raw_dir / TREE, schema=TREE_SCHEMA), raw_dir / TREE) if has_tree else None
    rows = add_item_features(rows, props, tree)
    del props
    report("split and encode", 4, steps)
    splits, features = encode_splits(split_sessions(rows, params), params)
    report("write parquet", 5, steps)
    with atomic_output_dir(Path(out_dir), OUTPUT, inputs=(raw_dir,), force=force) as tmp:
        summary = {}
        for name, frame in splits.items():
            frame.write_parquet(tmp / f"{name}.parquet", compression="zstd")
            summary[name] = _split_summary(frame, f"{name}.parquet", mf.file_sha256(tmp / f"{name}.parquet"))
        parameters = {**dataclasses.asdict(params), "split": list(params.split)}
        present = [raw_dir / n for n in (EVENTS, *PROPS, TREE) if (raw_dir / n).exists()]
        manifest = {
            "schema_version": mf.SCHEMA_VERSION, "dataset": "retailrocket", "recrl_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "parameters": parameters,
            "tasks": list(TASKS), "features": features, "splits": summary,
            "raw": {"events_rows": n_raw, "events_after_dedup": events.height,
                    "duplicates_removed": n_raw - events.height,
                    "files": {p.name: {"bytes": p.stat().st_size} for p in present}},
            "history": {"column": "hist_prev", "length": params.history_length, "order": ["train", "val", "test"],
                        "item_field": "item", "label_times": [f"{t}_ts" for t in TASKS]},
            "fingerprint": mf.fingerprint({k: v["sha256"] for k, v in summary.items()}, parameters),
        }  # fmt: skip
        mf.write_manifest(tmp, manifest)
    report("done", steps, steps)
    return manifest


def _check_file(raw_dir: Path, name: str, columns: list[str]) -> bool:
    """Exists, non-empty, exact header, last line complete (see ``rawfiles.check_csv_file``)."""
    check_csv_file(raw_dir / name, columns, HINT.format(raw_dir))
    return True


def read_events(path: Path) -> tuple[pl.DataFrame, int]:
    """Events with an ``order`` code and row index, exact duplicates removed; and the raw row count."""
    raw = _collect(pl.scan_csv(path, schema=EVENTS_SCHEMA).with_row_index("row"), path)
    if raw.height == 0:
        raise DataError(f"{path} has a header but no events")
    bad = raw.filter(pl.any_horizontal(pl.col("timestamp", "visitorid", "event", "itemid").is_null()))
    if bad.height:
        raise DataError(
            f"{path} has {bad.height} rows with missing fields (first at data row {bad['row'][0] + 1})"
        )
    for column in ("timestamp", "visitorid", "itemid", "transactionid"):  # ids and times are never negative
        negative = raw.filter(pl.col(column) < 0)
        if negative.height:
            raise DataError(f"{path} has {negative.height} rows with a negative {column} "
                            f"(first at data row {negative['row'][0] + 1})")  # fmt: skip
    unknown = raw.filter(~pl.col("event").is_in(list(EVENT_ORDER)))
    if unknown.height:
        raise DataError(
            f"{path} has unknown event {unknown['event'][0]!r} at data row {unknown['row'][0] + 1}"
        )
    # Exact duplicates share (timestamp, visitorid, event, itemid); keep a transactionid if any copy has one.
    events = (
        raw.lazy()
        .group_by("timestamp", "visitorid", "event", "itemid")
        .agg(pl.col("transactionid").max(), pl.col("row").min())
        .with_columns(order=pl.col("event").replace_strict(EVENT_ORDER, return_dtype=pl.Int8))
        .sort("visitorid", "timestamp", "order", "row")
        .collect(engine="streaming")
    )
    return events, raw.height


def item_sessions(events: pl.DataFrame, params: RetailRocketPrepareParams) -> pl.DataFrame:
    """(N,) item-session rows from events sorted by (visitorid, timestamp, order, row)."""
    new_visitor = pl.col("visitorid") != pl.col("visitorid").shift(1)
    if params.session_key == "gap":
        # Strictly greater: a gap of exactly session_gap_minutes stays in the same session.
        new_visitor = new_visitor | (pl.col("timestamp").diff() > params.session_gap_minutes * 60_000)
    rows = (
        events.lazy()
        .with_columns(sess=new_visitor.fill_null(True).cum_sum(), seq=pl.int_range(pl.len()))
        .group_by("sess", "itemid")
        .agg(
            pl.col("visitorid").first(),
            pl.col("timestamp").min(),
            pl.col("seq").min(),
            click=(pl.col("order") == 1).any(),
            pay=(pl.col("order") == 2).any(),
            # When each label became known (first cart / buy): a later row's history may show it only after.
            click_ts=pl.col("timestamp").filter(pl.col("order") == 1).min(),
            pay_ts=pl.col("timestamp").filter(pl.col("order") == 2).min(),
        )
        .with_columns(n_items=pl.len().over("sess"), start=pl.col("timestamp").min().over("sess"))
        .filter(pl.col("n_items") >= params.min_session_items)
        .sort("start", "visitorid", "sess", "seq")  # sessions by start; items by first event
        .with_columns(
            session_id=(pl.col("sess") != pl.col("sess").shift(1)).fill_null(True).cum_sum().cast(pl.Int64)
            - 1,
            position=(pl.col("seq").rank("ordinal").over("sess") - 1).cast(pl.Int32),
        )
        .select(
            "session_id",
            "visitorid",
            "itemid",
            "timestamp",
            "position",
            pl.col("click").cast(pl.Int8),
            pl.col("pay").cast(pl.Int8),
            pl.col("click_ts").fill_null(-1),
            pl.col("pay_ts").fill_null(-1),
        )
        .collect(engine="streaming")
    )
    if rows.height == 0:
        raise DataError(f"no session has at least {params.min_session_items} items; lower min_session_items")
    return rows


def read_properties(path: Path) -> pl.DataFrame:
    """Rows of the needed properties only (the filter is pushed into the CSV scan)."""
    lf = pl.scan_csv(path, schema=PROPS_SCHEMA).filter(pl.col("property").is_in(list(PROPERTY_OF.values())))
    props = _collect(lf, path)
    if props.select(pl.any_horizontal(pl.col("timestamp", "itemid").is_null()).any()).item():
        raise DataError(f"{path} has rows with a missing timestamp or itemid")
    return props.drop_nulls("value")


def add_item_features(rows: pl.DataFrame, props: pl.DataFrame, tree: pl.DataFrame | None) -> pl.DataFrame:
    """Add raw feature columns: each property's latest value at or before the row's timestamp."""
    out = rows.sort("timestamp", "session_id", "position")
    for column, key in PROPERTY_OF.items():
        log = (
            props.lazy()
            .filter(pl.col("property") == key)
            .select("itemid", "timestamp", pl.col("value").alias(column))
            # Two values at one (item, timestamp): keep the largest, never an accident of file order.
            .sort("itemid", "timestamp", column)
            .unique(["itemid", "timestamp"], keep="last", maintain_order=True)
            .sort("timestamp")
            .collect()
        )
        out = out.join_asof(log, on="timestamp", by="itemid", strategy="backward", check_sortedness=False)
    value = pl.col("price").str.extract(r"^n?(-?[0-9.]+)", 1).cast(pl.Float64, strict=False)
    out = out.with_columns(
        item=pl.col("itemid"),
        category=pl.col("category").cast(pl.Int64, strict=False),
        price=pl.when(value >= 0).then(value.log1p()),
        position_bucket=pl.col("position").clip(upper_bound=9),
        **{c: pl.col(c).str.split(" ").list.first() for c in ("prop_888", "prop_364", "prop_776")},
    )
    if tree is None:
        parent = pl.lit(None, dtype=pl.Int64)
    else:
        tree = tree.drop_nulls("categoryid").unique("categoryid", keep="first", maintain_order=True)
        parent = pl.col("category").replace_strict(tree["categoryid"], tree["parentid"], default=None)
    return out.with_columns(parent_category=parent).sort("session_id", "position")


def split_sessions(rows: pl.DataFrame, params: RetailRocketPrepareParams) -> dict[str, pl.DataFrame]:
    """Chronological split of whole sessions: the first 60 % of session ids (by start) train, etc."""
    n_sessions = int(rows["session_id"].max()) + 1
    cut = np.round(np.cumsum(params.split) * n_sessions).astype(int)
    bounds = {"train": (0, cut[0]), "val": (cut[0], cut[1]), "test": (cut[1], n_sessions)}
    if any(hi <= lo for lo, hi in bounds.values()):
        raise DataError(f"only {n_sessions} sessions: too few for a {params.split} train/val/test split")
    return {
        name: rows.filter(pl.col("session_id").is_between(lo, hi - 1)) for name, (lo, hi) in bounds.items()
    }


def encode_splits(
    splits: dict[str, pl.DataFrame], params: RetailRocketPrepareParams
) -> tuple[dict[str, pl.DataFrame], list[dict[str, Any]]]:
    """Price buckets (log-price quantiles of train) then frequency-rank ids fitted on train."""
    train_price = splits["train"]["price"].drop_nulls().to_numpy()
    qs = np.arange(1, params.price_buckets) / params.price_buckets
    edges = np.unique(np.quantile(train_price, qs)) if train_price.size else np.zeros(0)

    def bucket(frame: pl.DataFrame) -> pl.DataFrame:
        price = frame["price"].to_numpy(allow_copy=True).astype(np.float64)  # null -> NaN
        ids = pl.Series(np.searchsorted(edges, np.nan_to_num(price), side="right").astype(np.int32))
        return frame.with_columns(price_bucket=pl.when(pl.col("price").is_not_null()).then(ids))

    splits = {name: bucket(frame) for name, frame in splits.items()}
    vocabs = fit_vocabs(splits["train"], FEATURES, params.min_count)
    label_times = [f"{t}_ts" for t in TASKS]
    columns = ["session_id", "visitorid", "itemid", "timestamp", "position", *FEATURES, *TASKS, *label_times]
    encoded = {name: encode_all(frame, vocabs).select(columns) for name, frame in splits.items()}
    encoded = add_history_links(encoded, params.history_length)
    return encoded, [{"name": name, "cardinality": vocabs[name].cardinality} for name in FEATURES]


def add_history_links(splits: dict[str, pl.DataFrame], length: int) -> dict[str, pl.DataFrame]:
    """Add ``hist_prev`` (Array[Int64, length]) to every split: the row-table indices of the visitor's ``length``
    most recent earlier rows, left-padded with -1, the most recent last.

    The row table is the concatenation train, val, test (the manifest's ``history.order``), so an index is the
    row's position in its split plus the rows of the splits before it. "Earlier" is the order (session start,
    session, position): sessions are split whole and by start, so a row's history lies in its own split or an
    earlier one, never in a later one. Labels are not copied: the loader reads them through the index and shows
    one only if it happened before the row (``<task>_ts``), so nothing from the future leaks in.
    """
    offsets, table = 0, []
    for name in ("train", "val", "test"):
        table.append(splits[name].select("visitorid", "session_id", "position").with_columns(
            row=pl.int_range(pl.len(), dtype=pl.Int64) + offsets))  # fmt: skip
        offsets += splits[name].height
    rows = pl.concat(table).sort("visitorid", "session_id", "position")
    lags = [
        pl.when(pl.col("visitorid").shift(k) == pl.col("visitorid"))
        .then(pl.col("row").shift(k))
        .otherwise(-1)
        for k in range(length, 0, -1)
    ]
    links = rows.select("row", hist_prev=pl.concat_list(lags).list.to_array(length)).sort("row")
    out, start = {}, 0
    for name in ("train", "val", "test"):
        n = splits[name].height
        out[name] = splits[name].with_columns(links["hist_prev"].slice(start, n))
        start += n
    return out


def _split_summary(frame: pl.DataFrame, file: str, sha256: str) -> dict[str, Any]:
    """Counts and label rates of one split for the manifest."""
    return {
        "file": file, "rows": frame.height, "sessions": frame["session_id"].n_unique(),
        "users": frame["visitorid"].n_unique(),
        "positive_rate": {t: float(frame[t].mean()) if frame.height else 0.0 for t in TASKS},
        "sha256": sha256,
    }  # fmt: skip
