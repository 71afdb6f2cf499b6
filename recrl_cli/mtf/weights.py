"""Reward weights from the data, as the paper set them "by analysing the correlation of each behaviour with user
dwell time" (unifiedrl_hrlrec.md A2, A6 step 5).

Per user u of the given rows: minutes_u = Σ play seconds / 60 and counts c_u = (valid plays (> 10 s), likes,
follows, comments, forwards, hates). Least squares minutes_u ≈ Σ_b β_b c_ub (no intercept) gives each
behaviour's dwell value in minutes; the reward weights are then (β_vc, 1 per watch minute, β_like, β_follow,
β_comment, β_forward, −β_hate), each clamped at 0 (the reward subtracts the hate weight, so a hate that
lowers dwell gets a positive weight). The KuaiRand prepared row table has no calendar date, so the unit is the
user over the rows, not the user-day of the notes.
"""

from __future__ import annotations

import torch

from recrl_cli.data.kuairand_tensors import RowTable
from recrl_cli.errors import DataError
from recrl_cli.sim.play_time import VALID_SECONDS

_LIKE, _COMMENT, _FORWARD, _FOLLOW, _HATE = 2, 3, 4, 5, 6


def fit_reward_weights(rows: RowTable, index: torch.Tensor) -> tuple[float, ...]:
    """The 7 reward weights (see :data:`recrl_cli.mtf.env.FALLBACK_WEIGHTS` order) fitted on rows ``index`` [n]."""
    play = rows.play_seconds[index].double().nan_to_num(0.0)
    labels = rows.labels[index].double()
    counts = torch.stack([(play > VALID_SECONDS).double(), labels[:, _LIKE], labels[:, _FOLLOW],
                          labels[:, _COMMENT], labels[:, _FORWARD], labels[:, _HATE]], 1)  # fmt: skip
    users, inverse = torch.unique(rows.user[index], return_inverse=True)
    if len(users) < counts.shape[1]:
        raise DataError(f"fitting reward weights needs at least {counts.shape[1]} users, got {len(users)}")
    x = torch.zeros(len(users), counts.shape[1], dtype=torch.float64, device=play.device).index_add_(
        0, inverse, counts
    )
    y = torch.zeros(len(users), dtype=torch.float64, device=play.device).index_add_(0, inverse, play / 60.0)
    beta = torch.linalg.lstsq(x.cpu(), y.cpu()[:, None], driver="gelsd").solution.squeeze(1)
    vc, like, follow, comment, forward, hate = beta.tolist()
    return tuple(max(0.0, w) for w in (vc, 1.0, like, follow, comment, forward, -hate))
