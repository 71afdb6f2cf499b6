"""What a KuaiRand version looks like (file names, columns, dtypes) and how it is prepared (parameters).

Shared by the reader (``recrl prepare kuairand``) and the synthetic writer (``recrl synth kuairand``),
so both agree on every column. The memory settings (``chunk_rows``, ``memory_budget``,
``partitions``) change how the work is cut, never the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from recrl_cli.config.fields import param
from recrl_cli.data.prepare.budget import parse_bytes
from recrl_cli.errors import ConfigError

Progress = Callable[[str, int, int], None] | None
VERSIONS = ("pure", "1k", "27k")
# The 7 behaviours in KuaiSim's order (the label axis of every [.., 7] tensor).
BEHAVIOURS = ("is_click", "long_view", "is_like", "is_comment", "is_forward", "is_follow", "is_hate")
LOG_COLUMNS = ("user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
               "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
               "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab")  # fmt: skip
LOG_SCHEMA = dict.fromkeys(LOG_COLUMNS, pl.Int64)
_USER_TYPES = {"user_active_degree": pl.String, "follow_user_num_range": pl.String,
               "fans_user_num_range": pl.String, "friend_user_num_range": pl.String,
               "register_days_range": pl.String, "onehot_feat4": pl.Float64,
               **{f"onehot_feat{k}": pl.Float64 for k in range(12, 18)}}  # fmt: skip
USER_COLUMNS = ("user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
                "follow_user_num", "follow_user_num_range", "fans_user_num", "fans_user_num_range",
                "friend_user_num", "friend_user_num_range", "register_days", "register_days_range",
                *(f"onehot_feat{k}" for k in range(18)))  # fmt: skip
USER_SCHEMA = {c: _USER_TYPES.get(c, pl.Int64) for c in USER_COLUMNS}
VIDEO_SCHEMA = {"video_id": pl.Int64, "author_id": pl.Int64, "video_type": pl.String, "upload_dt": pl.String,
                "upload_type": pl.String, "visible_status": pl.Float64, "video_duration": pl.Float64,
                "server_width": pl.Float64, "server_height": pl.Float64, "music_id": pl.Int64,
                "music_type": pl.Float64, "tag": pl.String}  # fmt: skip
VIDEO_COLUMNS = tuple(VIDEO_SCHEMA)


def raw_files(version: str) -> dict[str, list[str] | str]:
    """File names of one KuaiRand version: ``standard`` (in KuaiSim's concatenation order), ``random``,
    ``users`` and ``videos``. 27K splits each standard period into ``_part1``/``_part2``."""
    v = version.lower()
    periods = ("4_08_to_4_21", "4_22_to_5_08")
    parts = ("_part1", "_part2") if v == "27k" else ("",)
    return {
        "standard": [f"log_standard_{p}_{v}{part}.csv" for p in periods for part in parts],
        "random": f"log_random_4_22_to_5_08_{v}.csv",
        "users": f"user_features_{v}.csv",
        "videos": f"video_features_basic_{v}.csv",
    }


SOURCE_NAME = {"pure": "KuaiRand-Pure", "1k": "KuaiRand-1K", "27k": "KuaiRand-27K"}
HINT = ("download {name} from Zenodo record 10439422 (https://zenodo.org/records/10439422) into {raw} "
        "or run `recrl synth kuairand --version {version}`")  # fmt: skip
# KuaiSim's reader uses these user columns (hac_kuaisim.md §2.1) and these video columns (+ tag).
KUAISIM_USER_FEATURES = ("user_active_degree", "is_live_streamer", "is_video_author", "follow_user_num_range",
                         "fans_user_num_range", "friend_user_num_range", "register_days_range", "onehot_feat0",
                         "onehot_feat1", "onehot_feat6", "onehot_feat9", "onehot_feat10", "onehot_feat11")  # fmt: skip
ITEM_FEATURE_CHOICES = ("video_type", "upload_type", "music_type", "upload_dt", "visible_status", "author_id")
USER_FEATURE_CHOICES = tuple(c for c in USER_COLUMNS if c != "user_id")
STAGED = ("user_id", "video_id", "date", "time_ms", *BEHAVIOURS, "play_time_ms", "duration_ms", "tab")
REQUIRED = ("user_id", "video_id", "date", "time_ms", *BEHAVIOURS)  # play time, duration, tab may be blank
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}  # -1: user left out of every split (too few rows)
ROW_COLUMNS = ("user", "item", "user_id", "video_id", "time_ms", "date", "request_id", "session_id",
               "user_start", "user_pos", "request_pos", "split", *BEHAVIOURS, "play_time_ms", "duration_ms",
               "tab")  # fmt: skip


@dataclass(frozen=True)
class KuaiRandPrepareParams:
    """How raw KuaiRand logs become the row table, splits and feature tables (defaults: KuaiSim's)."""

    version: str = param("pure", help="KuaiRand version whose files to read.", choices=VERSIONS)
    n_core: int = param(
        20, help="Keep rows whose user and video each have >= n_core rows, iterated (1 = off)."
    )
    session_key: str = param(
        "day", help="day: a session per user and calendar day (UTC+8 `date`, KuaiSim); gap: inactivity gap.",
        choices=("day", "gap"),
    )  # fmt: skip
    session_gap_minutes: int = param(30, help="With session_key=gap: idle strictly longer starts a session.")
    history_length: int = param(100, help="At most this many previous rows of the user form a history.")
    val_per_user: int = param(5, help="Each user's rows before the test rows that go to validation.")
    test_per_user: int = param(5, help="Each user's last rows that go to test.")
    min_train_share: float = param(
        0.6, help="Users whose train rows are below this share of their rows join no split (KuaiSim: n < 25)."
    )
    min_count: int = param(5, help="Feature values of fewer train users/videos share the rare id 1.")
    user_features: tuple[str, ...] = param(KUAISIM_USER_FEATURES, help="User columns to encode.")
    item_features: tuple[str, ...] = param(("video_type", "upload_type", "music_type"),
                                           help="Video columns to encode (tags are always encoded).")  # fmt: skip
    chunk_rows: int = param(10_000_000, help="Rows per user block of the out-of-core pass (bounds memory).")
    memory_budget: str = param(
        "",
        help="Peak memory target such as 4GiB: caps chunk_rows from the core's size (empty: chunk_rows only).",
    )
    partitions: int = param(
        0,
        help="User-id range partitions of the staged logs, read one block at a time (0: one per 128 MiB of CSV).",
    )

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ConfigError(f"version must be one of {', '.join(VERSIONS)}, got {self.version!r}")
        if self.session_key not in ("day", "gap"):
            raise ConfigError(f"session_key must be 'day' or 'gap', got {self.session_key!r}")
        for name in ("n_core", "session_gap_minutes", "history_length", "min_count", "chunk_rows"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("val_per_user", "test_per_user", "partitions"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if self.memory_budget:
            parse_bytes(self.memory_budget, "memory_budget")  # a ConfigError names the bad value
        if not 0 <= self.min_train_share <= 1:
            raise ConfigError(f"min_train_share must lie in [0, 1], got {self.min_train_share!r}")
        for name, allowed in (
            ("user_features", USER_FEATURE_CHOICES),
            ("item_features", ITEM_FEATURE_CHOICES),
        ):
            bad = [c for c in getattr(self, name) if c not in allowed]
            if bad or len(set(getattr(self, name))) != len(getattr(self, name)):
                raise ConfigError(
                    f"{name} must be distinct names from {', '.join(allowed)}; got {bad or 'repeats'}"
                )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
