"""The hidden response model of the synthetic KuaiRand logs: true probabilities, calibration, sampling.

See ``kuairand.py`` for the formulas. Every function works on (N,) rows of one block.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
from scipy.special import ndtr

from recrl_cli.data.prepare.kuairand_spec import BEHAVIOURS, LOG_COLUMNS
from recrl_cli.data.synth.kuairand_spec import COEF, CST_MS, DAY_MS, HOUR_MS, RATES, TAB_EFFECT


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def linear_parts(u: dict, it: dict, imp: dict) -> dict[str, np.ndarray]:
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


def p_long_given_click(lin: dict, mu: np.ndarray) -> np.ndarray:
    """P(play >= min(dur, 18 s) | click) = P(LogNormal(mu, sigma) >= extra); 1 when extra = 0."""
    z = (np.log(np.maximum(lin["extra"], 1)) - mu) / COEF["play_sigma"]
    return np.where(lin["extra"] <= 0, 1.0, 1.0 - ndtr(z))


def probabilities(lin: dict, c: dict[str, float]) -> dict[str, np.ndarray]:
    """True marginal probability of each behaviour per row, and the play-time μ (log ms)."""
    p = {"is_click": sigmoid(c["is_click"] + lin["is_click"])}
    mu = c["play_mu"] + lin["mu"]
    p["long_view"] = p["is_click"] * p_long_given_click(lin, mu)
    for name in BEHAVIOURS[2:-1]:  # like, comment, forward, follow need a click
        p[name] = p["is_click"] * sigmoid(c[name] + lin[name])
    p["is_hate"] = sigmoid(c["is_hate"] + lin["is_hate"])
    return {**p, "play_mu": mu}


def solve_increasing(
    f: Callable[[float], float], target: float, lo: float = -30.0, hi: float = 30.0
) -> float:
    """x with f(x) = target for an increasing f (bisection)."""
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


def calibrate(sub: dict) -> dict[str, float]:
    """Intercepts (and μ's offset) that give standard impressions ``sub`` KuaiRand-Pure's positive rates."""
    c = {"is_click": solve_increasing(lambda x: sigmoid(x + sub["is_click"]).mean(), RATES["is_click"])}
    p_click = sigmoid(c["is_click"] + sub["is_click"])
    c["play_mu"] = solve_increasing(
        lambda m: (p_click * p_long_given_click(sub, m + sub["mu"])).mean(), RATES["long_view"], -10, 30
    )
    for name in BEHAVIOURS[2:-1]:
        c[name] = solve_increasing(lambda x, nm=name: (p_click * sigmoid(x + sub[nm])).mean(), RATES[name])
    c["is_hate"] = solve_increasing(lambda x: sigmoid(x + sub["is_hate"]).mean(), RATES["is_hate"])
    return c


def sample_log(
    rng: np.random.Generator, imp: dict, lin: dict, c: dict[str, float]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Realise labels and play times; return the 19-column log rows and their ground-truth rows."""
    p = probabilities(lin, c)
    n = imp["user"].size
    click = rng.random(n) < p["is_click"]
    y = {"is_click": click}
    for name in BEHAVIOURS[2:-1]:  # the conditional probability given a click, gated by the click
        y[name] = click & (rng.random(n) < sigmoid(c[name] + lin[name]))
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
