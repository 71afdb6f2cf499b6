"""The numpy n-core counter (recrl_cli/data/prepare/ncore.py) against a polars group-by reference,
on dense and on sparse/huge ids, in one batch and in many."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recrl_cli.data.prepare import ncore


def reference_ncore(frame: pl.DataFrame, n: int) -> tuple[pl.DataFrame, pl.DataFrame, list[dict[str, int]]]:
    """The previous implementation: group-by counts and is_in filters until a pass drops nothing."""
    lf, passes = frame.lazy(), []
    while True:
        users = lf.group_by("user_id").agg(rows=pl.len().cast(pl.Int64)).collect().sort("user_id")
        items = lf.group_by("video_id").agg(rows=pl.len().cast(pl.Int64)).collect().sort("video_id")
        passes.append({"rows": int(users["rows"].sum()), "users": users.height, "items": items.height})
        ok_u, ok_i = users.filter(pl.col("rows") >= n), items.filter(pl.col("rows") >= n)
        if ok_u.height == users.height and ok_i.height == items.height:
            return users, items, passes
        lf = lf.filter(pl.col("user_id").is_in(ok_u["user_id"].implode())
                       & pl.col("video_id").is_in(ok_i["video_id"].implode()))  # fmt: skip


def random_log(seed: int, rows: int = 4_000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"user_id": rng.zipf(1.5, rows) % 400 - 50,  # negative ids too
                         "video_id": (rng.zipf(1.3, rows) + rng.integers(0, 5, rows)) % 3_000})  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_rows", [ncore.BATCH_ROWS, 333])
def test_dense_counts_match_the_group_by_reference(seed, batch_rows):
    frame = random_log(seed)
    users, items, passes, nbytes = ncore.ncore_filter(ncore.frame_batches(frame.lazy(), batch_rows), 4)
    want_u, want_i, want_passes = reference_ncore(frame, 4)
    assert users.equals(want_u) and items.equals(want_i) and passes == want_passes
    assert len(passes) > 1 and users.height > 10
    span_u, span_i = np.ptp(frame["user_id"].to_numpy()) + 1, np.ptp(frame["video_id"].to_numpy()) + 1
    assert nbytes == 5 * (span_u + span_i)  # dense: int32 count + bool mask per id slot


@pytest.mark.parametrize("seed", [0, 3])
def test_sparse_huge_ids_take_the_sorted_key_path_and_give_the_same_core(seed):
    frame = random_log(seed)
    big = frame.with_columns(pl.col("user_id") * 10**12 + 7, pl.col("video_id") * 10**14 - 5)
    users, items, passes, nbytes = ncore.ncore_filter(ncore.frame_batches(big.lazy(), 500), 4)
    want_u, want_i, want_passes = reference_ncore(big, 4)
    assert users.equals(want_u) and items.equals(want_i) and passes == want_passes
    distinct = big["user_id"].n_unique() + big["video_id"].n_unique()
    assert nbytes == 13 * distinct  # sparse: int64 key + int32 count + bool mask per distinct id


def test_build_index_is_dense_for_dense_ids_and_sparse_when_the_span_dwarfs_the_rows():
    ids = np.array([5, 9, 5, 7], dtype=np.int64)
    batches = lambda: [(ids, ids * 10**13)]  # noqa: E731
    dense = ncore.build_index(batches, 0, 5, 9, rows=4)
    assert dense.keys is None and dense.size == 5 and dense.slots(ids).tolist() == [0, 4, 0, 2]
    sparse = ncore.build_index(batches, 1, 5 * 10**13, 9 * 10**13, rows=4)
    assert sparse.keys.tolist() == [5 * 10**13, 7 * 10**13, 9 * 10**13]
    assert sparse.slots(ids * 10**13).tolist() == [0, 2, 0, 1]
    assert sparse.ids(np.array([2, 0])).tolist() == [9 * 10**13, 5 * 10**13]


@pytest.mark.parametrize("size", [10, 100_000])  # bincount branch, sort branch
def test_add_counts_equals_bincount(size):
    rng = np.random.default_rng(size)
    slots = rng.integers(0, size, 2_000)
    counts = np.full(size, 3, dtype=np.int32)
    ncore.add_counts(counts, slots)
    assert counts.dtype == np.int32
    assert np.array_equal(counts, 3 + np.bincount(slots, minlength=size))


def test_no_rows_gives_empty_tables():
    users, items, passes, nbytes = ncore.ncore_filter(pl.LazyFrame({"user_id": [], "video_id": []}), 2)
    assert (
        users.height == items.height == 0 and passes == [{"rows": 0, "users": 0, "items": 0}] and nbytes == 0
    )


def test_the_memory_plan_charges_the_count_tables_when_they_exceed_the_per_video_model():
    from recrl_cli.data.prepare import budget
    from recrl_cli.errors import DataError

    rows = np.full(10, 100)
    limit = budget.BASE_BYTES + budget.ITEM_BYTES * 1_000 + budget.ROW_BYTES * 1_000
    assert budget.plan_blocks(str(limit), 10**9, 100, 1_000, rows).blocks == 1
    # Sparse-looking dense ids: tables of 10 MiB for 100 videos -> the fixed part grows, blocks shrink.
    plan = budget.plan_blocks(str(limit + 10 * 2**20), 10**9, 100, 1_000, rows, count_bytes=10 * 2**20)
    assert plan.blocks == 1 and plan.estimated_peak_bytes <= limit + 10 * 2**20
    with pytest.raises(DataError, match="raise it"):
        budget.plan_blocks(str(limit), 10**9, 100, 1_000, rows, count_bytes=10 * 2**20)


def test_sparse_keys_merged_in_rounds_equal_the_distinct_ids(monkeypatch):
    monkeypatch.setattr(ncore, "BATCH_ROWS", 2)  # merge after every few batches
    rng = np.random.default_rng(5)
    chunks = [rng.integers(-(10**15), 10**15, 50) for _ in range(30)] + [np.array([7, 7, 7])]
    index = ncore.build_index(lambda: [(c, c) for c in chunks], 0, -(10**15), 10**15, rows=1_503)
    assert np.array_equal(index.keys, np.unique(np.concatenate(chunks)))
