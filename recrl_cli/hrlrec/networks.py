"""HRL-Rec's networks (unifiedrl_hrlrec.md B2): one sequence-encoder design shared by both levels.

- User state s_u: the KuaiSim-style history encoder of :class:`recrl_cli.agents.networks.StateEncoder` (item
  kernels + feedback through a transformer, plus the user's features) -> [B, S].
- :class:`ListEncoder` (the released LRA's encoder, made causal so position t sees only what is placed before
  it): token_t = W_s s_u + W_i e(d_{t−1}) + W_c e(c_{t−1}) [+ W_k e(c_t) for the item recommender, which acts
  *given* the channel] + pos_t; one causal multi-head self-attention block with a tanh feed-forward
  ("feature interaction"), then a GRU over positions ("sequential modelling") -> h [B, T, d].
- :class:`ListActor`: h -> tanh(Linear) = a point μ_t in the action embedding space [B, T, e].
- :class:`ListCritic`: its own ListEncoder; Q_t = MLP([h_t, a_t, sim_t]) [B, T]. The action enters at the head,
  not the encoder (the released code feeds it through the encoder), so Q(s_t, μ(s_t)) can be evaluated at every
  position without changing the state of the later positions. What the released critic gets from passing the
  action through the self-attention, a comparison of the action with the earlier positions, is given explicitly
  as sim_t = :func:`prefix_similarity` (max and mean dot product with the same level's placed actions): without
  it the critic did not learn within the budgets measured that repeating a channel forfeits the selector's
  channel-switch reward.

Action embeddings are *fixed* (:func:`action_tables`): the supervised and similarity losses pull μ towards them,
which would collapse learned targets. Items get the normalised sum of seeded random vectors of their id, their
categorical features and their tags (items sharing tags or upload type are close); channels get seeded random
unit vectors. The discrete choice is the arg-max dot product over the allowed candidates (B2's proposal).

Shapes: B lists, T positions, S user state, d = enc_dim, e = action_dim, N items, C channels.
"""

from __future__ import annotations

import torch
from torch import nn


