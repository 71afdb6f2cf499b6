"""Synthetic RetailRocket raw files (exact Kaggle format) with a planted, known ground truth.

Writes ``events.csv``, ``item_properties_part1/2.csv`` (weekly change log), ``category_tree.csv``
and recrl's ``ground_truth.csv`` / ``ground_truth.json``. Each generated item-session (one item
in one visitor session) adds to cart with ``p_click`` and buys with ``p_pay = p_click * p_cvr``;
both are logistic in what ``recrl prepare`` can recover: the category (and its parent), price,
availability *at event time* (so the as-of join matters), brand token ``364``, the position in
the session, plus an item random effect. Everything is vectorised numpy; output is byte-identical
for a seed. Shapes: I items, W weekly snapshots, S sessions, N item-sessions, E events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recrl_cli.data.atomic import OutputKind, atomic_output_dir, check_output_dir, json_object
from recrl_cli.data.synth.auc import rank_auc
from recrl_cli.errors import ConfigError

Progress = Callable[[str, int, int], None] | None
REAL_EVENTS = 2_756_101
DAY_MS, WEEK_MS = 86_400_000, 7 * 86_400_000
EVENT_START, EVENT_END = 1_430_611_200_000, 1_442_620_799_000  # 2015-05-03 .. 2015-09-18 (UTC)
SNAP0, N_WEEKS = 1_430_017_200_000, 21  # Sundays 03:00 UTC, 2015-04-26 .. 2015-09-13
# Real event mix (Kaggle): 96.7 % view, 2.5 % addtocart, 0.8 % transaction.
MIX = {e: c / REAL_EVENTS for e, c in (("view", 2_664_312), ("addtocart", 69_332), ("transaction", 22_457))}
DUP_RATE = 460 / REAL_EVENTS
# Logit coefficients of the hidden model (click = addtocart, cvr = transaction | addtocart).
COEF = {"cat_click": 1.0, "cat_cvr": 0.6, "brand_click": 1.0, "item_click": 1.0, "item_cvr": 1.0,
        "price_click": -0.25, "price2_click": -0.15, "price_cvr": -0.5, "unavail_click": -1.0,
        "unavail_cvr": -2.5, "position_click": -0.18, "taste_click": 1.0, "taste_cvr": 0.5}  # fmt: skip
# Planted user taste (issue 17). Every category belongs to one of TASTE_CLUSTERS taste clusters and every visitor
# has one favourite cluster. Taste vectors (K = TASTE_CLUSTERS): an item's is its week-0 category's one-hot (scaled)
# plus a small item part, a visitor's is the one-hot of the favourite, so u·v ≈ TASTE_GAIN on a match, ≈ 0 off it.
# Each item slot of a session is the taste-best of TASTE_CANDIDATES popularity draws (Gumbel-max on
# TASTE_CHOICE·u·v): about half the views are in the favourite cluster, so what a visitor viewed (and bought)
# before reveals it, and among the views a match still moves the click logit by taste_click·TASTE_GAIN.
TASTE_CLUSTERS, TASTE_GAIN, TASTE_CANDIDATES, TASTE_CHOICE, TASTE_ITEM_NOISE = 8, 2.0, 16, 1.5, 0.3
# Visitors: light (1.2 sessions of 1.4 items on average) and HEAVY_SHARE heavy ones (2.9 sessions of 3.3 items).
HEAVY_SHARE, SESSIONS_P, ITEMS_P = 0.05, (0.85, 0.35), (0.7, 0.3)  # geometric p of (light, heavy)
CEILING_SHRINK = 5.0  # pseudo-rows of the global mean in the item ceiling's per-item mean affinity
HISTORY = 10  # earlier item-sessions of the visitor the history oracle may read (prepare's history length)
CORE_PROPS = ("categoryid", "available", "790", "888", "364", "776", "283", "917", "6", "159")


SYNTH_FILES = frozenset({"events.csv", "item_properties_part1.csv", "item_properties_part2.csv", "category_tree.csv",
                         "ground_truth.csv", "ground_truth.json", "item_text.csv"})  # fmt: skip


def _synth_names(folder: Path) -> set[str] | None:
    """What an earlier ``recrl synth retailrocket`` wrote (its ground_truth.json says so), else None."""
    truth = json_object(folder / "ground_truth.json")
    return set(SYNTH_FILES) if truth is not None and {"num_events", "seed"} <= truth.keys() else None


OUTPUT = OutputKind("synthetic retailrocket raw files", _synth_names)


def write_retailrocket(
    out_dir: Path,
    *,
    num_events: int = 20_000,
    seed: int = 0,
    progress: Progress = None,
    item_text: bool = False,
    force: bool = False,
) -> dict:
    """Write the raw files into ``out_dir`` atomically; return a summary (counts, mix, oracle AUC).

    ``item_text`` adds ``item_text.csv`` (itemid, text): words correlated with each item's planted click effect
    (:mod:`recrl_cli.text.synth_text`; its own random stream, so the other files do not change)."""
    if num_events < 100:
        raise ConfigError(f"num_events must be at least 100, got {num_events}")
    check_output_dir(Path(out_dir), OUTPUT, force=force)  # before any work: never the user's own files
    rng = np.random.default_rng(seed)
    scale = num_events / REAL_EVENTS
    report = progress or (lambda *_: None)
    report("synth: catalogue", 0, 4)
    tree = _category_tree(rng, int(min(1669, max(12, round(1669 * scale**0.5)))))
    items = _items(rng, tree, scale)
    report("synth: sessions", 1, 4)
    events, truth, info = _sessions_and_events(rng, items, tree, num_events)
    report("synth: property log", 2, 4)
    props = _property_log(rng, items, tree, round(20_275_902 * scale))
    report("synth: writing", 3, 4)
    params = {"num_events": num_events, "seed": seed, "coef": COEF, "intercepts": info["intercepts"],
              "taste": {"clusters": TASTE_CLUSTERS, "gain": TASTE_GAIN, "candidates": TASTE_CANDIDATES,
                        "choice": TASTE_CHOICE, "item_noise": TASTE_ITEM_NOISE},
              "history_oracle_auc": info["history_oracle_auc"],
              "categories": int(tree["id"].size), "items": items["n"], "snapshots": N_WEEKS,
              "snapshot0_ms": SNAP0, "event_start_ms": EVENT_START, "event_end_ms": EVENT_END}  # fmt: skip
    half = props.height // 2
    with atomic_output_dir(Path(out_dir), OUTPUT, force=force) as tmp:
        events.write_csv(tmp / "events.csv", null_value="")
        _write_property_parts(props, tmp)
        order = rng.permutation(tree["id"].size)  # the real file is not ordered by level
        cats = pl.DataFrame({"categoryid": tree["id"][order], "parentid": tree["parent_id"][order]})
        cats = cats.with_columns(pl.col("parentid").replace(-1, None))
        cats.write_csv(tmp / "category_tree.csv", null_value="")
        truth.drop("click", "pay").write_csv(tmp / "ground_truth.csv", float_precision=6)
        (tmp / "ground_truth.json").write_text(json.dumps(params, indent=2) + "\n")
        if item_text:
            from recrl_cli.text.synth_text import quality_texts

            texts = quality_texts(items["re_click"], seed)
            pl.DataFrame({"itemid": items["id"], "text": texts}).write_csv(tmp / "item_text.csv")
    report("synth: done", 4, 4)
    mix = events["event"].value_counts(normalize=True)
    return {
        "out_dir": str(out_dir),
        "rows": {"events.csv": events.height, "item_properties_part1.csv": half,
                 "item_properties_part2.csv": props.height - half, "category_tree.csv": int(tree["id"].size),
                 "ground_truth.csv": truth.height},
        "event_mix": {e: float(mix.filter(pl.col("event") == e)["proportion"].sum()) for e in MIX},
        "duplicates": info["duplicates"], "visitors": int(truth["visitorid"].n_unique()),
        "sessions": info["sessions"], "items_in_events": int(events["itemid"].n_unique()),
        "oracle_auc": {t: rank_auc(truth[f"p_{t}"], truth[t]) for t in ("click", "pay")},
        "item_position_auc": {t: rank_auc(truth[f"p_{t}_item"], truth[t]) for t in ("click", "pay")},
        "history_oracle_auc": info["history_oracle_auc"],
        "rows_with_history": info["rows_with_history"],
    }  # fmt: skip


def _zipf(rng: np.random.Generator, n: int, size: int, a: float = 1.0, shift: float = 5.0) -> np.ndarray:
    """``size`` draws from 0..n-1 with P(k) ~ 1/(k+shift)^a (rank k = a random permutation)."""
    w = 1.0 / (np.arange(n) + shift) ** a
    return rng.permutation(n)[
        np.searchsorted(np.cumsum(w / w.sum()), rng.random(size), side="right").clip(0, n - 1)
    ]


def _category_tree(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """A forest of ``n`` nodes, at most 5 levels; ``eff`` = category logit effect, inherited 70 %."""
    sizes = np.maximum(1, np.round(n * np.array([0.015, 0.10, 0.35, 0.40, 0.135])).astype(int))
    sizes[-1] = max(1, n - sizes[:-1].sum())
    level = np.repeat(np.arange(5), sizes)[:n]
    parent = np.full(n, -1)
    eff = rng.normal(0, 0.5, n)
    for d in range(1, 5):  # five levels: a loop over depth, not over nodes
        rows, above = np.flatnonzero(level == d), np.flatnonzero(level == d - 1)
        parent[rows] = above[rng.integers(0, above.size, rows.size)]
        eff[rows] = 0.7 * eff[parent[rows]] + rng.normal(0, 0.45, rows.size)
    ids = rng.choice(int(n * 1.02) + 5, n, replace=False)
    return {"id": ids, "parent": parent, "parent_id": np.where(parent >= 0, ids[parent], -1), "eff": eff,
            "log_price": rng.normal(4.0, 1.0, n)}  # fmt: skip


def _items(rng: np.random.Generator, tree: dict, scale: float) -> dict[str, Any]:
    """Per-item latent state: (I,) attributes and (I, W) weekly category/availability/price."""
    n_event = max(20, round(300_000 * scale))  # popularity pool of event items (Zipf)
    n = max(n_event + 10, round(417_053 * scale))  # the property log holds more items than events
    n_cat = tree["id"].size
    base, moved_to = _zipf(rng, n_cat, n, 0.8), rng.integers(0, n_cat, n)
    move_week = np.where(rng.random(n) < 0.02, rng.integers(1, N_WEEKS, n), N_WEEKS)  # rare category moves
    cat = np.where(np.arange(N_WEEKS)[None, :] >= move_week[:, None], moved_to[:, None], base[:, None])
    flips = rng.random((n, N_WEEKS)) < 0.08
    flips[:, 0] = False
    avail = (rng.random(n) < 0.75)[:, None] ^ (np.cumsum(flips, axis=1) % 2 == 1)
    steps = np.where(rng.random((n, N_WEEKS)) < 0.05, rng.normal(0, 0.15, (n, N_WEEKS)), 0.0)
    steps[:, 0] = 0.0
    log_price = (tree["log_price"][cat[:, 0]] + rng.normal(0, 0.5, n))[:, None] + np.cumsum(steps, axis=1)
    n_brand = max(5, n // 20)
    brand = _zipf(rng, n_brand, n, 0.7)
    first_week = np.where(rng.random(n) < 0.08, rng.integers(0, N_WEEKS, n), 0)
    has_props = rng.random(n) >= 0.10  # ~10 % of items never appear in the property log
    re_click = rng.normal(0, 0.5, n)
    # Taste vector (K,): the week-0 category's cluster one-hot times √gain, plus a small item part.
    cluster = rng.integers(0, TASTE_CLUSTERS, n_cat)
    taste = np.eye(TASTE_CLUSTERS)[cluster[base]] + rng.normal(0, TASTE_ITEM_NOISE, (n, TASTE_CLUSTERS))
    taste *= TASTE_GAIN**0.5
    return {"taste": taste.astype(np.float32), "n": n, "n_event": n_event, "id": rng.choice(int(n * 1.12) + 10, n, replace=False), "cat": cat,
            "avail": avail, "log_price": log_price, "brand": brand, "brand_eff": rng.normal(0, 0.4, n_brand),
            "brand_token": rng.choice(1_400_000, n_brand, replace=False), "first_week": first_week,
            "has_props": has_props, "re_click": re_click, "re_cvr": 0.5 * re_click + rng.normal(0, 0.3, n),
            "price_mu": float(log_price.mean()), "price_sd": float(log_price.std() + 1e-9)}  # fmt: skip


def _sessions_and_events(
    rng: np.random.Generator, it: dict, tree: dict, num_events: int
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Visitors -> sessions (S) -> item-sessions (N) -> labelled events (E), cut to <= ``num_events``."""
    n_vis = int(num_events / 2.0) + 50  # ~2.3 events per visitor: oversample, then cut whole visitors
    # Most visitors come once and look at an item or two (real: ~2 events per visitor), a few heavy visitors
    # come back often with long sessions: they hold a large share of the rows, and the history that shows taste.
    heavy = rng.random(n_vis) < HEAVY_SHARE
    n_sess = np.where(heavy, rng.geometric(SESSIONS_P[1], n_vis), rng.geometric(SESSIONS_P[0], n_vis))
    vis = np.repeat(np.arange(n_vis), n_sess)  # (S,) visitor of each session
    length = np.where(heavy[vis], rng.geometric(ITEMS_P[1], vis.size), rng.geometric(ITEMS_P[0], vis.size))
    sess = np.repeat(np.arange(vis.size), np.minimum(length, 30))
    favourite = rng.integers(0, TASTE_CLUSTERS, n_vis)
    user = (np.eye(TASTE_CLUSTERS)[favourite] * TASTE_GAIN**0.5).astype(np.float32)  # (V, K) visitor taste
    item = _choose_by_taste(rng, it, user[vis[sess]])
    # A session views distinct items: drop a repeated (session, item) pair, then renumber positions.
    order = np.lexsort((np.arange(sess.size), item, sess))
    dup = np.zeros(sess.size, bool)
    dup[order[1:]] = (sess[order[1:]] == sess[order[:-1]]) & (item[order[1:]] == item[order[:-1]])
    sess, item = sess[~dup], item[~dup]
    pos = np.arange(sess.size) - _segment_start(sess)
    # Views: k >= 1 per item-session; repeats land a little later (may interleave with later items).
    k = rng.geometric(0.87, sess.size)
    v_row = np.repeat(np.arange(sess.size), k)
    first = np.r_[True, v_row[1:] != v_row[:-1]]
    key = pos[v_row] + np.where(first, 0.0, rng.uniform(0.05, 2.0, v_row.size))
    v_row = v_row[np.lexsort((key, sess[v_row]))]
    v_sess = sess[v_row]
    gap = np.clip(rng.lognormal(np.log(30_000), 1.2, v_row.size), 1_000, 25 * 60_000).astype(np.int64)
    gap[np.r_[True, v_sess[1:] != v_sess[:-1]]] = 0
    cum_gap = np.cumsum(gap)
    offset = cum_gap - cum_gap[_segment_start(v_sess)]
    duration = np.zeros(vis.size, np.int64)
    np.maximum.at(duration, v_sess, offset)
    # A visitor's next session starts >= 1 h after the previous one ends (plus days, exponential).
    step = duration + 3_600_000 + rng.exponential(4 * DAY_MS, vis.size).astype(np.int64)
    within = np.cumsum(step) - step
    begin = rng.integers(EVENT_START, EVENT_END - DAY_MS, n_vis)[vis] + within - within[_segment_start(vis)]
    v_time = begin[v_sess] + offset
    t0 = np.full(sess.size, np.iinfo(np.int64).max)
    np.minimum.at(t0, v_row, v_time)
    # Hidden model, evaluated with the item's state as of the item-session's first event.
    week = np.clip((t0 - SNAP0) // WEEK_MS, 0, N_WEEKS - 1)
    avail, ceff = it["avail"][item, week], tree["eff"][it["cat"][item, week]]
    pz = (it["log_price"][item, week] - it["price_mu"]) / it["price_sd"]
    z_click = (COEF["cat_click"] * ceff + COEF["brand_click"] * it["brand_eff"][it["brand"][item]]
               + COEF["item_click"] * it["re_click"][item] + COEF["price_click"] * pz
               + COEF["price2_click"] * pz**2 + COEF["unavail_click"] * ~avail
               + COEF["position_click"] * np.minimum(pos, 9))  # fmt: skip
    z_cvr = (COEF["cat_cvr"] * ceff + COEF["item_cvr"] * it["re_cvr"][item] + COEF["price_cvr"] * pz
             + COEF["unavail_cvr"] * ~avail)  # fmt: skip
    affinity = np.einsum("nk,nk->n", user[vis[sess]], it["taste"][item]).astype(np.float64)  # (N,) u·v
    views = k.mean()  # intercepts tuned so the event mix matches the real one
    rate_click, rate_pay = MIX["addtocart"] / MIX["view"] * views, MIX["transaction"] / MIX["view"] * views
    zc, zv = z_click + COEF["taste_click"] * affinity, z_cvr + COEF["taste_cvr"] * affinity
    b_click = _solve_intercept(zc, np.ones_like(zc), rate_click)
    p_click = _sigmoid(b_click + zc)
    b_cvr = _solve_intercept(zv, p_click, rate_pay)
    p_pay = p_click * _sigmoid(b_cvr + zv)
    u = rng.random(sess.size)
    click, pay = u < p_click, u < p_pay  # one uniform, nested thresholds: pay implies click
    # Keep whole visitors (sessions inside the period) so the total with duplicates stays <= num_events;
    # the last cart/buy event comes at most 3 + 10 min after the session's last view.
    sess_ok = begin + duration + 15 * 60_000 <= EVENT_END
    n_vis_events = np.bincount(vis[v_sess], sess_ok[v_sess], n_vis) + np.bincount(
        vis[sess], (click.astype(int) + pay) * sess_ok[sess], n_vis
    )
    n_dup = round(DUP_RATE * num_events)
    keep = ((np.cumsum(n_vis_events) <= num_events - n_dup)[vis] & sess_ok)[sess]  # (N,)
    # Add to cart 1 s .. 3 min after the item's first view. An order pays all its items together,
    # 0-1 ms after the session's last add-to-cart (same-ms ties are real) or up to 10 min later.
    a_time = t0 + rng.integers(1_000, 180_000, sess.size)
    last_add = np.zeros(vis.size, np.int64)
    np.maximum.at(last_add, sess[pay], a_time[pay])
    ns = vis.size
    lag = np.where(rng.random(ns) < 0.4, rng.integers(0, 2, ns), rng.integers(2, 600_000, ns))
    p_time = last_add[sess] + lag[sess] + np.minimum(pos, 1) * rng.integers(0, 2, sess.size)
    orders = np.full(vis.size, -1)
    paid = np.flatnonzero(np.bincount(sess[pay & keep], minlength=vis.size))
    orders[paid] = rng.permutation(paid.size)
    vid = rng.choice(int(n_vis * 1.05) + 10, n_vis, replace=False)
    rows = np.concatenate([v_row[keep[v_row]], np.flatnonzero(click & keep), np.flatnonzero(pay & keep)])
    n_v, n_a = int(keep[v_row].sum()), int((click & keep).sum())
    kind = np.repeat(np.array([0, 1, 2], np.int8), [n_v, n_a, rows.size - n_v - n_a])
    ev = pl.DataFrame({
        "timestamp": np.concatenate([v_time[keep[v_row]], a_time[click & keep], p_time[pay & keep]]),
        "visitorid": vid[vis[sess[rows]]], "event": kind, "itemid": it["id"][item[rows]],
        "transactionid": np.where(kind == 2, orders[sess[rows]], -1),
    })  # fmt: skip
    # The item + position ceiling: the best a model can do without seeing the visitor, i.e. the taste term
    # replaced by its mean over the visitors who were shown the item (selection by taste makes it item-specific).
    # Leave-one-out and shrunk to the global mean: most items are shown a few times, and an in-sample mean over
    # one or two rows would be the row's own visitor's affinity (a "ceiling" that sees the user).
    n_item = np.bincount(item[keep], None, it["n"])[item] - 1.0  # other kept rows of the item
    sum_item = np.bincount(item[keep], affinity[keep], it["n"])[item] - affinity
    prior = float(affinity[keep].mean())
    mean_aff = (sum_item + CEILING_SHRINK * prior) / (n_item + CEILING_SHRINK)  # (N,)
    zc_item = z_click + COEF["taste_click"] * mean_aff
    zv_item = z_cvr + COEF["taste_cvr"] * mean_aff
    p_click_item = _sigmoid(_solve_intercept(zc_item[keep], np.ones(int(keep.sum())), rate_click) + zc_item)
    p_pay_item = p_click_item * _sigmoid(
        _solve_intercept(zv_item[keep], p_click_item[keep], rate_pay) + zv_item
    )
    hist = _history_oracle(it["taste"][item], vis[sess], click, pay, keep, zc_item, zv_item)
    truth = pl.DataFrame({
        "visitorid": vid[vis[sess[keep]]], "itemid": it["id"][item[keep]], "timestamp": t0[keep],
        "p_click": p_click[keep], "p_pay": p_pay[keep], "p_click_item": p_click_item[keep],
        "p_pay_item": p_pay_item[keep], "click": click[keep], "pay": pay[keep],
    })  # fmt: skip
    info = {"duplicates": n_dup, "sessions": int(np.count_nonzero(np.bincount(sess[keep]))), "intercepts":
            {"click": b_click, "cvr": b_cvr}, **hist}  # fmt: skip
    return _shuffle_roughly(rng, ev, n_dup), truth.sort(["timestamp", "visitorid", "itemid"]), info


def _choose_by_taste(rng: np.random.Generator, it: dict, user: np.ndarray) -> np.ndarray:
    """(N,) items: per slot the Gumbel-max of TASTE_CHOICE·u·v over TASTE_CANDIDATES popularity (Zipf) draws.

    user: (N, K) taste of the slot's visitor. A loop over the few candidates keeps memory at O(N·K)."""
    best = np.full(user.shape[0], -np.inf)
    chosen = np.zeros(user.shape[0], np.int64)
    for _ in range(TASTE_CANDIDATES):
        cand = _zipf(rng, it["n_event"], user.shape[0], 1.0, 20.0)
        score = TASTE_CHOICE * np.einsum("nk,nk->n", user, it["taste"][cand]) + rng.gumbel(size=cand.size)
        better = score > best
        chosen[better], best[better] = cand[better], score[better]
    return chosen


def _history_oracle(
    taste: np.ndarray,
    visitor: np.ndarray,
    click: np.ndarray,
    pay: np.ndarray,
    keep: np.ndarray,
    zc_item: np.ndarray,
    zv_item: np.ndarray,
) -> dict[str, Any]:
    """How much the history can tell, measured with the generator's own latent vectors.

    Rows (N,) are ordered by (visitor, session, position). For each kept row the "history" is the visitor's
    last HISTORY earlier kept rows (this session's and earlier sessions'), as recrl's prepared history is. The
    history oracle knows every item's true taste vector v (K) and the item + position logit, but not u: it
    estimates u·v_target from the mean v of the history items and the mean v of the clicked ones, combined by a
    logistic regression on [item logit, m_all·v, m_click·v, has history] fitted on all kept rows. Its AUC minus
    the item + position ceiling's is the gap a history state can close. taste: (N, K) v of each row's item.
    """
    rows = np.flatnonzero(keep)
    v, vis, y_click, y_pay = taste[rows].astype(np.float64), visitor[rows], click[rows], pay[rows]
    start = _segment_start(vis)
    lo = np.maximum(start, np.arange(rows.size) - HISTORY)
    count = np.arange(rows.size) - lo  # (n,) earlier rows in the window
    zero = np.zeros((1, v.shape[1]))
    cs_all = np.concatenate([zero, np.cumsum(v, 0)])
    cs_click = np.concatenate([zero, np.cumsum(v * y_click[:, None], 0)])
    n_click = np.concatenate([[0], np.cumsum(y_click)])
    idx = np.arange(rows.size)
    # Shrunk means (sum / (count + 1)): the posterior mean of u grows with the evidence, 0 without history.
    m_all = (cs_all[idx] - cs_all[lo]) / (count + 1.0)[:, None]
    k_click = n_click[idx] - n_click[lo]
    m_click = (cs_click[idx] - cs_click[lo]) / (k_click + 1.0)[:, None]
    has = (count > 0).astype(np.float64)
    out: dict[str, Any] = {"rows_with_history": float(has.mean()), "history_oracle_auc": {}}
    for task, z, y in (("click", zc_item, y_click), ("pay", zc_item + zv_item, y_pay)):
        x = np.c_[np.ones(rows.size), z[rows], (m_all * v).sum(1), (m_click * v).sum(1), has]
        out["history_oracle_auc"][task] = rank_auc(x @ _logistic_fit(x, y.astype(np.float64)), y)
    return out


def _logistic_fit(x: np.ndarray, y: np.ndarray, steps: int = 12) -> np.ndarray:
    """Newton-Raphson logistic regression: coefficients (P,) for x (n, P), y (n,) in {0, 1} (tiny ridge)."""
    beta = np.zeros(x.shape[1])
    for _ in range(steps):
        p = _sigmoid(x @ beta)
        grad = x.T @ (y - p) - 1e-6 * beta
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(x.shape[1])
        beta += np.linalg.solve(hess, grad)
    return beta


def _property_log(rng: np.random.Generator, it: dict, tree: dict, target_rows: int) -> pl.DataFrame:
    """The (timestamp, itemid, property, value) change log: a row at an item's first snapshot and
    whenever a weekly value differs from the week before, shuffled like the real files.

    Values stay numeric, (R, 4) hashed tokens (-1 = none) plus an optional ``n``-number, so the
    20 M-row shuffle moves integers; ``_write_property_parts`` formats the text chunk by chunk.
    """
    n, weeks = it["n"], np.arange(N_WEEKS)
    active = it["has_props"][:, None] & (weeks[None, :] >= it["first_week"][:, None])  # (I, W)
    first = active & (weeks[None, :] == it["first_week"][:, None])
    price = np.round(np.exp(it["log_price"]) * 10).astype(np.int64) * 100  # thousandths, 0.1 steps
    blocks: list[tuple[np.ndarray, ...]] = []  # (item, week, property code, tokens (R, 4), number)

    def changes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        changed = np.zeros_like(active)
        changed[:, 1:] = values[:, 1:] != values[:, :-1]
        return np.nonzero(first | (active & changed))

    def add(code: int | np.ndarray, rows: tuple, tokens: np.ndarray | None = None, number=None) -> None:
        m = rows[0].size
        tok = np.full((m, 4), -1, np.int32) if tokens is None else tokens.astype(np.int32)
        num = np.full(m, -1, np.int64) if number is None else number
        code = np.broadcast_to(np.asarray(code, np.int16), (m,))
        blocks.append((rows[0].astype(np.int32), rows[1].astype(np.int8), code, tok, num))  # fmt: skip

    def single(values: np.ndarray) -> np.ndarray:
        return np.c_[values, np.full((values.size, 3), -1)]

    rows = changes(it["cat"])
    add(0, rows, single(tree["id"][it["cat"][rows]]))
    rows = changes(it["avail"])
    add(1, rows, single(it["avail"][rows].astype(np.int64)))
    rows = changes(price)
    add(2, rows, number=price[rows])
    rows = np.nonzero(first | (active & (rng.random((n, N_WEEKS)) < 0.15)))  # 888 changes often
    add(3, rows, *_tokens(rng, rows[0].size, 3, 0.3))
    rows = np.nonzero(first)
    add(4, rows, single(it["brand_token"][it["brand"][rows[0]]]))
    add(5, rows, single(_zipf(rng, max(5, n // 50), rows[0].size, 1.1) * 7919 + 1000))
    for code in range(6, len(CORE_PROPS)):
        some = np.flatnonzero(rng.random(rows[0].size) < 0.8)
        add(code, (rows[0][some], rows[1][some]), *_tokens(rng, some.size, 3, 0.2))
    # Other hashed properties (written once) fill the log up to the real rows-per-event ratio; a
    # second draw tops up what the one-row-per-(item, property) rule removed from the first.
    want, n_first = max(0, target_rows - sum(b[0].size for b in blocks)), rows[0].size
    pair = np.zeros(0, np.int64)
    for _ in range(2):
        lam = max(0.0, (want - pair.size) / max(1, n_first))
        owner = np.repeat(np.arange(n_first), rng.poisson(lam, n_first))
        pair = np.sort(np.r_[pair, owner * 2048 + _zipf(rng, 1094, owner.size, 1.0, 3.0)])
        pair = pair[np.r_[True, pair[1:] != pair[:-1]]]  # sort-based unique: much faster than np.unique
    owner = pair // 2048
    add(len(CORE_PROPS) + pair % 2048, (rows[0][owner], rows[1][owner]), *_tokens(rng, pair.size, 4, 0.35))
    item, week, code, tok, num = (np.concatenate(col) for col in zip(*blocks, strict=True))
    blocks.clear()
    perm = rng.permutation(item.size)
    return pl.DataFrame({
        "timestamp": SNAP0 + week[perm].astype(np.int64) * WEEK_MS, "itemid": it["id"][item[perm]],
        "code": code[perm], **{f"t{j}": tok[perm, j] for j in range(4)}, "x": num[perm],
    })  # fmt: skip


def _write_property_parts(log: pl.DataFrame, out: Path, chunk: int = 1_000_000) -> None:
    """Format the numeric log as text 1 M rows at a time (bounded memory); half the rows per part."""
    others = np.setdiff1d(np.arange(1, 1200), [6, 159, 283, 364, 776, 790, 888, 917])[:1094].astype(str)
    names = pl.Series("property", [*CORE_PROPS, *others.tolist()])
    parts = [pl.when(pl.col(f"t{j}") >= 0).then(pl.col(f"t{j}").cast(pl.String)) for j in range(4)]
    parts.append(pl.when(pl.col("x") >= 0).then(_n_number(pl.col("x"))))
    value = pl.concat_str(parts, separator=" ", ignore_nulls=True).alias("value")
    half = log.height // 2
    for part, (lo, hi) in enumerate(((0, half), (half, log.height)), start=1):
        with open(out / f"item_properties_part{part}.csv", "wb") as fh:
            fh.write(b"timestamp,itemid,property,value\n")
            for start in range(lo, hi, chunk):
                block = log.slice(start, min(chunk, hi - start))
                block = block.with_columns(property=names.gather(block["code"]))
                block.select("timestamp", "itemid", "property", value).write_csv(fh, include_header=False)


def _n_number(x: pl.Expr) -> pl.Expr:
    """Format integers in thousandths the RetailRocket way: 5160000 -> ``n5160.000``."""
    return pl.concat_str(
        pl.lit("n"), (x // 1000).cast(pl.String), pl.lit("."), (x % 1000).cast(pl.String).str.zfill(3)
    )


def _tokens(
    rng: np.random.Generator, n: int, max_tokens: int, number_prob: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` hashed multi-token values like ``1116713 960601 n277.200``: (n, 4) tokens with -1 past
    a random count of 1..max_tokens, and an ``n``-number (thousandths) or -1."""
    tok = rng.integers(1_000, 1_400_000, (n, 4), dtype=np.int32)
    tok[np.arange(4)[None, :] >= rng.integers(1, max_tokens + 1, n)[:, None]] = -1
    return tok, np.where(rng.random(n) < number_prob, rng.integers(1, 1_000_000, n) * 200, -1)


def _segment_start(keys: np.ndarray) -> np.ndarray:
    """(n,) index of the first element of each element's run in sorted ``keys``."""
    new = np.r_[True, keys[1:] != keys[:-1]]
    return np.maximum.accumulate(np.where(new, np.arange(keys.size), 0))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _solve_intercept(z: np.ndarray, weight: np.ndarray, target: float) -> float:
    """b with mean(weight * sigmoid(b + z)) = target (monotone in b, so bisection converges)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.mean(weight * _sigmoid(mid + z)) < target else (lo, mid)
    return (lo + hi) / 2


def _shuffle_roughly(rng: np.random.Generator, ev: pl.DataFrame, n_dup: int) -> pl.DataFrame:
    """Add ``n_dup`` exact duplicate rows and order by time with ~20 s jitter (roughly sorted)."""
    dup = np.sort(rng.choice(ev.height, min(n_dup, ev.height), replace=False))
    src = np.concatenate([np.arange(ev.height), dup])
    jitter = (ev["timestamp"].to_numpy() + rng.normal(0, 20_000, ev.height))[src]
    ev = ev[src[np.lexsort((np.arange(src.size), jitter))]]  # a copy sorts right after its original
    return ev.with_columns(
        pl.col("event").replace_strict({0: "view", 1: "addtocart", 2: "transaction"}, return_dtype=pl.String),
        pl.col("transactionid").replace(-1, None),
    )
