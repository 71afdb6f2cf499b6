"""The planted truth of ``recrl synth kuairand`` output, lined up with a prepared directory.

The generator writes the true probability of every log row (``ground_truth.csv``) and its parameters
(``ground_truth.json``: seed and sizes). From the seed the hidden population is rebuilt exactly (the
generator draws users, then videos, from ``default_rng(seed)`` before anything else), which gives the true
click logit of *any* user × video pair, not only of the logged ones:

    z_click(u, i) = c_click + s(u, i) + b_u + b_i        (tab effect left out: a slate has no tab)

Its user × item part is the double-centred grid ``s − mean_i s − mean_u s + mean s`` over a set of users and
videos; :func:`interaction_share` measures how much of it a simulator's own logit grid recovers.

Shapes: U users, I videos (encoded ids of the prepared directory: 1..U, 1..I), N rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from recrl_cli.data.prepare.kuairand import BEHAVIOURS
from recrl_cli.errors import DataError

TRUTH_COLUMNS = [f"p_{b.removeprefix('is_')}" for b in BEHAVIOURS]


@dataclass(frozen=True)
class PlantedTruth:
    """The hidden model of a synthetic KuaiRand set, indexed by the prepared directory's encoded ids.

    Attributes:
        user_z: FloatTensor [U + 1, D] user taste vectors (row 0 = padding, zeros).
        user_bias: FloatTensor [U + 1] b_u.  item_v: FloatTensor [I + 1, D].  item_bias: FloatTensor [I + 1] b_i.
        click_intercept: c_click.
    """

    user_z: torch.Tensor
    user_bias: torch.Tensor
    item_v: torch.Tensor
    item_bias: torch.Tensor
    click_intercept: float

    def click_logit(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """True click logit (no tab effect): users [U'] x items [I'] (None = every item 1..I) -> [U', I']."""
        items = torch.arange(1, self.item_v.shape[0]) if items is None else items
        s = self.user_z[users] @ self.item_v[items].T
        return self.click_intercept + s + self.user_bias[users, None] + self.item_bias[None, items]


def _raw_ids(prepared: Path, table: str, key: str, raw: str) -> np.ndarray:
    frame = pl.read_parquet(prepared / f"{table}.parquet", columns=[key, raw]).sort(key)
    return frame[raw].to_numpy()


def load_planted_truth(raw_dir: Path, prepared: Path) -> PlantedTruth:
    """Rebuild the generator's users and videos from ``raw_dir/ground_truth.json`` and index them by the
    encoded ids of ``prepared`` (a :class:`DataError` when ``raw_dir`` holds no synthetic KuaiRand)."""
    from recrl_cli.data.synth.kuairand_population import item_state, user_state

    path = Path(raw_dir) / "ground_truth.json"
    if not path.is_file():
        raise DataError(f"{raw_dir} has no ground_truth.json: --truth needs `recrl synth kuairand` output")
    params = json.loads(path.read_text())
    try:
        rng = np.random.default_rng(params["seed"])
        users = user_state(rng, params["num_users"], params["num_impressions"], params["num_random"])
        items = item_state(rng, params["num_items"], params["version"])
        c_click = float(params["intercepts"]["is_click"])
    except KeyError as exc:
        raise DataError(f"{path} lacks {exc}; write it again with `recrl synth kuairand`") from None
    uid = _raw_ids(Path(prepared), "users", "user", "user_id")
    vid = _raw_ids(Path(prepared), "items", "item", "video_id")
    if uid.max(initial=0) >= users["n"] or vid.max(initial=0) >= items["n"]:
        raise DataError(f"{prepared} has ids beyond {raw_dir}'s population: it was prepared from other files")

    def padded(values: np.ndarray, ids: np.ndarray) -> torch.Tensor:
        out = np.zeros((ids.size + 1, *values.shape[1:]), np.float32)
        out[1:] = values[ids]
        return torch.from_numpy(out)

    return PlantedTruth(
        user_z=padded(users["z"], uid), user_bias=padded(users["bias"], uid),
        item_v=padded(items["v"], vid), item_bias=padded(items["bias"], vid), click_intercept=c_click,
    )  # fmt: skip


def row_truth(raw_dir: Path, prepared: Path, rows: torch.Tensor) -> torch.Tensor:
    """True probabilities [N, 7] (``BEHAVIOURS`` order) of prepared row indices ``rows`` [N], from
    ``ground_truth.csv`` matched on (user_id, video_id, time_ms) of the standard log."""
    path = Path(raw_dir) / "ground_truth.csv"
    if not path.is_file():
        raise DataError(f"{raw_dir} has no ground_truth.csv: --truth needs `recrl synth kuairand` output")
    keys = ["user_id", "video_id", "time_ms"]
    table = pl.read_parquet(Path(prepared) / "rows.parquet", columns=keys)
    wanted = table[rows.cpu().numpy()].with_row_index("order")
    truth = (
        pl.scan_csv(path).filter(pl.col("is_rand") == 0).select(*keys, *TRUTH_COLUMNS)
        .unique(keys, keep="first", maintain_order=False).collect()
    )  # fmt: skip
    joined = wanted.join(truth, on=keys, how="left").sort("order")
    if joined.height != len(rows) or joined[TRUTH_COLUMNS[0]].null_count():
        raise DataError(f"{raw_dir}/ground_truth.csv does not cover the rows of {prepared}")
    return torch.from_numpy(joined.select(TRUTH_COLUMNS).to_numpy().astype(np.float32))


def double_centre(grid: torch.Tensor) -> torch.Tensor:
    """The user × item part of a [U, I] grid: minus row means and column means, plus the grand mean."""
    return grid - grid.mean(1, keepdim=True) - grid.mean(0, keepdim=True) + grid.mean()


def interaction_share(model_grid: torch.Tensor, true_grid: torch.Tensor) -> dict[str, float]:
    """How much of the true user × item part a model's logit grid recovers (both [U, I], same users/items).

    ``r2``: squared correlation of the two double-centred grids (the share of the true interaction's
    variance a linear rescaling of the model's explains); ``sd_model`` / ``sd_true``: their standard
    deviations (logit units); ``item_sd_*``: standard deviation of the item main effect (column means).
    """
    m, t = double_centre(model_grid.double()), double_centre(true_grid.double())
    corr = (m * t).sum() / (m.norm() * t.norm()).clamp(min=1e-12)
    return {
        "r2": float(corr**2), "sd_model": float(m.std()), "sd_true": float(t.std()),
        "item_sd_model": float(model_grid.double().mean(0).std()),
        "item_sd_true": float(true_grid.double().mean(0).std()),
    }  # fmt: skip
