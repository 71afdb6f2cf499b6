"""Synthetic KuaiRand raw files (exact public format) with a planted, known ground truth.

Writes, for ``version`` pure / 1k / 27k, the two standard logs (27K: each in ``_part1``/``_part2``), the
random-exposure log, ``user_features_<v>.csv`` and ``video_features_basic_<v>.csv`` with the real
columns and quirks: 19 integer log columns, ``date``/``hourmin`` in UTC+8 (``hourmin`` = HH00), requests
= rows of one user sharing ``time_ms`` (1..6 items), logs sorted by (user_id, time_ms) within each file;
the -124 sentinel, CSV-quoted range strings and blank float one-hots of the user file; comma-joined
(quoted) tags, blank durations and blank music types of the video file. Plus recrl's
``ground_truth.csv`` (true probabilities of every log row) and ``ground_truth.json`` (parameters).

Hidden model, with affinity s = z_u · v_i (D = 8; a video's vector comes from its tags):
  click                    p_c = σ(c_click + s + b_u + b_i + tab effect)
  like/comment/fwd/follow  p_b = p_c · σ(c_b + w_b s + user propensity_b [+ item effect])
  hate                     p_h = σ(c_hate − s + user propensity − b_i / 2)      (not gated by a click)
  play time | click        min(dur, 7 s) + LogNormal(μ, σ) ms, so a click is a KuaiRand "valid play";
  play time | no click     a swipe U[0, min(dur, 7 s)) in tab 1, else 0
  long view                play ≥ min(dur, 18 s), so p_long = p_c · P(LogNormal(μ, σ) ≥ min(dur, 18 s) − min(dur, 7 s))
b_u comes from the user features (active degree, onehot_feat1/6/9/10), b_i from video type, upload
type, music type and tags, so a model that reads the features can approach the oracle. Intercepts
c and μ's offset are solved so the standard log has KuaiRand-Pure's positive rates. The standard
policy shows the best of 4 popularity-drawn candidates by s + Gumbel noise (exposure bias); the
random log shows uniform videos, hence a lower click rate, as in the real data.

Vectorised numpy over blocks of users (memory bounded by ``BLOCK_ROWS``); same seed -> same bytes.
Shapes: U users, I videos, N rows of a block, R requests of a block, D latent dim.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtr

from recrl_cli.data.atomic import atomic_output_dir
from recrl_cli.data.prepare.kuairand import BEHAVIOURS, LOG_COLUMNS, VERSIONS, raw_files
from recrl_cli.data.synth.retailrocket import _auc
from recrl_cli.errors import ConfigError

Progress = Callable[[str, int, int], None] | None


@dataclass(frozen=True)
class Scale:
    """Sizes of one KuaiRand version: users and videos in the feature files, standard/random log rows."""

    users: int
    items: int
    standard: int
    random: int


REAL = {"pure": Scale(27_285, 7_583, 1_436_609, 1_186_059),
        "1k": Scale(1_000, 4_369_953, 11_713_045, 43_028),
        "27k": Scale(27_285, 32_038_725, 322_278_385, 1_186_059)}  # fmt: skip
# Standard-log positive rates of KuaiRand-Pure (KuaiSim notebook): the calibration targets.
RATES = {"is_click": 0.4597, "long_view": 0.3318, "is_like": 0.0185, "is_comment": 0.0025,
         "is_forward": 0.00096, "is_follow": 0.00107, "is_hate": 0.00049}  # fmt: skip
DAY_MS, HOUR_MS, CST_MS = 86_400_000, 3_600_000, 8 * 3_600_000
T_START, T_SPLIT, T_END = 1_649_347_200_000, 1_650_556_800_000, 1_652_025_600_000  # 04-08, 04-22, 05-09 UTC+8
PERIODS = np.array([[T_START, T_SPLIT], [T_SPLIT, T_END]], np.int64)
FIRST_SHARE = 83_961_282 / (83_961_282 + 21_765_075)  # real Pure: bytes of the 04-08..04-21 standard file
TABS = {1: 1_058_389, 0: 178_087, 4: 93_165, 2: 48_364, 6: 42_785, 5: 4_169, 3: 4_014, 8: 3_909,
        12: 1_472, 11: 725, 7: 504, 9: 444, 13: 399, 10: 152, 14: 31}  # fmt: skip
TAB_EFFECT = {9: 6.0, 10: 6.0, 14: -6.0, 0: -0.3, 2: 0.2, 4: -0.2}  # real CTR ~100 % in tabs 9/10, ~0 in 14
# Share of sessions starting in each hour of the day (UTC+8): quiet nights, an evening peak.
HOUR_WEIGHT = np.array([3, 2, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 5, 5, 5, 5, 6, 7, 8, 9, 9, 8, 5], float)
DEGREES = (("full_active", 17_959, 0.3), ("high_active", 6_158, 0.15), ("middle_active", 2_133, 0.0),
           ("2_14_day_new", 635, -0.1), ("low_active", 300, -0.2), ("single_low_active", 68, -0.3),
           ("30day_retention", 15, -0.2), ("day_new", 11, -0.2), ("UNKNOWN", 6, 0.0))  # fmt: skip
UPLOAD_TYPES = (("LongImport", 2925), ("Web", 2416), ("ShortImport", 917), ("Kmovie", 879),
                ("LongPicture", 143), ("UNKNOWN", 80), ("PictureSet", 73), ("LongCamera", 64),
                ("ShortCamera", 43), ("ShareFromOtherApp", 29), ("FollowShoot", 10), ("AiCutVideo", 2),
                ("PhotoCopy", 1), ("LipsSync", 1))  # fmt: skip
MUSIC_TYPES = ((9.0, 6665), (4.0, 657), (8.0, 41), (7.0, 14), (11.0, 3))
# (bin edges for np.searchsorted, side, labels) of the four range columns, checked on the real file.
RANGES = {
    "follow_user_num": ([0, 10, 50, 100, 150, 250, 500], "left",
                        ["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "(250,500]", "500+"]),
    "fans_user_num": ([1, 10, 100, 1_000, 5_000, 10_000, 100_000, 1_000_000], "right",
                      ["0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)", "[10w,100w)",
                       "[100w,1000w)"]),
    "friend_user_num": ([1, 5, 30, 60, 120, 250], "right",
                        ["0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+"]),
    "register_days": ([15, 31, 61, 91, 181, 366, 731], "right",
                      ["8-14", "15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"]),
}  # fmt: skip
ONEHOT_CARD = (2, 7, 50, 1471, 16, 34, 3, 118, 454, 7, 5, 5)  # onehot_feat0..11 (12..17 are binary)
ONEHOT_ZIPF = (0.3, 0.6, 1.3, 1.1, 0.8, 4.0, 1.5, 1.0, 0.6, 0.5, 0.8, 2.0)
USER_EFFECT_FEATS = (1, 6, 9, 10)  # one-hots that shift the click logit
# Weights of the hidden model (affinity s, user propensities, item effect b_i) per behaviour.
COEF = {"is_like": (1.2, 0.7, 0.5), "is_comment": (0.8, 0.7, 0.0), "is_forward": (0.8, 0.7, 0.3),
        "is_follow": (0.8, 0.7, 0.0), "is_hate": (-1.0, 0.7, -0.5), "play_s": 0.5, "play_b": 0.3,
        "play_duration": 0.4, "play_sigma": 0.9}  # fmt: skip
DIM, CANDIDATES, BLOCK_ROWS, CALIBRATION_ROWS = 8, 4, 2_000_000, 200_000


def write_kuairand(
    out_dir: Path,
    *,
    version: str = "pure",
    num_users: int | None = None,
    num_items: int | None = None,
    num_impressions: int | None = None,
    num_random: int | None = None,
    seed: int = 0,
    progress: Progress = None,
    captions: bool = False,
) -> dict[str, Any]:
    """Write the raw files of ``version`` into ``out_dir`` atomically; return a summary.

    ``num_users``/``num_items`` = rows of the user/video feature files, ``num_impressions`` = rows of
    the standard logs, ``num_random`` = rows of the random log. ``None`` = the version's real size
    (``REAL``), except ``num_random``, which then keeps the version's random/standard ratio.
    ``captions`` adds ``kuairand_video_captions.csv`` (final_video_id, caption) whose words correlate with each
    video's planted bias (:mod:`recrl_cli.text.synth_text`; own random stream, other files unchanged).
    """
    if version not in VERSIONS:
        raise ConfigError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
    real = REAL[version]
    n_users = real.users if num_users is None else num_users
    n_items = real.items if num_items is None else num_items
    n_std = real.standard if num_impressions is None else num_impressions
    n_rand = round(n_std * real.random / real.standard) if num_random is None else num_random
    for name, value, low in (("num_users", n_users, 10), ("num_items", n_items, 10),
                             ("num_impressions", n_std, 100), ("num_random", n_rand, 0)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer of at least {low}, got {value!r}")
    report = progress or (lambda *_: None)
    rng = np.random.default_rng(seed)
    report("synth: users and videos", 0, 3)
    files = raw_files(version)
    names = [*files["standard"], files["random"]]
    users = _users(rng, n_users, n_std, n_rand)
    items = _items(rng, n_items, version)
    params: dict[str, Any] = {
        "version": version, "num_users": n_users, "num_items": n_items, "num_impressions": n_std,
        "num_random": n_rand, "seed": seed, "rates": RATES, "coef": COEF,
        "tab_effect": {str(k): v for k, v in TAB_EFFECT.items()}, "first_period_share": FIRST_SHARE,
        "latent_dim": DIM, "candidates": CANDIDATES,
        "play_model": "given a click: play_time_ms = floor(min(duration_ms, 7000) + exp(play_mu + play_sigma * "
                      "N(0, 1))) capped at min(3 * duration_ms + 60000, 1000000); long_view = play_time_ms >= "
                      "min(duration_ms, 18000)",
    }  # fmt: skip
    calibration = _calibration_rows(np.random.default_rng(np.random.SeedSequence([seed, 0])), users, items)
    params["intercepts"] = _calibrate(_linear(users, items, calibration))
    blocks = _blocks(users["n_std"] + users["n_rand"])
    stats = _Stats(names, n_items)
    with atomic_output_dir(Path(out_dir)) as tmp:
        _user_frame(rng, users).write_csv(tmp / files["users"], null_value="")
        _write_videos(tmp / files["videos"], items)
        with contextlib.ExitStack() as stack:
            handles = [stack.enter_context(open(tmp / name, "wb")) for name in names]
            for fh in handles:
                fh.write((",".join(LOG_COLUMNS) + "\n").encode())
            truth_fh = stack.enter_context(open(tmp / "ground_truth.csv", "wb"))
            for b, (lo, hi) in enumerate(blocks):
                report(f"synth: logs, user block {b + 1}/{len(blocks)}", 1, 3)
                block_rng = np.random.default_rng(np.random.SeedSequence([seed, 1 + b]))
                imp = _impressions(block_rng, users, items, lo, hi, len(files["standard"]))
                lin = _linear(users, items, imp)
                log, truth = _sample(block_rng, imp, lin, params["intercepts"])
                stats.add(log, truth, imp)
                for f, fh in enumerate(handles):
                    log.filter(pl.Series(imp["file"] == f)).write_csv(fh, include_header=False)
                truth.write_csv(truth_fh, include_header=b == 0, float_precision=6)
        report("synth: writing", 2, 3)
        (tmp / "ground_truth.json").write_text(json.dumps(params, indent=2) + "\n")
        if captions:
            from recrl_cli.text.synth_text import quality_texts

            texts = quality_texts(items["bias"], seed)
            pl.DataFrame({"final_video_id": np.arange(n_items), "caption": texts}).write_csv(
                tmp / "kuairand_video_captions.csv"
            )
    report("synth: done", 3, 3)
    rows = {**stats.rows, "ground_truth.csv": sum(stats.rows.values()), files["users"]: n_users,
            files["videos"]: n_items}  # fmt: skip
    return {"out_dir": str(out_dir), "version": version, "rows": rows, **stats.summary()}


# ---- population -----------------------------------------------------------------------------------


def _zipf_probs(n: int, a: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) probabilities ~ 1/(k+1)^a over a random permutation of the n values."""
    w = 1.0 / (np.arange(n) + 1.0) ** a
    return (w / w.sum())[rng.permutation(n)]


