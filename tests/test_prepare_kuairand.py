"""Tests of `recrl prepare kuairand` and of the history tensors: each rule on tiny hand-written raw
files with expected values written by hand (n-core, requests, sessions, history windows, holdout,
train-only encoding), the real KuaiRand-Pure feature files through the same reader, synth ->
prepare round trips, block-wise (out-of-core) output, and every user-facing error path."""

from __future__ import annotations

import itertools
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from recrl_cli.data import manifest as mf
from recrl_cli.data.atomic import TMP_MARK
from recrl_cli.data.kuairand_tensors import (
    gather_history,
    history_index,
    load_feature_table,
    load_row_table,
    load_split_rows,
)
from recrl_cli.data.prepare import kuairand as kr
from recrl_cli.data.prepare import kuairand_rows as kr_rows
from recrl_cli.data.prepare.kuairand import BEHAVIOURS, KuaiRandPrepareParams, prepare_kuairand, raw_files
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.errors import ConfigError, DataError

# The real files: $RECRL_KUAIRAND_DIR, else ../shared/data/kuairand beside the repository.
REAL_DIR = Path(
    os.environ.get("RECRL_KUAIRAND_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared/data/kuairand"
)
CST = timezone(timedelta(hours=8))
FILES = raw_files("pure")
T0 = 1_649_408_076_860  # 2022-04-08 16:54:36.860 UTC+8 (a real KuaiRand row's time)
MIN, DAY = 60_000, 86_400_000
# Every rule, nothing filtered or held out: the hand-written fixtures keep all their rows.
ALL = {"n_core": 1, "val_per_user": 0, "test_per_user": 0, "min_count": 1}


def log(user: int, video: int, t: int, *labels: str, play: int = 5_000, tab: int = 1) -> str:
    """One 19-column log line; ``labels`` names the behaviours that are 1 (e.g. "is_click")."""
    when = datetime.fromtimestamp(t / 1000, CST)
    y = {b: int(b in labels) for b in BEHAVIOURS}
    return (f"{user},{video},{when:%Y%m%d},{when:%H}00,{t},{y['is_click']},{y['is_like']},{y['is_follow']},"
            f"{y['is_comment']},{y['is_forward']},{y['is_hate']},{y['long_view']},{play},10000,0,0,0,0,{tab}")  # fmt: skip


def user_line(user: int, degree: str = "full_active") -> str:
    return (f'{user},{degree},0,-124,1,10,"(0,10]",5,"[1,10)",3,"[1,5)",800,730+,1,2,3,4,1.0,0,1,5,6,3,2,0,'
            "1.0,0.0,0.0,0.0,0.0,0.0")  # fmt: skip


def video_line(video: int, upload: str = "Web", tag: str = "3") -> str:
    tag = f'"{tag}"' if "," in tag else tag
    return f"{video},{100 + video},NORMAL,2022-04-10,{upload},0.0,10000.0,720.0,1280.0,5,9.0,{tag}"


def write_raw(
    d: Path, first: list[str], second: list[str] = (), users: list[str] | None = None,
    videos: list[str] | None = None,
) -> Path:  # fmt: skip
    """Raw Pure files under ``d``; users/videos default to plain rows for every id in the logs."""
    d.mkdir(parents=True, exist_ok=True)
    header = ",".join(kr.LOG_COLUMNS)
    for name, lines in zip(FILES["standard"], (first, second), strict=True):
        (d / name).write_text("\n".join([header, *lines]) + "\n")
    ids = [line.split(",")[:2] for line in (*first, *second)]
    users = users if users is not None else [user_line(u) for u in sorted({int(u) for u, _ in ids})]
    videos = videos if videos is not None else [video_line(v) for v in sorted({int(v) for _, v in ids})]
    (d / FILES["users"]).write_text("\n".join([",".join(kr.USER_COLUMNS), *users]) + "\n")
    (d / FILES["videos"]).write_text("\n".join([",".join(kr.VIDEO_COLUMNS), *videos]) + "\n")
    return d


def prepared_rows(tmp_path: Path, first: list[str], second: list[str] = (), **params) -> pl.DataFrame:
    raw = write_raw(tmp_path / "raw", first, second)
    prepare_kuairand(raw, tmp_path / "out", KuaiRandPrepareParams(**{**ALL, **params}))
    return pl.read_parquet(tmp_path / "out" / "rows.parquet")


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if TMP_MARK in p.name]


