"""The response model's encoders (hac_kuaisim.md §3.2): items, users, and the transformer over the history.

KuaiSim feeds one-hot/multi-hot feature vectors through ``Linear(dim_f → latent)``. A ``Linear`` over a one-hot
is an embedding row plus the bias, and over a multi-hot it is the sum of the rows plus the bias (§7), so here
every feature is an embedding table (+ a bias per feature): the same function without the one-hot tensors.

Shapes: B batch, H history length, K items per user, R encoder rows (id + features), d = enc_dim, L tag slots.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recrl_cli.nets.layers import dropout_mask, relu_dropout


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; on the CPU with the shared fast mask of :mod:`recrl_cli.nets.layers` (``bernoulli_``
    costs a generator draw per element there), elsewhere ``F.dropout``."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    return x * dropout_mask(x.shape, p, x.dtype, x.device)


class FieldRows(nn.Module):
    """Id embedding plus one embedding row (+ bias, i.e. ``Linear`` on a one-hot) per categorical field.

    Args:
        num_ids: rows of the id table (encoded ids 0..num_ids-1; 0 is padding/unknown and learnable, as KuaiSim).
        cardinalities: table size of each categorical field (0 = missing, a learnable row).
        latent: width of every row.
        tag_cardinality: size of the multi-hot tag vocabulary (0 = no tags); tag id 0 is the slot padding.
    """

    def __init__(self, num_ids: int, cardinalities: list[int], latent: int, tag_cardinality: int = 0) -> None:
        super().__init__()
        self.ids = nn.Embedding(num_ids, latent)
        cards = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", cards, persistent=False)
        self.fields = nn.Embedding(max(1, sum(cardinalities)), latent)
        self.field_bias = nn.Parameter(torch.zeros(len(cardinalities), latent))
        self.tags = nn.Embedding(tag_cardinality, latent, padding_idx=0) if tag_cardinality else None
        self.tag_bias = nn.Parameter(torch.zeros(latent)) if tag_cardinality else None
        self.num_rows = 1 + len(cardinalities) + (1 if tag_cardinality else 0)

    def forward(self, ids: torch.Tensor, features: torch.Tensor, tags: torch.Tensor | None) -> torch.Tensor:
        """ids [N], features [N, F] (field ids), tags [N, L] or None -> rows [N, R, latent]."""
        rows = [self.ids(ids)[:, None], self.fields(features + self.offsets) + self.field_bias]
        if self.tags is not None:
            rows.append((self.tags(tags).sum(1) + self.tag_bias)[:, None])  # multi-hot: sum of rows + bias
        return torch.cat(rows, 1)


class RowEncoder(nn.Module):
    """KuaiSim's item/user kernel: LayerNorm(latent) per row → shared Linear(latent → d) → sum over rows →
    [Dropout] → LayerNorm(d). Items use no dropout, users do (§3.2)."""

    def __init__(self, rows: FieldRows, latent: int, enc_dim: int, dropout: float) -> None:
        super().__init__()
        self.rows = rows
        self.row_norm = nn.LayerNorm(latent)
        self.proj = nn.Linear(latent, enc_dim)
        self.out_norm = nn.LayerNorm(enc_dim)
        self.dropout = dropout

    def forward(
        self, ids: torch.Tensor, features: torch.Tensor, tags: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ids [N], features [N, F], tags [N, L] or None -> encodings [N, d]."""
        h = self.proj(self.row_norm(self.rows(ids, features, tags))).sum(1)
        return self.out_norm(dropout(h, self.dropout, self.training))


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None, causal: bool, p: float
) -> torch.Tensor:
    """Scaled dot-product attention with dropout p on the weights (nn.MultiheadAttention's semantics).

    q [B, h, Lq, e], k and v [B, h, L, e], allowed bool broadcastable to [B, h, Lq, L] (or None; ``causal``
    then masks keys after the query) -> [B, h, Lq, e]. Without dropout this is PyTorch's fused kernel. With
    dropout that kernel falls back to an unfused path with a ``bernoulli_`` per weight, ~10 % of a CPU
    training step, so the weights are formed here and dropped with the shared fast mask.
    """
    if p == 0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p, is_causal=causal)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if causal:
        allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return dropout(scores.softmax(-1), p, True) @ v


