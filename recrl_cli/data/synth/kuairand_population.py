"""Synthetic KuaiRand population: users and videos (latent state, features) and their feature files.

Shapes: U users, I videos, D latent dim. Users carry activity, a click bias from their features and
per-behaviour propensities; videos a latent vector built from their tags and an item bias.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recrl_cli.data.prepare.kuairand_spec import BEHAVIOURS
from recrl_cli.data.synth.kuairand_spec import (
    COEF,
    DEGREES,
    DIM,
    FIRST_SHARE,
    ITEM_NOISE,
    MUSIC_TYPES,
    ONEHOT_CARD,
    ONEHOT_ZIPF,
    RANGES,
    TASTE_SD,
    UPLOAD_TYPES,
    USER_EFFECT_FEATS,
)


def zipf_probs(n: int, a: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) probabilities ~ 1/(k+1)^a over a random permutation of the n values."""
    w = 1.0 / (np.arange(n) + 1.0) ** a
    return (w / w.sum())[rng.permutation(n)]


def user_state(rng: np.random.Generator, n: int, n_std: int, n_rand: int) -> dict[str, Any]:
    """Latent state of U users, their features' codes, and their row counts per log and period."""
    activity = rng.lognormal(0.0, 0.9, n) * (rng.random(n) >= 0.0076)  # 0.76 % never in the standard log
    n_std_u = rng.multinomial(n_std, activity / activity.sum())
    n_first = rng.binomial(n_std_u, FIRST_SHARE)
    w_rand = (activity + 0.3) ** 0.3  # everyone gets random exposures, the active a little more
    n_rand_u = rng.multinomial(n_rand, w_rand / w_rand.sum())
    # user_active_degree follows (noisy) activity rank, in the real shares.
    shares = np.array([d[1] for d in DEGREES], float)
    rank = np.argsort(-(np.log1p(activity) + rng.normal(0, 0.3, n)), kind="stable")
    degree = np.empty(n, np.int64)
    degree[rank] = np.searchsorted(np.cumsum(shares) / shares.sum() * n, np.arange(n), "right").clip(0, 8)
    onehot = np.stack(
        [rng.choice(k, n, p=zipf_probs(k, a, rng)) for k, a in zip(ONEHOT_CARD, ONEHOT_ZIPF, strict=True)], 1
    )
    bias = np.array([d[2] for d in DEGREES])[degree] + rng.normal(0, 0.3, n)
    for k in USER_EFFECT_FEATS:
        bias += rng.normal(0, 0.25, ONEHOT_CARD[k])[onehot[:, k]]
    weights = np.array([COEF[b][1] for b in BEHAVIOURS[2:]])
    counts = np.stack([n_first, n_std_u - n_first], 1)  # (U, 2) rows per standard period
    before = np.cumsum(counts, 0) - counts
    return {
        "n": n, "z": rng.normal(0, TASTE_SD / np.sqrt(DIM), (n, DIM)).astype(np.float32), "bias": bias,
        "prop": rng.normal(0, 1.0, (n, 5)) * weights, "n_std": n_std_u, "n_first": n_first,
        "n_rand": n_rand_u, "degree": degree, "onehot": onehot,
        # 27K cuts each period's file into two parts at the user boundary nearest half its rows.
        "part": (before + counts / 2 > counts.sum(0) / 2).astype(np.int64),
    }  # fmt: skip