# ---- n-core ---------------------------------------------------------------------------------------

# Users 1..4, videos 10..14. With n = 2: video 13 has one row -> user 3 keeps one row -> video 12
# keeps one row -> user 2's row of video 12 goes. User 4's two identical rows (a duplicate, as in
# the real logs) count twice and survive.
NCORE_ROWS = [(1, 10), (1, 11), (2, 10), (2, 11), (2, 12), (3, 12), (3, 13), (4, 14), (4, 14)]


def test_ncore_filter_iterates_until_stable_and_counts_duplicates():
    frame = pl.LazyFrame({"user_id": [u for u, _ in NCORE_ROWS], "video_id": [v for _, v in NCORE_ROWS]})
    users, items, passes, _ = kr.ncore_filter(frame, 2)
    assert users.rows() == [(1, 2), (2, 2), (4, 2)]
    assert items.rows() == [(10, 2), (11, 2), (14, 2)]
    assert passes == [{"rows": 9, "users": 4, "items": 5}, {"rows": 8, "users": 4, "items": 4},
                      {"rows": 7, "users": 3, "items": 4}, {"rows": 6, "users": 3, "items": 3}]  # fmt: skip
    assert kr.ncore_filter(frame, 1)[2] == [{"rows": 9, "users": 4, "items": 5}]
    assert kr.ncore_filter(frame, 3)[0].height == 0


def test_ncore_in_prepare_keeps_exactly_the_core_rows(tmp_path):
    rows = prepared_rows(tmp_path, [log(u, v, T0 + k * MIN) for k, (u, v) in enumerate(NCORE_ROWS)], n_core=2)
    assert rows.select("user_id", "video_id").rows() == [(1, 10), (1, 11), (2, 10), (2, 11), (4, 14), (4, 14)]
    m = mf.read_manifest(tmp_path / "out")
    assert m["ncore"]["passes"][-1] == {"rows": 6, "users": 3, "items": 3}
    assert pl.read_parquet(tmp_path / "out" / "items.parquet")["video_id"].to_list() == [10, 11, 14]


def test_ncore_in_prepare_with_sparse_huge_ids_keeps_the_same_core(tmp_path):
    # Ids far above the row count take ncore.py's sorted-key path instead of a dense count array (a
    # dense one would need ~10^15 slots); the core must be the same rows as with small ids.
    big_u, big_v = 10**12, 10**15
    lines = [log(u * big_u, v * big_v + 3, T0 + k * MIN) for k, (u, v) in enumerate(NCORE_ROWS)]
    rows = prepared_rows(tmp_path, lines, n_core=2)
    want = [(1, 10), (1, 11), (2, 10), (2, 11), (4, 14), (4, 14)]
    assert rows.select("user_id", "video_id").rows() == [(u * big_u, v * big_v + 3) for u, v in want]
    assert mf.read_manifest(tmp_path / "out")["ncore"]["passes"][-1] == {"rows": 6, "users": 3, "items": 3}


def kuaisim_ncore(pairs: list[tuple[int, int]], n: int) -> list[int]:
    """KuaiSim's loop (code/utils.py repeat_n_core): walk the rows, drop one if its user's or item's
    current count is below n and decrement both counts; repeat until a pass drops nothing."""
    users, items = {}, {}
    for u, i in pairs:
        users[u], items[i] = users.get(u, 0) + 1, items.get(i, 0) + 1
    keep = list(range(len(pairs)))
    while True:
        kept = []
        for r in keep:
            u, i = pairs[r]
            if users[u] < n or items[i] < n:
                users[u], items[i] = users[u] - 1, items[i] - 1
            else:
                kept.append(r)
        if len(kept) == len(keep):
            return kept
        keep = kept


def test_ncore_matches_kuaisims_sequential_loop_on_random_logs():
    rng = np.random.default_rng(0)
    for _ in range(3):
        u = rng.zipf(1.6, 3_000) % 300
        i = (rng.zipf(1.4, 3_000) + rng.integers(0, 3, 3_000)) % 200
        pairs = list(zip(u.tolist(), i.tolist(), strict=True))
        users, items, *_ = kr.ncore_filter(pl.LazyFrame({"user_id": u, "video_id": i}), 5)
        ours = [
            r for r, (a, b) in enumerate(pairs) if a in set(users["user_id"]) and b in set(items["video_id"])
        ]
        assert ours == kuaisim_ncore(pairs, 5) and len(ours) > 100


