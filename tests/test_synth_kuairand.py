"""Tests of the synthetic KuaiRand generator: the exact raw format of every file (checked against the
real KuaiRand-Pure feature files when ../shared/data/kuairand holds them), the label semantics, the
planted ground truth, determinism, and the 27K file layout."""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recrl_cli.data.prepare.kuairand import (
    BEHAVIOURS,
    LOG_COLUMNS,
    LOG_SCHEMA,
    USER_COLUMNS,
    USER_SCHEMA,
    VIDEO_COLUMNS,
    VIDEO_SCHEMA,
    raw_files,
)
from recrl_cli.data.synth import kuairand as synth
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.errors import ConfigError

# The real files: $RECRL_KUAIRAND_DIR, else ../shared/data/kuairand beside the repository.
REAL_DIR = Path(
    os.environ.get("RECRL_KUAIRAND_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared/data/kuairand"
)
CST = timezone(timedelta(hours=8))
FILES = raw_files("pure")
STD1, STD2 = FILES["standard"]
N_STD = 15_000


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth_kr") / "raw"
    return out, write_kuairand(out, num_users=300, num_items=200, num_impressions=N_STD, seed=0)


def read_log(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, schema=LOG_SCHEMA)


def standard(out: Path) -> pl.DataFrame:
    return pl.concat([read_log(out / STD1), read_log(out / STD2)])


def real_file(name: str) -> Path:
    path = REAL_DIR / name
    if not path.is_file():
        pytest.skip(f"real KuaiRand file {path} is not present")
    return path


# ---- exact format ---------------------------------------------------------------------------------


def test_file_names_headers_and_row_counts(raw):
    out, summary = raw
    expected = {
        STD1,
        STD2,
        FILES["random"],
        FILES["users"],
        FILES["videos"],
        "ground_truth.csv",
        "ground_truth.json",
    }
    assert {p.name for p in out.iterdir()} == expected
    for name in (STD1, STD2, FILES["random"]):
        assert (out / name).read_text().splitlines()[0] == ",".join(LOG_COLUMNS)
    assert (out / FILES["users"]).read_text().splitlines()[0] == ",".join(USER_COLUMNS)
    assert (out / FILES["videos"]).read_text().splitlines()[0] == ",".join(VIDEO_COLUMNS)
    assert len(LOG_COLUMNS) == 19 and len(USER_COLUMNS) == 31 and len(VIDEO_COLUMNS) == 12
    assert summary["rows"][STD1] + summary["rows"][STD2] == N_STD == standard(out).height
    # The random log keeps Pure's random/standard ratio; the real split is ~79 % / 21 % by period.
    assert summary["rows"][FILES["random"]] == round(N_STD * 1_186_059 / 1_436_609)
    assert summary["rows"][STD1] / N_STD == pytest.approx(synth.FIRST_SHARE, abs=0.03)


def test_headers_match_the_real_feature_files(raw):
    out, _ = raw
    for name in (FILES["users"], FILES["videos"]):
        real = real_file(name).read_text().splitlines()[0]
        assert (out / name).read_text().splitlines()[0] == real


def test_synthetic_feature_files_infer_the_same_types_as_the_real_ones(raw):
    out, _ = raw
    for name in (FILES["users"], FILES["videos"]):
        real = pl.read_csv(real_file(name), infer_schema_length=None).schema
        assert pl.read_csv(out / name, infer_schema_length=None).schema == real, name


def test_log_columns_are_integers_with_utc8_date_and_hour(raw):
    out, _ = raw
    for name, (lo, hi) in ((STD1, (synth.T_START, synth.T_SPLIT)), (STD2, (synth.T_SPLIT, synth.T_END)),
                           (FILES["random"], (synth.T_SPLIT, synth.T_END))):  # fmt: skip
        log = read_log(out / name)  # every one of the 19 columns parses as an integer
        assert log.null_count().sum_horizontal().item() == 0
        assert log["time_ms"].min() >= lo and log["time_ms"].max() < hi, name
        assert log.equals(log.sort("user_id", "time_ms", maintain_order=True)), name  # sorted within files
        for row in log.sample(20, seed=1).iter_rows(named=True):
            when = datetime.fromtimestamp(row["time_ms"] / 1000, CST)
            assert row["date"] == int(f"{when:%Y%m%d}") and row["hourmin"] == when.hour * 100
        assert log["is_rand"].unique().to_list() == [int(name == FILES["random"])]
    assert datetime.fromtimestamp(synth.T_START / 1000, UTC) == datetime(2022, 4, 7, 16, tzinfo=UTC)


def test_requests_share_a_millisecond_and_hold_at_most_six_rows(raw):
    out, summary = raw
    sizes = (
        standard(out).group_by("user_id", "time_ms").agg(pl.len(), pl.col("video_id").n_unique().alias("v"))
    )
    assert sizes["len"].max() == 6 and (sizes["len"] > 1).mean() > 0.3
    assert (sizes["v"] == sizes["len"]).mean() > 0.99  # a request rarely repeats a video
    assert summary["requests"] == sizes.height and summary["max_request_size"] == 6
    tabs = standard(out).group_by("user_id", "time_ms").agg(pl.col("tab").n_unique())
    assert tabs["tab"].max() == 1  # one request, one tab


def test_label_semantics_follow_kuairand_definitions(raw):
    log = pl.concat([standard(raw[0]), read_log(raw[0] / FILES["random"])])
    assert all(set(log[b].unique()) <= {0, 1} for b in BEHAVIOURS)
    click = log["is_click"] == 1
    for name in ("is_like", "is_comment", "is_forward", "is_follow", "long_view"):
        assert not ((log[name] == 1) & ~click).any(), name  # these need a (valid-play) click
    valid = pl.min_horizontal(pl.col("duration_ms"), pl.lit(7_000))
    long = pl.min_horizontal(pl.col("duration_ms"), pl.lit(18_000))
    checks = log.select(
        clicked_is_valid_play=((pl.col("play_time_ms") >= valid) | (pl.col("is_click") == 0)).all(),
        swipe_is_short=((pl.col("play_time_ms") < valid) | (pl.col("is_click") == 1)).all(),
        long_view_rule=((pl.col("long_view") == 1) == ((pl.col("is_click") == 1) & (pl.col("play_time_ms") >= long))).all(),
        no_play_off_tab1=((pl.col("play_time_ms") == 0) | (pl.col("is_click") == 1) | (pl.col("tab") == 1)).all(),
    )  # fmt: skip
    assert all(checks.row(0)), checks
    assert log["tab"].is_between(0, 14).all() and (log["tab"] == 1).mean() > 0.6
    enter = log.filter(pl.col("profile_stay_time") > 0)["is_profile_enter"]
    assert enter.len() == 0 or (enter == 1).all()


def test_user_features_have_the_real_quirks(raw):
    out, _ = raw
    text = (out / FILES["users"]).read_text()
    assert '"(10,50]"' in text and '"[10,100)"' in text  # range strings with commas are quoted
    users = pl.read_csv(out / FILES["users"], schema=USER_SCHEMA)
    assert users["user_id"].to_list() == list(range(300))
    assert set(users["is_live_streamer"]) == {-124, 1} and (users["is_live_streamer"] == -124).mean() > 0.6
    assert users["is_lowactive_period"].unique().to_list() == [0]
    assert users["onehot_feat4"].null_count() > 0 and users["onehot_feat12"].null_count() > 0
    blank = users.filter(pl.col("onehot_feat12").is_null())
    assert (
        blank.select(pl.col(f"onehot_feat{k}").null_count() for k in range(12, 18)).row(0)
        == (blank.height,) * 6
    )
    assert set(users["user_active_degree"]) <= {d[0] for d in synth.DEGREES}
    for name, (edges, side, labels) in synth.RANGES.items():  # the range string agrees with the number
        expect = np.array(labels)[np.searchsorted(edges, users[name].to_numpy(), side=side)]
        assert (users[f"{name}_range"].to_numpy() == expect).all(), name


def test_range_bins_agree_with_the_real_user_file():
    users = pl.read_csv(real_file(FILES["users"]), schema=USER_SCHEMA)
    for name, (edges, side, labels) in synth.RANGES.items():
        expect = np.array(labels)[np.searchsorted(edges, users[name].to_numpy(), side=side)]
        assert (users[f"{name}_range"].to_numpy() == expect).all(), name


def test_video_features_have_the_real_quirks(raw):
    out, _ = raw
    text = (out / FILES["videos"]).read_text()
    videos = pl.read_csv(out / FILES["videos"], schema=VIDEO_SCHEMA)
    assert videos["video_id"].to_list() == list(range(200))
    multi = videos.filter(pl.col("tag").str.contains(","))
    assert multi.height > 10 and f'"{multi["tag"][0]}"' in text  # multi-tags are quoted
    assert (
        videos["tag"].null_count() + videos["video_duration"].null_count() + videos["music_type"].null_count()
        > 0
    )
    assert set(videos["video_type"]) <= {"NORMAL", "AD", "UNKNOWN"}
    assert set(videos["music_type"].drop_nulls()) <= {t for t, _ in synth.MUSIC_TYPES}
    assert (videos["visible_status"] == 0).all()
    assert videos["upload_dt"].str.contains(r"^2022-04-(09|10|11)$").all()


# ---- hidden model --------------------------------------------------------------------------------


def test_positive_rates_are_calibrated_to_kuairand_pure(raw):
    _, summary = raw
    for name, rate in synth.RATES.items():
        assert summary["true_rate"][name] == pytest.approx(rate, rel=0.05), name  # intercepts solved for it
    assert summary["positive_rate"]["is_click"] == pytest.approx(0.4597, abs=0.02)
    assert summary["positive_rate"]["long_view"] == pytest.approx(0.3318, abs=0.02)
    assert summary["positive_rate"]["is_like"] == pytest.approx(0.0185, abs=0.006)
    assert summary["random_click_rate"] < summary["positive_rate"]["is_click"] - 0.05  # exposure bias


def test_ground_truth_rows_and_probabilities(raw):
    out, summary = raw
    truth = pl.read_csv(out / "ground_truth.csv")
    assert truth.columns == ["user_id", "video_id", "time_ms", "is_rand", *(f"p_{b.removeprefix('is_')}"
                                                                            for b in BEHAVIOURS), "play_mu"]  # fmt: skip
    assert truth.height == summary["rows"]["ground_truth.csv"] == N_STD + summary["rows"][FILES["random"]]
    p = truth.select(pl.col("^p_.*$")).to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    for name in ("p_long_view", "p_like", "p_comment", "p_forward", "p_follow"):
        assert (truth[name] <= truth["p_click"] + 1e-6).all(), name
    params = json.loads((out / "ground_truth.json").read_text())
    assert params["seed"] == 0 and params["num_impressions"] == N_STD
    assert set(params["intercepts"]) == {*BEHAVIOURS[:1], *BEHAVIOURS[2:], "play_mu"}


def test_ground_truth_explains_the_logged_labels(raw):
    out, summary = raw
    truth = (
        pl.read_csv(out / "ground_truth.csv")
        .filter(pl.col("is_rand") == 0)
        .unique(["user_id", "video_id", "time_ms"])
    )
    log = standard(out).join(truth, on=["user_id", "video_id", "time_ms"], how="left")
    assert log["p_click"].null_count() == 0
    for b in BEHAVIOURS[:3]:
        assert log[f"p_{b.removeprefix('is_')}"].mean() == pytest.approx(log[b].mean(), abs=0.02), b
    # Play time given a click: log(play - min(dur, 7 s)) ~ N(play_mu, sigma).
    clicked = log.filter(pl.col("is_click") == 1, pl.col("play_time_ms") < 1_000_000)
    resid = (
        np.log(clicked["play_time_ms"] - np.minimum(clicked["duration_ms"], 7_000) + 0.5) - clicked["play_mu"]
    )
    assert float(np.median(resid)) == pytest.approx(0.0, abs=0.1)
    assert 0.72 < summary["oracle_auc"]["is_click"] < 0.9


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_kuairand(tmp_path / name, num_users=40, num_items=30, num_impressions=1_000, seed=seed)
    for file in (STD1, STD2, FILES["random"], FILES["users"], FILES["videos"], "ground_truth.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    assert (tmp_path / "a" / STD1).read_bytes() != (tmp_path / "c" / STD1).read_bytes()


def test_27k_layout_cuts_each_period_into_two_parts_at_a_user_boundary(tmp_path):
    files = raw_files("27k")
    assert files["standard"] == [
        "log_standard_4_08_to_4_21_27k_part1.csv", "log_standard_4_08_to_4_21_27k_part2.csv",
        "log_standard_4_22_to_5_08_27k_part1.csv", "log_standard_4_22_to_5_08_27k_part2.csv",
    ]  # fmt: skip
    summary = write_kuairand(
        tmp_path, version="27k", num_users=60, num_items=50, num_impressions=3_000, seed=2
    )
    parts = [read_log(tmp_path / name) for name in files["standard"]]
    assert sum(p.height for p in parts) == 3_000 == sum(summary["rows"][n] for n in files["standard"])
    for first, second in (parts[:2], parts[2:]):
        assert first["user_id"].max() < second["user_id"].min()
        assert abs(first.height - second.height) < 0.3 * (first.height + second.height)
    assert {p.name for p in tmp_path.iterdir()} >= {files["users"], files["videos"], files["random"]}
    assert pl.read_csv(tmp_path / files["videos"], schema=VIDEO_SCHEMA)["upload_dt"].n_unique() > 3


def test_blocks_cover_all_users_in_order(monkeypatch):
    monkeypatch.setattr(synth, "BLOCK_ROWS", 10)
    rows = np.array([3, 0, 25, 4, 4, 4, 0, 1])
    blocks = synth._blocks(rows)
    assert blocks[0][0] == 0 and blocks[-1][1] == rows.size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    assert all(rows[lo:hi].sum() <= 10 or hi - lo == 1 for lo, hi in blocks[1:-1])


def test_small_blocks_give_the_same_model_rates(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "BLOCK_ROWS", 2_000)
    summary = write_kuairand(tmp_path, num_users=120, num_items=80, num_impressions=6_000, seed=3)
    log = standard(tmp_path)
    assert log.height == 6_000 and log["user_id"].n_unique() == summary["users_in_standard"]
    for name in (STD1, STD2):  # each file stays sorted although written block by block
        one = read_log(tmp_path / name)
        assert one.equals(one.sort("user_id", "time_ms", maintain_order=True))
    assert summary["positive_rate"]["is_click"] == pytest.approx(0.46, abs=0.04)


def test_progress_is_reported(tmp_path):
    calls = []
    write_kuairand(
        tmp_path, num_users=20, num_items=20, num_impressions=200, progress=lambda *a: calls.append(a)
    )
    assert calls[0][1] == 0 and calls[-1][1] == calls[-1][2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"version": "2k"}, "version"), ({"num_impressions": 10}, "num_impressions"),
     ({"num_users": 5}, "num_users"), ({"num_random": -1}, "num_random"), ({"num_items": 3.5}, "num_items")],
)  # fmt: skip
def test_invalid_arguments_are_config_errors_and_write_nothing(tmp_path, kwargs, message):
    base = {"num_users": 20, "num_items": 20, "num_impressions": 200}
    with pytest.raises(ConfigError, match=message):
        write_kuairand(tmp_path / "x", **{**base, **kwargs})
    assert not (tmp_path / "x").exists()
