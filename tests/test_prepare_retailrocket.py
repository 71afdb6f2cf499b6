"""Tests of `recrl prepare retailrocket`: each rule on tiny hand-written raw CSVs, synth -> prepare
round trips, the encoder, the manifest, atomic output, and every user-facing error path."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import polars as pl
import pytest

from recrl_cli.data import manifest as mf
from recrl_cli.data.atomic import TMP_MARK, atomic_output_dir
from recrl_cli.data.prepare import retailrocket as rr
from recrl_cli.data.prepare.encoding import RARE_ID, UNKNOWN_ID, encode_all, fit_vocab, fit_vocabs
from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket
from recrl_cli.data.synth.retailrocket import write_retailrocket
from recrl_cli.errors import ConfigError, DataError

EV_HEADER = "timestamp,visitorid,event,itemid,transactionid"
PR_HEADER = "timestamp,itemid,property,value"
MIN = 60_000
T0 = 1_433_221_332_117
COLUMNS = ["session_id", "visitorid", "itemid", "timestamp", "position", *rr.FEATURES, "click", "pay",
           "click_ts", "pay_ts", "hist_prev"]  # fmt: skip


def ev(t: int, visitor: int, event: str, item: int, tx: str = "") -> str:
    return f"{t},{visitor},{event},{item},{tx}"


def write_raw(d: Path, events: list[str], props: list[str] = (), tree: list[str] | None = None) -> Path:
    """Raw RetailRocket files under ``d``; properties are split over the two parts."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "events.csv").write_text("\n".join([EV_HEADER, *events]) + "\n")
    half = len(props) // 2
    (d / "item_properties_part1.csv").write_text("\n".join([PR_HEADER, *props[:half]]) + "\n")
    (d / "item_properties_part2.csv").write_text("\n".join([PR_HEADER, *props[half:]]) + "\n")
    if tree is not None:
        (d / "category_tree.csv").write_text("\n".join(["categoryid,parentid", *tree]) + "\n")
    return d


def sessions_of(tmp_path: Path, events: list[str], **params) -> pl.DataFrame:
    events_df, _ = rr.read_events(write_raw(tmp_path / "raw", events) / "events.csv")
    return rr.item_sessions(events_df, RetailRocketPrepareParams(**params))


def many_sessions(n: int = 10) -> list[str]:
    """``n`` one-item sessions of different visitors, an hour apart."""
    return [ev(T0 + k * 60 * MIN, 100 + k, "view", 500 + k % 3) for k in range(n)]


# ---- rules on hand-written fixtures -------------------------------------------------------------


def test_dedup_keeps_the_copy_with_a_transactionid(tmp_path):
    rows = [ev(T0, 1, "view", 10), ev(T0, 1, "view", 10), ev(T0 + 1000, 1, "addtocart", 10),
            ev(T0 + 2000, 1, "transaction", 10), ev(T0 + 2000, 1, "transaction", 10, "77")]  # fmt: skip
    events, n_raw = rr.read_events(write_raw(tmp_path, rows) / "events.csv")
    assert (n_raw, events.height) == (5, 3)
    assert events.filter(pl.col("event") == "transaction")["transactionid"].to_list() == [77]


def test_gap_sessions_split_strictly_after_the_gap(tmp_path):
    rows = [ev(T0, 1, "view", 1), ev(T0 + 30 * MIN, 1, "view", 2), ev(T0 + 60 * MIN + 1, 1, "view", 3),
            ev(T0 + 5 * MIN, 2, "view", 1)]  # fmt: skip
    out = sessions_of(tmp_path, rows).filter(pl.col("visitorid") == 1).sort("timestamp")
    sid = out["session_id"].to_list()
    assert sid[0] == sid[1] != sid[2]  # exactly 30 min: same session; 30 min + 1 ms: a new one
    assert out["position"].to_list() == [0, 1, 0]
    assert sessions_of(tmp_path / "b", rows, session_gap_minutes=31)["session_id"].n_unique() == 2


def test_session_ids_are_dense_and_numbered_by_start(tmp_path):
    rows = [ev(T0 + 90 * MIN, 1, "view", 1), ev(T0, 2, "view", 1), ev(T0 + 10 * MIN, 3, "view", 1)]
    out = sessions_of(tmp_path, rows)
    assert out["session_id"].to_list() == [0, 1, 2]
    assert out["visitorid"].to_list() == [2, 3, 1]