# ---- requests, sessions, order -------------------------------------------------------------------


def test_requests_sessions_and_same_ms_file_order(tmp_path):
    next_day = T0 + DAY
    first = [log(7, 20, T0), log(7, 15, T0), log(7, 16, T0 + 1_000),  # two requests, file order kept
             log(7, 17, T0 + 31 * MIN), log(7, 18, next_day), log(8, 15, T0)]  # fmt: skip
    rows = prepared_rows(tmp_path, first)
    u7 = rows.filter(pl.col("user_id") == 7)
    assert u7["video_id"].to_list() == [20, 15, 16, 17, 18]  # same ms: file order, not video id
    assert u7["request_id"].to_list() == [0, 0, 1, 2, 3]
    assert u7["request_pos"].to_list() == [0, 0, 2, 3, 4]
    assert u7["session_id"].to_list() == [0, 0, 0, 0, 1]  # user-day sessions (UTC+8 date)
    assert rows.filter(pl.col("user_id") == 8)[["request_id", "session_id"]].row(0) == (4, 2)
    gap = prepared_rows(tmp_path / "gap", first, session_key="gap", session_gap_minutes=30)
    assert gap.filter(pl.col("user_id") == 7)["session_id"].to_list() == [0, 0, 0, 1, 2]
    exact = prepared_rows(tmp_path / "exact", [log(1, 1, T0), log(1, 2, T0 + 30 * MIN), log(1, 3, T0 + 60 * MIN + 1)],
                          session_key="gap")  # fmt: skip
    assert exact["session_id"].to_list() == [0, 0, 1]  # exactly 30 min stays; 30 min + 1 ms is new


def test_rows_from_both_periods_are_merged_by_time(tmp_path):
    late = 1_650_556_800_000 + 5 * MIN  # 2022-04-22 00:05 UTC+8: the second file's period
    rows = prepared_rows(tmp_path, [log(2, 1, T0), log(3, 1, T0 + 1)], [log(2, 2, late), log(3, 2, late)])
    assert rows.select("user_id", "video_id").rows() == [(2, 1), (2, 2), (3, 1), (3, 2)]
    assert rows["user_start"].to_list() == [0, 0, 2, 2] and rows["user_pos"].to_list() == [0, 1, 0, 1]
    assert rows["date"].to_list() == [20220408, 20220422, 20220408, 20220422]


# ---- history windows -----------------------------------------------------------------------------

# User 1: five rows; rows 2 and 3 are one request. User 2: two rows right after in the table.
HIST = [log(1, 10, T0, "is_click"), log(1, 11, T0 + 1_000, "is_click", "long_view"),
        log(1, 12, T0 + 2_000, "is_like", "is_click"), log(1, 13, T0 + 2_000, "is_hate"),
        log(1, 14, T0 + 3_000, "is_click"), log(2, 12, T0, "is_follow"), log(2, 10, T0 + 5)]  # fmt: skip


@pytest.fixture
def hist_table(tmp_path):
    prepared_rows(tmp_path, HIST)
    return load_row_table(tmp_path / "out")


def test_row_indices_of_the_history_fixture(hist_table):
    t = hist_table
    assert t.user_start.tolist() == [0, 0, 0, 0, 0, 5, 5]
    assert t.user_pos.tolist() == [0, 1, 2, 3, 4, 0, 1]
    assert t.request_pos.tolist() == [0, 1, 2, 2, 4, 0, 1]
    assert t.item.tolist() == [1, 2, 3, 4, 5, 3, 1]  # video 10..14 -> 1..5 (0 = padding)


