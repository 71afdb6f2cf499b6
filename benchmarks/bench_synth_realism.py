"""How realistic is the synthetic KuaiRand world, and how much personalisation does it plant? (issue 14)

1. **Feature tables vs the real ones** (``--real``: a folder with KuaiRand-Pure's ``user_features_pure.csv`` and
   ``video_features_basic_pure.csv``): total variation distance (TVD, 0 = same shares, 1 = disjoint) of each
   categorical column's value shares, and duration quantiles.
2. **Behaviour rates** of the synthetic standard log against KuaiRand-Pure's published ones (the calibration
   targets ``recrl_cli.data.synth.kuairand_spec.RATES``).
3. **Planted headroom** from the hidden model (``--raw``: a ``recrl synth kuairand`` folder): the true click
   probability of a random slate, of the best constant top-K (the K items of highest mean true click
   probability over the users) and of each user's own top-K, with the constant slate's share of the oracle −
   random gap; and the split of the true click logit's variance over users × items into user, item and
   user × item parts.

    python benchmarks/bench_synth_realism.py --raw RAW --real REAL_FEATURES [--synth-features SYNTH] [--k 6]

``--synth-features`` is a full-size synthetic folder for the feature comparison (default ``--raw``; real Pure has
27,285 users and 7,583 videos, so a set made with ``--impressions 50000`` and the default sizes is enough).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
import torch

from recrl_cli.data.synth.kuairand_spec import RATES

USER_COLUMNS = ["user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
                "follow_user_num_range", "fans_user_num_range", "friend_user_num_range", "register_days_range",
                *[f"onehot_feat{k}" for k in range(18)]]  # fmt: skip
VIDEO_COLUMNS = ["video_type", "upload_type", "visible_status", "music_type", "n_tags", "first_tag"]


def tvd(a: pl.Series, b: pl.Series) -> float:
    """Total variation distance between the value shares of two columns (nulls are a value)."""
    sa = a.cast(pl.String).fill_null("<blank>").value_counts(normalize=True, name="p")
    sb = b.cast(pl.String).fill_null("<blank>").value_counts(normalize=True, name="q")
    col = sa.columns[0]
    joined = sa.join(sb.rename({sb.columns[0]: col}), on=col, how="full", coalesce=True).fill_null(0.0)
    return float((joined["p"] - joined["q"]).abs().sum() / 2)


def shape_tvd(a: pl.Series, b: pl.Series) -> float:
    """TVD of the sorted share profiles (rank k's share vs rank k's share): the anonymous one-hot codes of
    KuaiRand are arbitrary labels, so this compares the shape of a column whatever its codes."""
    pa = np.sort(
        a.cast(pl.String).fill_null("<blank>").value_counts(normalize=True, name="p")["p"].to_numpy()
    )[::-1]
    pb = np.sort(
        b.cast(pl.String).fill_null("<blank>").value_counts(normalize=True, name="p")["p"].to_numpy()
    )[::-1]
    n = max(pa.size, pb.size)
    return float(np.abs(np.pad(pa, (0, n - pa.size)) - np.pad(pb, (0, n - pb.size))).sum() / 2)


def videos(path: Path) -> pl.DataFrame:
    # All strings: the real and synthetic files compare as text.
    frame = pl.read_csv(path, infer_schema_length=0)
    tags = frame["tag"].fill_null("").str.split(",")
    return frame.with_columns(
        n_tags=tags.list.eval(pl.element().filter(pl.element() != "")).list.len(), first_tag=tags.list.first(),
        duration=pl.col("video_duration").cast(pl.Float64),
    )  # fmt: skip


def feature_figures(real: Path, synth: Path) -> dict:
    ru = pl.read_csv(real / "user_features_pure.csv", infer_schema_length=0)
    su = pl.read_csv(synth / "user_features_pure.csv", infer_schema_length=0)
    rv, sv = videos(real / "video_features_basic_pure.csv"), videos(synth / "video_features_basic_pure.csv")
    out = {
        "users": {c: tvd(ru[c], su[c]) for c in USER_COLUMNS},
        "videos": {c: tvd(rv[c], sv[c]) for c in VIDEO_COLUMNS},
        "users_shape": {c: shape_tvd(ru[c], su[c]) for c in USER_COLUMNS},
        "videos_shape": {c: shape_tvd(rv[c], sv[c]) for c in VIDEO_COLUMNS},
    }
    q = [0.1, 0.5, 0.9]
    out["duration_quantiles_s"] = {
        "real": [float(rv["duration"].quantile(x)) / 1000 for x in q],
        "synthetic": [float(sv["duration"].quantile(x)) / 1000 for x in q],
    }
    out["sizes"] = {"real": [ru.height, rv.height], "synthetic": [su.height, sv.height]}
    return out


def planted_headroom(raw: Path, k: int, users: int = 2000) -> dict:
    """Random / constant top-K / per-user top-K true click probability over sampled users and every video."""
    from recrl_cli.data.synth.kuairand_population import item_state, user_state

    params = json.loads((raw / "ground_truth.json").read_text())
    rng = np.random.default_rng(params["seed"])
    u = user_state(rng, params["num_users"], params["num_impressions"], params["num_random"])
    it = item_state(rng, params["num_items"], params["version"])
    pick = np.random.default_rng(0).choice(u["n"], min(users, u["n"]), replace=False)
    z = torch.from_numpy(u["z"][pick]).double() @ torch.from_numpy(it["v"]).double().T
    z = (
        z
        + torch.from_numpy(u["bias"][pick])[:, None]
        + torch.from_numpy(it["bias"])[None]
        + params["intercepts"]["is_click"]
    )
    p = torch.sigmoid(z)
    random = float(p.mean())
    constant = float(p[:, p.mean(0).topk(k).indices].mean())
    oracle = float(p.topk(k, dim=1).values.mean())
    user_part, item_part = z.mean(1, keepdim=True) - z.mean(), z.mean(0, keepdim=True) - z.mean()
    inter = z - z.mean() - user_part - item_part
    var = float(z.var())
    return {
        "k": k, "users": len(pick), "items": int(it["n"]), "random": random, "constant": constant, "oracle": oracle,
        "constant_gap_fraction": (constant - random) / (oracle - random),
        "variance_share": {"user": float(user_part.var()) / var, "item": float(item_part.var()) / var,
                           "user_x_item": float(inter.var()) / var},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", type=Path, required=True)
    ap.add_argument("--real", type=Path, help="folder with the real KuaiRand-Pure feature tables")
    ap.add_argument("--synth-features", type=Path, help="full-size synthetic folder (default --raw)")
    ap.add_argument("--k", type=int, default=6)
    args = ap.parse_args()
    out: dict = {"planted": planted_headroom(args.raw, args.k)}
    if args.real is not None:
        out["features"] = feature_figures(args.real, args.synth_features or args.raw)
    out["published_rates"] = RATES
    print(json.dumps(out, indent=2))
    p = out["planted"]
    print(f"\nplanted, K = {p['k']}, {p['users']} users x {p['items']} videos: true click rate random {p['random']:.3f}, "
          f"best constant top-K {p['constant']:.3f}, per-user top-K {p['oracle']:.3f}; the constant slate gets "
          f"{p['constant_gap_fraction']:.0%} of the gap; variance of the click logit: "
          + ", ".join(f"{k} {v:.0%}" for k, v in p["variance_share"].items()))  # fmt: skip
    if "features" in out:
        f = out["features"]
        for kind in ("", "_shape"):
            worst = sorted({**f["users" + kind], **f["videos" + kind]}.items(), key=lambda kv: -kv[1])[:6]
            print(f"largest TVDs{kind} (synthetic vs real): " + ", ".join(f"{k} {v:.3f}" for k, v in worst))
        print(
            f"video duration p10/p50/p90 s: real {f['duration_quantiles_s']['real']}, "
            f"synthetic {f['duration_quantiles_s']['synthetic']}"
        )


if __name__ == "__main__":
    main()
