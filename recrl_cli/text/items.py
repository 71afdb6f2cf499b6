"""Item text tables: one text per encoded item id, stored as ``item_text.parquet`` in a prepared directory.

``item_text.parquet`` has the columns ``item`` (Int64, the encoded id of the ``item`` feature) and ``text``
(String). Ids without a row get the empty text. It is built after ``recrl prepare`` by ``recrl text items``
from one of three sources:

- a caption file: KuaiRand's public ``kuairand_video_captions.csv`` (``final_video_id``, ``caption``, other
  columns ignored), optionally with ``kuairand_video_categories.csv`` (its ``*_level_category_name`` columns are
  appended); or a synthetic generator's ``item_text.csv`` (``itemid``, ``text``) for RetailRocket;
- RetailRocket's hashed property values (``--properties RAW_DIR``): each item's latest value of a few
  properties, every hashed token made one word ``p<property>x<token>`` so a WordPiece vocabulary built from
  these texts (:mod:`recrl_cli.text.vocab`) keeps each token whole.

RetailRocket's encoded ids 0 (unknown) and 1 (rare) stand for many raw items: they get the empty text.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recrl_cli.data.manifest import read_manifest
from recrl_cli.errors import DataError

ITEM_TEXT = "item_text.parquet"
TOKEN_PROPERTIES = ("categoryid", "888", "364", "776", "283", "917", "6", "159")
FIRST_FREQUENT_ID = 2  # RetailRocket: ids 0/1 are the unknown/rare buckets (prepare/encoding.py)


def item_cardinality(manifest: dict) -> int:
    """Rows of the ``item`` table (encoded ids 0..V-1) of a prepared dataset."""
    for feature in manifest["features"]:
        if feature["name"] == "item":
            return int(feature["cardinality"])
    raise DataError("the prepared dataset has no 'item' feature")


def load_item_texts(prepared_dir: Path) -> list[str]:
    """Text of every encoded item id 0..V-1 of ``prepared_dir`` (empty where none): a list of V strings."""
    prepared_dir = Path(prepared_dir)
    num_items = item_cardinality(read_manifest(prepared_dir))
    path = prepared_dir / ITEM_TEXT
    if not path.is_file():
        raise DataError(f"{path} is missing; build it with `recrl text items {prepared_dir} ...`")
    try:
        table = pl.read_parquet(path, columns=["item", "text"])
    except Exception as exc:  # polars/pyarrow raise several unrelated types for bad files
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    ids = table["item"]
    if ids.len() and (ids.min() < 0 or ids.max() >= num_items):
        raise DataError(f"{path} has item ids outside 0..{num_items - 1}; rebuild it after `recrl prepare`")
    if ids.is_duplicated().any():
        raise DataError(f"{path} has an item id twice; rebuild it with `recrl text items`")
    every = pl.DataFrame({"item": pl.int_range(0, num_items, eager=True, dtype=pl.Int64)})
    full = every.join(table.with_columns(pl.col("item").cast(pl.Int64)), on="item", how="left")
    return full.sort("item")["text"].fill_null("").to_list()


def write_item_texts(prepared_dir: Path, table: pl.DataFrame) -> Path:
    """Write ``item_text.parquet`` (columns item, text) atomically into ``prepared_dir``."""
    path = Path(prepared_dir) / ITEM_TEXT
    tmp = path.with_suffix(".parquet.tmp")
    table.select(pl.col("item").cast(pl.Int64), pl.col("text").cast(pl.String)).sort("item").write_parquet(
        tmp
    )
    tmp.replace(path)
    return path


def item_id_map(prepared_dir: Path) -> tuple[str, pl.DataFrame]:
    """(dataset, frame of ``item`` and ``raw``): encoded item id -> raw item id of a prepared directory."""
    prepared_dir = Path(prepared_dir)
    manifest = read_manifest(prepared_dir)
    dataset = manifest.get("dataset")
    if dataset == "kuairand":
        frame = pl.read_parquet(prepared_dir / "items.parquet", columns=["item", "video_id"])
        return dataset, frame.select(
            pl.col("item").cast(pl.Int64), pl.col("video_id").cast(pl.Int64).alias("raw")
        )
    frames = [
        pl.read_parquet(prepared_dir / manifest["splits"][s]["file"], columns=["item", "itemid"])
        for s in ("train", "val", "test")
    ]
    # Frequent ids (>= 2) stand for exactly one raw item; 0/1 stand for many and keep the empty text.
    frame = (
        pl.concat(frames)
        .filter(pl.col("item") >= FIRST_FREQUENT_ID)
        .unique("item")
        .select(pl.col("item").cast(pl.Int64), pl.col("itemid").cast(pl.Int64).alias("raw"))
    )
    return str(dataset), frame


def _read_csv(path: Path, columns: list[str]) -> pl.DataFrame:
    if not Path(path).is_file():
        raise DataError(f"{path} is missing")
    try:
        head = pl.read_csv(path, n_rows=0)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in columns if c not in head.columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)}")
    return pl.scan_csv(path, schema_overrides={c: pl.String for c in head.columns}).select(columns).collect()


def texts_from_captions(prepared_dir: Path, captions: Path, categories: Path | None = None) -> pl.DataFrame:
    """item/text frame from a caption file (KuaiRand ``final_video_id,caption`` or synthetic ``itemid,text``)."""
    _, ids = item_id_map(prepared_dir)
    head = pl.read_csv(captions, n_rows=0).columns if Path(captions).is_file() else []
    key, col = ("final_video_id", "caption") if "final_video_id" in head or not head else ("itemid", "text")
    caps = _read_csv(captions, [key, col]).select(
        pl.col(key).cast(pl.Int64, strict=False).alias("raw"), pl.col(col).fill_null("").alias("text")
    )
    caps = caps.drop_nulls("raw").unique("raw", keep="first")
    if categories is not None:
        names = [c for c in pl.read_csv(categories, n_rows=0).columns if c.endswith("_level_category_name")]
        if not names:
            raise DataError(f"{categories} has no *_level_category_name columns")
        cats = _read_csv(categories, ["final_video_id", *names]).select(
            pl.col("final_video_id").cast(pl.Int64, strict=False).alias("raw"),
            pl.concat_str([pl.col(n).fill_null("") for n in names], separator=" ").alias("cats"),
        )
        caps = caps.join(cats.unique("raw"), on="raw", how="full", coalesce=True).select(
            "raw", pl.concat_str([pl.col("text").fill_null(""), pl.col("cats").fill_null("")], separator=" ")
            .str.strip_chars().alias("text"),
        )  # fmt: skip
    out = ids.join(caps, on="raw", how="inner").select("item", "text")
    if out.height == 0:
        raise DataError(f"no item of {prepared_dir} has a text in {captions} (ids do not match)")
    return out


def texts_from_properties(prepared_dir: Path, raw_dir: Path, properties=TOKEN_PROPERTIES) -> pl.DataFrame:
    """RetailRocket: each item's latest value of ``properties``, hashed tokens as words (see module doc)."""
    dataset, ids = item_id_map(prepared_dir)
    if dataset != "retailrocket":
        raise DataError(f"--properties reads RetailRocket property logs; {prepared_dir} holds {dataset}")
    parts = [Path(raw_dir) / f"item_properties_part{i}.csv" for i in (1, 2)]
    for p in parts:
        if not p.is_file():
            raise DataError(f"{p} is missing")
    schema = {"timestamp": pl.Int64, "itemid": pl.Int64, "property": pl.String, "value": pl.String}
    latest = (
        pl.concat([pl.scan_csv(p, schema=schema) for p in parts])
        .filter(pl.col("property").is_in(list(properties)) & pl.col("itemid").is_in(ids["raw"].implode()))
        .sort("timestamp")
        .group_by("itemid", "property")
        .agg(pl.col("value").last())
        .collect()
    )
    words = latest.with_columns(
        pl.col("value").str.replace_all(r"\.", "d").str.split(" ").alias("tok")
    ).explode("tok").with_columns(
        (pl.lit("p") + pl.col("property") + pl.lit("x") + pl.col("tok")).alias("word")
    )  # fmt: skip
    texts = (
        words.sort("itemid", "property")
        .group_by("itemid", maintain_order=True)
        .agg(pl.col("word").str.join(" ").alias("text"))
    )
    return ids.join(texts.rename({"itemid": "raw"}), on="raw", how="inner").select("item", "text")
