"""Building blocks of the MTL bases: fused ReLU+dropout, a shared categorical embedding, an MLP and a bank of
batched MLPs (experts/towers).

Shapes: B batch, F feature fields, D embedding dim, E experts (MLPs in a bank), G input groups of a bank.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recrl_cli.errors import ConfigError

_RANDOM_BITS = 15  # dropout decisions use 15 random bits: p is rounded to a multiple of 2^-15
_LOW15_OF_EACH_INT16 = 0x7FFF7FFF7FFF7FFF


def dropout_mask(shape: Sequence[int], p: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Inverted-dropout multiplier of ``shape``: 0 with probability p' = round(p·2^15)/2^15, else 1/(1−p').

    Why not ``bernoulli_``: on the CPU it costs ~8 ns per element (one generator draw each, plus slow bool
    ops), which made dropout a quarter of an MoE train step. Here one 64-bit draw feeds 4 int16 lanes of 15
    uniform bits (the top bit of each lane is masked off) and the mask is built with integer/float arithmetic
    only: (r − t) >> 15 is −1 where r < t (drop), else 0. About 4× faster than ``F.dropout`` fwd+bwd.
    """
    t = min(round(p * 2**_RANDOM_BITS), 2**_RANDOM_BITS - 1)
    n = math.prod(shape)
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()  # uniform on [0, 2^63)
    lanes = draws.bitwise_and_(_LOW15_OF_EACH_INT16).view(torch.int16)[:n]  # uniform on [0, 2^15)
    lanes.sub_(t).bitwise_right_shift_(15)  # arithmetic shift: −1 = drop, 0 = keep
    scale = 2**_RANDOM_BITS / (2**_RANDOM_BITS - t)
    return lanes.to(dtype).add_(1).mul_(scale).view(tuple(shape))


