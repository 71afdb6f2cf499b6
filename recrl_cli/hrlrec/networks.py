"""HRL-Rec's networks (unifiedrl_hrlrec.md B2): one sequence-encoder design shared by both levels.

- User state s_u: the KuaiSim-style history encoder of :class:`recrl_cli.agents.networks.StateEncoder` (item
  kernels + feedback through a transformer, plus the user's features) -> [B, S].
- :class:`ListEncoder` (the released LRA's encoder, made causal so position t sees only what is placed before
  it): token_t = W_s s_u + W_i e(d_{t−1}) + W_c e(c_{t−1}) [+ W_k e(c_t) for the item recommender, which acts
  *given* the channel] + pos_t; one causal multi-head self-attention block with a tanh feed-forward
  ("feature interaction"), then a GRU over positions ("sequential modelling") -> h [B, T, d].
- :class:`ListActor`: h -> tanh(Linear) = a point μ_t in the action embedding space [B, T, e].
- :class:`ListCritic`: its own ListEncoder; Q_t = MLP([h_t, a_t]) [B, T]. The action enters at the head, not
  the encoder (the released code feeds it through the encoder), so Q(s_t, μ(s_t)) can be evaluated at every
  position without changing the state of the later positions.

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


class ListCritic(nn.Module):
    """Q_t = Linear(ReLU(Linear([h_t, a_t]))) [B, T] for actions a [B, T, e]."""

    def __init__(self, encoder: ListEncoder, enc_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(enc_dim + action_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, state, prev_item, prev_channel, action, channel=None) -> torch.Tensor:
        h = self.encoder(state, prev_item, prev_channel, channel)
        return self.head(torch.cat([h, action], -1)).squeeze(-1)