def test_visitor_sessions_ignore_the_gap(tmp_path):
    rows = [ev(T0, 1, "view", 1), ev(T0 + 5 * 24 * 60 * MIN, 1, "view", 2), ev(T0 + 1, 2, "view", 1)]
    out = sessions_of(tmp_path, rows, session_key="visitor").filter(pl.col("visitorid") == 1)
    assert out["session_id"].n_unique() == 1 and out["position"].to_list() == [0, 1]


def test_item_session_labels_and_positions(tmp_path):
    s = 1000
    rows = [  # file order is shuffled on purpose; only the same-ms pair E (item 5) / D (item 4) keeps order
        ev(T0 + 30 * s, 7, "transaction", 2, "9"), ev(T0 + 20 * s, 7, "view", 1), ev(T0, 7, "view", 1),
        ev(T0 + 60 * s, 7, "view", 5), ev(T0 + 30 * s, 7, "addtocart", 2), ev(T0 + 10 * s, 7, "view", 2),
        ev(T0 + 40 * s, 7, "view", 3), ev(T0 + 50 * s, 7, "addtocart", 3), ev(T0 + 60 * s, 7, "view", 4),
    ]  # fmt: skip
    out = sessions_of(tmp_path, rows).sort("position")
    assert out["session_id"].n_unique() == 1
    assert out["itemid"].to_list() == [1, 2, 3, 5, 4]
    assert out["click"].to_list() == [0, 1, 1, 0, 0]
    assert out["pay"].to_list() == [0, 1, 0, 0, 0]
    assert out["timestamp"].to_list() == [T0, T0 + 10 * s, T0 + 40 * s, T0 + 60 * s, T0 + 60 * s]
    assert out.schema["position"] == pl.Int32 and out.schema["click"] == pl.Int8


def test_min_session_items_drops_short_sessions(tmp_path):
    rows = [ev(T0, 1, "view", 1), ev(T0 + 1000, 1, "view", 2), ev(T0, 2, "view", 1)]
    out = sessions_of(tmp_path, rows, min_session_items=2)
    assert out["visitorid"].to_list() == [1, 1] and out["session_id"].to_list() == [0, 0]
    with pytest.raises(DataError, match="min_session_items"):
        sessions_of(tmp_path / "b", rows, min_session_items=3)


def test_as_of_features_use_the_value_at_or_before_the_event(tmp_path):
    events = [ev(T0 + 10 * MIN, 1, "view", 10), ev(T0 + 100 * MIN, 2, "view", 10),
              ev(T0 + 10 * MIN, 3, "view", 11), ev(T0 + 10 * MIN, 4, "view", 12)]  # fmt: skip
    props = [f"{T0},10,available,1", f"{T0 + 50 * MIN},10,available,0", f"{T0},10,categoryid,5",
             f"{T0 + 20 * MIN},11,categoryid,6", f"{T0 + 10 * MIN},12,790,n99.000",
             f"{T0},12,888,1116713 960601 n277.200", f"{T0},12,364,n12.000 555"]  # fmt: skip
    raw = write_raw(tmp_path, events, props, tree=["1,", "5,1", "6,5"])
    rows = rr.item_sessions(rr.read_events(raw / "events.csv")[0], RetailRocketPrepareParams())
    props_df = pl.concat([rr.read_properties(raw / p) for p in rr.PROPS])
    tree = pl.read_csv(raw / "category_tree.csv", schema=rr.TREE_SCHEMA)
    out = rr.add_item_features(rows, props_df, tree).sort("visitorid")
    assert out["available"].to_list() == ["1", "0", None, None]  # changed between the two events of item 10
    assert out["category"].to_list() == [5, 5, None, None]  # item 11's category is set only after its event
    assert out["parent_category"].to_list() == [1, 1, None, None]
    assert math.isclose(out["price"][3], math.log1p(99.0))  # a value stamped at the event's ms is used
    assert out["prop_888"][3] == "1116713" and out["prop_364"][3] == "n12.000"
    assert out["position_bucket"].to_list() == [0, 0, 0, 0]


