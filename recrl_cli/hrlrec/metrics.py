"""List metrics of integrated recommendation (unifiedrl_hrlrec.md B6) and channel-share stability.

Per env step (B lists of T items) :class:`ListMetrics` records, as device tensors (no sync until the summary):

- ctr: clicks / impressions; clicks: clicks per list; dwell: simulated play seconds summed over a list;
- ild: intra-list diversity 1 − mean pairwise tag-Jaccard over the T(T−1) ordered pairs of a list;
- tags: distinct tags per list; novelty: share of items sharing no tag with the user's recent history;
- reward: Σ_t r^H_t per list; ch_entropy: entropy (nats) of the channel mix inside a list;
- reward_se: the standard error of ``reward`` over the B env rows (each row's mean list reward over the steps;
  rows are independent users and draws, the steps of one row are not), 0 for B = 1;
- channel impressions [C] -> ``share/<channel>`` over the whole evaluation.

A *simulated day* is ``day_steps`` consecutive env steps (B × day_steps lists). Channel shares p_d of each day
give share_std = mean_c std_d(p_{d,c}) and share_kl = mean_d KL(p_d ‖ p_{d−1}) (shares smoothed by 1e-6 so an
absent channel keeps the KL finite); both are 0 for a policy whose mix never moves.
"""

from __future__ import annotations

import torch

from recrl_cli.hrlrec.rewards import ListRewards, jaccard

SCALARS = ("ctr", "clicks", "dwell", "ild", "tags", "novelty", "reward", "ch_entropy")
EPS = 1e-6


def intra_list_diversity(tag_sets: torch.Tensor) -> torch.Tensor:
    """[B] 1 − mean off-diagonal Jaccard of each list's multi-hot tags [B, T, V]."""
    t = tag_sets.shape[1]
    jac = jaccard(tag_sets, tag_sets)
    off = jac.sum((1, 2)) - jac.diagonal(dim1=1, dim2=2).sum(1)
    return 1.0 - off / (t * (t - 1))


def channel_entropy(channels: torch.Tensor, num_channels: int) -> torch.Tensor:
    """[B] entropy (nats) of the channel histogram of each list [B, T]."""
    counts = torch.zeros(channels.shape[0], num_channels, device=channels.device)
    counts.scatter_add_(1, channels, torch.ones_like(channels, dtype=torch.float))
    p = counts / channels.shape[1]
    return -(p * torch.log(p.clamp(min=1e-12))).sum(1)


def share_stability(day_counts: torch.Tensor) -> tuple[float, float]:
    """(share_std, share_kl) from channel impressions per day [D, C]; KL is NaN for D < 2."""
    p = day_counts / day_counts.sum(1, keepdim=True).clamp(min=1.0)
    std = float(p.std(0, unbiased=False).mean())
    if p.shape[0] < 2:
        return std, float("nan")
    q = (p + EPS) / (1 + EPS * p.shape[1])
    kl = (q[1:] * (q[1:].log() - q[:-1].log())).sum(1)
    return std, float(kl.mean())


class ListMetrics:
    """Accumulates steps; :meth:`summary` -> means of the scalars, shares per channel and their stability."""

    def __init__(self, channel_names: list[str], day_steps: int) -> None:
        self.names, self.day_steps = channel_names, day_steps
        self._rows: list[torch.Tensor] = []
        self._row_reward: torch.Tensor | None = None  # [B] Σ over steps of each env row's list reward

    def update(self, channels: torch.Tensor, clicks: torch.Tensor, play: torch.Tensor, tag_sets: torch.Tensor,
               rewards: ListRewards) -> None:  # fmt: skip
        """channels / clicks / play [B, T], tag_sets [B, T, V], the step's rewards."""
        c = len(self.names)
        counts = torch.zeros(c, device=channels.device).index_add_(
            0, channels.flatten(), torch.ones(channels.numel(), device=channels.device)
        )
        self._rows.append(torch.cat([torch.stack([
            clicks.float().mean(), clicks.float().sum(1).mean(), play.sum(1).mean(),
            intra_list_diversity(tag_sets).mean(), (tag_sets.amax(1) > 0).sum(-1).float().mean(),
            rewards.novelty.mean(), rewards.high.sum(1).mean(), channel_entropy(channels, c).mean(),
        ]), counts]))  # fmt: skip
        per_row = rewards.high.sum(1).double()
        self._row_reward = per_row if self._row_reward is None else self._row_reward + per_row

    def __len__(self) -> int:
        return len(self._rows)

    def summary(self) -> dict[str, float]:
        if not self._rows:
            return {}
        m = torch.stack(self._rows).double().cpu()
        out = {k: float(m[:, j].mean()) for j, k in enumerate(SCALARS)}
        row_mean = self._row_reward.cpu() / len(self._rows)  # [B]
        b = len(row_mean)
        out["reward_se"] = float(row_mean.std() / b**0.5) if b > 1 else 0.0
        counts = m[:, len(SCALARS) :]
        total = counts.sum(0)
        for name, v in zip(self.names, (total / total.sum().clamp(min=1.0)).tolist(), strict=True):
            out[f"share/{name}"] = v
        days = len(counts) // self.day_steps
        if days >= 1:
            per_day = counts[: days * self.day_steps].reshape(days, self.day_steps, -1).sum(1)
            out["share_std"], out["share_kl"] = share_stability(per_day)
        return out
