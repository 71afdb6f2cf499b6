"""Out-of-core KuaiRand preparation: user-range partitions, budgeted user blocks, same bytes as in memory.

Plus the regression check on the real KuaiRand-Pure logs (slow; runs only where they are present).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recrl_cli.data.atomic import TMP_MARK
from recrl_cli.data.prepare import budget
from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand, raw_files
from recrl_cli.data.prepare.kuairand_logs import stage_logs, user_id_range
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.errors import ConfigError, DataError

# The real files: $RECRL_KUAIRAND_DIR, else ../shared/data/kuairand beside the repository.
REAL_DIR = Path(
    os.environ.get("RECRL_KUAIRAND_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared/data/kuairand"
)
OUTPUTS = ("rows", "train", "val", "test", "users", "items")
MEMORY_KEYS = ("chunk_rows", "memory_budget", "partitions")


@pytest.fixture(scope="module")
def raw_27k(tmp_path_factory):
    """A small 27K-shaped raw set: the four part files, ids of users and videos as in 27K."""
    raw = tmp_path_factory.mktemp("k27") / "raw"
    write_kuairand(raw, version="27k", num_users=150, num_items=1_200, num_impressions=30_000, seed=2)
    return raw


@pytest.fixture(scope="module")
def in_memory(raw_27k):
    """The in-memory path: one partition, one user block."""
    out = raw_27k.parent / "one"
    params = KuaiRandPrepareParams(version="27k", partitions=1, chunk_rows=10**9)
    return out, prepare_kuairand(raw_27k, out, params)


def budget_for(manifest: dict, rows: int) -> str:
    """A memory_budget (bytes) whose blocks hold about ``rows`` rows for this manifest's counts."""
    fixed = budget.BASE_BYTES + max(budget.KEY_BYTES * manifest["ncore"]["passes"][0]["items"],
                                    budget.ITEM_BYTES * manifest["tables"]["items"]["rows"])  # fmt: skip
    return str(fixed + budget.ROW_BYTES * rows)


def comparable(manifest: dict) -> dict:
    """The manifest without what the memory settings and the clock change (and its checksum, over all of it)."""
    out = {k: v for k, v in manifest.items() if k not in ("created_at", "memory", "checksum")}
    out["parameters"] = {k: v for k, v in manifest["parameters"].items() if k not in MEMORY_KEYS}
    return out


def test_budgeted_partitioned_output_equals_the_in_memory_output(raw_27k, in_memory, tmp_path):
    one_dir, one = in_memory
    core_rows = one["tables"]["rows"]["rows"]
    calls = []
    params = KuaiRandPrepareParams(version="27k", partitions=5, memory_budget=budget_for(one, core_rows // 5))
    many = prepare_kuairand(raw_27k, tmp_path / "many", params, progress=lambda *a: calls.append(a))
    assert one["memory"]["blocks"] == 1 and one["memory"]["partitions"] == 1
    assert many["memory"]["blocks"] >= 5 and many["memory"]["partitions"] == 5
    assert many["memory"]["largest_block_rows"] < core_rows / 3
    assert many["memory"]["estimated_peak_bytes"] <= many["memory"]["budget_bytes"]
    # A progress bar per user block and per staged file, each from 0 to its total.
    blocks = [c for c in calls if c[0] == "user blocks"]
    assert [c[1] for c in blocks] == list(range(many["memory"]["blocks"] + 1))
    assert [c[1] for c in calls if c[0] == "stage logs (files)"] == [0, 1, 2, 3, 4]
    for name in OUTPUTS:
        assert (tmp_path / "many" / f"{name}.parquet").read_bytes() == (
            one_dir / f"{name}.parquet"
        ).read_bytes()
    assert comparable(many) == comparable(one) and many["fingerprint"] == one["fingerprint"]
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == sorted(
        [*(f"{n}.parquet" for n in OUTPUTS), "manifest.json"]
    )  # the staged partitions are gone


def test_staged_partitions_hold_user_id_ranges_and_a_range_scan_reads_its_users(raw_27k, tmp_path):
    files = raw_files("27k")
    staged = stage_logs(
        [raw_27k / n for n in files["standard"]], tmp_path, 4, user_id_range(raw_27k / files["users"])
    )
    full = staged.scan().collect()
    assert staged.rows == full.height == 30_000 and sorted(staged.files) == [0, 1, 2, 3]
    for p, paths in staged.files.items():  # each partition holds exactly the users that map to it
        ids = pl.scan_parquet(paths, hive_partitioning=False).select("user_id").collect()["user_id"]
        assert {staged.part_of(u) for u in ids.unique().to_list()} == {p}
    assert [staged.part_of(u) for u in (-5, 0, 37, 38, 75, 149, 10**6)] == [0, 0, 0, 1, 2, 3, 3]
    lo, hi = 30, 80  # spans partitions 0..2
    want = full.filter(pl.col("user_id").is_between(lo, hi)).sort("file", "line")
    assert staged.scan(lo, hi).collect().sort("file", "line").equals(want)


def test_a_budget_below_the_fixed_cost_is_a_data_error_and_leaves_nothing(raw_27k, tmp_path):
    with pytest.raises(DataError, match=r"memory_budget 100MiB is too small .* need about .*; raise it"):
        prepare_kuairand(
            raw_27k, tmp_path / "out", KuaiRandPrepareParams(version="27k", memory_budget="100MiB")
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4GiB", 4 * 2**30),
        ("512MiB", 512 * 2**20),
        ("1.5G", 1_500_000_000),
        ("800", 800),
        (" 2 gb ", 2 * 10**9),
    ],
)
def test_parse_bytes(text, value):
    assert budget.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["lots", "4 GiB x", "-1GiB", "0", "4XB", ""])