def test_as_of_feature_changes_the_encoded_id(tmp_path):
    events = many_sessions(10)
    props = [f"{T0 - MIN},500,available,1", f"{T0 + 150 * MIN},500,available,0"]
    raw = write_raw(tmp_path / "raw", events, props)
    prepare_retailrocket(raw, tmp_path / "out", RetailRocketPrepareParams(min_count=1))
    train = pl.read_parquet(tmp_path / "out" / "train.parquet").filter(pl.col("itemid") == 500)
    assert train["available"].n_unique() == 2 and UNKNOWN_ID not in train["available"].to_list()


def test_price_buckets_are_fitted_on_train_log_prices(tmp_path):
    events = many_sessions(10)
    props = [f"{T0 - MIN},{500 + k},790,n{10 ** (k + 1)}.000" for k in range(3)]
    raw = write_raw(tmp_path / "raw", events, props)
    m = prepare_retailrocket(raw, tmp_path / "out", RetailRocketPrepareParams(min_count=1, price_buckets=3))
    train = pl.read_parquet(tmp_path / "out" / "train.parquet")
    assert train.group_by("itemid").agg(pl.col("price_bucket").n_unique())["price_bucket"].max() == 1
    assert train["price_bucket"].n_unique() == 3
    assert {f["name"]: f["cardinality"] for f in m["features"]}["price_bucket"] == 5


def test_without_category_tree_parent_is_missing(tmp_path):
    raw = write_raw(tmp_path / "raw", many_sessions(10), [f"{T0 - MIN},500,categoryid,3"])
    m = prepare_retailrocket(raw, tmp_path / "out", RetailRocketPrepareParams(min_count=1))
    assert {f["name"]: f["cardinality"] for f in m["features"]}["parent_category"] == 2
    assert set(pl.read_parquet(tmp_path / "out" / "train.parquet")["parent_category"]) == {0}
    assert "category_tree.csv" not in m["raw"]["files"]


# ---- encoder ------------------------------------------------------------------------------------


def test_encoder_ranks_rare_bucket_and_unknown():
    train = pl.DataFrame({"v": ["b"] * 5 + ["a"] * 5 + ["c"] * 2 + ["d"] + [None]})
    vocab = fit_vocab(train, "v", min_count=3)
    assert vocab.cardinality == 4  # 0 unknown, 1 rare, 2 = "a", 3 = "b" (equal counts: by value)
    coded = vocab.encode(pl.DataFrame({"v": ["a", "b", "c", "d", "zzz", None]}))["v"].to_list()
    assert coded == [2, 3, RARE_ID, RARE_ID, UNKNOWN_ID, UNKNOWN_ID]
    assert vocab.value_of(pl.Series([2, 3, 1, 0], dtype=pl.Int32)).to_list() == ["a", "b", None, None]


def test_encoder_is_fitted_on_train_only_and_deterministic():
    train = pl.DataFrame({"v": [3, 3, 1, 2, 2, 2], "w": ["x"] * 6})
    val = pl.DataFrame({"v": [9, 9, 9, 3], "w": ["y", "x", "x", "x"]})
    vocabs = fit_vocabs(train, ("v", "w"), min_count=1)
    assert encode_all(val, vocabs)["v"].to_list() == [0, 0, 0, 3]  # 9 is frequent in val, unseen in train
    shuffled = fit_vocab(train.sample(fraction=1.0, shuffle=True, seed=3), "v", 1)
    assert shuffled.table.equals(vocabs["v"].table)
    assert vocabs["v"].table["id"].dtype == pl.Int32


def test_encoder_edge_cases():
    empty = fit_vocab(pl.DataFrame({"v": pl.Series([], dtype=pl.String)}), "v", 5)
    assert empty.cardinality == 2
    assert empty.encode(pl.DataFrame({"v": ["a"]}))["v"].to_list() == [0]
    with pytest.raises(ConfigError):
        fit_vocab(pl.DataFrame({"v": ["a"]}), "v", 0)


# ---- synth -> prepare round trip: splits and manifest -------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("roundtrip")
    write_retailrocket(root / "raw", num_events=4_000, seed=3)
    return root, prepare_retailrocket(root / "raw", root / "out", RetailRocketPrepareParams(min_count=2))


