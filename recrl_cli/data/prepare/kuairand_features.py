"""KuaiRand user and video feature tables, encoded with vocabularies fitted on train rows only.

users.parquet: one row per core user (``user`` 1..U, raw ``user_id``, Int32 ids); items.parquet: one
row per core video (``item`` 1..I, raw ``video_id``, Int32 ids, ``tags`` List[Int32]). Ids follow
``encoding.py``: 0 unknown or missing, 1 rare, 2.. frequent train values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recrl_cli.data.prepare.encoding import encode_all, fit_vocab, fit_vocabs
from recrl_cli.data.prepare.kuairand_spec import USER_SCHEMA, VIDEO_SCHEMA, KuaiRandPrepareParams
from recrl_cli.data.prepare.rawfiles import polars_read


def encode_users(
    path: Path, users: pl.DataFrame, in_train: np.ndarray, params: KuaiRandPrepareParams
) -> tuple[pl.DataFrame, list[dict[str, Any]], int]:
    """users.parquet: one row per core user (``user`` 1..U, raw ``user_id``, Int32 feature ids), with
    vocabularies fitted on the users that have a train row (each user counted once)."""
    raw = polars_read(lambda: pl.scan_csv(path, schema=USER_SCHEMA).collect(engine="streaming"), path)
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
    raw = polars_read(lambda: lf.collect(engine="streaming"), path)
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
