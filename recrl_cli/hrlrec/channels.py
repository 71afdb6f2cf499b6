"""Channels of an integrated feed and their candidate lists (unifiedrl_hrlrec.md B7).

HRL-Rec mixes items from heterogeneous *channels* (sources with their own retrieval and ranker) in one list.
On KuaiRand the closest analogue is ``upload_type`` (how a video was produced/uploaded); ``video_type``
(normal vs ad) and the first tag (topical verticals) are the alternatives. Values are grouped by their
train-split impression count: the ``max_channels − 1`` most frequent values keep their own channel and the
rest are merged into one "other" channel (so 3-8 channels by default on real KuaiRand).

Per channel the candidate list is the top ``per_channel`` items (200 as in the paper) of a per-channel
ranker. The ranker is deliberately independent of the simulator (which is the evaluation's ground truth):
the train-split click rate of each item shrunk towards its channel's click rate with an empirical-Bayes
prior of ``prior_strength`` pseudo-impressions, ``(clicks + m·ctr_c) / (impressions + m)``. Shrinkage keeps
an item seen twice with two clicks from outranking an item with 400 clicks in 1,000 impressions; items never
shown in train get their channel's rate.

Shapes: N items (candidate n = encoded item n + 1, the env's convention), C channels, M candidates per channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recrl_cli.errors import ConfigError

CHANNEL_BY = ("upload_type", "video_type", "first_tag")


@dataclass(frozen=True)
class Channels:
    """Channel assignment and candidate lists.

    Attributes:
        names: C channel names (``upload_type_3`` ..., ``other``; MLflow-safe).
        channel_of: LongTensor [N], the channel of each candidate item.
        candidates: LongTensor [C, M], candidate indices in ranker order, -1 on padding.
        valid: BoolTensor [C, M], True on real candidates.
        score: FloatTensor [N], the ranker's score of each item (shrunk train click rate).
        logged_share: FloatTensor [C], each channel's share of train impressions (the quota baseline's mix).
    """

    names: list[str]
    channel_of: torch.Tensor
    candidates: torch.Tensor
    valid: torch.Tensor
    score: torch.Tensor
    logged_share: torch.Tensor

    @property
    def num_channels(self) -> int:
        return len(self.names)

    def pool(self) -> torch.Tensor:
        """LongTensor [P]: every candidate of every channel (the flat baselines' pool), ascending."""
        return self.candidates[self.valid].unique()


def item_values(items, by: str) -> torch.Tensor:
    """LongTensor [N] of the grouping value of each item from a :class:`FeatureTable` (row 0 = padding
    dropped). ``first_tag`` is the first tag id (0 when the item has none)."""
    if by not in CHANNEL_BY:
        raise ConfigError(f"channel_by must be one of {', '.join(CHANNEL_BY)}, got {by!r}")
    if by == "first_tag":
        return items.tags[1:, 0].long()
    if by not in items.names:
        raise ConfigError(
            f"the prepared items have no {by!r} column (prepared with item_features={items.names})"
        )
    return items.ids[1:, items.names.index(by)].long()


def group_values(
    values: torch.Tensor, counts: torch.Tensor, max_channels: int
) -> tuple[torch.Tensor, list[int]]:
    """Group item values [N] into channels by impression count ``counts`` [N]: the ``max_channels − 1`` most
    shown values keep a channel each (most shown first), the others share a last channel. -> (channel [N],
    kept values). With at most ``max_channels`` distinct values every value keeps its own channel."""
    distinct = values.unique()
    shown = torch.zeros(int(values.max()) + 1, dtype=torch.float64, device=values.device)
    shown.index_add_(0, values, counts.double())
    order = distinct[shown[distinct].argsort(descending=True, stable=True)]
    keep = order if len(order) <= max_channels else order[: max_channels - 1]
    lookup = torch.full_like(shown, len(keep), dtype=torch.long)
    lookup[keep] = torch.arange(len(keep), device=values.device)
    return lookup[values], [int(v) for v in keep]


def ranker_scores(channel: torch.Tensor, impressions: torch.Tensor, clicks: torch.Tensor,
                  prior_strength: float) -> torch.Tensor:  # fmt: skip
    """Shrunk click rate [N]: (clicks + m·ctr_c) / (impressions + m), ctr_c the channel's pooled rate."""
    c = int(channel.max()) + 1
    imp_c = torch.zeros(c, dtype=torch.float64, device=channel.device).index_add_(
        0, channel, impressions.double()
    )
    clk_c = torch.zeros(c, dtype=torch.float64, device=channel.device).index_add_(0, channel, clicks.double())
    ctr_c = clk_c / imp_c.clamp(min=1.0)
    return ((clicks + prior_strength * ctr_c[channel]) / (impressions + prior_strength)).float()


def candidate_lists(channel: torch.Tensor, score: torch.Tensor, per_channel: int, num_channels: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Top ``per_channel`` items of each channel by ``score``: -> (candidates [C, M], valid [C, M]), M = the
    largest list (≤ per_channel). One sort by (channel, −score) and a rank within the channel, no loop."""
    n = len(channel)
    # Sort by score descending, then stably by channel: items grouped by channel, best first inside a group.
    by_score = score.argsort(descending=True, stable=True)
    order = by_score[channel[by_score].argsort(stable=True)]
    sizes = torch.bincount(channel, minlength=num_channels)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(n, device=channel.device) - starts[channel[order]]
    m = int(min(per_channel, int(sizes.max())))
    keep = rank < m
    cand = torch.full((num_channels, m), -1, dtype=torch.long, device=channel.device)
    cand[channel[order][keep], rank[keep]] = order[keep]
    return cand, cand >= 0


def build_channels(data, by: str = "upload_type", max_channels: int = 6, per_channel: int = 200,
                   prior_strength: float = 20.0) -> Channels:  # fmt: skip
    """Channels and candidate lists of a :class:`recrl_cli.sim.data.KuaiRandData` from its train split."""
    if not 2 <= max_channels <= 16:
        raise ConfigError(f"max_channels must be in [2, 16], got {max_channels}")
    if per_channel < 1:
        raise ConfigError(f"per_channel must be >= 1, got {per_channel}")
    values = item_values(data.items, by)
    n = len(values)
    train = data.splits["train"]
    item = data.rows.item[train] - 1
    impressions = torch.zeros(n, device=values.device).index_add_(
        0, item, torch.ones(len(item), device=values.device)
    )
    clicks = torch.zeros(n, device=values.device).index_add_(0, item, data.rows.labels[train, 0].float())
    channel, kept = group_values(values, impressions, max_channels)
    names = [f"{by}_{v}" for v in kept] + (["other"] if int(channel.max()) == len(kept) else [])
    if len(names) < 2:
        raise ConfigError(f"channel_by={by} gives a single channel on this data; choose another --channel-by")
    score = ranker_scores(channel, impressions, clicks, prior_strength)
    cand, valid = candidate_lists(channel, score, per_channel, len(names))
    share = torch.zeros(len(names), device=values.device).index_add_(0, channel, impressions)
    return Channels(names=names, channel_of=channel, candidates=cand, valid=valid, score=score,
                    logged_share=share / share.sum().clamp(min=1.0))  # fmt: skip