def test_split_files_have_the_exact_columns_and_order(prepared):
    root, _ = prepared
    for name in mf.SPLITS:
        df = pl.read_parquet(root / "out" / f"{name}.parquet")
        assert df.columns == COLUMNS
        assert [str(t) for t in df.dtypes] == ["Int64"] * 4 + ["Int32"] * 10 + ["Int8"] * 2 + [
            "Int64"
        ] * 2 + ["Array(Int64, shape=(10,))"]
        assert df.equals(df.sort("session_id", "position"))
        per = df.group_by("session_id").agg(pl.col("position").sort(), pl.len())
        assert all(p == list(range(n)) for p, n in per.select("position", "len").iter_rows())


def test_chronological_split_keeps_sessions_whole_and_ordered(prepared):
    root, _ = prepared
    frames = [pl.read_parquet(root / "out" / f"{n}.parquet") for n in mf.SPLITS]
    ids = [set(f["session_id"]) for f in frames]
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    assert set().union(*ids) == set(range(sum(len(i) for i in ids)))
    assert max(ids[0]) < min(ids[1]) and max(ids[1]) < min(ids[2])
    starts = [f.filter(pl.col("position") == 0)["timestamp"] for f in frames]
    assert starts[0].max() <= starts[1].min() and starts[1].max() <= starts[2].min()
    assert abs(len(ids[0]) / sum(len(i) for i in ids) - 0.6) < 0.01


def test_manifest_contents_and_hashes(prepared):
    root, m = prepared
    out = root / "out"
    assert mf.read_manifest(out) == json.loads(json.dumps(m))
    assert m["schema_version"] == mf.SCHEMA_VERSION and m["dataset"] == "retailrocket"
    assert m["tasks"] == ["click", "pay"] and [f["name"] for f in m["features"]] == list(rr.FEATURES)
    assert m["parameters"] == {
        **dataclasses.asdict(RetailRocketPrepareParams(min_count=2)),
        "split": [0.6, 0.2, 0.2],
    }
    hashes = {}
    for name in mf.SPLITS:
        info, df = m["splits"][name], pl.read_parquet(out / f"{name}.parquet")
        assert info["sha256"] == mf.file_sha256(out / info["file"])
        assert (info["rows"], info["sessions"], info["users"]) == (
            df.height, df["session_id"].n_unique(), df["visitorid"].n_unique())  # fmt: skip
        assert info["positive_rate"]["click"] == pytest.approx(df["click"].mean())
        for f in m["features"]:
            assert df[f["name"]].max() < f["cardinality"]
        hashes[name] = info["sha256"]
    assert m["fingerprint"] == mf.fingerprint(hashes, m["parameters"])
    raw = m["raw"]
    assert raw["events_rows"] - raw["duplicates_removed"] == raw["events_after_dedup"]
    assert raw["files"]["events.csv"]["bytes"] == (root / "raw" / "events.csv").stat().st_size
    mf.verify_splits(out, m)


def test_prepare_is_deterministic(prepared, tmp_path):
    root, m = prepared
    again = prepare_retailrocket(root / "raw", tmp_path / "again", RetailRocketPrepareParams(min_count=2))
    assert again["fingerprint"] == m["fingerprint"]


def test_prepare_reports_progress(tmp_path):
    calls = []
    raw = write_raw(tmp_path / "raw", many_sessions(10))
    prepare_retailrocket(raw, tmp_path / "out", progress=lambda *a: calls.append(a))
    assert calls[0][1] == 0 and calls[-1][1] == calls[-1][2] and len(calls) >= 5


# ---- manifest helpers ---------------------------------------------------------------------------


def test_read_manifest_errors(prepared, tmp_path):
    _, m = prepared
    with pytest.raises(DataError, match="recrl prepare retailrocket"):
        mf.read_manifest(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        mf.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**m, "schema_version": 99}))
    with pytest.raises(DataError, match="schema_version"):
        mf.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({k: v for k, v in m.items() if k != "splits"}))
    with pytest.raises(DataError, match="lacks splits"):
        mf.read_manifest(tmp_path)
    with pytest.raises(DataError, match="split file"):
        mf.verify_splits(tmp_path, m)


