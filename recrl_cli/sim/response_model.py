"""KuaiSim's user immediate response model (URM, hac_kuaisim.md §3): P(7 behaviours | user, history, item).

    e_i  = ItemEncoder(item i)                         ∈ R^d     (id + video_type/upload_type/music_type + tags)
    u    = UserEncoder(user)                           ∈ R^d     (id + 13 profile features)
    h    = Transformer([LN(Drop(e_{h_t} + P_t)); W_y·y_t]_{t=1..H})[last]    ∈ R^{2d}
    s    = [h; u]                                      ∈ R^{3d}  (the "ground-truth user state")
    A    = LN_d(reshape(DNN(s), 7 × d))                ∈ R^{7×d} (one attention vector per behaviour)
    z_bi = mean_d(A_b ⊙ e_i) (+ bias_b)                          (logit of behaviour b on item i)

The feature id tables of users and items live in the model as buffers, so the model takes ids only and an
exported model is self-contained (the environment needs nothing else). The faithful switches are described
in :mod:`recrl_cli.sim.config`. Shapes: B users, H history, K items per user, d = enc_dim, N all items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recrl_cli.data.kuairand_tensors import FeatureTable
from recrl_cli.nets.layers import relu_dropout
from recrl_cli.sim.config import SimulatorConfig, response_switches
from recrl_cli.sim.encoders import FieldRows, HistoryEncoder, RowEncoder

NUM_BEHAVIOURS = 7


def arrange_feedback(feedback: torch.Tensor, scrambled: bool) -> torch.Tensor:
    """[B, H, 7] labels per history step -> what the feedback embedding reads.

    Fixed: unchanged (KuaiSim meant ``stack(dim=-1)`` of the 7 [B, H] label tensors). Faithful (§8 #5):
    KuaiSim ``cat``s the 7 tensors along the last axis, [B, 7·H] behaviour-major, and ``view``s that as
    [B, H, 7], so token t gets entries 7t..7t+6 of the concatenation instead of step t's 7 labels.
    """
    if not scrambled:
        return feedback
    b, h, n = feedback.shape
    return feedback.transpose(1, 2).reshape(b, n * h).view(b, h, n)


class UserResponseModel(nn.Module):
    """The URM. Build with the prepared feature tables (:func:`recrl_cli.data.kuairand_tensors.load_feature_table`).

    Args:
        cfg: architecture and switches.
        users: user feature table (``ids`` [U + 1, Fu]); the id table has U + 1 rows.
        items: item feature table (``ids`` [I + 1, Fi], ``tags`` [I + 1, L]); 0 is the padding item.
    """

    def __init__(self, cfg: SimulatorConfig, users: FeatureTable, items: FeatureTable) -> None:
        super().__init__()
        self.cfg = cfg
        self.switches = response_switches(cfg)
        self.user_names, self.item_names = list(users.names), list(items.names)
        self.user_cards, self.item_cards = list(users.cardinalities), list(items.cardinalities)
        self.tag_cardinality = int(items.tag_cardinality)
        self.register_buffer("user_features", users.ids.clone())
        self.register_buffer("item_features", items.ids.clone())
        tags = items.tags if items.tags is not None else torch.zeros(items.ids.shape[0], 1, dtype=torch.long)
        self.register_buffer("item_tags", tags.clone())
        d = cfg.enc_dim
        self.item_encoder = RowEncoder(
            FieldRows(self.num_items + 1, self.item_cards, cfg.item_latent, self.tag_cardinality),
            cfg.item_latent,
            d,
            0.0,
        )
        self.user_encoder = RowEncoder(
            FieldRows(self.num_users + 1, self.user_cards, cfg.user_latent), cfg.user_latent, d, cfg.dropout
        )
        self.history = HistoryEncoder(d, cfg.history_length, cfg.n_heads, cfg.ff_dim, cfg.n_layers, cfg.dropout,
                                      NUM_BEHAVIOURS)  # fmt: skip
        # Scorer: DNN(3d → [hidden] → 7·d) = Linear, ReLU, Dropout, LayerNorm, Linear; then LayerNorm(d) per behaviour.
        self.scorer_in = nn.Linear(3 * d, cfg.state_hidden)
        self.scorer_norm = nn.LayerNorm(cfg.state_hidden)
        self.scorer_out = nn.Linear(cfg.state_hidden, NUM_BEHAVIOURS * d)
        self.behaviour_norm = nn.LayerNorm(d)
        self.behaviour_bias = (
            None if self.switches["no_behaviour_bias"] else nn.Parameter(torch.zeros(NUM_BEHAVIOURS))
        )
        # Play-time head (recrl_cli.sim.play_time): one vector per bin from the scorer's hidden layer, scored
        # against the item like the behaviours. Absent when cfg.play_time_edges is empty.
        edges = tuple(cfg.play_time_edges)
        self.register_buffer("play_edges", torch.tensor(edges, dtype=torch.float32))
        self.play_out = nn.Linear(cfg.state_hidden, (len(edges) + 1) * d) if edges else None
        self.play_norm = nn.LayerNorm(d) if edges else None
        self.play_bias = nn.Parameter(torch.zeros(len(edges) + 1)) if edges else None

    # -- sizes ---------------------------------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        """I: encoded items are 1..I (0 = padding)."""
        return int(self.item_features.shape[0]) - 1

    @property
    def num_users(self) -> int:
        return int(self.user_features.shape[0]) - 1

    @property
    def has_play_time(self) -> bool:
        return self.play_out is not None

    @property
    def state_dim(self) -> int:
        return 3 * self.cfg.enc_dim

    # -- encoders ------------------------------------------------------------------------------------------------
    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        """Item encodings e for ids of any shape [...] -> [..., d]. Each distinct id is encoded once."""
        unique, inverse = torch.unique(ids, return_inverse=True)
        enc = self.item_encoder(unique, self.item_features[unique], self.item_tags[unique])
        return enc[inverse]

    def item_table(self) -> torch.Tensor:
        """Encodings of every item id 0..I: [I + 1, d] (row 0 = the padding item)."""
        ids = torch.arange(self.num_items + 1, device=self.item_features.device)
        return self.item_encoder(ids, self.item_features, self.item_tags)

    def user_state(self, user: torch.Tensor, hist_enc: torch.Tensor, feedback: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """s = [h; u]: user [B], hist_enc [B, H, d] (item encodings), feedback [B, H, 7], mask [B, H] -> [B, 3d]."""
        fb = arrange_feedback(feedback, self.switches["scrambled_feedback"])
        h = self.history(hist_enc, fb, None if self.switches["unmasked_padding"] else mask)
        u = self.user_encoder(user, self.user_features[user])
        return torch.cat([h, u], -1)

    def _scorer_hidden(self, state: torch.Tensor) -> torch.Tensor:
        """The scorer DNN's normalised hidden layer: state [B, 3d] -> [B, state_hidden]."""
        return self.scorer_norm(relu_dropout(self.scorer_in(state), self.cfg.dropout, self.training))

    def behaviour_vectors(self, state: torch.Tensor) -> torch.Tensor:
        """A = LN_d(DNN(s)) per behaviour: state [B, 3d] -> [B, 7, d]."""
        a = self.scorer_out(self._scorer_hidden(state)).view(state.shape[0], NUM_BEHAVIOURS, self.cfg.enc_dim)
        return self.behaviour_norm(a)

    def play_vectors(self, state: torch.Tensor) -> torch.Tensor:
        """One vector per play-time bin: state [B, 3d] -> [B, M + 1, d] (needs the head)."""
        if self.play_out is None or self.play_norm is None:
            raise ValueError("this response model has no play-time head (model.play_time_edges is empty)")
        p = self.play_out(self._scorer_hidden(state)).view(state.shape[0], -1, self.cfg.enc_dim)
        return self.play_norm(p)

    def play_logits(self, vectors: torch.Tensor, item_enc: torch.Tensor) -> torch.Tensor:
        """Play-time bin logits given a click: vectors [B, M + 1, d], item_enc [B, K, d] -> [B, K, M + 1]."""
        return torch.einsum("bkd,bjd->bkj", item_enc, vectors) / self.cfg.enc_dim + self.play_bias

    def score(self, vectors: torch.Tensor, item_enc: torch.Tensor) -> torch.Tensor:
        """Logits z_bi = mean_d(A_b ⊙ e_i) (+ bias_b): vectors [B, 7, d], item_enc [B, K, d] -> [B, K, 7]."""
        z = torch.einsum("bkd,bjd->bkj", item_enc, vectors) / self.cfg.enc_dim  # §3.2: a mean, not a sum
        return z if self.behaviour_bias is None else z + self.behaviour_bias

    def forward(self, user: torch.Tensor, hist_items: torch.Tensor, feedback: torch.Tensor, mask: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Logits [B, K, 7] of ``targets`` [B, K] for user [B] with history items [B, H], feedback [B, H, 7]
        (0/1, logged or simulated) and mask [B, H] (True on real rows)."""
        return self.forward_with_play(user, hist_items, feedback, mask, targets, play=False)[0]

    def forward_with_play(self, user: torch.Tensor, hist_items: torch.Tensor, feedback: torch.Tensor,
                          mask: torch.Tensor, targets: torch.Tensor,
                          play: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """(behaviour logits [B, K, 7], play-time bin logits [B, K, M + 1] or None): :meth:`forward`'s inputs."""
        enc = self.encode_items(torch.cat([hist_items, targets], 1))
        h = hist_items.shape[1]
        state = self.user_state(user, enc[:, :h], feedback, mask)
        logits = self.score(self.behaviour_vectors(state), enc[:, h:])
        if not (play and self.has_play_time):
            return logits, None
        return logits, self.play_logits(self.play_vectors(state), enc[:, h:])

    # -- probabilities and loss ----------------------------------------------------------------------------------
    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """What the simulator samples from: σ(z), or σ(σ(z)) ∈ (0.5, 0.731) with ``double_sigmoid`` (§8 #1)."""
        p = torch.sigmoid(logits)
        return torch.sigmoid(p) if self.switches["double_sigmoid"] else p

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor, neg_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Σ_b mean_n[W_nb · BCE] (§3.4, behaviour weights 1): logits, labels [N, 7]; neg_weight [7] or None.

        Fixed: BCE-with-logits on z. ``double_sigmoid``: BCE-with-logits on σ(z), i.e. BCE of σ(σ(z)).
        ``neg_weight`` (the ``pos_neg_weights`` switch) weighs each behaviour's negatives, positives weigh 1.
        """
        z = torch.sigmoid(logits) if self.switches["double_sigmoid"] else logits
        weight = None if neg_weight is None else torch.where(labels > 0, torch.ones_like(labels), neg_weight)
        per = F.binary_cross_entropy_with_logits(z, labels, weight=weight, reduction="none")
        return per.mean(0).sum()

    def l2_penalty(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """KuaiSim's reg (§3.4): Σ over non-id tensors of mean(θ²) + mean(u-id rows²) + mean(item-id rows²) of
        the batch's user [B] and target items [...] (an id table is regularised only where the batch uses it)."""
        ids = {id(self.item_encoder.rows.ids.weight), id(self.user_encoder.rows.ids.weight)}
        reg = sum(p.square().mean() for p in self.parameters() if id(p) not in ids)
        reg = reg + self.user_encoder.rows.ids(user).square().mean()
        return reg + self.item_encoder.rows.ids(items).square().mean()
