"""Synthetic KuaiRand raw files (exact public format) with a planted, known ground truth.

Writes, for ``version`` pure / 1k / 27k, the two standard logs (27K: each in ``_part1``/``_part2``), the
random-exposure log, ``user_features_<v>.csv`` and ``video_features_basic_<v>.csv`` with the real
columns and quirks: 19 integer log columns, ``date``/``hourmin`` in UTC+8 (``hourmin`` = HH00), requests
= rows of one user sharing ``time_ms`` (1..6 items), logs sorted by (user_id, time_ms) within each file;
the -124 sentinel, CSV-quoted range strings and blank float one-hots of the user file; comma-joined
(quoted) tags, blank durations and blank music types of the video file. Plus recrl's
``ground_truth.csv`` (true probabilities of every log row) and ``ground_truth.json`` (parameters).

Hidden model, with affinity s = z_u · v_i (D = 8, sd ≈ 2; a video's vector comes mostly from its tags):
  click                    p_c = σ(c_click + s + b_u + b_i + tab effect)
  like/comment/fwd/follow  p_b = p_c · σ(c_b + w_b s + user propensity_b [+ item effect])
  hate                     p_h = σ(c_hate − 0.6 s + user propensity − b_i / 2)      (not gated by a click)
  play time | click        min(dur, 7 s) + LogNormal(μ, σ) ms, so a click is a KuaiRand "valid play";
  play time | no click     a swipe U[0, min(dur, 7 s)) in tab 1, else 0
  long view                play ≥ min(dur, 18 s), so p_long = p_c · P(LogNormal(μ, σ) ≥ min(dur, 18 s) − min(dur, 7 s))
b_u comes from the user features (active degree, onehot_feat1/6/9/10), b_i from video type, upload
type, music type and tags, so a model that reads the features can approach the oracle. Intercepts
c and μ's offset are solved so the standard log has KuaiRand-Pure's positive rates. The standard
policy shows the best of 4 popularity-drawn candidates by s + Gumbel noise (exposure bias); the
random log shows uniform videos, hence a lower click rate, as in the real data.

Vectorised numpy over blocks of users (memory bounded by ``BLOCK_ROWS``); same seed -> same bytes.
This module writes the files; the figures live in ``kuairand_spec``, the users and videos in
``kuairand_population``, who sees what when in ``kuairand_impressions``, the responses in ``kuairand_model``.
Shapes: U users, I videos, N rows of a block, R requests of a block, D latent dim.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recrl_cli.data.atomic import OutputKind, atomic_output_dir, check_output_dir, json_object
from recrl_cli.data.prepare.kuairand_spec import BEHAVIOURS, LOG_COLUMNS, VERSIONS, raw_files
from recrl_cli.data.synth.auc import rank_auc
from recrl_cli.data.synth.kuairand_impressions import block_impressions, calibration_rows
from recrl_cli.data.synth.kuairand_model import calibrate, linear_parts, sample_log
from recrl_cli.data.synth.kuairand_population import item_state, user_frame, user_state, write_videos
from recrl_cli.data.synth.kuairand_spec import (  # noqa: F401  (re-exported: the generator's figures)
    CANDIDATES,
    COEF,
    DEGREES,
    DIM,
    FIRST_SHARE,
    ITEM_NOISE,
    MUSIC_TYPES,
    RANGES,
    RATES,
    REAL,
    T_END,
    T_SPLIT,
    T_START,
    TAB_EFFECT,
    TASTE_SD,
    Scale,
)
from recrl_cli.errors import ConfigError

Progress = Callable[[str, int, int], None] | None
BLOCK_ROWS = 2_000_000  # log rows generated per user block (bounds the generator's memory)


def _synth_names(folder: Path) -> set[str] | None:
    """What an earlier ``recrl synth kuairand`` wrote (its ground_truth.json names the version), else None."""
    truth = json_object(folder / "ground_truth.json")
    if truth is None or truth.get("version") not in VERSIONS or "seed" not in truth:
        return None
    files = raw_files(truth["version"])
    return {*files["standard"], files["random"], files["users"], files["videos"], "ground_truth.csv",
            "ground_truth.json", "kuairand_video_captions.csv"}  # fmt: skip


OUTPUT = OutputKind("synthetic kuairand raw files", _synth_names)


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
    force: bool = False,
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
    check_output_dir(Path(out_dir), OUTPUT, force=force)  # before any work: never the user's own files
    report = progress or (lambda *_: None)
    rng = np.random.default_rng(seed)
    report("synth: users and videos", 0, 3)
    files = raw_files(version)
    names = [*files["standard"], files["random"]]
    users = user_state(rng, n_users, n_std, n_rand)
    items = item_state(rng, n_items, version)
    params: dict[str, Any] = {
        "version": version, "num_users": n_users, "num_items": n_items, "num_impressions": n_std,
        "num_random": n_rand, "seed": seed, "rates": RATES, "coef": COEF,
        "tab_effect": {str(k): v for k, v in TAB_EFFECT.items()}, "first_period_share": FIRST_SHARE,
        "latent_dim": DIM, "taste_sd": TASTE_SD, "item_noise": ITEM_NOISE, "candidates": CANDIDATES,
        "play_model": "given a click: play_time_ms = floor(min(duration_ms, 7000) + exp(play_mu + play_sigma * "
                      "N(0, 1))) capped at min(3 * duration_ms + 60000, 1000000); long_view = play_time_ms >= "
                      "min(duration_ms, 18000)",
    }  # fmt: skip
    calibration = calibration_rows(np.random.default_rng(np.random.SeedSequence([seed, 0])), users, items)
    params["intercepts"] = calibrate(linear_parts(users, items, calibration))
    blocks = _blocks(users["n_std"] + users["n_rand"])
    stats = _Stats(names, n_items)
    with atomic_output_dir(Path(out_dir), OUTPUT, force=force) as tmp:
        user_frame(rng, users).write_csv(tmp / files["users"], null_value="")
        write_videos(tmp / files["videos"], items)
        with contextlib.ExitStack() as stack:
            handles = [stack.enter_context(open(tmp / name, "wb")) for name in names]
            for fh in handles:
                fh.write((",".join(LOG_COLUMNS) + "\n").encode())
            truth_fh = stack.enter_context(open(tmp / "ground_truth.csv", "wb"))
            for b, (lo, hi) in enumerate(blocks):
                report(f"synth: logs, user block {b + 1}/{len(blocks)}", 1, 3)
                block_rng = np.random.default_rng(np.random.SeedSequence([seed, 1 + b]))
                imp = block_impressions(block_rng, users, items, lo, hi, len(files["standard"]))
                lin = linear_parts(users, items, imp)
                log, truth = sample_log(block_rng, imp, lin, params["intercepts"])
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


def _blocks(rows_per_user: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous user ranges [lo, hi) of about ``BLOCK_ROWS`` log rows each (at least one user)."""
    cum = np.cumsum(rows_per_user)
    cuts = np.searchsorted(cum, np.arange(BLOCK_ROWS, max(1, int(cum[-1])), BLOCK_ROWS), "left") + 1
    edges = sorted({0, rows_per_user.size, *(int(c) for c in cuts if 0 < c < rows_per_user.size)})
    return list(itertools.pairwise(edges))


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
            self.auc = {name: rank_auc(truth[f"p_{name.removeprefix('is_')}"].filter(pl.Series(std)),
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
