"""Frequency-rank categorical encoding, fitted on the training split only.

Ids: ``0`` = missing or never seen in train (unknown), ``1`` = rare (seen fewer than
``min_count`` times in train), ``2..`` = the frequent train values by descending count, ties
broken by ascending value so the mapping is identical run to run. Fitting on train only keeps
validation/test values the model never trained on at the shared "unknown" id instead of leaking
their frequencies. Works on any polars column dtype (strings, integers), so KuaiRand can reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from recrl_cli.errors import ConfigError

UNKNOWN_ID = 0
RARE_ID = 1
FIRST_ID = 2


@dataclass(frozen=True)
class FrequencyVocab:
    """Value -> id table of one feature column.

    ``table`` has the columns ``value`` (the train values, rare ones included) and ``id`` (Int32).
    ``cardinality`` = number of ids including 0 and 1, i.e. the embedding table size.
    """

    column: str
    table: pl.DataFrame
    cardinality: int

    def expr(self) -> pl.Expr:
        """Expression mapping ``column`` to Int32 ids; unseen values and nulls give ``UNKNOWN_ID``."""
        return (
            pl.col(self.column)
            .replace_strict(self.table["value"], self.table["id"], default=UNKNOWN_ID, return_dtype=pl.Int32)
            .fill_null(UNKNOWN_ID)
            .alias(self.column)
        )

    def encode(self, frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
        """Return ``frame`` with ``column`` replaced by its Int32 ids (N rows in, N rows out, same order)."""
        return frame.with_columns(self.expr())

    def value_of(self, ids: pl.Series) -> pl.Series:
        """Inverse map for frequent ids (>= 2); ids 0/1 give null. Useful for reports and tests."""
        frequent = self.table.filter(pl.col("id") >= FIRST_ID)
        return ids.replace_strict(frequent["id"], frequent["value"], default=None)


def fit_vocab(train: pl.DataFrame, column: str, min_count: int) -> FrequencyVocab:
    """Count the non-null values of ``train[column]`` and rank them (see module docstring)."""
    if min_count < 1:
        raise ConfigError(f"min_count must be >= 1, got {min_count}")
    counts = (
        train.lazy()
        .select(pl.col(column).alias("value"))
        .drop_nulls()
        .group_by("value")
        .agg(pl.len().alias("count"))
        .sort(["count", "value"], descending=[True, False])
        .collect()
    )
    # Counts are sorted descending, so the row index of a frequent value is its rank.
    table = counts.select(
        "value",
        pl.when(pl.col("count") >= min_count)
        .then(pl.int_range(pl.len(), dtype=pl.Int32) + FIRST_ID)
        .otherwise(pl.lit(RARE_ID, dtype=pl.Int32))
        .cast(pl.Int32)
        .alias("id"),
    )
    n_frequent = int((counts["count"] >= min_count).sum())
    return FrequencyVocab(column=column, table=table, cardinality=FIRST_ID + n_frequent)


def fit_vocabs(train: pl.DataFrame, columns: tuple[str, ...], min_count: int) -> dict[str, FrequencyVocab]:
    """One vocab per column, in the given order."""
    return {column: fit_vocab(train, column, min_count) for column in columns}


def encode_all(frame: pl.DataFrame, vocabs: dict[str, FrequencyVocab]) -> pl.DataFrame:
    """Encode every vocab column of ``frame`` in one pass."""
    return frame.with_columns([vocab.expr() for vocab in vocabs.values()])