def test_verify_splits_detects_a_changed_file(prepared, tmp_path):
    root, m = prepared
    for name in mf.SPLITS:
        (tmp_path / f"{name}.parquet").write_bytes((root / "out" / f"{name}.parquet").read_bytes())
    mf.verify_splits(tmp_path, m)
    with open(tmp_path / "val.parquet", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(DataError, match="does not match"):
        mf.verify_splits(tmp_path, m)


# ---- atomic output ------------------------------------------------------------------------------


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if TMP_MARK in p.name]


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "half.parquet").write_text("partial")
        raise RuntimeError("boom")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_atomic_dir_replaces_an_existing_target_only_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_output_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("boom")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_output_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"] and leftovers(tmp_path) == []


def test_failed_prepare_leaves_no_output(tmp_path, monkeypatch):
    raw = write_raw(tmp_path / "raw", many_sessions(10))

    def fail(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rr, "_split_summary", fail)
    with pytest.raises(RuntimeError):
        prepare_retailrocket(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


# ---- error paths --------------------------------------------------------------------------------


def raw_with(tmp_path: Path, name: str, content: str | None) -> Path:
    raw = write_raw(tmp_path / "raw", many_sessions(10), [f"{T0},500,available,1"], tree=["1,"])
    if content is None:
        (raw / name).unlink()
    else:
        (raw / name).write_text(content)
    return raw


EVF, P1, P2, TRF = "events.csv", "item_properties_part1.csv", "item_properties_part2.csv", "category_tree.csv"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (EVF, None, "missing .*events.csv.*retailrocket/ecommerce-dataset.*recrl synth retailrocket"),
        (P2, None, "missing .*item_properties_part2.csv"),
        (EVF, "", "events.csv is empty"),
        (EVF, EV_HEADER + "\n", "header but no events"),
        (EVF, "timestamp,visitor,event,itemid,transactionid\n1,2,view,3,\n", "has header"),
        (P1, "timestamp,itemid,value\n", "item_properties_part1.csv has header"),
        (EVF, f"{EV_HEADER}\nabc,2,view,3,\n", "events.csv could not be parsed"),
        (EVF, f"{EV_HEADER}\n{T0},2,view,3,\n{T0},257597,vi", "events.csv ends with a truncated line"),
        (EVF, f"{EV_HEADER}\n{T0},2,view,3,\n{T0},4\n{T0},5,view,6,\n", "rows with missing fields"),
        (EVF, f"{EV_HEADER}\n{T0},2,click,3,\n", "unknown event 'click'"),
        (P2, f"{PR_HEADER}\n{T0},1,available,1\n{T0},1,categ", "part2.csv ends with a truncated line"),
        (P2, f"{PR_HEADER}\nsoon,1,available,1\n", "part2.csv could not be parsed"),
        (P1, f"{PR_HEADER}\n{T0},,available,1\n", "part1.csv has rows with a missing timestamp or itemid"),
        (TRF, "categoryid,parentid\nroot,\n", "category_tree.csv could not be parsed"),
        (TRF, "", "category_tree.csv is empty"),
    ],
)
def test_bad_raw_files_raise_one_line_data_errors(tmp_path, name, content, message):
    raw = raw_with(tmp_path, name, content)
    with pytest.raises(DataError, match=message) as err:
        prepare_retailrocket(raw, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_category_tree_is_allowed(tmp_path):
    raw = raw_with(tmp_path, "category_tree.csv", None)
    assert prepare_retailrocket(raw, tmp_path / "out")["splits"]["train"]["rows"] > 0


def test_too_few_sessions_and_bad_output_path(tmp_path):
    raw = write_raw(tmp_path / "raw", many_sessions(2))
    with pytest.raises(DataError, match="too few"):
        prepare_retailrocket(raw, tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        prepare_retailrocket(write_raw(tmp_path / "raw10", many_sessions(10)), tmp_path / "file")


@pytest.mark.parametrize(
    "bad",
    [{"split": (0.5, 0.5, 0.1)}, {"split": (1.0, 0.0, 0.0)}, {"split": (0.5, 0.5)}, {"session_key": "day"},
     {"min_count": 0}, {"price_buckets": 0}, {"session_gap_minutes": -5}, {"min_session_items": 0}],
)  # fmt: skip
def test_invalid_parameters_raise_config_error(bad):
    with pytest.raises(ConfigError):
        RetailRocketPrepareParams(**bad)