class EncoderLayer(nn.Module):
    """One post-LN transformer layer as PyTorch's default ``TransformerEncoderLayer`` (ReLU, norm_first=False).

    ``last_only=True`` computes the output of the last position only: its queries are one row, while keys and
    values still come from every position. The URM reads only the last position of the last layer, so this
    gives the same state for ~half the last layer's cost.
    """

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ff1 = nn.Linear(d_model, ff_dim)
        self.ff2 = nn.Linear(ff_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None, last_only: bool = False) -> torch.Tensor:
        """x [B, H, D]; allowed [B, 1, H, H] bool (True = query may attend key) or None = causal only.

        Returns [B, H, D], or [B, 1, D] (the last position) when ``last_only``.
        """
        b, _, d = x.shape
        p = self.dropout if self.training else 0.0
        w, bias = self.qkv.weight, self.qkv.bias
        if last_only:
            q = F.linear(x[:, -1:], w[:d], bias[:d])
            k, v = F.linear(x, w[d:], bias[d:]).chunk(2, -1)
            residual = x[:, -1:]
            mask = None if allowed is None else allowed[:, :, -1:]  # the last query sees every earlier key
        else:
            q, k, v = F.linear(x, w, bias).chunk(3, -1)
            residual, mask = x, allowed
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attn = attention(q, k, v, mask, causal=mask is None and not last_only, p=p)
        attn = self.out(attn.transpose(1, 2).reshape(b, q.shape[2], d))
        y = self.norm1(residual + dropout(attn, p, self.training))
        ff = self.ff2(relu_dropout(self.ff1(y), p, self.training))
        return self.norm2(y + dropout(ff, p, self.training))


class HistoryEncoder(nn.Module):
    """Tokens [LayerNorm(Dropout(e_{h_t} + P_t)); Linear(7 → d)(y_t)] → causal transformer → last position.

    Args:
        enc_dim: d (tokens are 2d wide).
        history_length: H (learned positional embedding of H positions).
        heads, ff_dim, layers, dropout: transformer sizes (§3.2: 4, 64, 2, 0.1).
        num_behaviours: width of the feedback vector (7).
    """

    def __init__(self, enc_dim: int, history_length: int, heads: int, ff_dim: int, layers: int,
                 dropout: float, num_behaviours: int) -> None:  # fmt: skip
        super().__init__()
        self.positions = nn.Embedding(history_length, enc_dim)
        self.item_norm = nn.LayerNorm(enc_dim)
        self.feedback = nn.Linear(num_behaviours, enc_dim)
        self.layers = nn.ModuleList(EncoderLayer(2 * enc_dim, heads, ff_dim, dropout) for _ in range(layers))
        self.dropout = dropout
        # Building these per call cost more than the attention mask itself; they follow from H (not saved).
        causal = torch.ones(history_length, history_length, dtype=torch.bool).tril()
        self.register_buffer("causal", causal, persistent=False)
        self.register_buffer("diagonal", torch.eye(history_length, dtype=torch.bool), persistent=False)

    def attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Causal mask that also hides left padding: [B, H] real-row mask -> allowed [B, 1, H, H].

        A query may attend keys at or before it that are real rows, and always itself: a padding query then
        sees only itself (no all-masked row, whose NaNs would leak through later layers' matmuls), and an empty
        history's last position reads its own (padding) token.
        """
        return self.causal & (mask[:, None, None, :] | self.diagonal)

    def tokens(self, items: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        """[LN(Drop(e_t + P_t)); W_y y_t]: items [B, L, d], feedback [B, L, 7] (L <= H) -> tokens [B, L, 2d]."""
        x = items + self.positions.weight[: items.shape[1]]
        x = self.item_norm(dropout(x, self.dropout, self.training))
        return torch.cat([x, self.feedback(feedback)], -1)

    def forward_all(self, items: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        """Every position's output of one causal pass: items [B, L, d] and feedback [B, L, 7], left-aligned
        (position 0 = oldest; anything right of a sequence's end is never seen by its real positions)
        -> [B, L, 2d]; output t has read tokens 0..t."""
        x = self.tokens(items, feedback)
        for layer in self.layers:
            x = layer(x, None)
        return x

    def forward(self, items: torch.Tensor, feedback: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """items [B, H, d] (item encodings), feedback [B, H, 7] (already arranged), mask [B, H] (True on real
        rows; None = attend to padding too, causal only) -> the last position's output [B, 2d]."""
        if mask is not None and mask.device.type == "cpu" and bool(mask.all()):
            mask = None  # no padding: the mask is the causal one, and the causal kernel skips building it
        allowed = None if mask is None else self.attention_mask(mask)
        tokens = self.tokens(items, feedback)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            tokens = layer(tokens, allowed, last_only=i == last)
        return tokens[:, -1]