def action_tables(items, num_channels: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(item embeddings [N, e], channel embeddings [C, e]), unit norm, from a :class:`FeatureTable` (row 0 =
    padding dropped). Deterministic in ``seed``; no parameters."""
    gen = torch.Generator().manual_seed(seed)
    ids, tags = items.ids.cpu(), items.tags.cpu()
    n = ids.shape[0]
    vec = 0.5 * torch.randn(n, dim, generator=gen)  # the item's own direction
    for j, card in enumerate(items.cardinalities):
        table = torch.randn(card + 1, dim, generator=gen)
        table[0] = 0.0  # missing value
        vec = vec + table[ids[:, j]]
    tag_table = torch.randn(max(items.tag_cardinality, int(tags.max()) + 1), dim, generator=gen)
    tag_table[0] = 0.0
    vec = vec + tag_table[tags].sum(1)
    chan = torch.randn(num_channels, dim, generator=gen)
    dev = items.ids.device
    return nn.functional.normalize(vec[1:], dim=-1).to(dev), nn.functional.normalize(chan, dim=-1).to(dev)


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """[B, T, e] -> the previous position's value at each position, zeros at t = 0."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)


class ListEncoder(nn.Module):
    """State tokens of each list position -> h [B, T, d] (causal: h_t depends on positions ≤ t only)."""

    def __init__(self, state_dim: int, action_dim: int, enc_dim: int, n_heads: int, max_len: int,
                 current_channel: bool, dropout: float) -> None:  # fmt: skip
        super().__init__()
        self.state = nn.Linear(state_dim, enc_dim)
        self.prev_item = nn.Linear(action_dim, enc_dim, bias=False)
        self.prev_channel = nn.Linear(action_dim, enc_dim, bias=False)
        self.current = nn.Linear(action_dim, enc_dim, bias=False) if current_channel else None
        self.position = nn.Parameter(torch.randn(max_len, enc_dim) * 0.02)
        self.attn = nn.MultiheadAttention(enc_dim, n_heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(enc_dim, enc_dim), nn.Tanh())
        self.norm1, self.norm2 = nn.LayerNorm(enc_dim), nn.LayerNorm(enc_dim)
        self.gru = nn.GRU(enc_dim, enc_dim, batch_first=True)

    def forward(self, state: torch.Tensor, prev_item: torch.Tensor, prev_channel: torch.Tensor,
                channel: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """state [B, S]; prev_item / prev_channel / channel [B, T, e] (embeddings of d_{t−1}, c_{t−1}, c_t)."""
        t = prev_item.shape[1]
        x = self.state(state)[:, None] + self.prev_item(prev_item) + self.prev_channel(prev_channel)
        if self.current is not None:
            x = x + self.current(channel)
        x = x + self.position[:t]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)  # True = may not attend
        a, _ = self.attn(x, x, x, attn_mask=causal, need_weights=False)
        x = self.norm1(x + a)
        x = self.norm2(x + self.ff(x))
        h, _ = self.gru(x)
        return h


class ListActor(nn.Module):
    """μ_t = tanh(W h_t) [B, T, e]."""

    def __init__(self, encoder: ListEncoder, enc_dim: int, action_dim: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(enc_dim, action_dim)

    def forward(self, state, prev_item, prev_channel, channel=None) -> torch.Tensor:
        return torch.tanh(self.head(self.encoder(state, prev_item, prev_channel, channel)))


def prefix_similarity(action: torch.Tensor, prefix: torch.Tensor, t: int | None = None) -> torch.Tensor:
    """How close an action is to the actions already placed: [max, mean] over s < t of ⟨a_t, e_s⟩.

    prefix [B, T, e] = the executed actions shifted right (position t holds e_{t−1}, position 0 zeros), so
    positions 1..t of it are the placed prefix of position t. ``t`` None: action [B, T, e] (one per position)
    -> [B, T, 2]; ``t`` given: K candidate actions [K, e] at position t -> [B, K, 2]. 0 where nothing is placed.
    """
    if t is None:
        sims = action @ prefix.transpose(1, 2)  # [B, T(t), T(s)]
        n = sims.shape[1]
        ok = torch.ones(n, n, dtype=torch.bool, device=sims.device).tril()
        ok[:, 0] = False  # position s = 0 of the shifted prefix is padding
    else:
        if t == 0:  # nothing placed yet
            return action.new_zeros(prefix.shape[0], action.shape[0], 2)
        sims = torch.einsum("ke,bse->bks", action, prefix[:, 1 : t + 1])  # [B, K, t]
        ok = torch.ones(sims.shape[-1], dtype=torch.bool, device=sims.device)
    count = ok.sum(-1).clamp(min=1)
    top = sims.masked_fill(~ok, float("-inf")).amax(-1)
    top = torch.where(ok.any(-1), top, torch.zeros_like(top))
    mean = sims.masked_fill(~ok, 0.0).sum(-1) / count
    return torch.stack([top, mean], -1)


class ListCritic(nn.Module):
    """Q_t = Linear(ReLU(Linear([h_t, a_t, sim_t]))) [B, T] for actions a [B, T, e].

    sim_t = :func:`prefix_similarity` of a_t with the same level's actions placed before t (channels for the
    selector, items for the recommender). The released critic feeds the action through the self-attention over
    the list, where it is compared with the earlier positions; with the action at the head instead, the head
    would have to learn that comparison from a concatenation, which it did not within the training budgets
    measured (benchmarks/HRLREC_NOTES.md): the selector's channel-level reward (a bonus for a channel not used
    just before) then never reached its choices. ``prefix_similarity=False`` drops the feature (earlier design).
    """

    def __init__(self, encoder: ListEncoder, enc_dim: int, action_dim: int, hidden: int, prefix: str = "channel",
                 use_prefix: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.encoder, self.prefix, self.use_prefix = encoder, prefix, use_prefix
        extra = 2 if use_prefix else 0
        self.head = nn.Sequential(
            nn.Linear(enc_dim + action_dim + extra, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def _placed(self, prev_item: torch.Tensor, prev_channel: torch.Tensor) -> torch.Tensor:
        return prev_channel if self.prefix == "channel" else prev_item

    def forward(self, state, prev_item, prev_channel, action, channel=None) -> torch.Tensor:
        h = self.encoder(state, prev_item, prev_channel, channel)
        x = [h, action]
        if self.use_prefix:
            x.append(prefix_similarity(action, self._placed(prev_item, prev_channel)))
        return self.head(torch.cat(x, -1)).squeeze(-1)

    def q_of(self, state, prev_item, prev_channel, actions: torch.Tensor, t: int) -> torch.Tensor:
        """Q at position t of each of K actions [K, e] -> [B, K]; prev_* [B, ≥t+1, e] (the encoder runs once:
        the action enters only the head)."""
        h = self.encoder(state, prev_item, prev_channel)[:, t]
        b, k = h.shape[0], actions.shape[0]
        x = [h[:, None].expand(b, k, -1), actions[None].expand(b, k, -1)]
        if self.use_prefix:
            x.append(prefix_similarity(actions, self._placed(prev_item, prev_channel), t))
        return self.head(torch.cat(x, -1)).squeeze(-1)