def _users(rng: np.random.Generator, n: int, n_std: int, n_rand: int) -> dict[str, Any]:
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
        [rng.choice(k, n, p=_zipf_probs(k, a, rng)) for k, a in zip(ONEHOT_CARD, ONEHOT_ZIPF, strict=True)], 1
    )
    bias = np.array([d[2] for d in DEGREES])[degree] + rng.normal(0, 0.3, n)
    for k in USER_EFFECT_FEATS:
        bias += rng.normal(0, 0.25, ONEHOT_CARD[k])[onehot[:, k]]
    weights = np.array([COEF[b][1] for b in BEHAVIOURS[2:]])
    counts = np.stack([n_first, n_std_u - n_first], 1)  # (U, 2) rows per standard period
    before = np.cumsum(counts, 0) - counts
    return {
        "n": n, "z": rng.normal(0, 1.5 / np.sqrt(DIM), (n, DIM)).astype(np.float32), "bias": bias,
        "prop": rng.normal(0, 1.0, (n, 5)) * weights, "n_std": n_std_u, "n_first": n_first,
        "n_rand": n_rand_u, "degree": degree, "onehot": onehot,
        # 27K cuts each period's file into two parts at the user boundary nearest half its rows.
        "part": (before + counts / 2 > counts.sum(0) / 2).astype(np.int64),
    }  # fmt: skip


