"""Per-position rewards of a list (unifiedrl_hrlrec.md B4; the paper names the types, not the formulas).

For position t of a list of T items (all [B, T]):

- click  r^clk_t = 1[click];
- dwell  r^dwell_t = min(log(1 + play_s) / log(1 + cap), 1) (0 without a click: the env plays nothing then);
- diversity r^div_t = 1 − max_{s<t} Jaccard(tags(d_t), tags(d_s)), 1 at t = 1;
- novelty r^nov_t = 1[tags(d_t) ∩ tags(the user's last ``novelty_window`` history items) = ∅].

The item recommender (HRA) gets r^H = r^clk + λ_d r^dwell + λ_v r^div + λ_n r^nov; the channel selector (LRA)
gets r^L = r^H + λ_c 1[c_t ∉ {c_{t−1}, c_{t−2}}] (credit for the item placed in its slot plus a channel-level
diversity term). Defaults λ_d = 1, λ_v = 0.2, λ_n = 0.2 (B4's proposal), λ_c = 0.5: the author states that the
LRA and HRA differ only in their rewards (B2, issue #4) and the paper rewards diversity, while with λ_c = 0 the
selector's reward carries no channel-mix signal (on the benchmark world a click is as likely for a repeated
channel as for a new one) and it collapses onto one channel; λ_c = 0 reproduces the earlier default.

Tags are compared as multi-hot rows [B, T, V] (V = tag vocabulary, small on KuaiRand), so every pairwise
Jaccard of a batch is one batched matmul. An item without tags has Jaccard 0 with everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

REWARD_SETS = ("full", "no-dwell", "no-diversity", "no-novelty", "click-only")


@dataclass(frozen=True)
class RewardWeights:
    """λ_d (dwell), λ_v (diversity), λ_n (novelty), λ_c (LRA channel alternation), dwell cap in seconds."""

    dwell: float = 1.0
    diversity: float = 0.2
    novelty: float = 0.2
    channel_switch: float = 0.5
    dwell_cap: float = 120.0

    def ablated(self, rewards: str) -> RewardWeights:
        """These weights with the components that ``rewards`` (one of ``REWARD_SETS``) drops set to 0."""
        drop = {"full": (), "no-dwell": ("dwell",), "no-diversity": ("diversity",), "no-novelty": ("novelty",),
                "click-only": ("dwell", "diversity", "novelty", "channel_switch")}[rewards]  # fmt: skip
        return RewardWeights(**{**self.__dict__, **dict.fromkeys(drop, 0.0)})


def multi_hot(tags: torch.Tensor, vocab: int) -> torch.Tensor:
    """Tag ids [..., L] (0 = padding) -> float multi-hot [..., V] (column 0, the padding, zeroed)."""
    out = torch.zeros(*tags.shape[:-1], vocab, device=tags.device)
    out.scatter_(-1, tags, 1.0)
    out[..., 0] = 0.0
    return out


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Jaccard of multi-hot sets a [B, T, V], b [B, S, V] -> [B, T, S] (0 where both are empty)."""
    inter = a @ b.transpose(1, 2)
    union = a.sum(-1)[..., :, None] + b.sum(-1)[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))


def diversity(tag_sets: torch.Tensor) -> torch.Tensor:
    """r^div [B, T] from the list's multi-hot tags [B, T, V]: 1 − max Jaccard with the earlier positions."""
    t = tag_sets.shape[1]
    jac = jaccard(tag_sets, tag_sets)
    earlier = torch.ones(t, t, dtype=torch.bool, device=tag_sets.device).tril(-1)  # s < t
    return 1.0 - jac.masked_fill(~earlier, 0.0).amax(-1)


def novelty(tag_sets: torch.Tensor, history_tags: torch.Tensor) -> torch.Tensor:
    """r^nov [B, T]: 1 where the item shares no tag with the history's multi-hot union ``history_tags`` [B, V]."""
    return ((tag_sets * history_tags[:, None, :]).sum(-1) == 0).float()


def history_tag_union(hist_items: torch.Tensor, hist_mask: torch.Tensor, item_tags: torch.Tensor,
                      vocab: int, window: int) -> torch.Tensor:  # fmt: skip
    """Multi-hot union [B, V] of the tags of the last ``window`` real history items (oldest first [B, H]);
    ``item_tags`` [N + 1, L] is indexed by encoded item id."""
    items, mask = hist_items[:, -window:], hist_mask[:, -window:]
    sets = multi_hot(item_tags[items], vocab) * mask[..., None]
    return sets.amax(1)


def dwell(play_seconds: torch.Tensor, cap: float) -> torch.Tensor:
    """r^dwell [B, T] = min(log1p(play) / log1p(cap), 1)."""
    return (torch.log1p(play_seconds.clamp(min=0.0)) / math.log1p(cap)).clamp(max=1.0)


def channel_switch(channels: torch.Tensor) -> torch.Tensor:
    """1[c_t ∉ {c_{t−1}, c_{t−2}}] [B, T] (1 at t = 1; at t = 2 only c_1 is compared)."""
    prev1 = torch.cat([torch.full_like(channels[:, :1], -1), channels[:, :-1]], 1)
    prev2 = torch.cat([torch.full_like(channels[:, :2], -1), channels[:, :-2]], 1)
    return ((channels != prev1) & (channels != prev2)).float()


@dataclass(frozen=True)
class ListRewards:
    """Components and totals, all [B, T]: click, dwell, diversity, novelty, switch; high (r^H), low (r^L)."""

    click: torch.Tensor
    dwell: torch.Tensor
    diversity: torch.Tensor
    novelty: torch.Tensor
    switch: torch.Tensor
    high: torch.Tensor
    low: torch.Tensor


def list_rewards(clicks: torch.Tensor, play_seconds: torch.Tensor, tag_sets: torch.Tensor,
                 history_tags: torch.Tensor, channels: torch.Tensor, w: RewardWeights) -> ListRewards:  # fmt: skip
    """Rewards of B lists: clicks [B, T] (0/1), play_seconds [B, T], tag_sets [B, T, V], history_tags [B, V],
    channels [B, T]."""
    clk = clicks.float()
    dw, dv, nv = dwell(play_seconds, w.dwell_cap), diversity(tag_sets), novelty(tag_sets, history_tags)
    sw = channel_switch(channels)
    high = clk + w.dwell * dw + w.diversity * dv + w.novelty * nv
    return ListRewards(click=clk, dwell=dw, diversity=dv, novelty=nv, switch=sw, high=high,
                       low=high + w.channel_switch * sw)  # fmt: skip