def relu_dropout(h: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """ReLU then inverted dropout (zero with probability p, survivors scaled by 1/(1−p)); any shape.

    On the CPU the mask comes from ``dropout_mask`` (p rounded to a multiple of 2^-15); elsewhere this is
    ``F.dropout(relu(h))``, already fast there.
    """
    if not training or p == 0:
        return torch.relu(h)
    if h.device.type != "cpu":
        return F.dropout(torch.relu(h), p, training=True)
    return torch.relu(h) * dropout_mask(h.shape, p, h.dtype, h.device)


class FeatureEmbedding(nn.Module):
    """One embedding table over all fields, with per-field row offsets.

    Row 0 of every field is a real, learnable "missing/unknown" row: there is no ``padding_idx``. (The
    reference used ``padding_idx=0`` and then xavier-initialised it, which froze a random vector for the most
    frequent value.) Initialised with xavier-uniform, like the reference.

    ``sparse_grad`` (default False) makes the backward emit a sparse COO gradient of the looked-up rows
    instead of a dense [V, D] one; only for callers that turn it dense again before the optimizer
    (:class:`recrl_cli.nets.embedding_grad.DenseEmbeddingGrads`). Not part of the state dict.
    """

    def __init__(self, cardinalities: Sequence[int], embed_dim: int, history: str = "off") -> None:
        super().__init__()
        cards = tuple(cardinalities)
        if not cards:
            raise ConfigError("the model needs at least one categorical field (cardinalities is empty)")
        bad = [c for c in cards if isinstance(c, bool) or not isinstance(c, int) or c < 1]
        if bad:
            raise ConfigError(f"field cardinalities must be integers >= 1, got {bad[0]!r}")
        self.cardinalities = cards
        self.embed_dim = embed_dim
        offsets = torch.tensor((0, *cards[:-1]), dtype=torch.long).cumsum(0)
        # Not persistent: the offsets follow from the cardinalities, which the weight shape already pins.
        self.register_buffer("offsets", offsets, persistent=False)
        self.weight = nn.Parameter(torch.empty(sum(cards), embed_dim))
        nn.init.xavier_uniform_(self.weight)
        self.sparse_grad = False
        # Session history (nets/history.py): x carries 2H more columns, the item ids of the history (field 0's
        # vocabulary, so they share field 0's rows: the prepared data put the item id first) and their label codes.
        from recrl_cli.nets.history import HistoryPooling

        self.history = HistoryPooling(embed_dim, history) if history != "off" else None

    @property
    def num_fields(self) -> int:
        return len(self.cardinalities)

    @property
    def output_dim(self) -> int:
        """Width F·D of the flattened output (+ 2D with a history encoder)."""
        extra = self.history.output_dim if self.history is not None else 0
        return self.num_fields * self.embed_dim + extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor [B, F + 2H] (per-field ids in [0, cardinality), then H history item ids and H label
        codes; H may be 0) -> [B, F·D] (+ the history encoder's [B, 2D]). Without an encoder the history
        columns are ignored."""
        f = self.num_fields
        emb = F.embedding(x[:, :f] + self.offsets, self.weight, sparse=self.sparse_grad)  # [B, F, D]
        if self.history is None:
            return emb.flatten(1)
        h = (x.shape[1] - f) // 2
        items = F.embedding(x[:, f : f + h], self.weight, sparse=self.sparse_grad)  # [B, H, D], field 0 rows
        return torch.cat((emb.flatten(1), self.history(emb[:, 0], items, x[:, f + h : f + 2 * h])), dim=1)


class MLP(nn.Module):
    """``Linear → ReLU → Dropout`` per hidden size (no BatchNorm, like the reference), then an optional
    ``Linear(→out_dim)`` with no activation. Maps [N, in_dim] -> [N, out_dim or hidden_dims[-1]]."""

    def __init__(
        self, in_dim: int, hidden_dims: Sequence[int], dropout: float, out_dim: int | None = None
    ) -> None:
        super().__init__()
        dims = (in_dim, *hidden_dims)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.out = nn.Linear(dims[-1], out_dim) if out_dim is not None else None
        self.dropout = dropout
        self.output_dim = out_dim if out_dim is not None else dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = relu_dropout(layer(x), self.dropout, self.training)
        return self.out(x) if self.out is not None else x


class StackedLinear(nn.Module):
    """G independent linear maps run as one batched matmul.

    weight [G, in, out], bias [G, 1, out]; forward maps x [G, N, in] -> [G, N, out]. Initialised like
    ``nn.Linear`` (uniform ±1/√in for weight and bias).
    """

    def __init__(self, groups: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class MLPBank(nn.Module):
    """E = groups·per_group independent MLPs (experts or towers) evaluated with batched matmuls.

    Experts of one group read the same input, so the first layer of a group is ONE wide matmul
    [B, in] @ [in, per_group·d0]; the later layers are one ``baddbmm`` over all E experts. This replaces a
    Python loop over E small MLPs (E kernel launches per layer on a GPU) and gives the same numbers. Each
    expert is ``Linear → ReLU → Dropout`` per hidden size, then an optional ``Linear(→out_dim)``.

    forward: x [G, B, in] (a stride-0 ``expand`` of one [B, in] input is fine) -> [E, B, out]; expert e
    belongs to group e // per_group. The output may be a non-contiguous view (one group of several experts).
    """

    def __init__(
        self,
        groups: int,
        per_group: int,
        in_dim: int,
        hidden_dims: Sequence[int],
        dropout: float,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        dims = (*hidden_dims, out_dim) if out_dim is not None else tuple(hidden_dims)
        if not dims:
            raise ConfigError("an MLP bank needs at least one layer")
        self.groups, self.per_group, self.num_experts = groups, per_group, groups * per_group
        self.num_hidden = len(hidden_dims)
        self.dropout = dropout
        self.output_dim = dims[-1]
        layers = [StackedLinear(groups, in_dim, per_group * dims[0])]
        layers += [StackedLinear(self.num_experts, a, b) for a, b in itertools.pairwise(dims)]
        self.layers = nn.ModuleList(layers)

    def _activate(self, h: torch.Tensor, index: int) -> torch.Tensor:
        if index >= self.num_hidden:  # the output layer has no activation
            return h
        return relu_dropout(h, self.dropout, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups, batch = x.shape[0], x.shape[1]
        h = self._activate(self.layers[0](x), 0)  # [G, B, per_group·d0]
        if self.per_group > 1 and groups == 1:
            # [1, B, k·d0] -> [k, B, d0] as a strided view (no copy): the batched matmuls and the gate mixing
            # read it in place, and the mixing's gradient comes back in this very layout.
            h = h.view(batch, self.per_group, -1).transpose(0, 1)
        elif self.per_group > 1:  # [G, B, k·d0] -> [G·k, B, d0]: groups and experts cannot share a stride
            h = h.view(groups, batch, self.per_group, -1).transpose(1, 2).reshape(self.num_experts, batch, -1)
        for i, layer in enumerate(self.layers[1:], start=1):
            h = self._activate(layer(h), i)
        return h

    def expert_layers(self, expert: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight [in, out], bias [out]) of each layer of one expert: the naive per-expert view."""
        group, slot = divmod(expert, self.per_group)
        first = self.layers[0]
        width = first.out_features // self.per_group
        cols = slice(slot * width, (slot + 1) * width)
        out = [(first.weight[group, :, cols], first.bias[group, 0, cols])]
        out += [(layer.weight[expert], layer.bias[expert, 0]) for layer in self.layers[1:]]
        return out


def mix_experts(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sum of expert outputs: gates [B, M, E] (rows sum to 1), experts [E, B, d] -> [M, B, d]
    (M mixtures, e.g. one per task)."""
    return torch.bmm(gates, experts.transpose(0, 1)).transpose(0, 1)


def tower_logits(towers: MLPBank, features: torch.Tensor) -> torch.Tensor:
    """Run T towers (a bank with out_dim 1) on per-task features [T, B, d] -> logits [B, T]."""
    return towers(features).squeeze(-1).t().contiguous()