def _items(rng: np.random.Generator, n: int, version: str) -> dict[str, Any]:
    """Latent state and raw attributes of I videos (video_id = 0..I-1)."""
    tag_ids = np.sort(rng.choice(69, 46, replace=False))  # Pure: 46 distinct tag ids below 69
    n_tags = rng.choice(4, n, p=[0.0127, 0.75, 0.2173, 0.02])  # Pure: 96 blank, 1,791 multi-tag of 7,583
    tags = rng.choice(46, (n, 3), p=_zipf_probs(46, 1.1, rng))
    tags[np.arange(3)[None, :] >= n_tags[:, None]] = -1
    tags[:, 1:][tags[:, 1:] == tags[:, :1]] = -1  # a video lists a tag once
    tags[:, 2][tags[:, 2] == tags[:, 1]] = -1
    has = tags >= 0
    tag_emb = rng.normal(0, 1, (46, DIM)).astype(np.float32)
    v = rng.normal(0, 0.45, (n, DIM)).astype(np.float32)
    for j, weight in enumerate((0.8, 0.4, 0.3)):  # per tag slot: float32 [I, D] temporaries only (27K: 32 M)
        v += np.float32(weight) * has[:, j, None] * tag_emb[tags[:, j].clip(0)]
    v *= 0.8 * np.sqrt(DIM) / np.linalg.norm(v, axis=1, keepdims=True)  # so s = z.v has sd ~1.2
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
        upload_day = rng.choice(3, n, p=[0.3735, 0.4516, 0.1749]) + _days(date(2022, 4, 9))
    else:
        upload_day = rng.integers(_days(date(2019, 1, 1)), _days(date(2022, 5, 9)), n)
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