def test_history_windows_by_hand(hist_table):
    h = gather_history(hist_table, torch.tensor([0, 1, 3, 4, 5, 6]), length=3)
    assert h.items.tolist() == [[0, 0, 0], [0, 0, 1], [1, 2, 3], [2, 3, 4], [0, 0, 0], [0, 0, 3]]
    assert h.lengths.tolist() == [0, 1, 3, 3, 0, 1]
    assert h.index.tolist() == [[-1, -1, -1], [-1, -1, 0], [0, 1, 2], [1, 2, 3], [-1, -1, -1], [-1, -1, 5]]
    click, long_view, like, hate, follow = (BEHAVIOURS.index(b) for b in ("is_click", "long_view", "is_like",
                                                                          "is_hate", "is_follow"))  # fmt: skip
    fb = h.feedback
    assert fb.shape == (6, 3, 7) and fb.dtype == torch.float32
    assert fb[3, :, click].tolist() == [1, 1, 0] and fb[3, :, long_view].tolist() == [1, 0, 0]
    assert fb[3, :, like].tolist() == [0, 1, 0] and fb[3, :, hate].tolist() == [0, 0, 1]
    assert fb[5, 2, follow] == 1 and fb[5, :2].abs().sum() == 0 and fb[0].abs().sum() == 0


def test_history_can_exclude_the_rows_own_request(hist_table):
    # Row 3 shares row 2's millisecond: KuaiSim's reader shows row 2 in row 3's history; strict mode does not.
    strict = gather_history(hist_table, torch.tensor([2, 3, 4]), length=4, same_request=False)
    assert strict.items.tolist() == [[0, 0, 1, 2], [0, 0, 1, 2], [1, 2, 3, 4]]
    loose = gather_history(hist_table, torch.tensor([3]), length=4)
    assert loose.items.tolist() == [[0, 1, 2, 3]]


def test_history_index_matches_a_naive_loop():
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 40, 30)
    start = torch.from_numpy(np.repeat(np.cumsum(counts) - counts, counts))
    pos = torch.from_numpy(np.concatenate([np.arange(c) for c in counts]))
    rows = torch.from_numpy(rng.integers(0, int(counts.sum()), 200))
    index, mask = history_index(rows, start, pos, 7)
    for b, r in enumerate(rows.tolist()):
        s, p = int(start[r]), int(pos[r])
        want = list(range(s + max(0, p - 7), s + p))
        assert [i for i in index[b].tolist() if i >= 0] == want and mask[b].sum() == len(want)
        assert (index[b, : 7 - len(want)] == -1).all()  # left padding


# ---- holdout and encoding ------------------------------------------------------------------------


def many(user: int, n: int, video0: int = 0, t0: int = T0) -> list[str]:
    """``n`` one-row requests of ``user``, a minute apart, videos video0, video0 + 1, ..."""
    return [log(user, video0 + k, t0 + k * MIN) for k in range(n)]


def test_holdout_is_chronological_per_user_and_drops_short_users(tmp_path):
    first = many(1, 25) + many(2, 24) + many(3, 30, t0=T0 - DAY)
    rows = prepared_rows(tmp_path, first, val_per_user=5, test_per_user=5)
    split = {u: rows.filter(pl.col("user_id") == u)["split"].to_list() for u in (1, 2, 3)}
    assert split[1] == [0] * 15 + [1] * 5 + [2] * 5  # 25 rows: 15 train = 0.6 * 25, kept
    assert split[2] == [-1] * 24  # 24 rows: 14 train < 0.6 * 24, in no split (KuaiSim: n < 25)
    assert split[3] == [0] * 20 + [1] * 5 + [2] * 5
    out = tmp_path / "out"
    for name, code in kr.SPLIT_CODE.items():
        idx = load_split_rows(out, name)
        assert idx.tolist() == rows.with_row_index().filter(pl.col("split") == code)["index"].to_list()
    m = mf.read_manifest(out)
    assert (
        m["splits"]["train"]["rows"],
        m["splits"]["val"]["users"],
        m["tables"]["rows"]["users_in_no_split"],
    ) == (35, 2, 1)
    times = rows.filter(pl.col("split") >= 0).group_by("user_id", "split").agg(pl.col("time_ms").min().alias("lo"),
                                                                              pl.col("time_ms").max().alias("hi"))  # fmt: skip
    for u in (1, 3):
        t = {s: (lo, hi) for _, s, lo, hi in times.filter(pl.col("user_id") == u).sort("split").iter_rows()}
        assert t[0][1] < t[1][0] and t[1][1] < t[2][0]