def item_state(rng: np.random.Generator, n: int, version: str) -> dict[str, Any]:
    """Latent state and raw attributes of I videos (video_id = 0..I-1)."""
    tag_ids = np.sort(rng.choice(69, 46, replace=False))  # Pure: 46 distinct tag ids below 69
    n_tags = rng.choice(4, n, p=[0.0127, 0.75, 0.2173, 0.02])  # Pure: 96 blank, 1,791 multi-tag of 7,583
    tags = rng.choice(46, (n, 3), p=zipf_probs(46, 1.1, rng))
    tags[np.arange(3)[None, :] >= n_tags[:, None]] = -1
    tags[:, 1:][tags[:, 1:] == tags[:, :1]] = -1  # a video lists a tag once
    tags[:, 2][tags[:, 2] == tags[:, 1]] = -1
    has = tags >= 0
    tag_emb = rng.normal(0, 1, (46, DIM)).astype(np.float32)
    v = rng.normal(0, ITEM_NOISE, (n, DIM)).astype(np.float32)  # what the tags do not say
    for j, weight in enumerate((0.8, 0.4, 0.3)):  # per tag slot: float32 [I, D] temporaries only (27K: 32 M)
        v += np.float32(weight) * has[:, j, None] * tag_emb[tags[:, j].clip(0)]
    v *= 0.8 * np.sqrt(DIM) / np.linalg.norm(v, axis=1, keepdims=True)  # |v| = 2.26, so s = z.v has sd ~2
    video_type = rng.choice(3, n, p=[0.9898, 0.0100, 0.0002])  # NORMAL, AD, UNKNOWN
    up = np.array([c for _, c in UPLOAD_TYPES], float)
    upload = rng.choice(up.size, n, p=up / up.sum())
    music_id = np.where(rng.random(n) < 0.027, 0, rng.integers(3_000_000_000, 9_999_999_999, n))
    mt = np.array([c for _, c in MUSIC_TYPES], float)
    music = np.where(music_id == 0, -1, rng.choice(mt.size, n, p=mt / mt.sum()))  # -1 = blank
    bias = (rng.normal(0, 0.3, up.size)[upload] + np.r_[rng.normal(0, 0.2, mt.size), 0.0][music]
            - 0.8 * (video_type == 1) + np.where(has, rng.normal(0, 0.3, 46)[tags.clip(0)], 0.0).sum(1)
            + rng.normal(0, 0.4, n))  # fmt: skip
    if version == "pure":  # Pure's videos were uploaded 2022-04-09..11; the others' over years
        upload_day = rng.choice(3, n, p=[0.3735, 0.4516, 0.1749]) + days_since_epoch(date(2022, 4, 9))
    else:
        upload_day = rng.integers(days_since_epoch(date(2019, 1, 1)), days_since_epoch(date(2022, 5, 9)), n)
    # Authors: most videos have their own, a few prolific authors have many (Pure: 6,510 for 7,583).
    n_auth = max(1, int(n * 0.86))
    author = np.where(
        rng.random(n) < 0.9, rng.permutation(n) % n_auth, np.minimum(rng.zipf(1.5, n), n_auth) - 1
    )
    popularity = rng.lognormal(0, 1.6, n)  # ~25 % of Pure's videos are shown < 20 times
    return {
        "n": n, "v": v.astype(np.float32), "bias": bias, "tags": tags, "tag_ids": tag_ids,
        "video_type": video_type, "upload": upload, "music": music, "music_id": music_id,
        "upload_day": upload_day, "author_id": rng.integers(100_000, 9_000_000, n_auth)[author],
        "duration": np.clip(rng.lognormal(np.log(20_000), 1.0, n), 3_000, 1_200_000).astype(np.int64),
        "cum_pop": np.cumsum(popularity / popularity.sum()),
    }  # fmt: skip