def _days(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def _user_frame(rng: np.random.Generator, u: dict[str, Any]) -> pl.DataFrame:
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


def _write_videos(path: Path, it: dict[str, Any], chunk: int = 2_000_000) -> None:
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


# ---- impressions --------------------------------------------------------------------------------


def _blocks(rows_per_user: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous user ranges [lo, hi) of about ``BLOCK_ROWS`` log rows each (at least one user)."""
    cum = np.cumsum(rows_per_user)
    cuts = np.searchsorted(cum, np.arange(BLOCK_ROWS, max(1, int(cum[-1])), BLOCK_ROWS), "left") + 1
    edges = sorted({0, rows_per_user.size, *(int(c) for c in cuts if 0 < c < rows_per_user.size)})
    return list(itertools.pairwise(edges))


def _period_times(rng: np.random.Generator, period: np.ndarray) -> np.ndarray:
    """(n,) ms times inside each row's period: uniform day, hour from ``HOUR_WEIGHT``, uniform within."""
    days = (PERIODS[:, 1] - PERIODS[:, 0]) // DAY_MS
    day = np.floor(rng.random(period.size) * days[period]).astype(np.int64)
    hour = rng.choice(24, period.size, p=HOUR_WEIGHT / HOUR_WEIGHT.sum())
    return PERIODS[period, 0] + day * DAY_MS + hour * HOUR_MS + rng.integers(0, HOUR_MS, period.size)


def _strictly_increasing(t: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Raise times sorted within contiguous groups so each exceeds its predecessor (+1 ms steps)."""
    k = np.arange(t.size, dtype=np.int64)
    shift = group.astype(np.int64) << 45  # larger than any time span + row count: groups never mix
    return np.maximum.accumulate(t - k + shift) - shift + k


def _impressions(
    rng: np.random.Generator, u: dict, it: dict, lo: int, hi: int, n_std_files: int
) -> dict[str, np.ndarray]:
    """(N,) rows of users lo..hi-1: standard rows (by user, period, time), then random rows (by user, time).

    Requests: each user's standard rows of one period are cut into runs (a new request with
    probability 0.45, at most 6 rows) that share one ``time_ms``; request times cluster around
    sessions (one anchor per ~3 requests, ~10 min apart) and are unique per user.
    """
    counts = np.stack([u["n_first"][lo:hi], u["n_std"][lo:hi] - u["n_first"][lo:hi]], 1).ravel()  # (2B,)
    g_user, g_period = np.repeat(np.arange(lo, hi), 2), np.tile([0, 1], hi - lo)
    row_g = np.repeat(np.arange(counts.size), counts)  # (N,) (user, period) group of each row
    n = row_g.size
    new = np.r_[True, row_g[1:] != row_g[:-1]] | (rng.random(n) < 0.45)
    new |= (np.arange(n) - np.flatnonzero(new)[np.cumsum(new) - 1]) % 6 == 0
    req = np.cumsum(new) - 1  # (N,) request of each row
    req_g = row_g[new]  # (R,) group of each request
    n_req = np.bincount(req_g, minlength=counts.size)
    n_anchor = np.where(n_req > 0, (n_req + 2) // 3, 0)
    anchor_t = _period_times(rng, g_period[np.repeat(np.arange(counts.size), n_anchor)])
    first_anchor = (np.cumsum(n_anchor) - n_anchor)[req_g]
    pick = first_anchor + (rng.random(req_g.size) * n_anchor[req_g]).astype(np.int64)
    t = anchor_t[pick] + np.minimum(rng.exponential(600_000, req_g.size), 2 * HOUR_MS).astype(np.int64)
    t = np.minimum(t, PERIODS[g_period[req_g], 1] - HOUR_MS)
    t = _strictly_increasing(t[np.lexsort((t, req_g))], req_g)
    tab_p = np.array(list(TABS.values()), float) / sum(TABS.values())
    tab_keys = np.array(list(TABS))
    user, period = g_user[row_g], g_period[row_g]
    item = _distinct_in_requests(rng, u, it, user, req)
    # Random exposures: single videos, uniform over the catalogue, in the second period.
    r_user = np.repeat(np.arange(lo, hi), u["n_rand"][lo:hi])
    r_time = _period_times(rng, np.ones(r_user.size, np.int64))
    std_file = period * 2 + u["part"][user, period] if n_std_files == 4 else period
    return {
        "user": np.r_[user, r_user], "item": np.r_[item, rng.integers(0, it["n"], r_user.size)],
        "time": np.r_[t[req], r_time[np.lexsort((r_time, r_user))]],
        "tab": np.r_[tab_keys[rng.choice(tab_keys.size, req_g.size, p=tab_p)][req],
                     tab_keys[rng.choice(tab_keys.size, r_user.size, p=tab_p)]],
        "is_rand": np.r_[np.zeros(n, np.int8), np.ones(r_user.size, np.int8)],
        "file": np.r_[std_file, np.full(r_user.size, n_std_files)],
    }  # fmt: skip


def _expose(rng: np.random.Generator, u: dict, it: dict, user: np.ndarray) -> np.ndarray:
    """(N,) videos the standard policy shows: the best of CANDIDATES popularity draws by affinity s
    plus Gumbel noise (so exposure is biased toward what the user likes)."""
    cand = np.searchsorted(it["cum_pop"], rng.random((user.size, CANDIDATES)), "right").clip(0, it["n"] - 1)
    z = u["z"][user]
    score = np.stack([(z * it["v"][cand[:, c]]).sum(1) for c in range(CANDIDATES)], 1)
    return cand[np.arange(user.size), (score + rng.gumbel(0, 0.6, cand.shape)).argmax(1)]


def _calibration_rows(rng: np.random.Generator, u: dict, it: dict) -> dict[str, np.ndarray]:
    """``CALIBRATION_ROWS`` standard impressions drawn across all users (by their row counts), on
    which the intercepts are solved, so that every block shares them whatever its users."""
    size = min(CALIBRATION_ROWS, max(20_000, int(u["n_std"].sum())))  # tiny test data: a smaller sample
    user = rng.choice(u["n"], size, p=u["n_std"] / u["n_std"].sum())
    tab_keys = np.array(list(TABS))
    tab = tab_keys[rng.choice(tab_keys.size, user.size, p=np.array(list(TABS.values())) / sum(TABS.values()))]
    return {"user": user, "item": _expose(rng, u, it, user), "tab": tab}


def _distinct_in_requests(
    rng: np.random.Generator, u: dict, it: dict, user: np.ndarray, req: np.ndarray
) -> np.ndarray:
    """(N,) exposed videos, redrawn (same policy) where one repeats within a request; a few passes
    leave rare repeats, which the real logs have too (KuaiSim keeps such duplicate rows)."""
    item = _expose(rng, u, it, user)
    for _ in range(4):
        order = np.lexsort((item, req))
        dup = np.zeros(item.size, bool)
        dup[order[1:]] = (req[order[1:]] == req[order[:-1]]) & (item[order[1:]] == item[order[:-1]])
        if not dup.any():
            break
        item[dup] = _expose(rng, u, it, user[dup])
    return item


# ---- hidden model -------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _linear(u: dict, it: dict, imp: dict) -> dict[str, np.ndarray]:
    """Intercept-free parts of every behaviour's logit and of the play-time μ, per row (N,)."""
    user, item = imp["user"], imp["item"]
    s = (u["z"][user] * it["v"][item]).sum(1).astype(np.float64)
    b_i = it["bias"][item]
    tab_effect = np.zeros(15)
    tab_effect[list(TAB_EFFECT)] = list(TAB_EFFECT.values())
    out = {"is_click": s + u["bias"][user] + b_i + tab_effect[imp["tab"]]}
    for k, name in enumerate(BEHAVIOURS[2:]):
        w_s, _, w_b = COEF[name]
        out[name] = w_s * s + u["prop"][user, k] + w_b * b_i
    duration = it["duration"][item]
    valid = np.minimum(duration, 7_000)  # a click is a valid play: >= duration if <= 7 s, else > 7 s
    out |= {"duration": duration, "valid": valid, "extra": np.minimum(duration, 18_000) - valid,
            "mu": COEF["play_s"] * s + COEF["play_b"] * b_i + COEF["play_duration"] * np.log(duration / 20_000)}  # fmt: skip
    return out


def _p_long_given_click(lin: dict, mu: np.ndarray) -> np.ndarray:
    """P(play >= min(dur, 18 s) | click) = P(LogNormal(mu, sigma) >= extra); 1 when extra = 0."""
    z = (np.log(np.maximum(lin["extra"], 1)) - mu) / COEF["play_sigma"]
    return np.where(lin["extra"] <= 0, 1.0, 1.0 - ndtr(z))


def _probabilities(lin: dict, c: dict[str, float]) -> dict[str, np.ndarray]:
    """True marginal probability of each behaviour per row, and the play-time μ (log ms)."""
    p = {"is_click": _sigmoid(c["is_click"] + lin["is_click"])}
    mu = c["play_mu"] + lin["mu"]
    p["long_view"] = p["is_click"] * _p_long_given_click(lin, mu)
    for name in BEHAVIOURS[2:-1]:  # like, comment, forward, follow need a click
        p[name] = p["is_click"] * _sigmoid(c[name] + lin[name])
    p["is_hate"] = _sigmoid(c["is_hate"] + lin["is_hate"])
    return {**p, "play_mu": mu}


def _solve(f: Callable[[float], float], target: float, lo: float = -30.0, hi: float = 30.0) -> float:
    """x with f(x) = target for an increasing f (bisection)."""
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


def _calibrate(sub: dict) -> dict[str, float]:
    """Intercepts (and μ's offset) that give standard impressions ``sub`` KuaiRand-Pure's positive rates."""
    c = {"is_click": _solve(lambda x: _sigmoid(x + sub["is_click"]).mean(), RATES["is_click"])}
    p_click = _sigmoid(c["is_click"] + sub["is_click"])
    c["play_mu"] = _solve(
        lambda m: (p_click * _p_long_given_click(sub, m + sub["mu"])).mean(), RATES["long_view"], -10, 30
    )
    for name in BEHAVIOURS[2:-1]:
        c[name] = _solve(lambda x, nm=name: (p_click * _sigmoid(x + sub[nm])).mean(), RATES[name])
    c["is_hate"] = _solve(lambda x: _sigmoid(x + sub["is_hate"]).mean(), RATES["is_hate"])
    return c


def _sample(
    rng: np.random.Generator, imp: dict, lin: dict, c: dict[str, float]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Realise labels and play times; return the 19-column log rows and their ground-truth rows."""
    p = _probabilities(lin, c)
    n = imp["user"].size
    click = rng.random(n) < p["is_click"]
    y = {"is_click": click}
    for name in BEHAVIOURS[2:-1]:  # the conditional probability given a click, gated by the click
        y[name] = click & (rng.random(n) < _sigmoid(c[name] + lin[name]))
    y["is_hate"] = rng.random(n) < p["is_hate"]
    cap = np.minimum(3 * lin["duration"] + 60_000, 1_000_000)  # above 18 s, so long_view is unaffected
    watched = np.minimum(
        np.floor(lin["valid"] + np.exp(p["play_mu"] + COEF["play_sigma"] * rng.standard_normal(n))), cap
    )
    swipe = np.where(imp["tab"] == 1, np.floor(rng.random(n) * lin["valid"]), 0)  # single-column feed only
    play = np.where(click, watched, swipe).astype(np.int64)
    y["long_view"] = click & (play >= lin["valid"] + lin["extra"])
    enter = rng.random(n) < 0.004 + 0.3 * y["is_follow"]
    reads = y["is_comment"] | (click & (rng.random(n) < 0.03))
    local = pl.Series(imp["time"] + CST_MS)
    log = pl.DataFrame({
        "user_id": imp["user"], "video_id": imp["item"],
        "date": (local // DAY_MS).cast(pl.Int32).cast(pl.Date).dt.strftime("%Y%m%d").cast(pl.Int64),
        "hourmin": (local % DAY_MS) // HOUR_MS * 100, "time_ms": imp["time"],
        **{name: y[name].astype(np.int64) for name in ("is_click", "is_like", "is_follow", "is_comment",
                                                       "is_forward", "is_hate", "long_view")},
        "play_time_ms": play, "duration_ms": lin["duration"],
        "profile_stay_time": np.where(enter, rng.lognormal(np.log(8_000), 1.0, n), 0).astype(np.int64),
        "comment_stay_time": np.where(reads, rng.lognormal(np.log(15_000), 1.0, n), 0).astype(np.int64),
        "is_profile_enter": enter.astype(np.int64), "is_rand": imp["is_rand"].astype(np.int64),
        "tab": imp["tab"].astype(np.int64),
    })  # fmt: skip
    truth = pl.DataFrame({
        "user_id": imp["user"], "video_id": imp["item"], "time_ms": imp["time"], "is_rand": imp["is_rand"],
        **{f"p_{name.removeprefix('is_')}": p[name] for name in BEHAVIOURS}, "play_mu": p["play_mu"],
    })  # fmt: skip
    return log.select(LOG_COLUMNS), truth


class _Stats:
    """Running counts over blocks for the summary (users are disjoint across blocks, videos are not)."""

    def __init__(self, names: list[str], n_items: int) -> None:
        self.rows = dict.fromkeys(names, 0)
        self.names = names
        self.items = np.zeros(n_items, bool)
        self.users = self.requests = self.max_request = self.n_std = self.n_rand = self.rand_clicks = 0
        self.positives = dict.fromkeys(BEHAVIOURS, 0)
        self.true_p = dict.fromkeys(BEHAVIOURS, 0.0)
        self.auc: dict[str, float] = {}

    def add(self, log: pl.DataFrame, truth: pl.DataFrame, imp: dict) -> None:
        for f, name in enumerate(self.names):
            self.rows[name] += int((imp["file"] == f).sum())
        std = imp["is_rand"] == 0
        self.n_std += int(std.sum())
        self.n_rand += int((~std).sum())
        self.items[imp["item"][std]] = True
        self.users += int(np.unique(imp["user"][std]).size)
        sizes = log.filter(pl.Series(std)).group_by("user_id", "time_ms").len()["len"]
        self.requests += sizes.len()
        self.max_request = max(self.max_request, int(sizes.max() or 0))
        self.rand_clicks += int(log["is_click"].filter(pl.Series(~std)).sum())
        for name in BEHAVIOURS:
            self.positives[name] += int(log[name].filter(pl.Series(std)).sum())
            self.true_p[name] += float(truth[f"p_{name.removeprefix('is_')}"].filter(pl.Series(std)).sum())
        if not self.auc:  # oracle AUC of the first block's standard rows (all of them up to BLOCK_ROWS)
            self.auc = {name: _auc(truth[f"p_{name.removeprefix('is_')}"].filter(pl.Series(std)),
                                   log[name].filter(pl.Series(std))) for name in ("is_click", "long_view", "is_like")}  # fmt: skip

    def summary(self) -> dict[str, Any]:
        n = max(1, self.n_std)
        return {
            "users_in_standard": self.users, "items_in_standard": int(self.items.sum()),
            "requests": self.requests, "max_request_size": self.max_request,
            "positive_rate": {b: self.positives[b] / n for b in BEHAVIOURS},
            "true_rate": {b: self.true_p[b] / n for b in BEHAVIOURS},
            "random_click_rate": self.rand_clicks / max(1, self.n_rand), "oracle_auc": self.auc,
        }  # fmt: skip