def test_encoders_are_fitted_on_train_users_and_videos_only(tmp_path):
    # User 1 (25 rows) trains; user 2 (24 rows) is in no split, so its degree is unseen in train.
    # Video 99 appears only in user 1's last row (test), so its upload type and tag are unseen.
    first = [*many(1, 24), log(1, 99, T0 + 30 * MIN), *many(2, 24, video0=0, t0=T0 + DAY)]
    users = [user_line(1, "full_active"), user_line(2, "high_active")]
    videos = [video_line(v, "Web", "3,5") for v in range(24)] + [video_line(99, "Kmovie", "3,42")]
    raw = write_raw(tmp_path / "raw", first, users=users, videos=videos)
    m = prepare_kuairand(raw, tmp_path / "out", KuaiRandPrepareParams(n_core=1, min_count=1))
    u = pl.read_parquet(tmp_path / "out" / "users.parquet")
    assert u["user_id"].to_list() == [1, 2] and u["user"].to_list() == [1, 2]
    assert u["user_active_degree"].to_list() == [2, 0]  # 2 = the one train value, 0 = unknown
    it = pl.read_parquet(tmp_path / "out" / "items.parquet").filter(pl.col("video_id") == 99)
    assert it["upload_type"].item() == 0 and it["item"].item() == 25
    assert it["tags"].item().to_list() == [
        2,
        0,
    ]  # "3": train tag (tied with "5", first by value); "42": unseen
    card = {f["name"]: f["cardinality"] for f in m["features"]}
    assert card["user_active_degree"] == 3 and card["upload_type"] == 3 and card["tags"] == 4
    assert card["user"] == 3 and card["item"] == 26


# ---- real KuaiRand-Pure feature files ------------------------------------------------------------


def real_dir() -> Path:
    if not all((REAL_DIR / FILES[k]).is_file() for k in ("users", "videos")):
        pytest.skip(f"real KuaiRand files not present in {REAL_DIR}")
    return REAL_DIR


def test_real_feature_files_parse_with_the_reader_schemas():
    d = real_dir()
    kr._check_file(d / FILES["users"], kr.USER_COLUMNS, "hint")
    kr._check_file(d / FILES["videos"], kr.VIDEO_COLUMNS, "hint")
    users = pl.read_csv(d / FILES["users"], schema=kr.USER_SCHEMA)
    videos = pl.read_csv(d / FILES["videos"], schema=kr.VIDEO_SCHEMA)
    assert (users.height, videos.height) == (27_285, 7_583)  # the published Pure counts
    assert (users["onehot_feat4"].null_count(), users["onehot_feat12"].null_count()) == (874, 714)
    assert (users["is_live_streamer"] == -124).sum() == 21_127
    assert (
        videos["video_duration"].null_count(),
        videos["music_type"].null_count(),
        videos["tag"].null_count(),
    ) == (239, 203, 96)
    assert videos["tag"].str.contains(",").sum() == 1_791


def test_a_crlf_copy_of_the_real_user_file_reads_the_same(tmp_path):
    # One public mirror of these files (zhiyuansu0326/KuaiSim) has CRLF line endings.
    path = real_dir() / FILES["users"]
    crlf = tmp_path / FILES["users"]
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    kr._check_file(crlf, kr.USER_COLUMNS, "hint")
    assert pl.read_csv(crlf, schema=kr.USER_SCHEMA).equals(pl.read_csv(path, schema=kr.USER_SCHEMA))


def test_prepare_encodes_the_real_feature_files(tmp_path):
    d = real_dir()
    raw = tmp_path / "raw"
    write_kuairand(raw, num_users=2_000, num_items=1_500, num_impressions=60_000, seed=4)
    for key in ("users", "videos"):  # real features, synthetic logs (ids 0..1999 / 0..1499 exist in both)
        shutil.copyfile(d / FILES[key], raw / FILES[key])
    m = prepare_kuairand(raw, tmp_path / "out", KuaiRandPrepareParams(min_count=1))
    card = {f["name"]: f["cardinality"] for f in m["features"]}
    assert card["is_live_streamer"] == 4 and card["is_video_author"] == 4  # {-124, 1} / {0, 1} + ids 0, 1
    assert 8 <= card["user_active_degree"] <= 11 and card["register_days_range"] >= 8
    assert card["video_type"] >= 3 and card["upload_type"] >= 10 and card["tags"] > 30
    assert m["tables"]["users"]["without_features"] == 0 and m["tables"]["items"]["without_features"] == 0
    items = pl.read_parquet(tmp_path / "out" / "items.parquet")
    assert next(f for f in m["features"] if f["name"] == "tags")["max_len"] >= 2
    assert (items["tags"].list.len() == 0).sum() > 0  # blank tags -> empty lists
    assert (items["music_type"] == 0).sum() > 0  # blank music types -> the unknown id


