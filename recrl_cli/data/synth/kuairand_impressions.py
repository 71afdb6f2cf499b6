"""Synthetic KuaiRand impressions: who sees which video when, in requests and sessions.

Shapes: N rows of a block of users, R requests of the block. The standard policy shows the best of
``CANDIDATES`` popularity draws by affinity plus Gumbel noise (exposure bias); the random log shows
uniform videos.
"""

from __future__ import annotations

import numpy as np

from recrl_cli.data.synth.kuairand_spec import (
    CALIBRATION_ROWS,
    CANDIDATES,
    DAY_MS,
    HOUR_MS,
    HOUR_WEIGHT,
    PERIODS,
    SMALL_CALIBRATION,
    TABS,
)


def period_times(rng: np.random.Generator, period: np.ndarray) -> np.ndarray:
    """(n,) ms times inside each row's period: uniform day, hour from ``HOUR_WEIGHT``, uniform within."""
    days = (PERIODS[:, 1] - PERIODS[:, 0]) // DAY_MS
    day = np.floor(rng.random(period.size) * days[period]).astype(np.int64)
    hour = rng.choice(24, period.size, p=HOUR_WEIGHT / HOUR_WEIGHT.sum())
    return PERIODS[period, 0] + day * DAY_MS + hour * HOUR_MS + rng.integers(0, HOUR_MS, period.size)


def strictly_increasing(t: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Raise times sorted within contiguous groups so each exceeds its predecessor (+1 ms steps)."""
    k = np.arange(t.size, dtype=np.int64)
    shift = group.astype(np.int64) << 45  # larger than any time span + row count: groups never mix
    return np.maximum.accumulate(t - k + shift) - shift + k


def block_impressions(
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
    anchor_t = period_times(rng, g_period[np.repeat(np.arange(counts.size), n_anchor)])
    first_anchor = (np.cumsum(n_anchor) - n_anchor)[req_g]
    pick = first_anchor + (rng.random(req_g.size) * n_anchor[req_g]).astype(np.int64)
    t = anchor_t[pick] + np.minimum(rng.exponential(600_000, req_g.size), 2 * HOUR_MS).astype(np.int64)
    t = np.minimum(t, PERIODS[g_period[req_g], 1] - HOUR_MS)
    t = strictly_increasing(t[np.lexsort((t, req_g))], req_g)
    tab_p = np.array(list(TABS.values()), float) / sum(TABS.values())
    tab_keys = np.array(list(TABS))
    user, period = g_user[row_g], g_period[row_g]
    item = distinct_in_requests(rng, u, it, user, req)
    # Random exposures: single videos, uniform over the catalogue, in the second period.
    r_user = np.repeat(np.arange(lo, hi), u["n_rand"][lo:hi])
    r_time = period_times(rng, np.ones(r_user.size, np.int64))
    std_file = period * 2 + u["part"][user, period] if n_std_files == 4 else period
    return {
        "user": np.r_[user, r_user], "item": np.r_[item, rng.integers(0, it["n"], r_user.size)],
        "time": np.r_[t[req], r_time[np.lexsort((r_time, r_user))]],
        "tab": np.r_[tab_keys[rng.choice(tab_keys.size, req_g.size, p=tab_p)][req],
                     tab_keys[rng.choice(tab_keys.size, r_user.size, p=tab_p)]],
        "is_rand": np.r_[np.zeros(n, np.int8), np.ones(r_user.size, np.int8)],
        "file": np.r_[std_file, np.full(r_user.size, n_std_files)],
    }  # fmt: skip


def expose(rng: np.random.Generator, u: dict, it: dict, user: np.ndarray) -> np.ndarray:
    """(N,) videos the standard policy shows: the best of CANDIDATES popularity draws by affinity s
    plus Gumbel noise (so exposure is biased toward what the user likes)."""
    cand = np.searchsorted(it["cum_pop"], rng.random((user.size, CANDIDATES)), "right").clip(0, it["n"] - 1)
    z = u["z"][user]
    score = np.stack([(z * it["v"][cand[:, c]]).sum(1) for c in range(CANDIDATES)], 1)
    return cand[np.arange(user.size), (score + rng.gumbel(0, 0.6, cand.shape)).argmax(1)]


def calibration_rows(rng: np.random.Generator, u: dict, it: dict) -> dict[str, np.ndarray]:
    """Up to ``CALIBRATION_ROWS`` standard impressions across all users, on which the intercepts are solved,
    so that every block shares them whatever its users. A log that fits gets each user's exact row count
    (repeated up to ``SMALL_CALIBRATION`` rows): on small data a multinomial draw of the few heavy users
    moved the realised rates by 5-20 % (rare behaviours most); a big log is sampled by row counts."""
    total = int(u["n_std"].sum())
    if total <= CALIBRATION_ROWS:
        user = np.repeat(np.arange(u["n"]), u["n_std"] * max(1, SMALL_CALIBRATION // max(total, 1)))
    else:
        user = rng.choice(u["n"], CALIBRATION_ROWS, p=u["n_std"] / u["n_std"].sum())
    tab_keys = np.array(list(TABS))
    tab = tab_keys[rng.choice(tab_keys.size, user.size, p=np.array(list(TABS.values())) / sum(TABS.values()))]
    return {"user": user, "item": expose(rng, u, it, user), "tab": tab}


def distinct_in_requests(
    rng: np.random.Generator, u: dict, it: dict, user: np.ndarray, req: np.ndarray
) -> np.ndarray:
    """(N,) exposed videos, redrawn (same policy) where one repeats within a request; a few passes
    leave rare repeats, which the real logs have too (KuaiSim keeps such duplicate rows)."""
    item = expose(rng, u, it, user)
    for _ in range(4):
        order = np.lexsort((item, req))
        dup = np.zeros(item.size, bool)
        dup[order[1:]] = (req[order[1:]] == req[order[:-1]]) & (item[order[1:]] == item[order[:-1]])
        if not dup.any():
            break
        item[dup] = expose(rng, u, it, user[dup])
    return item