def test_parse_bytes_rejects_non_sizes(text):
    with pytest.raises(ConfigError, match="memory_budget must be"):
        budget.parse_bytes(text)


@pytest.mark.parametrize("bad", [{"memory_budget": "plenty"}, {"partitions": -1}, {"partitions": 1.5}])
def test_invalid_memory_settings_raise_config_error(bad):
    with pytest.raises(ConfigError):
        KuaiRandPrepareParams(**bad)


@pytest.mark.parametrize("seed", range(3))
def test_user_blocks_match_a_naive_loop_and_respect_the_budget(seed):
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, 400, 300)
    chunk = int(rng.integers(50, 2_000))
    got = budget.user_blocks(rows, chunk)
    want, start, seen = [], 0, {}
    for r in rows:  # a user joins the block its first row falls in; blocks renumbered 0, 1, ...
        want.append(seen.setdefault(start // chunk, len(seen)))
        start += r
    assert got.tolist() == want
    limit = budget.BASE_BYTES + budget.ITEM_BYTES * 1_000 + budget.ROW_BYTES * 1_500
    plan = budget.plan_blocks(str(limit), 10**9, 100, 1_000, rows)
    per_block = np.bincount(budget.user_blocks(rows, plan.chunk_rows), weights=rows)
    assert per_block.max() == plan.largest_block_rows <= 1_500 and plan.blocks == per_block.size
    assert plan.estimated_peak_bytes <= limit == plan.budget_bytes
    assert budget.plan_blocks("", 10**9, 100, 1_000, rows).blocks == 1  # no budget: chunk_rows only


def test_cli_memory_budget_option(cli, raw_27k, tmp_path):
    bad = cli("prepare", "kuairand", "--version", "27k", "--raw", raw_27k, "--out", tmp_path / "o",
              "--memory-budget", "plenty")  # fmt: skip
    assert bad.exit_code == 1 and isinstance(bad.exception, SystemExit)
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert len(lines) == 1 and re.match(r"error: .*memory_budget must be a size", lines[0]), bad.output
    assert not (tmp_path / "o").exists()


# ---- real KuaiRand-Pure logs ---------------------------------------------------------------------


@pytest.mark.slow
def test_real_pure_20_core_matches_kuaisim(tmp_path):
    """KuaiSim's 20-core of the concatenated Pure standard logs: 1,341,250 rows, 19,574 users, 5,659
    videos (hac_kuaisim.md §2). Runs when the real logs are in REAL_DIR; the out-of-core cut must give
    the same bytes."""
    files = raw_files("pure")
    needed = [*files["standard"], files["users"], files["videos"]]
    missing = [n for n in needed if not (REAL_DIR / n).is_file()]
    if missing:
        pytest.skip(f"real KuaiRand-Pure logs not in {REAL_DIR} (missing {', '.join(missing)})")
    m = prepare_kuairand(REAL_DIR, tmp_path / "one", KuaiRandPrepareParams())
    assert m["raw"]["standard_rows"] == 1_436_609
    assert m["ncore"]["passes"][-1] == {"rows": 1_341_250, "users": 19_574, "items": 5_659}
    cut = prepare_kuairand(
        REAL_DIR, tmp_path / "cut", KuaiRandPrepareParams(partitions=6, chunk_rows=150_000)
    )
    assert cut["memory"]["blocks"] > 5 and cut["fingerprint"] == m["fingerprint"]
    assert json.loads((tmp_path / "cut" / "manifest.json").read_text())["ncore"] == m["ncore"]
    assert not any(TMP_MARK in p.name for p in tmp_path.iterdir())
