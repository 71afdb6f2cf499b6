"""What recrl draws and prints for people to read: a study chart of every family's headline metric with 95 % CIs
and honest axes, HRL-Rec's channel shares as a picture, and result tables that fit an 80-column terminal."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from recrl_cli.algorithms.catalog import FAMILIES, family_of
from recrl_cli.cli.resolve import run_config_from_cli
from recrl_cli.cli.train import metrics_table
from recrl_cli.reporting import bar_limits, plot_channel_shares
from recrl_cli.study import run_study
from recrl_cli.tracking.base import RecordingTracker

PNG = b"\x89PNG\r\n\x1a\n"
# One algorithm per family, each with the headline metric its study must chart.
ONE_PER_FAMILY = {"mmoe": "test/mean/auc", "rmtl": "test/mean/auc", "simulator": "test/mean/auc",
                  "hac": "test/agent/total_reward", "unifiedrl": "test/policy/reward", "hrlrec": "test/agent/ctr"}  # fmt: skip


def test_every_family_has_a_headline_metric_and_the_table_above_covers_them():
    assert {family_of(algo).name for algo in ONE_PER_FAMILY} == set(FAMILIES)
    assert all(family_of(algo).headline == metric for algo, metric in ONE_PER_FAMILY.items())


@pytest.mark.parametrize("algo", list(ONE_PER_FAMILY))
def test_a_study_charts_its_familys_headline_metric(algo, tmp_path):
    headline = ONE_PER_FAMILY[algo]
    cfg = run_config_from_cli(algo, config=None, sets=None)

    def train(cfg, tracker, **kwargs):  # a stand-in run: the headline metric per variant and seed
        value = 0.6 + 0.01 * (cfg.train.seed % 3) + 0.001 * cfg.train.checkpoint_every / 100
        return SimpleNamespace(metrics={headline: value, "test/other/metric": 1.0})

    tracker = RecordingTracker()
    result = run_study(cfg, [("train.checkpoint_every", ["100", "200"])], seeds=2, tracker=tracker,
                       experiment="pictures", train_fn=train, out_dir=tmp_path)  # fmt: skip
    name = f"study_{headline.replace('/', '_')}.png"
    png = result.table_csv.parent / name
    assert png.read_bytes()[:8] == PNG
    assert tracker.runs[result.parent_run_id].artifacts[name][:8] == PNG  # on the study's MLflow run
    assert not (result.table_csv.parent / "study_test_other_metric.png").exists()  # the headline only


def test_study_axes_start_at_zero_for_rates_and_rewards_and_at_chance_for_an_auc():
    low, high = bar_limits("test/agent/ctr", [0.2, 0.19], [0.6, 0.8])  # two seeds: CIs far below 0
    assert low == 0.0 and high == 1.0  # a rate stays in [0, 1]
    low, high = bar_limits("test/agent/total_reward", [6.7, 6.9], [0.1, 0.2])
    assert low == 0.0 and high > 7.1  # not zoomed onto 6.6-7.1
    low, _ = bar_limits("test/mean/auc", [0.61, 0.62], [0.01, 0.01])
    assert low == 0.5  # bars start at chance
    low, _ = bar_limits("test/policy/reward_change_pct", [-2.0, 1.0], [0.5, 0.5])
    assert low < -2.5  # a signed change shows its negative side


def test_hrlrec_channel_shares_are_drawn_per_policy(tmp_path):
    metrics = {"shares/agent/c1": 0.7, "shares/agent/c2": 0.3, "shares/quota/c1": 0.5, "shares/quota/c2": 0.5,
               "test/agent/ctr": 0.2}  # fmt: skip
    assert plot_channel_shares(metrics, tmp_path / "shares.png", "hrlrec")
    assert (tmp_path / "shares.png").read_bytes()[:8] == PNG
    assert not plot_channel_shares({"test/agent/ctr": 0.2}, tmp_path / "none.png", "mmoe")
    assert not (tmp_path / "none.png").exists()


# HRL-Rec's printed test table: 13 list and offline metrics of 5 policies (cut to "…" at 80 columns before).
HRLREC = {f"{who}/{m}": 0.1234 + i for i, who in enumerate(("agent", "quota", "single-ranker", "random"))
          for m in ("ch_entropy", "clicks", "ctr", "dwell", "ild", "novelty", "reward", "share_kl", "share_std",
                    "tags")}  # fmt: skip
HRLREC |= {"offline/channel_acc": 0.37, "offline/item_auc": 0.48, "agent/gap_fraction": 0.5}


def _render(table, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_a_wide_table_is_turned_round_to_fit_80_columns_with_every_value_whole():
    text = _render(metrics_table(HRLREC, "hrlrec: test metrics", width=80), 80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.strip("┃").split("┃")] == [
        "metric", "agent", "quota", "single-ranker", "random", "offline"]  # fmt: skip
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    assert len(rows) == 13 and "item_auc" in rows and "ctr" in rows
    assert re.search(r"2\.1234\s+│\s+3\.1234", rows["ctr"])  # single-ranker, random: whole values


def test_a_turned_table_still_too_wide_is_split_into_consecutive_policies():
    policies = ("agent", "quota", "single-ranker", "random", "popular", "oracle")
    metrics = {
        f"{who}/{m}": 10.1234 + i for i, who in enumerate(policies) for m in ("ctr", "reward", "reward_se")
    }
    metrics |= {"offline/item_auc": 0.48, "agent/gap_vs_popular": -0.25, "popular/gap_fraction": 0.4}
    text = _render(metrics_table(metrics, "hrlrec: test metrics", width=80), 80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    headers = [
        [c.strip() for c in line.strip("┃").split("┃")] for line in text.splitlines() if line.startswith("┃")
    ]
    assert len(headers) == 2 and all(h[0] == "metric" for h in headers)
    assert [p for h in headers for p in h[1:]] == [*policies, "offline"]  # every policy once, in order
    assert "hrlrec: test metrics (continued)" in text and "15.1234" in text and "-0.2500" in text


def test_a_table_that_fits_keeps_one_row_per_task():
    metrics = {
        f"{t}/{m}": 0.5 for t in ("click", "pay", "mean") for m in ("auc", "gauc", "logloss", "s_logloss")
    }
    text = _render(metrics_table(metrics, "mmoe: test metrics", width=80), 80)
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.strip("┃").split("┃")] == [
        "task",
        "auc",
        "gauc",
        "logloss",
        "s_logloss",
    ]
