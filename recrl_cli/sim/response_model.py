"""KuaiSim's user immediate response model (URM, hac_kuaisim.md §3): P(7 behaviours | user, history, item).

    e_i  = ItemEncoder(item i)                         ∈ R^d     (id + video_type/upload_type/music_type + tags)
    u    = UserEncoder(user)                           ∈ R^d     (id + 13 profile features)
    h    = Transformer([LN(Drop(e_{h_t} + P_t)); W_y·y_t]_{t=1..H})[last]    ∈ R^{2d}
    s    = [h; u]                                      ∈ R^{3d}  (the "ground-truth user state")
    A    = LN_d(reshape(DNN(s), 7 × d))                ∈ R^{7×d} (one attention vector per behaviour)
    z_bi = mean_d(A_b ⊙ e_i) (+ bias_b)                          (logit of behaviour b on item i)

That is KuaiSim as published (the ``per_row_window``, ``bounded_logits`` and ``no_user_taste`` switches). recrl's
default changes three things, because that model learns item popularity and not the users (issue 14):

- **one causal pass per user** (:mod:`recrl_cli.sim.sequence`): h_t is position t's output of a causal
  transformer over the user's sequence, so training encodes each row once instead of a copied window per row;
- **user taste**, matrix factorisation beside the transformer: p_u ∈ R^t per user id and q_i = id row + tag rows
  ∈ R^t per item; the state gains p_u and each behaviour a taste vector T_b = W_b p_u + c_b;
- **calibrated logits**: a learned scale per behaviour and bias_b initialised at the train log-odds, so rare
  behaviours start at their rate and the logit range is not capped near ±1:

    z_bi = exp(γ_b) · mean_d(A_b ⊙ e_i) + T_b · q_i + bias_b

Item encodings are then [e_i; q_i] ∈ R^{d+t} and behaviour vectors [A_b; T_b] ∈ R^{7×(d+t)}.

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
from recrl_cli.sim.sequence import align_windows

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
        t = 0 if self.switches["no_user_taste"] else cfg.taste_dim
        self.taste_dim = t
        if t:
            # Small init: MF's product p·q then starts near 0 without sitting at the saddle p = q = 0.
            self.user_taste = nn.Embedding(self.num_users + 1, t)
            self.item_taste = nn.Embedding(self.num_items + 1, t)
            self.tag_taste = nn.Embedding(max(1, self.tag_cardinality), t, padding_idx=0)
            for table in (self.user_taste, self.item_taste, self.tag_taste):
                nn.init.normal_(table.weight, 0.0, 0.1)
            with torch.no_grad():
                self.tag_taste.weight[0].zero_()
            self.taste_out = nn.Linear(t, NUM_BEHAVIOURS * t)
        # Scorer: DNN(3d → [hidden] → 7·d) = Linear, ReLU, Dropout, LayerNorm, Linear; then LayerNorm(d) per behaviour.
        self.scorer_in = nn.Linear(3 * d + t, cfg.state_hidden)
        self.scorer_norm = nn.LayerNorm(cfg.state_hidden)
        self.scorer_out = nn.Linear(cfg.state_hidden, NUM_BEHAVIOURS * d)
        self.behaviour_norm = nn.LayerNorm(d)
        self.behaviour_bias = (
            None if self.switches["no_behaviour_bias"] else nn.Parameter(torch.zeros(NUM_BEHAVIOURS))
        )
        # exp(γ_b): lets the score leave KuaiSim's ±1 band; e^{1.4} ≈ 4 spans the rates of the 7 behaviours.
        self.logit_scale = (
            None if self.switches["bounded_logits"] else nn.Parameter(torch.full((NUM_BEHAVIOURS,), 1.4))
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
        """3d (+ t with user taste)."""
        return 3 * self.cfg.enc_dim + self.taste_dim

    @property
    def item_dim(self) -> int:
        """Width of an item encoding: d (+ t with user taste)."""
        return self.cfg.enc_dim + self.taste_dim

    def taste_parameters(self) -> list[nn.Parameter]:
        """The taste path's parameters (trained with a larger learning rate: sparse rows)."""
        if not self.taste_dim:
            return []
        return [*self.user_taste.parameters(), *self.item_taste.parameters(), *self.tag_taste.parameters(),
                *self.taste_out.parameters()]  # fmt: skip

    @torch.no_grad()
    def init_rates(self, rate: torch.Tensor) -> None:
        """Start each behaviour's bias at the log-odds of its positive rate [7] (not with ``bounded_logits``:
        KuaiSim starts at 0), so a rare behaviour is rare from the first step."""
        if self.behaviour_bias is not None and self.logit_scale is not None:
            r = rate.to(self.behaviour_bias).clamp(1e-6, 1 - 1e-6)
            self.behaviour_bias.copy_(torch.log(r / (1 - r)))

    # -- encoders ------------------------------------------------------------------------------------------------
    def _encode(self, ids: torch.Tensor) -> torch.Tensor:
        """[e; q] of distinct ids [N] -> [N, d (+ t)]."""
        enc = self.item_encoder(ids, self.item_features[ids], self.item_tags[ids])
        if not self.taste_dim:
            return enc
        q = self.item_taste(ids) + self.tag_taste(self.item_tags[ids]).sum(1)
        return torch.cat([enc, q], -1)

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        """Item encodings [e; q] for ids of any shape [...] -> [..., d (+ t)]. Each distinct id is encoded once."""
        unique, inverse = torch.unique(ids, return_inverse=True)
        return self._encode(unique)[inverse]

    def item_table(self) -> torch.Tensor:
        """Encodings of every item id 0..I: [I + 1, d (+ t)] (row 0 = the padding item)."""
        return self._encode(torch.arange(self.num_items + 1, device=self.item_features.device))

    def _user_parts(self, user: torch.Tensor) -> torch.Tensor:
        """[u; p]: user [B] -> [B, d (+ t)]."""
        u = self.user_encoder(user, self.user_features[user])
        return torch.cat([u, self.user_taste(user)], -1) if self.taste_dim else u

    def user_state(self, user: torch.Tensor, hist_enc: torch.Tensor, feedback: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """s = [h; u (; p)]: user [B], hist_enc [B, H', d (+ t)] (item encodings, left-padded, H' <= H),
        feedback [B, H', 7], mask [B, H'] -> [B, state_dim].

        Per-row window (KuaiSim): the transformer's last position over the left-padded window. Default: the
        window is left-aligned (:func:`recrl_cli.sim.sequence.align_windows`) and read where the causal pass
        that training used would read it, so the state is the one training saw for the same history."""
        fb = arrange_feedback(feedback, self.switches["scrambled_feedback"])
        e = hist_enc[..., : self.cfg.enc_dim]
        if self.switches["per_row_window"]:
            h = self.history(e, fb, None if self.switches["unmasked_padding"] else mask)
        else:
            start = self._encode(torch.zeros(1, dtype=torch.long, device=e.device))[0, : self.cfg.enc_dim]
            items, feed, read = align_windows(e, fb, mask, start)
            out = self.history.forward_all(items, feed)  # [B, H', 2d]
            h = out[torch.arange(len(read), device=out.device), read]
        return torch.cat([h, self._user_parts(user)], -1)

    def _scorer_hidden(self, state: torch.Tensor) -> torch.Tensor:
        """The scorer DNN's normalised hidden layer: state [B, state_dim] -> [B, state_hidden]."""
        return self.scorer_norm(relu_dropout(self.scorer_in(state), self.cfg.dropout, self.training))

    def behaviour_vectors(self, state: torch.Tensor) -> torch.Tensor:
        """[A_b; T_b] per behaviour: state [B, state_dim] -> [B, 7, d (+ t)]. A = LN_d(DNN(s)), T = W p + c."""
        a = self.scorer_out(self._scorer_hidden(state)).view(state.shape[0], NUM_BEHAVIOURS, self.cfg.enc_dim)
        a = self.behaviour_norm(a)
        if not self.taste_dim:
            return a
        taste = self.taste_out(state[:, -self.taste_dim :]).view(
            state.shape[0], NUM_BEHAVIOURS, self.taste_dim
        )
        return torch.cat([a, taste], -1)

    def play_vectors(self, state: torch.Tensor) -> torch.Tensor:
        """One vector per play-time bin: state [B, state_dim] -> [B, M + 1, d] (needs the head)."""
        if self.play_out is None or self.play_norm is None:
            raise ValueError("this response model has no play-time head (model.play_time_edges is empty)")
        p = self.play_out(self._scorer_hidden(state)).view(state.shape[0], -1, self.cfg.enc_dim)
        return self.play_norm(p)

    def play_logits(self, vectors: torch.Tensor, item_enc: torch.Tensor) -> torch.Tensor:
        """Play-time bin logits given a click: vectors [B, M + 1, d], item_enc [B, K, d (+ t)] -> [B, K, M + 1]."""
        e = item_enc[..., : self.cfg.enc_dim]
        return torch.einsum("bkd,bjd->bkj", e, vectors) / self.cfg.enc_dim + self.play_bias

    def score(self, vectors: torch.Tensor, item_enc: torch.Tensor) -> torch.Tensor:
        """Logits z_bi = s_b · mean_d(A_b ⊙ e_i) (+ T_b · q_i) (+ bias_b): vectors [B, J, d (+ t)] (J behaviours,
        the first J of the 7 unless ``behaviours`` of :meth:`score_all`), item_enc [B, K, d (+ t)] per user or
        [K, d (+ t)] shared -> [B, K, J]."""
        return self.score_all(vectors, item_enc, torch.arange(vectors.shape[1], device=vectors.device))

    def score_all(
        self, vectors: torch.Tensor, item_enc: torch.Tensor, behaviours: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`score` for the behaviours ``behaviours`` [J] (indices into the 7) whose vectors [B, J, D] are
        given, against item_enc [B, K, D] or a shared table [K, D] -> [B, K, J]."""
        d = self.cfg.enc_dim
        eq = "kd,bjd->bkj" if item_enc.dim() == 2 else "bkd,bjd->bkj"
        z = torch.einsum(eq, item_enc[..., :d], vectors[..., :d]) / d  # §3.2: a mean, not a sum
        if self.logit_scale is not None:
            z = z * self.logit_scale[behaviours].exp()
        if self.taste_dim:
            z = z + torch.einsum(eq, item_enc[..., d:], vectors[..., d:])
        return z if self.behaviour_bias is None else z + self.behaviour_bias[behaviours]

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

    def forward_blocks(self, user: torch.Tensor, tok_items: torch.Tensor, tok_feedback: torch.Tensor,
                       targets: torch.Tensor, play: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """One causal pass per block of a user's sequence (:mod:`recrl_cli.sim.sequence`): user [nb], tokens
        tok_items [nb, L] and tok_feedback [nb, L, 7] (token t = the row before target t, or the padding item
        0 with no feedback as a start token), targets [nb, L] -> (logits [nb, L, 7], play logits
        [nb, L, M + 1] or None). Position t's state reads tokens 0..t only, i.e. rows before target t."""
        nb, length = targets.shape
        enc = self.encode_items(torch.cat([tok_items, targets], 1))
        fb = arrange_feedback(tok_feedback, self.switches["scrambled_feedback"])
        h = self.history.forward_all(enc[:, :length, : self.cfg.enc_dim], fb)  # [nb, L, 2d]
        u = self._user_parts(user)[:, None].expand(-1, length, -1)
        state = torch.cat([h, u], -1).reshape(nb * length, -1)
        target_enc = enc[:, length:].reshape(nb * length, 1, -1)
        logits = self.score(self.behaviour_vectors(state), target_enc).view(nb, length, NUM_BEHAVIOURS)
        if not (play and self.has_play_time):
            return logits, None
        return logits, self.play_logits(self.play_vectors(state), target_enc).view(nb, length, -1)

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
        ids |= {id(p) for p in self.taste_parameters()}  # the taste rows have their own per-row L2
        reg = sum(p.square().mean() for p in self.parameters() if id(p) not in ids)
        reg = reg + self.user_encoder.rows.ids(user).square().mean()
        return reg + self.item_encoder.rows.ids(items).square().mean()

    def taste_penalty(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """MF's per-row L2 on the batch's taste rows: mean_B |p_u|² + mean |q_i id row|² (0 without taste).
        user [B], items [...] (the batch's target items)."""
        if not self.taste_dim:
            return torch.zeros((), device=user.device)
        return self.user_taste(user).square().sum(-1).mean() + self.item_taste(items).square().sum(-1).mean()