# ---- synth -> prepare round trip -----------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("kr_roundtrip")
    write_kuairand(root / "raw", num_users=400, num_items=250, num_impressions=25_000, seed=7)
    return root, prepare_kuairand(root / "raw", root / "out", KuaiRandPrepareParams())


def test_output_files_columns_and_order(prepared):
    root, m = prepared
    out = root / "out"
    assert {p.name for p in out.iterdir()} == {"rows.parquet", "users.parquet", "items.parquet", "train.parquet",
                                               "val.parquet", "test.parquet", "manifest.json"}  # fmt: skip
    rows = pl.read_parquet(out / "rows.parquet")
    assert rows.columns == list(kr.ROW_COLUMNS) == m["tables"]["rows"]["columns"]
    assert rows.equals(rows.sort("user_id", "time_ms", maintain_order=True))
    starts = rows.with_row_index().group_by("user").agg(pl.col("index").min(), pl.col("user_start").unique())
    assert all(s == [i] for i, s in starts.select("index", "user_start").iter_rows())
    assert (rows["user_pos"] == rows.with_row_index()["index"] - rows["user_start"]).all()
    assert rows.group_by("request_id").len()["len"].max() <= 6
    assert pl.read_parquet(out / "train.parquet").columns == ["row"]


def test_manifest_contents_and_hashes(prepared):
    root, m = prepared
    out = root / "out"
    assert mf.read_manifest(out)["fingerprint"] == m["fingerprint"]
    mf.verify_splits(out, m)
    assert m["dataset"] == "kuairand" and m["tasks"] == list(BEHAVIOURS) and m["history"]["length"] == 100
    passes = m["ncore"]["passes"]
    assert passes[0]["rows"] == m["raw"]["standard_rows"] == 25_000
    assert passes[-1]["rows"] == m["tables"]["rows"]["rows"] < 25_000
    rows = pl.read_parquet(out / "rows.parquet")
    assert rows.group_by("user").len()["len"].min() >= 20 and rows.group_by("item").len()["len"].min() >= 20
    for name in mf.SPLITS:
        info = m["splits"][name]
        part = rows[pl.read_parquet(out / info["file"])["row"].to_numpy()]
        assert (info["rows"], info["users"], info["sessions"]) == (part.height, part["user"].n_unique(),
                                                                   part["session_id"].n_unique())  # fmt: skip
        assert info["positive_rate"]["is_click"] == pytest.approx(part["is_click"].mean())
        assert info["sha256"] == mf.file_sha256(out / info["file"])
    for f in m["features"]:
        table = pl.read_parquet(out / f"{f['table']}.parquet")
        values = table[f["name"]].explode() if f["kind"] == "multi" else table[f["name"]]
        assert values.max() < f["cardinality"], f["name"]


def test_prepared_rows_join_the_ground_truth(prepared):
    root, _ = prepared
    rows = pl.read_parquet(root / "out" / "rows.parquet")
    truth = pl.read_csv(root / "raw" / "ground_truth.csv").filter(pl.col("is_rand") == 0)
    joined = rows.join(truth.unique(["user_id", "video_id", "time_ms"]), on=["user_id", "video_id", "time_ms"],
                       how="left")  # fmt: skip
    assert joined.height == rows.height and joined["p_click"].null_count() == 0
    assert joined["p_click"].mean() == pytest.approx(joined["is_click"].mean(), abs=0.03)