def days_since_epoch(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def user_frame(rng: np.random.Generator, u: dict[str, Any]) -> pl.DataFrame:
    """The 31-column user feature table (one row per user_id 0..U-1), real dtypes and blanks."""
    n = u["n"]
    numbers = {
        "follow_user_num": np.where(rng.random(n) < 0.0069, 0, np.maximum(1, rng.lognormal(np.log(120), 1.3, n))),
        "fans_user_num": np.where(rng.random(n) < 0.042, 0, np.minimum(rng.lognormal(np.log(40), 1.7, n), 9e6)),
        "friend_user_num": np.where(rng.random(n) < 0.124, 0, np.maximum(1, rng.lognormal(np.log(18), 1.6, n))),
        "register_days": np.where(rng.random(n) < 0.735, rng.integers(731, 3_625, n),
                                  np.exp(rng.uniform(np.log(14), np.log(730), n))),
    }  # fmt: skip
    cols: dict[str, Any] = {
        "user_id": np.arange(n), "user_active_degree": np.array([d[0] for d in DEGREES])[u["degree"]],
        "is_lowactive_period": np.zeros(n, np.int64),
        "is_live_streamer": np.where(rng.random(n) < 0.2257, 1, -124),  # -124: KuaiRand's "not a streamer"
        "is_video_author": (rng.random(n) < 0.8164).astype(np.int64),
    }  # fmt: skip
    for name, values in numbers.items():
        values = np.round(values).astype(np.int64)
        edges, side, labels = RANGES[name]
        cols[name] = values
        cols[f"{name}_range"] = np.array(labels)[np.searchsorted(edges, values, side=side)]
    order = ["user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author"]
    for name in numbers:
        order += [name, f"{name}_range"]
    cols = {k: cols[k] for k in order}
    for k in range(12):
        cols[f"onehot_feat{k}"] = u["onehot"][:, k]
    blank4, blank12 = rng.random(n) < 0.032, rng.random(n) < 0.026  # 12..17 are blank together
    cols["onehot_feat4"] = np.where(blank4, np.nan, u["onehot"][:, 4].astype(float))
    for k, p in zip(range(12, 18), (0.72, 0.07, 0.12, 0.02, 0.04, 0.015), strict=True):
        cols[f"onehot_feat{k}"] = np.where(blank12, np.nan, (rng.random(n) < p).astype(float))
    return pl.DataFrame(cols).with_columns(pl.col(pl.Float64).fill_nan(None))


def write_videos(path: Path, it: dict[str, Any], chunk: int = 2_000_000) -> None:
    """The 12-column video table, written ``chunk`` videos at a time (27K has 32 M)."""
    with open(path, "wb") as fh:
        for lo in range(0, it["n"], chunk):
            sl = slice(lo, min(it["n"], lo + chunk))
            m = sl.stop - lo
            rng = np.random.default_rng(lo)  # display-only attributes; the hidden model never reads them
            tags = it["tags"][sl]
            tag_text = [
                pl.when(pl.lit(pl.Series(tags[:, j] >= 0))).then(pl.lit(pl.Series(it["tag_ids"][tags[:, j].clip(0)])))
                .cast(pl.String) for j in range(3)
            ]  # fmt: skip
            portrait = rng.random(m) < 0.78
            music = it["music"][sl]
            frame = pl.DataFrame({
                "video_id": np.arange(lo, sl.stop), "author_id": it["author_id"][sl],
                "video_type": np.array(["NORMAL", "AD", "UNKNOWN"])[it["video_type"][sl]],
                "upload_dt": pl.Series(it["upload_day"][sl].astype(np.int32)).cast(pl.Date).dt.strftime("%Y-%m-%d"),
                "upload_type": np.array([t for t, _ in UPLOAD_TYPES])[it["upload"][sl]],
                "visible_status": np.zeros(m),
                "video_duration": np.where(rng.random(m) < 0.0315, np.nan, it["duration"][sl].astype(float)),
                "server_width": np.where(portrait, 720.0, 1280.0), "server_height": np.where(portrait, 1280.0, 720.0),
                "music_id": it["music_id"][sl],
                "music_type": np.where(music >= 0, np.array([t for t, _ in MUSIC_TYPES])[music.clip(0)], np.nan),
            })  # fmt: skip
            frame = frame.with_columns(
                pl.col("video_duration", "music_type").fill_nan(None),
                tag=pl.concat_str(tag_text, separator=",", ignore_nulls=True).replace("", None),
            )
            frame.write_csv(fh, include_header=lo == 0, null_value="")
