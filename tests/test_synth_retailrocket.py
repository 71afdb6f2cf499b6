"""Tests of the synthetic RetailRocket generator: exact raw format and quirks, distributions,
determinism, and that its planted ground truth lines up with what `prepare` produces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket
from recrl_cli.data.synth import retailrocket as synth
from recrl_cli.data.synth.auc import rank_auc
from recrl_cli.data.synth.retailrocket import write_retailrocket
from recrl_cli.errors import ConfigError

HEADERS = {
    "events.csv": "timestamp,visitorid,event,itemid,transactionid",
    "item_properties_part1.csv": "timestamp,itemid,property,value",
    "item_properties_part2.csv": "timestamp,itemid,property,value",
    "category_tree.csv": "categoryid,parentid",
    "ground_truth.csv": "visitorid,itemid,timestamp,p_click,p_pay,p_click_item,p_pay_item",
}
N_EVENTS = 50_000


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "raw"
    return out, write_retailrocket(out, num_events=N_EVENTS, seed=0)


def events_of(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / "events.csv", schema_overrides={"transactionid": pl.Int64})


def props_of(out: Path) -> pl.DataFrame:
    return pl.concat(
        pl.read_csv(out / f"item_properties_part{k}.csv", schema_overrides={"value": pl.String})
        for k in (1, 2)
    )


def test_files_have_the_exact_kaggle_headers(raw):
    out, summary = raw
    for name, header in HEADERS.items():
        with open(out / name) as fh:
            assert fh.readline().rstrip("\n") == header
    assert sorted(p.name for p in out.iterdir()) == sorted([*HEADERS, "ground_truth.json"])
    assert summary["rows"]["events.csv"] == events_of(out).height


def test_event_count_and_mix_match_the_real_data(raw):
    out, summary = raw
    events = events_of(out)
    assert 0.97 * N_EVENTS <= events.height <= N_EVENTS
    mix = dict(events["event"].value_counts(normalize=True).iter_rows())
    assert set(mix) == {"view", "addtocart", "transaction"}
    assert mix["view"] == pytest.approx(0.967, abs=0.008)
    assert mix["addtocart"] == pytest.approx(0.025, abs=0.005)
    assert mix["transaction"] == pytest.approx(0.008, abs=0.003)
    assert summary["event_mix"]["view"] == pytest.approx(mix["view"])
    per_visitor = events.height / events["visitorid"].n_unique()
    assert 1.6 < per_visitor < 2.6  # real: ~2 events per visitor


def test_timestamps_are_13_digit_ms_in_the_real_period(raw):
    events = events_of(raw[0])
    assert events["timestamp"].min() >= synth.EVENT_START and events["timestamp"].max() <= synth.EVENT_END
    assert events["timestamp"].cast(pl.String).str.len_chars().unique().to_list() == [13]
    assert not events["timestamp"].is_sorted()  # roughly, not perfectly, time-ordered like the real file


def test_exact_duplicates_are_present(raw):
    out, summary = raw
    dups = events_of(out).group_by(pl.all()).len().filter(pl.col("len") > 1)
    assert dups.height == summary["duplicates"] > 0


def test_transactionid_only_on_transactions_and_shared_by_an_order(raw):
    events = events_of(raw[0])
    has_tx = events["transactionid"].is_not_null()
    assert (has_tx == (events["event"] == "transaction")).all()
    # Every bought (visitor, item) was added to the cart first.
    bought = events.filter(pl.col("event") == "transaction").select("visitorid", "itemid").unique()
    carted = events.filter(pl.col("event") == "addtocart").select("visitorid", "itemid").unique()
    assert bought.join(carted, on=["visitorid", "itemid"], how="anti").height == 0
    orders = (
        events.filter(has_tx).unique().group_by("transactionid").agg(pl.len(), pl.col("visitorid").n_unique())
    )
    assert orders["visitorid"].max() == 1 and orders["len"].max() > 1  # multi-item orders exist


def test_same_millisecond_ties_exist(raw):
    events = events_of(raw[0]).unique()
    ties = (
        events.group_by("visitorid", "timestamp").agg(pl.col("event").n_unique()).filter(pl.col("event") > 1)
    )
    assert ties.height > 0


def test_category_tree_has_empty_parent_for_roots_and_depth_at_most_5(raw):
    out = raw[0]
    lines = (out / "category_tree.csv").read_text().splitlines()[1:]
    assert any(line.endswith(",") for line in lines)  # "300," = a root
    tree = pl.read_csv(out / "category_tree.csv")
    parent = dict(tree.iter_rows())
    assert tree["parentid"].drop_nulls().is_in(tree["categoryid"]).all()
    depth = {c: 1 for c, p in parent.items() if p is None}
    for _ in range(6):  # levels, not rows
        depth |= {c: depth[p] + 1 for c, p in parent.items() if p in depth}
    assert len(depth) == len(parent) and max(depth.values()) <= 5


def test_property_log_format_and_change_log_semantics(raw):
    out = raw[0]
    props, events = props_of(out), events_of(out)
    assert ((props["timestamp"] - synth.SNAP0) % synth.WEEK_MS == 0).all()  # weekly snapshots, Sunday 03:00
    assert props["timestamp"].min() < events["timestamp"].min()
    price = props.filter(pl.col("property") == "790")["value"]
    assert price.str.contains(r"^n\d+\.\d{3}$").all()
    assert set(props.filter(pl.col("property") == "available")["value"]) == {"0", "1"}
    cats = props.filter(pl.col("property") == "categoryid")["value"].cast(pl.Int64)
    assert cats.is_in(pl.read_csv(out / "category_tree.csv")["categoryid"]).all()
    assert props.filter(pl.col("property") == "888")["value"].str.contains(" ").any()
    assert props["property"].n_unique() > 500
    # A value is written again only when it changes.
    for key in ("available", "790", "categoryid"):
        log = props.filter(pl.col("property") == key).sort("itemid", "timestamp")
        same = (log["itemid"] == log["itemid"].shift(1)) & (log["value"] == log["value"].shift(1))
        assert not same.any(), key
    assert props.filter(pl.col("property") == "available").group_by("itemid").len()["len"].max() > 1


def test_property_log_covers_more_items_than_events_but_not_all_event_items(raw):
    props, events = props_of(raw[0]), events_of(raw[0])
    prop_items, event_items = set(props["itemid"]), set(events["itemid"])
    assert len(prop_items) > len(event_items)
    share_without = len(event_items - prop_items) / len(event_items)
    assert 0.03 < share_without < 0.2  # real: ~10 % of event items have no properties
    assert props.height / events.height == pytest.approx(20_275_902 / 2_756_101, rel=0.1)


def test_ground_truth_is_consistent(raw):
    out, summary = raw
    truth = pl.read_csv(out / "ground_truth.csv")
    assert truth.height == summary["rows"]["ground_truth.csv"]
    assert ((truth["p_pay"] <= truth["p_click"]) & (truth["p_pay"] >= 0) & (truth["p_click"] <= 1)).all()
    params = json.loads((out / "ground_truth.json").read_text())
    assert params["seed"] == 0 and params["num_events"] == N_EVENTS and "coef" in params
    assert 0.7 < summary["oracle_auc"]["click"] < 0.9 and 0.75 < summary["oracle_auc"]["pay"] < 0.95


def test_ground_truth_rows_align_with_prepared_rows(raw, tmp_path):
    out, _ = raw
    prepare_retailrocket(out, tmp_path / "prep", RetailRocketPrepareParams())
    rows = pl.concat(pl.read_parquet(tmp_path / "prep" / f"{s}.parquet") for s in ("train", "val", "test"))
    truth = pl.read_csv(out / "ground_truth.csv")
    joined = rows.join(truth, on=["visitorid", "itemid", "timestamp"], how="left")
    assert joined.height == rows.height
    assert joined["p_click"].is_not_null().mean() >= 0.99
    # The planted probabilities explain the realised labels (calibration on average).
    assert joined["p_click"].mean() == pytest.approx(joined["click"].mean(), rel=0.15)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_retailrocket(tmp_path / name, num_events=3_000, seed=seed)
    for file in HEADERS:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "events.csv").read_bytes() != (tmp_path / "c" / "events.csv").read_bytes()


def test_tiny_sizes_work_and_progress_is_reported(tmp_path):
    calls = []
    summary = write_retailrocket(
        tmp_path / "tiny", num_events=300, seed=1, progress=lambda *a: calls.append(a)
    )
    assert 250 <= summary["rows"]["events.csv"] <= 300
    assert calls[0][1] == 0 and calls[-1][1] == calls[-1][2]


def test_too_few_events_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="at least 100"):
        write_retailrocket(tmp_path / "x", num_events=10)
    assert not (tmp_path / "x").exists()


def test_auc_helper_matches_a_pairwise_count():
    rng = np.random.default_rng(0)
    score, label = rng.integers(0, 5, 200).astype(float), rng.random(200) < 0.3
    pos, neg = score[label], score[~label]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert rank_auc(score, label) == pytest.approx(pairs)
    assert np.isnan(rank_auc(score, np.zeros(200, bool)))