def test_histories_of_prepared_rows_match_a_naive_slice(prepared):
    root, _ = prepared
    table = load_row_table(root / "out")
    rows = pl.read_parquet(root / "out" / "rows.parquet")
    batch = load_split_rows(root / "out", "test")[:64]
    for same in (True, False):
        h = gather_history(table, batch, 100, same_request=same)
        for b, r in enumerate(batch.tolist()):
            row = rows.row(r, named=True)
            end = row["user_pos"] if same else row["request_pos"]
            lo = row["user_start"] + max(0, end - 100)
            want = rows.slice(lo, row["user_start"] + end - lo)
            n = want.height
            assert h.items[b, 100 - n :].tolist() == want["item"].to_list()
            assert (
                h.feedback[b, 100 - n :].tolist() == want.select(BEHAVIOURS).to_numpy().astype(float).tolist()
            )
            assert h.items[b, : 100 - n].eq(0).all() and int(h.lengths[b]) == n


def test_feature_tables_load_as_dense_id_tensors(prepared):
    root, m = prepared
    out = root / "out"
    items = pl.read_parquet(out / "items.parquet")
    table = load_feature_table(out, "items")
    assert table.names == ["video_type", "upload_type", "music_type"]
    assert table.ids.shape == (items.height + 1, 3) and table.ids[0].abs().sum() == 0
    assert table.ids[1:, 1].tolist() == items["upload_type"].to_list()
    multi = int(items.with_row_index().filter(pl.col("tags").list.len() > 1)["index"][0])
    for k in (0, multi, items.height - 1):  # tags right-padded with 0, row k + 1 = item k + 1
        want = items["tags"][k].to_list()
        assert table.tags[k + 1].tolist() == want + [0] * (table.tags.shape[1] - len(want))
    assert table.tag_cardinality == next(f["cardinality"] for f in m["features"] if f["name"] == "tags")
    users = load_feature_table(out, "users")
    assert (
        users.tags is None
        and len(users.names) == 13
        and users.ids.shape[0] == m["tables"]["users"]["rows"] + 1
    )
    with pytest.raises(DataError, match="no KuaiRand 'videos' table"):
        load_feature_table(out, "videos")


def test_block_wise_output_equals_one_block(prepared, tmp_path, monkeypatch):
    root, m = prepared
    calls = []
    block_rows = kr_rows.block_rows
    monkeypatch.setattr(kr_rows, "block_rows", lambda *a: calls.append(1) or block_rows(*a))
    small = prepare_kuairand(root / "raw", tmp_path / "small", KuaiRandPrepareParams(chunk_rows=1_000))
    assert len(calls) > 10  # many user blocks, each streamed and appended on its own
    for name in ("rows", "train", "val", "test", "users", "items"):
        one = (root / "out" / f"{name}.parquet").read_bytes()
        assert (tmp_path / "small" / f"{name}.parquet").read_bytes() == one, name
    assert small["fingerprint"] == m["fingerprint"] and small["parameters"]["chunk_rows"] == 1_000


def test_row_group_writer_groups_by_rows_not_by_blocks(tmp_path):
    frame = pl.DataFrame({"x": np.arange(10)})
    for name, cuts in (("a", [0, 10]), ("b", [0, 3, 3, 7, 10])):
        writer = kr.RowGroupWriter(tmp_path / f"{name}.parquet", group_rows=4)
        for lo, hi in itertools.pairwise(cuts):
            writer.write(frame.slice(lo, hi - lo))
        writer.close()
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    meta = pq.ParquetFile(tmp_path / "b.parquet").metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [4, 4, 2]
    assert pl.read_parquet(tmp_path / "b.parquet").equals(frame)


def test_prepare_is_deterministic_and_reports_progress(prepared, tmp_path):
    root, m = prepared
    calls = []
    again = prepare_kuairand(root / "raw", tmp_path / "again", progress=lambda *a: calls.append(a))
    assert again["fingerprint"] == m["fingerprint"]
    assert calls[0][1] == 0 and calls[-1][1] == calls[-1][2] and len(calls) >= 6


def test_27k_layout_prepares(tmp_path):
    write_kuairand(tmp_path / "raw", version="27k", num_users=80, num_items=40, num_impressions=6_000, seed=1)
    m = prepare_kuairand(tmp_path / "raw", tmp_path / "out", KuaiRandPrepareParams(version="27k"))
    assert m["version"] == "27k" and m["raw"]["standard_rows"] == 6_000
    assert sorted(m["raw"]["files"]) == sorted([*raw_files("27k")["standard"], "user_features_27k.csv",
                                                "video_features_basic_27k.csv"])  # fmt: skip


# ---- error paths ---------------------------------------------------------------------------------

HEADER = ",".join(kr.LOG_COLUMNS)
S1, S2 = FILES["standard"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (S1, None, r"missing .*log_standard_4_08_to_4_21_pure.csv: download KuaiRand-Pure from Zenodo record "
                   r"10439422 .* or run `recrl synth kuairand --version pure`"),
        (FILES["users"], None, "missing .*user_features_pure.csv"),
        (FILES["videos"], None, "missing .*video_features_basic_pure.csv"),
        (S2, "", "log_standard_4_22_to_5_08_pure.csv is empty"),
        (S1, HEADER + "\n", "header but no rows"),
        (S1, HEADER.replace("tab", "page") + "\n" + log(1, 1, T0) + "\n", "has header .*expected the 19"),
        (FILES["users"], "user_id,user_active_degree\n1,full_active\n", "user_features_pure.csv has header"),
        (S1, f"{HEADER}\n{log(1, 1, T0)}\n{log(1, 2, T0)[:20]}", "ends with a truncated line"),
        (S1, f"{HEADER}\nabc{log(1, 1, T0)}\n", "log_standard_4_08_to_4_21_pure.csv could not be parsed"),
        (S1, f"{HEADER}\n1,1,20220408,1600,{T0},2,0,0,0,0,0,0,5000,10000,0,0,0,0,1\n", "labels other than 0/1 .*data row 1"),
        (S1, f"{HEADER}\n{log(1, 1, T0)}\n1,2,20220408,1600,,0,0,0,0,0,0,0,0,0,0,0,0,0,1\n", "missing fields .*data row 2"),
        (FILES["users"], ",".join(kr.USER_COLUMNS) + "\nx" + user_line(1) + "\n", "user_features_pure.csv could not be parsed"),
        (FILES["videos"], ",".join(kr.VIDEO_COLUMNS) + "\n" + video_line(1).replace("NORMAL", "NORMAL,extra") + "\n",
         "video_features_basic_pure.csv could not be parsed"),
    ],
)  # fmt: skip
def test_bad_raw_files_raise_one_line_data_errors_and_leave_nothing(tmp_path, name, content, message):
    raw = write_raw(tmp_path / "raw", many(1, 30) + many(2, 30))
    if content is None:
        (raw / name).unlink()
    else:
        (raw / name).write_text(content)
    with pytest.raises(DataError, match=message) as err:
        prepare_kuairand(raw, tmp_path / "out", KuaiRandPrepareParams(n_core=1))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_empty_core_and_empty_train_are_data_errors(tmp_path):
    raw = write_raw(tmp_path / "raw", many(1, 30) + many(2, 10))
    with pytest.raises(DataError, match=r"no rows survive the 20-core filter .* lower n_core"):
        prepare_kuairand(raw, tmp_path / "out")  # every video has one row
    with pytest.raises(DataError, match="no user keeps a train row"):
        prepare_kuairand(
            raw, tmp_path / "out", KuaiRandPrepareParams(n_core=1, val_per_user=20, test_per_user=20)
        )
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_failure_after_staging_leaves_nothing_and_keeps_an_old_result(tmp_path, monkeypatch):
    raw = write_raw(tmp_path / "raw", many(1, 30))
    prepare_kuairand(raw, tmp_path / "out", KuaiRandPrepareParams(**ALL))
    before = (tmp_path / "out" / "manifest.json").read_bytes()

    def fail(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(kr, "encode_items", fail)
    with pytest.raises(RuntimeError):
        prepare_kuairand(raw, tmp_path / "out", KuaiRandPrepareParams(**ALL))
    assert (tmp_path / "out" / "manifest.json").read_bytes() == before and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "bad",
    [{"version": "2k"}, {"n_core": 0}, {"session_key": "week"}, {"session_gap_minutes": 0},
     {"history_length": 0}, {"val_per_user": -1}, {"min_train_share": 1.5}, {"min_count": 0},
     {"user_features": ("user_id",)}, {"item_features": ("tag",)}, {"item_features": ("video_type", "video_type")},
     {"chunk_rows": 0}, {"n_core": True}],
)  # fmt: skip
def test_invalid_parameters_raise_config_error(bad):
    with pytest.raises(ConfigError):
        KuaiRandPrepareParams(**bad)
